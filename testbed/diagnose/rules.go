package diagnose

import (
	"fmt"
	"slices"
	"strings"

	"github.com/rocebed/rocebed/internal/kernel"
	"github.com/rocebed/rocebed/testbed/counters"
	"github.com/rocebed/rocebed/testbed/scenario"
)

// A rule is a function of the evidence: the one finding it makes, or nil. Each rule, or small
// group of rules sharing their evidence, has its own rules_*.go file.
type rule func(ruler) *Finding

// rules are applied in this order; Findings then sorts their findings by code (FindingCodes).
var rules = []rule{
	ruler.linkDown,      // rules_link.go
	ruler.gidMissing,    // rules_gid.go
	ruler.noListener,    // rules_listener.go
	ruler.neighbor,      // rules_neighbor.go: neighbor-martian, rp-filter (ARP), neighbor-unresolved
	ruler.martianSource, // rules_martian.go: martian-source, rp-filter (RoCE)
	ruler.localRoute,    // rules_local_route.go
	ruler.notOnWire,     // rules_wire.go
	ruler.mtuMismatch,   // rules_mtu.go
	ruler.retryExceeded, // rules_retry.go
}

// Findings applies the decision rules to evidence: one finding per code, in causal order,
// the first marked root-cause. A healthy lab (traffic passed, nothing wrong) gets none.
func Findings(ev *Evidence) []Finding {
	ev, _ = reconcile(ev)
	r := ruler{ev: ev}
	var out []Finding
	for _, find := range rules {
		if f := find(r); f != nil {
			out = append(out, *f)
		}
	}
	if len(out) == 0 || onlyWarnings(out) {
		if f := r.unexplained(); f != nil { // rules_unexplained.go
			out = append([]Finding{*f}, out...)
		}
	}
	slices.SortStableFunc(out, func(a, b Finding) int { return codeRank(a.Code) - codeRank(b.Code) })
	assignRoles(out)
	return out
}

func onlyWarnings(fs []Finding) bool {
	for _, f := range fs {
		if f.Severity == SeverityError {
			return false
		}
	}
	return true
}

func codeRank(c FindingCode) int {
	if i := slices.Index(FindingCodes, c); i >= 0 {
		return i
	}
	return len(FindingCodes)
}

// assignRoles marks the first finding root-cause. A later one is unrelated when it is an MTU
// mismatch (it neither causes nor follows from a drop) and a consequence otherwise: symptoms
// (retries, unresolved neighbours) and the other direction of the same missing fix.
func assignRoles(fs []Finding) {
	for i := range fs {
		switch {
		case i == 0:
			fs[i].Role = RoleRootCause
		case fs[i].Code == CodeMTUMismatch:
			fs[i].Role = RoleUnrelated
		default:
			fs[i].Role = RoleConsequence
		}
	}
}

// ruler is the evidence the rules read, with the look-ups they share.
type ruler struct{ ev *Evidence }

func (r ruler) nic(name string) *NICEvidence {
	for i := range r.ev.NICs {
		if r.ev.NICs[i].Name == name {
			return &r.ev.NICs[i]
		}
	}
	return nil
}

func (r ruler) endpoint(side Side) *EndpointEvidence {
	for i := range r.ev.Endpoints {
		if r.ev.Endpoints[i].Side == side {
			return &r.ev.Endpoints[i]
		}
	}
	return nil
}

// direction is the direction of batch b: the one whose packets leave through b's sender NIC,
// in b's family (any, for evidence recorded without families).
func (r ruler) direction(b BatchEvidence) *DirectionEvidence {
	for i := range r.ev.Directions {
		d := &r.ev.Directions[i]
		if d.SrcNIC == b.Sender.NIC && (b.Family == "" || d.Family == "" || d.Family == b.Family) {
			return d
		}
	}
	return nil
}

func (r ruler) trafficRan() bool { return r.ev.Traffic != nil && r.ev.Traffic.Ran }

func (r ruler) trafficFailed() bool {
	t := r.ev.Traffic
	return t != nil && t.Ran && !t.Pass
}

// severity of a finding: a warning when the traffic ran and passed anyway.
func (r ruler) severity() Severity {
	if t := r.ev.Traffic; t != nil && t.Ran && t.Pass {
		return SeverityWarning
	}
	return SeverityError
}

// batches returns the traffic batches (none when no traffic ran).
func (r ruler) batches() []BatchEvidence {
	if r.ev.Traffic == nil {
		return nil
	}
	return r.ev.Traffic.Batches
}

// counters returns the batch's deltas, or the whole traffic's.
func (r ruler) counters(b BatchEvidence) *counters.Snapshot {
	if b.Counters != nil {
		return b.Counters
	}
	if r.ev.Traffic != nil {
		return r.ev.Traffic.Delta
	}
	return nil
}

// predict says what the receiving NIC's source check (kernel.PredictSource) does to d's
// packets, from the route back and the NIC's effective sysctls.
func (r ruler) predict(d *DirectionEvidence) kernel.SourceVerdict {
	dst := r.nic(d.DstNIC)
	if dst == nil || d.Family == scenario.FamilyIPv6 {
		return kernel.SourceUnknown // IPv6 input routing has no martian or reverse-path check
	}
	return kernel.PredictSource(dst.AcceptLocal, dst.RPFilter, kernel.RouteBack{Type: int(d.RouteBack.Type), Dev: d.RouteBack.Dev}, d.DstNIC)
}

func (r ruler) sourceCheckLines(d *DirectionEvidence) []string {
	var ev []string
	if dst := r.nic(d.DstNIC); dst != nil {
		ev = append(ev, fmt.Sprintf("%s: accept_local=%d (all OR %s), rp_filter=%d (max of all and %s)", d.DstNIC, dst.AcceptLocal, d.DstNIC, dst.RPFilter, d.DstNIC))
	}
	ev = append(ev, "route back: "+d.RouteBack.String())
	if d.RouteIn.Type != 0 || d.RouteIn.Error != "" {
		ev = append(ev, "input route: "+d.RouteIn.String())
	}
	return ev
}

// trafficLines are the batch verdicts of failed batches.
func (r ruler) trafficLines() []string {
	var out []string
	for _, b := range r.batches() {
		if !b.Pass {
			out = append(out, fmt.Sprintf("traffic %s %s: %s", b.Traffic, b.Direction, b.Verdict))
		}
	}
	if t := r.ev.Traffic; t != nil && !t.Ran && t.Error != "" {
		out = append(out, "traffic not run: "+t.Error)
	}
	return out
}

// traceLines are the kfree_skb groups of one protocol.
func (r ruler) traceLines(proto TraceProtocol) []string {
	t := r.ev.Trace
	if t == nil || !t.Available {
		return nil
	}
	var out []string
	for _, d := range t.Drops {
		if d.Protocol == proto && !d.ByRXE() {
			out = append(out, d.String())
		}
	}
	return out
}

// deviceList is the endpoints' ports, as `rdma statistic show link` takes them.
func (r ruler) deviceList() string {
	var out []string
	for _, e := range r.ev.Endpoints {
		out = append(out, e.Device+"/1")
	}
	return strings.Join(out, " ")
}

func prefixed(p string, lines []string) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = p + l
	}
	return out
}

// nsCmd runs an ip command (or any other) in namespace ns, "" being the lab's own.
func nsCmd(ns, cmd string) string {
	if ns == "" {
		return cmd
	}
	if rest, ok := strings.CutPrefix(cmd, "ip "); ok {
		return "ip -n " + ns + " " + rest
	}
	return "ip netns exec " + ns + " " + cmd
}
