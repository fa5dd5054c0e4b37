package diagnose

import (
	"fmt"

	"github.com/rocebed/rocebed/testbed/counters"
	"github.com/rocebed/rocebed/testbed/traffic"
)

// retryExceeded: a requester got IBV_WC_RETRY_EXC_ERR. It is a symptom: the findings before it
// say where the packets or their ACKs died.
func (r ruler) retryExceeded() *Finding {
	var ev []string
	for _, b := range r.batches() {
		if b.Class != traffic.ClassRetryExceeded {
			continue
		}
		c := r.counters(b)
		sent, _ := c.RDMACounter(b.Sender.Device, counters.CounterRXEHWSentPkts)
		rcvd, _ := c.RDMACounter(b.Receiver.Device, counters.CounterRXEHWRcvdPkts)
		rsent, _ := c.RDMACounter(b.Receiver.Device, counters.CounterRXEHWSentPkts)
		ev = append(ev, fmt.Sprintf("%s %s: %s got %s after %s; %s sent_pkts +%d, %s rcvd_pkts +%d sent_pkts +%d (ACKs)",
			b.Traffic, b.Direction, b.Sender.Device, b.Tally.FirstError, traffic.FormatMS(b.Tally.FirstErrorMS), b.Sender.Device, sent, b.Receiver.Device, rcvd, rsent))
	}
	if len(ev) == 0 {
		return nil
	}
	return &Finding{Code: CodeRetryExceeded, Severity: SeverityError,
		Summary:  "the requester exhausted its retries (IBV_WC_RETRY_EXC_ERR): no ACK came back from the responder",
		Evidence: ev, Fix: &FindingFix{Description: "find where the packets or their ACKs died: the findings before this one, or the counters",
			Scenario: "# no scenario change follows from the retry error alone", Commands: []string{"rdma statistic show link " + r.deviceList() + "  # sent_pkts/rcvd_pkts on both ends", "nstat -az Udp* TcpExtIPReversePathFilter"}}}
}
