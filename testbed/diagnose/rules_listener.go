package diagnose

import (
	"fmt"
	"strings"

	"github.com/rocebed/rocebed/testbed/counters"
)

// noListener: UDP 4791 arrives where no rxe listens: a NIC was found in another namespace,
// or Udp.NoPorts moved while the receiving device counted nothing.
func (r ruler) noListener() *Finding {
	var ev []string
	var where []string
	var moved []*NICEvidence
	for i, n := range r.ev.NICs {
		if n.Found && n.Netns != "" {
			moved = append(moved, &r.ev.NICs[i])
			where = append(where, fmt.Sprintf("%s is in netns %q", n.Name, n.Netns))
			ev = append(ev, fmt.Sprintf("%s: found in netns %q, not in the lab's namespace (declared: %q)", n.Name, n.Netns, n.DeclaredNetns))
		}
	}
	nodrop := false
	for _, b := range r.batches() {
		c := r.counters(b)
		np, per := c.KernelSum(counters.CounterUDPNoPorts)
		rcvd, _ := c.RDMACounter(b.Receiver.Device, counters.CounterRXEHWRcvdPkts)
		sent, _ := c.RDMACounter(b.Sender.Device, counters.CounterRXEHWSentPkts)
		if np > 0 && !b.Pass && rcvd == 0 && sent > 0 {
			nodrop = true
			ev = append(ev, fmt.Sprintf("%s: %s sent_pkts +%d, %s rcvd_pkts +0; %s", b.Traffic+" "+string(b.Direction), b.Sender.Device, sent, b.Receiver.Device, strings.Join(per, ", ")))
		}
	}
	if len(moved) == 0 && !nodrop {
		return nil
	}
	if len(moved) == 0 && nodrop && !r.trafficFailed() {
		return nil
	}
	if r.ev.RDMANetnsMode != "" {
		ev = append(ev, "rdma system netns mode: "+r.ev.RDMANetnsMode)
	}
	ev = append(ev, r.traceLines(TraceIPv4)...)
	ev = append(ev, r.trafficLines()...)
	var cmds []string
	var yaml []string
	for _, n := range moved {
		cmds = append(cmds, fmt.Sprintf("ip -n %s link set dev %s netns 1", n.Netns, n.Name))
		for _, a := range n.Addresses {
			cmds = append(cmds, fmt.Sprintf("ip addr add %s dev %s", a, n.Name))
		}
		cmds = append(cmds, "ip link set dev "+n.Name+" up")
		for _, e := range r.ev.Endpoints {
			if e.NIC == n.Name {
				cmds = append(cmds, fmt.Sprintf("rdma link add %s type rxe netdev %s", e.Device, n.Name))
			}
		}
		yaml = append(yaml, fmt.Sprintf("  - name: %s   # no netns: key: rxe works only in the initial namespace", n.Name))
	}
	summary := "UDP 4791 arrives where no rxe listens (Udp.NoPorts moved): rxe's socket exists only in the initial network namespace (kernels up to 6.12)"
	if len(where) > 0 {
		summary = strings.Join(where, "; ") + ": " + summary
	}
	scen := "nics:\n" + strings.Join(yaml, "\n")
	if len(yaml) == 0 {
		scen = "# keep every lab NIC in the initial namespace (no netns: key)"
	}
	return &Finding{Code: CodeNoListener, Severity: SeverityError, Summary: summary, Evidence: ev,
		Fix: &FindingFix{Description: "keep both NICs in the initial network namespace, where rxe listens on UDP 4791", Scenario: scen, Commands: cmds}}
}
