package diagnose

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/rocebed/rocebed/internal/kernel"
	"github.com/rocebed/rocebed/testbed/counters"
	"github.com/rocebed/rocebed/testbed/traffic"
)

// martianSource: RoCE packets crossed the cable (sender NIC tx and receiver NIC rx moved) and
// the receiving kernel dropped them in input routing: in_martian_src rose by about the packets
// sent and the receiving device counted none. When the strict reverse-path filter is what
// drops them (its counter moved, or the source check predicts it), the finding is rp-filter.
func (r ruler) martianSource() *Finding {
	var ev []string
	strict, found := false, false
	for _, b := range r.batches() {
		if b.Pass {
			continue
		}
		c := r.counters(b)
		sent, sok := c.RDMACounter(b.Sender.Device, counters.CounterRXEHWSentPkts)
		rcvd, _ := c.RDMACounter(b.Receiver.Device, counters.CounterRXEHWRcvdPkts)
		tx, _ := c.Link(b.Sender.NIC)
		rx, _ := c.Link(b.Receiver.NIC)
		m, _ := c.KernelCounter(counters.CounterMartianSrc)
		rpf, _ := c.KernelCounter(counters.CounterRPFilter)
		if !sok || sent == 0 || rcvd != 0 || tx.TxPackets == 0 || rx.RxPackets == 0 {
			continue
		}
		// The martian counter is host-wide: demand it covers (nearly) every packet sent.
		if m*10 < sent*9 && rpf == 0 {
			continue
		}
		found = true
		ev = append(ev, fmt.Sprintf("%s %s: %s sent_pkts +%d, %s rcvd_pkts +%d", b.Traffic, b.Direction, b.Sender.Device, sent, b.Receiver.Device, rcvd),
			fmt.Sprintf("%s tx +%d, %s rx +%d: the packets crossed the cable", b.Sender.NIC, tx.TxPackets, b.Receiver.NIC, rx.RxPackets),
			fmt.Sprintf("rt_cache.in_martian_src +%d (≈ the %d packets sent)", m, sent))
		if rpf > 0 {
			strict = true
			ev = append(ev, fmt.Sprintf("%s +%d", counters.CounterRPFilter, rpf))
		}
		if rc, ok := c.RDMACounter(b.Sender.Device, counters.CounterRXECompRetryErr); ok && rc > 0 {
			ev = append(ev, fmt.Sprintf("%s completer_retry_err +%d", b.Sender.Device, rc))
		}
		if t := b.Tally; t.FirstError != 0 {
			ev = append(ev, fmt.Sprintf("requester completion %s after %s; responder completions: %d", t.FirstError, traffic.FormatMS(t.FirstErrorMS), t.ReceiverCompletions))
		}
		if d := r.direction(b); d != nil {
			if r.predict(d) == kernel.SourceRPFilter || d.RouteIn.Errno == errnoEXDEV {
				strict = true
			}
			ev = append(ev, r.sourceCheckLines(d)...)
		}
	}
	if !found {
		// No traffic counters: the input route refusing the other endpoint's address is the
		// same drop, seen without sending RoCE (only when the neighbour works, else ARP fails first).
		for i := range r.ev.Directions {
			d := &r.ev.Directions[i]
			if !d.Neighbor.Usable() || d.RouteIn.Error == "" || r.trafficRan() {
				continue
			}
			p := r.predict(d)
			if p != kernel.SourceMartian && p != kernel.SourceRPFilter && d.RouteIn.Errno != errnoEXDEV {
				continue
			}
			found = true
			strict = strict || p == kernel.SourceRPFilter || d.RouteIn.Errno == errnoEXDEV
			ev = append(ev, prefixed(string(d.Name)+" ", r.sourceCheckLines(d))...)
		}
	}
	if !found {
		return nil
	}
	ev = append(ev, r.traceLines(TraceIPv4)...)
	if strict {
		return &Finding{Code: CodeRPFilter, Severity: SeverityError,
			Summary:  "the RoCE packets cross the cable and the receiving NIC's strict reverse-path filter (rp_filter=1) drops every one in input routing: the route back to the sender leaves through another NIC",
			Evidence: ev, Fix: r.policyRoutingFix(true)}
	}
	return &Finding{Code: CodeMartianSource, Severity: SeverityError,
		Summary:  "the RoCE packets cross the cable and the receiving NIC drops every one in input routing as a martian source: their source address is one of this host's own and accept_local=0",
		Evidence: ev, Fix: r.policyRoutingFix(false)}
}

// errnoEXDEV is how input routing refuses a packet the strict reverse-path filter drops
// (fib_validate_source returns -EXDEV).
const errnoEXDEV = Errno(unix.EXDEV)
