package diagnose

import (
	"fmt"

	"github.com/rocebed/rocebed/internal/kernel"
	"github.com/rocebed/rocebed/testbed/counters"
	"github.com/rocebed/rocebed/testbed/probe"
	"github.com/rocebed/rocebed/testbed/traffic"
)

// neighbor: ARP between the NICs failed, seen as an unresolved neighbour together with a
// connect timeout or a failing probe neighbour layer. What the receiving NIC's source check
// does to the ARP's sender address names the cause: a martian source (neighbor-martian), the
// strict reverse-path filter (rp-filter), or neither (neighbor-unresolved).
func (r ruler) neighbor() *Finding {
	var ev []string
	var dirs []*DirectionEvidence
	connect := false
	for _, b := range r.batches() {
		if b.Class == traffic.ClassConnectTimeout {
			connect = true
		}
	}
	for i := range r.ev.Directions {
		d := &r.ev.Directions[i]
		if d.Neighbor.Usable() || d.Neighbor.State.Lookup == NeighborNotLooked {
			continue
		}
		probeNeigh := d.Probe != nil && d.Probe.Layer == probe.LayerNeighbor
		if !probeNeigh && !connect {
			continue
		}
		dirs = append(dirs, d)
		ev = append(ev, fmt.Sprintf("%s: neighbour %s on %s is %s (%s's MAC %s)", d.Name, d.DstAddr, d.SrcNIC, d.Neighbor.State, d.DstNIC, d.Neighbor.PeerMAC))
		if probeNeigh {
			ev = append(ev, fmt.Sprintf("%s probe neighbor layer: %s", d.Name, d.Probe.Detail))
		}
	}
	if len(dirs) == 0 {
		return nil
	}
	var martian uint64
	for _, b := range r.batches() {
		if b.Class != traffic.ClassConnectTimeout {
			continue
		}
		c := r.counters(b)
		m, _ := c.KernelCounter(counters.CounterMartianSrc)
		martian += m
		sent, _ := c.RDMACounter(b.Sender.Device, counters.CounterRXEHWSentPkts)
		rsent, _ := c.RDMACounter(b.Receiver.Device, counters.CounterRXEHWSentPkts)
		ev = append(ev, fmt.Sprintf("%s %s: connect failed after %s: %s; in_martian_src +%d; %s sent_pkts +%d, %s sent_pkts +%d (no RoCE packet left)",
			b.Traffic, b.Direction, traffic.FormatMS(b.ConnectMS), b.ConnectError, m, b.Sender.Device, sent, b.Receiver.Device, rsent))
	}
	strict, local := false, false
	for _, d := range dirs {
		switch r.predict(d) {
		case kernel.SourceRPFilter:
			strict = true
		case kernel.SourceMartian:
			local = true
		}
		ev = append(ev, prefixed(string(d.Name)+" ", r.sourceCheckLines(d))...)
	}
	if strict {
		if t := r.ev.Traffic; t != nil && t.Delta != nil {
			m, _ := t.Delta.KernelCounter(counters.CounterMartianSrc)
			rpf, _ := t.Delta.KernelCounter(counters.CounterRPFilter)
			ev = append(ev, fmt.Sprintf("rt_cache.in_martian_src +%d (the kernel counts the ARP's failed source check there), %s +%d (it counts IP packets only)", m, counters.CounterRPFilter, rpf))
		}
	}
	ev = append(ev, r.traceLines(TraceARP)...)
	code := CodeNeighborUnresolved
	var summary string
	switch {
	case local:
		code = CodeNeighborMartian
		summary = fmt.Sprintf("ARP between %s is dropped as a martian source: its sender address is one of this host's own and accept_local=0, so the neighbour never resolves and the QP cannot reach RTR", nicPair(dirs))
	case strict:
		code = CodeRPFilter
		summary = fmt.Sprintf("ARP between %s is dropped by the strict reverse-path filter (rp_filter=1): accept_local lets the local sender address in, but the route back to it does not leave through the receiving NIC; the neighbour never resolves and the QP cannot reach RTR", nicPair(dirs))
	case martian > 0:
		code = CodeNeighborMartian
		summary = fmt.Sprintf("ARP between %s is dropped as a martian source (in_martian_src +%d), so the neighbour never resolves and the QP cannot reach RTR", nicPair(dirs), martian)
	default:
		summary = fmt.Sprintf("the neighbour between %s never resolved and no martian drop explains it: check arp_ignore/arp_filter, firewall rules for ARP, and the cable", nicPair(dirs))
	}
	f := &Finding{Code: code, Severity: SeverityError, Summary: summary, Evidence: ev}
	switch code {
	case CodeNeighborMartian, CodeRPFilter:
		f.Fix = r.policyRoutingFix(code == CodeRPFilter)
	default:
		f.Fix = &FindingFix{Description: "let ARP through between the NICs", Scenario: "# check the arp settings of the fixes (arp: ignore/filter) and firewall rules",
			Commands: r.arpCommands()}
	}
	return f
}

// arpCommands turn off the NICs' arp_* settings that can keep ARP from being answered.
func (r ruler) arpCommands() []string {
	var out []string
	for _, n := range r.ev.NICs {
		for _, k := range []string{"arp_ignore", "arp_filter", "arp_announce"} {
			if v, ok := n.Sysctls[k]; ok && v != "0" {
				out = append(out, fmt.Sprintf("sysctl -w net.ipv4.conf.%s.%s=0  # now %s", n.Name, k, v))
			}
		}
	}
	if len(out) == 0 {
		out = []string{"nft list ruleset  # look for rules dropping ARP"}
	}
	return out
}

func nicPair(dirs []*DirectionEvidence) string {
	if len(dirs) == 0 {
		return "the NICs"
	}
	return fmt.Sprintf("%s and %s", dirs[0].SrcNIC, dirs[0].DstNIC)
}
