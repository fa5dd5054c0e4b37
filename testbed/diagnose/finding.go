package diagnose

import "github.com/rocebed/rocebed/testbed/scenario"

// FindingCode names a diagnosis. Codes shared with Failure have the same spelling, so a
// scenario's expect.failure can be checked against a diagnosis.
type FindingCode string

// The codes, in the order findings are reported: a cause comes before what it causes.
const (
	// CodeLinkDown: a NIC is missing, administratively down or has no carrier.
	CodeLinkDown FindingCode = "link-down"
	// CodeGIDMissing: an endpoint has no RDMA device, its port is not ACTIVE, or the port has
	// no RoCE v2 GID for the endpoint's address.
	CodeGIDMissing FindingCode = "gid-missing"
	// CodeNoListener: UDP 4791 arrives in a namespace where no rxe listens.
	CodeNoListener FindingCode = FindingCode(scenario.FailureNoListener)
	// CodeNeighborMartian: ARP between the NICs is dropped because its sender address is local.
	CodeNeighborMartian FindingCode = FindingCode(scenario.FailureNeighborMartian)
	// CodeRPFilter: the strict reverse-path filter drops the ARP or the RoCE packets.
	CodeRPFilter FindingCode = FindingCode(scenario.FailureRPFilter)
	// CodeMartianSource: the RoCE packets cross the cable and are dropped in input routing.
	CodeMartianSource FindingCode = FindingCode(scenario.FailureMartianSource)
	// CodeLocalRoute: the RoCE packets to the other endpoint's IPv6 address went to lo.
	CodeLocalRoute FindingCode = FindingCode(scenario.FailureLocalRoute)
	// CodeNotOnWire: the traffic left through lo or through the wrong NIC.
	CodeNotOnWire FindingCode = "not-on-wire"
	// CodeMTUMismatch: the NICs' MTUs (and so the rxe ports' active MTUs) differ.
	CodeMTUMismatch FindingCode = "mtu-mismatch"
	// CodeNeighborUnresolved: the neighbour did not resolve and no martian drop explains it.
	CodeNeighborUnresolved FindingCode = "neighbor-unresolved"
	// CodeRetryExceeded: the requester exhausted its retries.
	CodeRetryExceeded FindingCode = FindingCode(scenario.FailureRetryExceeded)
	// CodeUnexplained: the traffic failed and no rule explains it; the evidence is attached.
	CodeUnexplained FindingCode = "unexplained"
)

// FindingCodes lists every code in report order.
var FindingCodes = []FindingCode{
	CodeLinkDown, CodeGIDMissing, CodeNoListener, CodeNeighborMartian, CodeRPFilter, CodeMartianSource,
	CodeLocalRoute, CodeNotOnWire, CodeMTUMismatch, CodeNeighborUnresolved, CodeRetryExceeded, CodeUnexplained,
}

// Severity of a finding.
type Severity string

const (
	SeverityError   Severity = "error"   // the traffic fails (or cannot run) because of it
	SeverityWarning Severity = "warning" // wrong, but the traffic that ran still passed
)

// Role says how a finding relates to the first one.
type Role string

const (
	RoleRootCause   Role = "root-cause"  // the first finding: fix this first
	RoleConsequence Role = "consequence" // follows from the root cause; goes away with it
	RoleUnrelated   Role = "unrelated"   // a separate problem
)

// Finding is one diagnosis with the evidence it rests on and its fix.
type Finding struct {
	Code     FindingCode `json:"code"`
	Severity Severity    `json:"severity"`
	Role     Role        `json:"role"`
	Summary  string      `json:"summary"`
	// Evidence lines: counter deltas, neighbour states, route answers, sysctls, trace lines.
	Evidence []string    `json:"evidence"`
	Fix      *FindingFix `json:"fix,omitempty"`
}

// FindingFix is the remedy: a scenario snippet and the equivalent commands. Apply, when set,
// is the fix group `diagnose --fix` adds to the scenario.
type FindingFix struct {
	Description string        `json:"description"`
	Scenario    string        `json:"scenario"`
	Commands    []string      `json:"commands"`
	Apply       *scenario.Fix `json:"apply,omitempty"`
}

// Diagnosis is the result of Run.
type Diagnosis struct {
	Lab string `json:"lab"`
	// TrafficPassed is true when the traffic ran and every batch passed.
	TrafficPassed bool      `json:"traffic_passed"`
	Findings      []Finding `json:"findings"`
	// Layers say what each evidence layer concluded, including why one was unavailable.
	Layers   []string  `json:"layers"`
	Evidence *Evidence `json:"evidence"`
}

// FirstCode is the root cause's code, or "" for a healthy lab.
func (d *Diagnosis) FirstCode() FindingCode {
	if d == nil || len(d.Findings) == 0 {
		return ""
	}
	return d.Findings[0].Code
}

// Codes lists the findings' codes in order.
func (d *Diagnosis) Codes() []FindingCode {
	var out []FindingCode
	for _, f := range d.Findings {
		out = append(out, f.Code)
	}
	return out
}

// Fixes returns the fix groups the findings suggest that can be added to a scenario as they
// are (others need a scenario edit or a command), without duplicates.
func (d *Diagnosis) Fixes() []scenario.Fix {
	var out []scenario.Fix
	seen := map[string]bool{}
	for _, f := range d.Findings {
		if f.Fix == nil || f.Fix.Apply == nil || seen[f.Fix.Apply.Name] {
			continue
		}
		seen[f.Fix.Apply.Name] = true
		out = append(out, *f.Fix.Apply)
	}
	return out
}
