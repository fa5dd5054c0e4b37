package diagnose

import (
	"fmt"

	"github.com/rocebed/rocebed/testbed/counters"
	"github.com/rocebed/rocebed/testbed/probe"
	"github.com/rocebed/rocebed/testbed/scenario"
)

// localRoute: IPv6 packets to a local address went to lo. rxe looks its route up with its NIC
// as output interface and its GID's address as source, but IPv6 output routing binds to the
// output interface only for link-local and multicast destinations: for an address of this
// host — the other NIC's — the local table's route through lo wins. The RDMA core then takes
// the destination MAC to be the sender's own (a route to lo means "this host"), and rxe, seeing
// its own MAC, loops each packet back into the sending device, which drops it (it is for the
// other device's QP and address): no packet reaches a NIC, and the requester retries in vain.
// Seen as an IPv6 output route of type local (`ip -6 route get DST from SRC oif NIC` answers
// `local … dev lo`), or as a failed IPv6 batch whose requester sent packets that neither its
// NIC nor the other device counted (measured on Debian's 6.1: rxe0 sent_pkts +30, vA tx +0,
// lo tx +0, rxe1 rcvd_pkts +0).
func (r ruler) localRoute() *Finding {
	var ev []string
	for _, d := range r.ev.Directions {
		if d.Family != scenario.FamilyIPv6 || d.RouteOut.Type != RouteLocal {
			continue
		}
		ev = append(ev, fmt.Sprintf("%s output route: %s (not unicast out of %s)", d.Name, d.RouteOut.String(), d.SrcNIC))
		if d.Probe != nil && d.Probe.Layer == probe.LayerRouteOut {
			ev = append(ev, fmt.Sprintf("%s probe route-out: %s", d.Name, d.Probe.Detail))
		}
	}
	for _, b := range r.batches() {
		if b.Pass || b.Family != scenario.FamilyIPv6 {
			continue
		}
		c := r.counters(b)
		sent, ok := c.RDMACounter(b.Sender.Device, counters.CounterRXEHWSentPkts)
		rcvd, rok := c.ReceivedPackets(b.Receiver.Device)
		tx, txok := c.Link(b.Sender.NIC)
		lo, _ := c.Link("lo")
		if !ok || !rok || !txok || sent == 0 || rcvd > 0 || tx.TxPackets >= sent {
			continue
		}
		ev = append(ev, fmt.Sprintf("%s %s: %s sent_pkts +%d, %s tx +%d, lo tx +%d, %s rcvd_pkts +%d: the packets never reached a NIC (rxe looped them back into %s)",
			b.Traffic, b.Direction, b.Sender.Device, sent, b.Sender.NIC, tx.TxPackets, lo.TxPackets, b.Receiver.Device, rcvd, b.Sender.Device))
		if t := b.Tally; t.FirstError != 0 {
			ev = append(ev, fmt.Sprintf("requester completion %s; responder completions: %d", t.FirstError, t.ReceiverCompletions))
		}
	}
	if len(ev) == 0 {
		return nil
	}
	return &Finding{Code: CodeLocalRoute, Severity: r.severity(),
		Summary:  "IPv6 packets to a local address went to lo: the other endpoint's IPv6 address is one of this host's own, and IPv6 output routing takes the local table's route through lo for it although rxe names its NIC (the output interface binds only for link-local and multicast destinations), and the RDMA core takes the sender's own MAC as the destination, so rxe loops the RoCE packets back into the sending device: they never reach the cable and the other device receives none",
		Evidence: ev, Fix: r.policyRoutingFix(false)}
}
