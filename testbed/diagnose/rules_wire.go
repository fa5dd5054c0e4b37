package diagnose

import (
	"fmt"

	"github.com/rocebed/rocebed/testbed/counters"
	"github.com/rocebed/rocebed/testbed/traffic"
)

// notOnWire: the packets did not cross the cable: lo carried them, or the output route of the
// RoCE path leaves through another device. Without either, the counters only fail to prove
// that they crossed (a not-on-wire verdict of the traffic), and the summary says so.
func (r ruler) notOnWire() *Finding {
	var ev []string
	elsewhere := false // lo moved under a flagged batch, or an output route leaves elsewhere
	for _, b := range r.batches() {
		c := r.counters(b)
		lo, lok := c.Link("lo")
		rx, _ := c.Link(b.Receiver.NIC)
		sent, _ := c.RDMACounter(b.Sender.Device, counters.CounterRXEHWSentPkts)
		if b.Class == traffic.ClassNotOnWire || (lok && sent > 0 && lo.TxPackets >= sent && rx.RxPackets < sent) {
			ev = append(ev, fmt.Sprintf("%s %s: %s sent_pkts +%d, %s rx +%d, lo tx +%d", b.Traffic, b.Direction, b.Sender.Device, sent, b.Receiver.NIC, rx.RxPackets, lo.TxPackets))
			elsewhere = elsewhere || lo.TxPackets > 0
			if b.Class == traffic.ClassNotOnWire {
				ev = append(ev, b.Verdict)
			}
		}
	}
	for _, d := range r.ev.Directions {
		if d.RouteOut.Answered() && (d.RouteOut.Dev != d.SrcNIC || d.RouteOut.Type != RouteUnicast) {
			ev = append(ev, fmt.Sprintf("%s output route: %s (not unicast out of %s)", d.Name, d.RouteOut.String(), d.SrcNIC))
			elsewhere = true
		}
	}
	if len(ev) == 0 {
		return nil
	}
	summary := "the traffic does not provably cross the cable: the counters do not show every packet on both NICs and devices, so a pass would not prove the NICs work"
	if elsewhere {
		summary = "the traffic does not cross the cable: it leaves through lo or another NIC, so a pass would not prove the NICs work"
	}
	return &Finding{Code: CodeNotOnWire, Severity: r.severity(),
		Summary:  summary,
		Evidence: ev, Fix: r.policyRoutingFix(false)}
}
