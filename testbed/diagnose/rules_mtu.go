package diagnose

import (
	"fmt"
	"strings"
)

// mtuMismatch: the two NICs' MTUs, or the two rxe ports' active MTUs, differ.
func (r ruler) mtuMismatch() *Finding {
	var ev []string
	var nics []NICEvidence
	for _, n := range r.ev.NICs {
		if n.Found && n.MTU > 0 {
			nics = append(nics, n)
		}
	}
	mismatch := false
	if len(nics) == 2 && nics[0].MTU != nics[1].MTU {
		mismatch = true
		ev = append(ev, fmt.Sprintf("%s mtu %d, %s mtu %d", nics[0].Name, nics[0].MTU, nics[1].Name, nics[1].MTU))
	}
	var eps []EndpointEvidence
	for _, e := range r.ev.Endpoints {
		if e.ActiveMTU > 0 {
			eps = append(eps, e)
		}
	}
	if len(eps) == 2 && eps[0].ActiveMTU != eps[1].ActiveMTU {
		mismatch = true
		ev = append(ev, fmt.Sprintf("%s active_mtu %d, %s active_mtu %d", eps[0].Device, eps[0].ActiveMTU, eps[1].Device, eps[1].ActiveMTU))
	}
	if !mismatch {
		return nil
	}
	lo := nics[0]
	if len(nics) == 2 && nics[1].MTU < lo.MTU {
		lo = nics[1]
	}
	var cmds, yaml []string
	for _, n := range nics {
		if n.MTU != lo.MTU {
			cmds = append(cmds, nsCmd(n.Netns, fmt.Sprintf("ip link set dev %s mtu %d", n.Name, lo.MTU)))
		}
		yaml = append(yaml, fmt.Sprintf("  - name: %s\n    mtu: %d", n.Name, lo.MTU))
	}
	summary := "the two ends of the cable have different MTUs: packets the larger end sends at its path MTU are dropped by the smaller one, and the rxe ports disagree on active_mtu"
	if r.severity() == SeverityWarning {
		summary += " (the traffic that ran still passed: its messages fit the smaller MTU)"
	}
	ev = append(ev, r.trafficLines()...)
	return &Finding{Code: CodeMTUMismatch, Severity: r.severity(), Summary: summary, Evidence: ev,
		Fix: &FindingFix{Description: fmt.Sprintf("give both NICs the same MTU (%d)", lo.MTU), Scenario: "nics:\n" + strings.Join(yaml, "\n"), Commands: cmds}}
}
