package diagnose

import (
	"fmt"
	"strings"

	"github.com/rocebed/rocebed/testbed/counters"
)

// Conclude builds the diagnosis from evidence: the findings, and a line per layer saying what
// it concluded.
func Conclude(ev *Evidence) *Diagnosis {
	d := &Diagnosis{Lab: ev.Lab, Evidence: ev, Findings: Findings(ev)}
	if d.Findings == nil {
		d.Findings = []Finding{}
	}
	judged, notes := reconcile(ev)
	t := judged.Traffic
	d.TrafficPassed = t != nil && t.Ran && t.Pass
	d.Layers = append(d.Layers, trafficLayers(t)...)
	if len(ev.Rules) > 0 {
		d.Layers = append(d.Layers, "ip rule: "+strings.Join(ev.Rules, "; "))
	}
	for _, dir := range ev.Directions {
		switch {
		case dir.ProbePassed:
			d.Layers = append(d.Layers, fmt.Sprintf("probe %s: pass", dir.Name))
		case dir.Probe != nil:
			d.Layers = append(d.Layers, fmt.Sprintf("probe %s: fails at %s: %s", dir.Name, dir.Probe.Layer, dir.Probe.Detail))
		}
		d.Layers = append(d.Layers, fmt.Sprintf("routes %s: out %s; in %s", dir.Name, answerShort(dir.RouteOut), answerShort(dir.RouteIn)))
	}
	d.Layers = append(d.Layers, traceLayer(ev.Trace))
	for _, n := range append(notes, ev.Notes...) {
		d.Layers = append(d.Layers, "note: "+n)
	}
	return d
}

// trafficLayers say how each batch ended and which drop counters moved.
func trafficLayers(t *TrafficEvidence) []string {
	switch {
	case t == nil:
		return []string{"traffic: not run"}
	case !t.Ran:
		return []string{"traffic: not run: " + t.Error}
	}
	var cls []string
	for _, b := range t.Batches {
		c := "pass"
		if !b.Pass {
			c = string(b.Class)
		}
		cls = append(cls, fmt.Sprintf("%s %s %s", b.Traffic, b.Direction, c))
	}
	out := []string{fmt.Sprintf("traffic (%s): %s", t.Source, strings.Join(cls, ", "))}
	if t.Delta != nil {
		var moved []string
		for _, k := range []string{counters.CounterMartianSrc, counters.CounterRPFilter, counters.CounterUDPNoPorts} {
			_, per := t.Delta.KernelSum(k)
			moved = append(moved, per...)
		}
		if len(moved) == 0 {
			moved = []string{"no drop counter moved"}
		}
		out = append(out, "counters: "+strings.Join(moved, ", "))
	}
	return out
}

// traceLayer says whether the kfree_skb layer ran and what it saw.
func traceLayer(tr *TraceEvidence) string {
	switch {
	case tr == nil:
		return "trace: off (" + TraceWarning + ")"
	case !tr.Available:
		return "trace: unavailable: " + tr.Reason + "; the findings rest on the counters, routes and sysctls"
	}
	n, groups, rxe := 0, 0, 0
	for _, x := range tr.Drops {
		if x.ByRXE() {
			rxe += x.Count
			continue
		}
		n += x.Count
		groups++
	}
	line := fmt.Sprintf("trace: %s; %d IPv4/ARP drops in %d group(s)", tr.Reason, n, groups)
	if rxe > 0 {
		line += fmt.Sprintf(", and %d skbs rxe freed after processing them (not drops)", rxe)
	}
	return line
}

// answerShort is a route answer for the layer lines: the errno, or the type and device.
func answerShort(a RouteAnswer) string {
	switch {
	case a.Error != "":
		if a.Errno != 0 {
			return a.Errno.String()
		}
		return a.Error
	case a.Type == 0:
		return "not asked"
	}
	s := a.Type.String()
	if a.Dev != "" {
		s += " dev " + a.Dev
	}
	return s
}
