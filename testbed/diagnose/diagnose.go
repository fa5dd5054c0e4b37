package diagnose

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	yaml "github.com/goccy/go-yaml"

	"github.com/rocebed/rocebed/rdma"
	"github.com/rocebed/rocebed/rdma/verbs"
	"github.com/rocebed/rocebed/testbed/counters"
	"github.com/rocebed/rocebed/testbed/probe"
	"github.com/rocebed/rocebed/testbed/scenario"
	"github.com/rocebed/rocebed/testbed/traffic"
)

// Diagnosis says where a lab's packets died, why, and what to change. Evidence collection is
// in diagnose_linux.go; everything here is pure, so the decision rules are tested on evidence
// recorded from real kernels (testdata/*.json).

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
	CodeNotOnWire, CodeMTUMismatch, CodeNeighborUnresolved, CodeRetryExceeded, CodeUnexplained,
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

// Evidence is everything Run observed. It is plain data so it can be recorded as JSON
// and replayed through the rules in tests.
type Evidence struct {
	Lab    string    `json:"lab"`
	Kernel string    `json:"kernel,omitempty"`
	Taken  time.Time `json:"taken"`
	// Netns is the lab's namespace ("" = the tool's own).
	Netns string `json:"netns,omitempty"`
	// RDMANetnsMode is `rdma system show netns`: shared or exclusive.
	RDMANetnsMode string `json:"rdma_netns_mode,omitempty"`
	// Fixes are the scenario's fix groups, as declared.
	Fixes      []scenario.Fix      `json:"fixes,omitempty"`
	NICs       []NICEvidence       `json:"nics"`
	Endpoints  []EndpointEvidence  `json:"endpoints"`
	Directions []DirectionEvidence `json:"directions"`
	// Sysctls are the "all" values that combine with each NIC's (rp_filter, accept_local, arp_*).
	Sysctls map[string]string `json:"sysctls,omitempty"`
	// Rules is `ip rule` (IPv4) of the lab's namespace.
	Rules   []string         `json:"rules,omitempty"`
	Traffic *TrafficEvidence `json:"traffic,omitempty"`
	Trace   *TraceEvidence   `json:"trace,omitempty"`
	// Notes say what could not be read.
	Notes []string `json:"notes,omitempty"`
}

// NICEvidence is one NIC as the kernel shows it.
type NICEvidence struct {
	Name string `json:"name"`
	// Peer is the declared other end of a veth.
	Peer string `json:"peer,omitempty"`
	// Found is false when the NIC is in neither the lab's namespace nor a named one.
	Found bool `json:"found"`
	// Netns is where it was found ("" = the lab's namespace) and DeclaredNetns where the
	// scenario puts it.
	Netns         string   `json:"netns,omitempty"`
	DeclaredNetns string   `json:"declared_netns,omitempty"`
	Up            bool     `json:"up"`
	Carrier       bool     `json:"carrier"`
	OperState     string   `json:"oper_state,omitempty"`
	MTU           int      `json:"mtu,omitempty"`
	MAC           string   `json:"mac,omitempty"`
	Addresses     []string `json:"addresses,omitempty"`
	// Sysctls are this NIC's own values (net.ipv4.conf.NIC.*).
	Sysctls map[string]string `json:"sysctls,omitempty"`
	// RPFilter is the effective rp_filter, max(all, NIC); AcceptLocal is all OR NIC. -1 if
	// unreadable.
	RPFilter    int `json:"rp_filter"`
	AcceptLocal int `json:"accept_local"`
}

// EndpointEvidence is one RDMA endpoint as sysfs shows it.
type EndpointEvidence struct {
	Side    string `json:"side"`
	NIC     string `json:"nic"`
	Address string `json:"address"`
	Device  string `json:"device"`
	// RXE is true for a soft-RoCE device the lab adds, false for a hardware one.
	RXE bool `json:"rxe,omitempty"`
	// DevicePresent is false when /sys/class/infiniband has no such device.
	DevicePresent bool   `json:"device_present"`
	PortNetdev    string `json:"port_netdev,omitempty"`
	PortState     string `json:"port_state,omitempty"`
	// ActiveMTU is the IB MTU the port uses (rxe: derived from its netdev's MTU).
	ActiveMTU int `json:"active_mtu,omitempty"`
	// GID is the RoCE v2 GID of Address ("1 10.10.0.1 (RoCE v2) on vA"), or empty with GIDError.
	GID      string `json:"gid,omitempty"`
	GIDError string `json:"gid_error,omitempty"`
}

// DirectionEvidence is the IP path from one endpoint to the other.
type DirectionEvidence struct {
	Name    string `json:"name"` // "a->b"
	SrcNIC  string `json:"src_nic"`
	DstNIC  string `json:"dst_nic"`
	SrcAddr string `json:"src_addr"`
	DstAddr string `json:"dst_addr"`
	// Neighbor is SrcNIC's neighbour entry for DstAddr.
	Neighbor NeighborEvidence `json:"neighbor"`
	// RouteOut is `ip route get DST from SRC oif SRC_NIC` (the RoCE path: rxe routes with oif).
	RouteOut RouteAnswer `json:"route_out"`
	// RouteIn is `ip route get DST from SRC iif DST_NIC`: input routing on the receiving NIC,
	// source validation included.
	RouteIn RouteAnswer `json:"route_in"`
	// RouteBack is `ip route get SRC from DST fibmatch`: the route DstNIC's source check uses.
	RouteBack RouteAnswer `json:"route_back"`
	// Probe is the first failing probe layer of this direction (nil when it passed or did not run).
	Probe       *probe.LayerResult `json:"probe,omitempty"`
	ProbePassed bool               `json:"probe_passed,omitempty"`
}

// NeighborEvidence is one neighbour entry.
type NeighborEvidence struct {
	State   string `json:"state"` // "REACHABLE", "FAILED", "absent", ...
	LLAddr  string `json:"lladdr,omitempty"`
	PeerMAC string `json:"peer_mac,omitempty"` // the MAC of DstNIC
}

// Usable reports whether the kernel sends to the cached MAC in this state.
func (n NeighborEvidence) Usable() bool {
	for _, s := range strings.Split(n.State, ",") {
		switch s {
		case "REACHABLE", "STALE", "DELAY", "PROBE", "PERMANENT", "NOARP":
			return true
		}
	}
	return false
}

// RouteAnswer is the kernel's answer to one route query.
type RouteAnswer struct {
	Query string `json:"query"` // the ip command that asks the same
	Type  string `json:"type,omitempty"`
	Dev   string `json:"dev,omitempty"`
	Src   string `json:"src,omitempty"`
	Table string `json:"table,omitempty"`
	// Errno is the error's name (EINVAL, EXDEV, ENETUNREACH) when the kernel refused.
	Errno string `json:"errno,omitempty"`
	Error string `json:"error,omitempty"`
}

func (r RouteAnswer) String() string {
	if r.Error != "" {
		return r.Query + ": " + r.Error
	}
	if r.Type == "" {
		return r.Query + ": not asked"
	}
	s := r.Query + ": " + r.Type
	if r.Dev != "" {
		s += " dev " + r.Dev
	}
	if r.Src != "" {
		s += " src " + r.Src
	}
	if r.Table != "" {
		s += " table " + r.Table
	}
	return s
}

// TrafficEvidence is the traffic Run ran (or was given) and the counters around it.
type TrafficEvidence struct {
	// Ran is false when no traffic ran; Error says why (or why it stopped).
	Ran bool `json:"ran"`
	// Source is "diagnose" (Run ran it between two snapshots) or "run" (a report given).
	Source  string          `json:"source"`
	Error   string          `json:"error,omitempty"`
	Pass    bool            `json:"pass"`
	Batches []BatchEvidence `json:"batches,omitempty"`
	// Delta is the counters over all the traffic.
	Delta *counters.Snapshot `json:"delta,omitempty"`
}

// BatchEvidence is what the rules need of one traffic batch.
type BatchEvidence struct {
	Name           string               `json:"name"`
	Transport      scenario.Transport   `json:"transport"`
	Direction      scenario.Direction   `json:"direction"`
	Messages       int                  `json:"messages"`
	SenderDevice   string               `json:"sender_device"`
	SenderNIC      string               `json:"sender_nic"`
	ReceiverDevice string               `json:"receiver_device"`
	ReceiverNIC    string               `json:"receiver_nic"`
	Pass           bool                 `json:"pass"`
	Class          traffic.FailureClass `json:"class,omitempty"`
	Verdict        string               `json:"verdict"`
	ConnectMS      float64              `json:"connect_ms"`
	ConnectError   string               `json:"connect_error,omitempty"`
	ConnectTimeout bool                 `json:"connect_timed_out,omitempty"`
	// SenderCompletions and ReceiverCompletions count all completions, SenderOK and ReceiverOK
	// the successful ones.
	SenderCompletions   int `json:"sender_completions"`
	SenderOK            int `json:"sender_ok"`
	ReceiverCompletions int `json:"receiver_completions"`
	ReceiverOK          int `json:"receiver_ok"`
	// FirstError is the first failed completion's status (IBV_WC_RETRY_EXC_ERR) and when.
	FirstError   string             `json:"first_error,omitempty"`
	FirstErrorMS float64            `json:"first_error_ms,omitempty"`
	Counters     *counters.Snapshot `json:"counters,omitempty"`
}

// TraceEvidence is the optional kfree_skb layer.
type TraceEvidence struct {
	Available bool `json:"available"`
	// Reason says why the layer is unavailable, or how it was set up.
	Reason string `json:"reason"`
	// Drops are the IPv4 and ARP packets freed as drops while the traffic ran, grouped.
	Drops []TraceDrop `json:"drops,omitempty"`
	// Lines are the first raw trace lines, as the kernel printed them.
	Lines []string `json:"lines,omitempty"`
}

// TraceDrop is a group of skb:kfree_skb events with one protocol, location and reason.
type TraceDrop struct {
	Protocol string `json:"protocol"` // "IPv4" or "ARP"
	Location string `json:"location"` // the function that freed the skb
	Reason   string `json:"reason,omitempty"`
	Count    int    `json:"count"`
}

// ByRXE reports whether rxe itself freed the skb: rxe releases the packets it has processed
// (and its retransmit copies) with kfree_skb, so these are deliveries, not drops.
func (d TraceDrop) ByRXE() bool { return strings.HasPrefix(d.Location, "rxe_") }

func (d TraceDrop) String() string {
	s := fmt.Sprintf("kfree_skb: %d × %s at %s", d.Count, d.Protocol, d.Location)
	if d.Reason != "" {
		s += " reason " + d.Reason
	}
	return s
}

// BatchEvidenceOf extracts what the rules need from a traffic batch.
func BatchEvidenceOf(b *traffic.BatchResult) BatchEvidence {
	be := BatchEvidence{
		Name: b.Traffic, Transport: b.Transport, Direction: b.Direction, Messages: b.Messages,
		SenderDevice: b.Sender.Device, SenderNIC: b.Sender.NIC, ReceiverDevice: b.Receiver.Device, ReceiverNIC: b.Receiver.NIC,
		Pass: b.Pass, Class: b.Class, Verdict: b.Verdict, ConnectMS: b.ConnectMS, ConnectError: b.ConnectError,
		ConnectTimeout: b.ConnectTimedOut, Counters: b.Counters,
	}
	first := -1
	for i, c := range b.Completions {
		ok := c.Status == verbs.WCSuccess
		switch c.Role {
		case traffic.RoleSender:
			be.SenderCompletions++
			if ok {
				be.SenderOK++
			}
		case traffic.RoleReceiver:
			be.ReceiverCompletions++
			if ok {
				be.ReceiverOK++
			}
		}
		if !ok && first < 0 {
			first = i
		}
	}
	if first >= 0 {
		be.FirstError = b.Completions[first].Status.CName()
		be.FirstErrorMS = b.Completions[first].AtMS
	}
	return be
}

// TrafficEvidenceOf turns a traffic report into evidence; the counter delta is the sum of
// the batches' deltas.
func TrafficEvidenceOf(r *traffic.Report, source string) *TrafficEvidence {
	te := &TrafficEvidence{Ran: r != nil && len(r.Batches) > 0, Source: source}
	if r == nil {
		return te
	}
	te.Pass = r.Pass && len(r.Batches) > 0
	for _, b := range r.Batches {
		te.Batches = append(te.Batches, BatchEvidenceOf(b))
		te.Delta = addSnapshots(te.Delta, b.Counters)
	}
	return te
}

// addSnapshots adds counter deltas.
func addSnapshots(a, b *counters.Snapshot) *counters.Snapshot {
	if b == nil {
		return a
	}
	if a == nil {
		a = &counters.Snapshot{Taken: b.Taken, RDMA: map[string]rdma.Counters{}, Links: map[string]counters.LinkCounters{}, Kernel: map[string]uint64{}}
	}
	for dev, c := range b.RDMA {
		if a.RDMA[dev] == nil {
			a.RDMA[dev] = rdma.Counters{}
		}
		for k, v := range c {
			a.RDMA[dev][k] += v
		}
	}
	for n, l := range b.Links {
		x := a.Links[n]
		x.RxPackets += l.RxPackets
		x.TxPackets += l.TxPackets
		x.RxBytes += l.RxBytes
		x.TxBytes += l.TxBytes
		x.RxDropped += l.RxDropped
		x.TxDropped += l.TxDropped
		x.RxErrors += l.RxErrors
		x.TxErrors += l.TxErrors
		a.Links[n] = x
	}
	for k, v := range b.Kernel {
		a.Kernel[k] += v
	}
	a.Errors = append(a.Errors, b.Errors...)
	return a
}

// ---- rules ----

// Findings applies the decision rules to evidence: one finding per code, in causal order,
// the first marked root-cause. A healthy lab (traffic passed, nothing wrong) gets none.
func Findings(ev *Evidence) []Finding {
	ev, _ = reconcile(ev)
	r := ruler{ev: ev}
	var out []Finding
	for _, rule := range []func() *Finding{
		r.linkDown, r.gidMissing, r.noListener, r.neighbor, r.martianSource, r.notOnWire, r.mtuMismatch,
		r.retryExceeded,
	} {
		if f := rule(); f != nil {
			out = append(out, *f)
		}
	}
	if len(out) == 0 || onlyWarnings(out) {
		if f := r.unexplained(); f != nil {
			out = append([]Finding{*f}, out...)
		}
	}
	slices.SortStableFunc(out, func(a, b Finding) int { return codeRank(a.Code) - codeRank(b.Code) })
	assignRoles(out)
	return out
}

// reconcile re-judges batches the traffic called not-on-wire although every completion
// arrived: their verdict rests on one counter read right after the batch, and rdma
// hw_counters are cached for `lifespan` ms, so that read can be stale. When the counters
// Run read after the whole run (past the lifespan) show the batch's packets crossing,
// the batch passed. It returns the evidence the rules use and a note per re-judged batch.
func reconcile(ev *Evidence) (*Evidence, []string) {
	t := ev.Traffic
	if t == nil || t.Source != "diagnose" || t.Delta == nil {
		return ev, nil
	}
	var notes []string
	batches := slices.Clone(t.Batches)
	pass := len(batches) > 0
	for i, b := range batches {
		if b.Class == traffic.ClassNotOnWire && crossed(t.Delta, b) {
			batches[i].Pass, batches[i].Class = true, ""
			notes = append(notes, fmt.Sprintf("traffic %s %s was judged not-on-wire from its own counter read (%s), but the counters read after the run show its packets on both NICs and devices: that read was stale (hw_counters are cached for `lifespan` ms)", b.Name, b.Direction, b.Verdict))
		}
		pass = pass && batches[i].Pass
	}
	if notes == nil {
		return ev, nil
	}
	cp, tc := *ev, *t
	tc.Batches, tc.Pass = batches, pass
	cp.Traffic = &tc
	return &cp, notes
}

// crossed: every message completed and d shows at least that many packets sent by the
// sender's device and NIC, received by the receiver's NIC and device, ACKs both ways for RC,
// and fewer on lo.
func crossed(d *counters.Snapshot, b BatchEvidence) bool {
	n := uint64(b.Messages)
	if b.SenderOK < b.Messages || b.ReceiverOK < b.Messages {
		return false
	}
	at := func(v uint64, ok bool, min uint64) bool { return ok && v >= min }
	sent, ok1 := d.RDMACounter(b.SenderDevice, counters.CounterRXEHWSentPkts)
	rcvd, ok2 := d.RDMACounter(b.ReceiverDevice, counters.CounterRXEHWRcvdPkts)
	tx, ok3 := d.Link(b.SenderNIC)
	rx, ok4 := d.Link(b.ReceiverNIC)
	lo, ok5 := d.Link("lo")
	good := at(sent, ok1, n) && at(rcvd, ok2, n) && at(tx.TxPackets, ok3, n) && at(rx.RxPackets, ok4, n) && ok5 && lo.TxPackets < n
	if b.Transport == scenario.TransportRC {
		acks, ok6 := d.RDMACounter(b.ReceiverDevice, counters.CounterRXEHWSentPkts)
		back, ok7 := d.RDMACounter(b.SenderDevice, counters.CounterRXEHWRcvdPkts)
		good = good && at(acks, ok6, 1) && at(back, ok7, 1)
	}
	return good
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

type ruler struct{ ev *Evidence }

func (r ruler) nic(name string) *NICEvidence {
	for i := range r.ev.NICs {
		if r.ev.NICs[i].Name == name {
			return &r.ev.NICs[i]
		}
	}
	return nil
}

func (r ruler) endpoint(side string) *EndpointEvidence {
	for i := range r.ev.Endpoints {
		if r.ev.Endpoints[i].Side == side {
			return &r.ev.Endpoints[i]
		}
	}
	return nil
}

func (r ruler) trafficFailed() bool {
	t := r.ev.Traffic
	return t != nil && t.Ran && !t.Pass
}

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

func (r ruler) direction(src string) *DirectionEvidence {
	for i := range r.ev.Directions {
		if r.ev.Directions[i].SrcNIC == src {
			return &r.ev.Directions[i]
		}
	}
	return nil
}

func (r ruler) linkDown() *Finding {
	var ev, cmds []string
	var bad []string
	down := map[string]bool{}
	for _, n := range r.ev.NICs {
		if n.Found && !n.Up {
			down[n.Name] = true
		}
	}
	for _, n := range r.ev.NICs {
		switch {
		case !n.Found:
			bad = append(bad, n.Name+" does not exist")
			ev = append(ev, fmt.Sprintf("%s: not found in the lab's namespace or any named namespace", n.Name))
			cmds = append(cmds, "rocebed down "+r.ev.Lab, "rocebed up "+r.ev.Lab)
		case !n.Up:
			bad = append(bad, n.Name+" is administratively down")
			ev = append(ev, fmt.Sprintf("%s: flags without UP, oper state %s", n.Name, n.OperState))
			cmds = append(cmds, nsCmd(n.Netns, "ip link set dev "+n.Name+" up"))
		case !n.Carrier && down[n.Peer]:
			bad = append(bad, fmt.Sprintf("%s has no carrier (its peer %s is down)", n.Name, n.Peer))
			ev = append(ev, fmt.Sprintf("%s: up but no carrier (LOWER_UP missing), oper state %s", n.Name, n.OperState))
		case !n.Carrier:
			bad = append(bad, n.Name+" has no carrier")
			ev = append(ev, fmt.Sprintf("%s: up but no carrier (LOWER_UP missing), oper state %s", n.Name, n.OperState))
			cmds = append(cmds, "# check the cable of "+n.Name+"; a veth needs both ends up")
		}
	}
	if len(bad) == 0 {
		return nil
	}
	slices.SortStableFunc(bad, func(a, b string) int {
		return strings.Count(b, "administratively") - strings.Count(a, "administratively")
	})
	for _, e := range r.ev.Endpoints {
		if e.DevicePresent && e.PortState != "" && e.PortState != "ACTIVE" {
			ev = append(ev, fmt.Sprintf("%s port 1 is %s (an rxe port follows its netdev)", e.Device, e.PortState))
		}
	}
	ev = append(ev, r.trafficLines()...)
	fix := &FindingFix{
		Description: "bring the NIC up (a lab brought up by rocebed has every NIC up: take it down and up again)",
		Scenario:    "# nothing to add: `rocebed up` brings every declared NIC up;\n# run `rocebed down LAB && rocebed up LAB` to rebuild the lab",
		Commands:    slices.Compact(cmds),
	}
	return &Finding{Code: CodeLinkDown, Severity: SeverityError,
		Summary:  strings.Join(bad, "; ") + ": no packet can cross the cable and the rxe port is not ACTIVE",
		Evidence: ev, Fix: fix}
}

func (r ruler) gidMissing() *Finding {
	var ev, bad, cmds []string
	var yaml []string
	for _, e := range r.ev.Endpoints {
		switch {
		case !e.DevicePresent:
			bad = append(bad, fmt.Sprintf("endpoint %s has no RDMA device %s on %s", e.Side, e.Device, e.NIC))
			ev = append(ev, fmt.Sprintf("/sys/class/infiniband/%s: missing", e.Device))
			cmds = append(cmds, fmt.Sprintf("rdma link add %s type rxe netdev %s", e.Device, e.NIC))
			yaml = append(yaml, fmt.Sprintf("  %s: {nic: %s, rxe: %s}", e.Side, e.NIC, e.Device))
		case e.PortNetdev != "" && e.PortNetdev != e.NIC:
			bad = append(bad, fmt.Sprintf("%s is bound to %s, not to endpoint %s's NIC %s", e.Device, e.PortNetdev, e.Side, e.NIC))
			ev = append(ev, fmt.Sprintf("%s port 1 netdev: %s", e.Device, e.PortNetdev))
			cmds = append(cmds, fmt.Sprintf("rdma link delete %s", e.Device), fmt.Sprintf("rdma link add %s type rxe netdev %s", e.Device, e.NIC))
		case e.GID == "":
			bad = append(bad, fmt.Sprintf("%s has no RoCE v2 GID for endpoint %s's address %s", e.Device, e.Side, e.Address))
			ev = append(ev, fmt.Sprintf("%s port 1 (%s): %s", e.Device, e.PortState, e.GIDError))
			cmds = append(cmds, fmt.Sprintf("ip addr add %s/24 dev %s  # the kernel adds the GID when the address is on the NIC and it is up", e.Address, e.NIC))
		}
	}
	if len(bad) == 0 {
		return nil
	}
	ev = append(ev, r.trafficLines()...)
	scen := "# the endpoints are declared; rebuild the lab with `rocebed down LAB && rocebed up LAB`"
	if len(yaml) > 0 {
		scen = "endpoints:\n" + strings.Join(yaml, "\n")
	}
	return &Finding{Code: CodeGIDMissing, Severity: SeverityError,
		Summary:  strings.Join(bad, "; ") + ": traffic needs an RDMA device with a RoCE v2 GID for its address at both ends",
		Evidence: ev, Fix: &FindingFix{Description: "give both endpoints an RDMA device bound to their NIC, with the address on the NIC", Scenario: scen, Commands: cmds}}
}

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
		rcvd, _ := c.RDMACounter(b.ReceiverDevice, counters.CounterRXEHWRcvdPkts)
		sent, _ := c.RDMACounter(b.SenderDevice, counters.CounterRXEHWSentPkts)
		if np > 0 && !b.Pass && rcvd == 0 && sent > 0 {
			nodrop = true
			ev = append(ev, fmt.Sprintf("%s: %s sent_pkts +%d, %s rcvd_pkts +0; %s", b.Name+" "+string(b.Direction), b.SenderDevice, sent, b.ReceiverDevice, strings.Join(per, ", ")))
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
	ev = append(ev, r.traceLines("IPv4")...)
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

// drop is what the receiving NIC's source check (fib_validate_source) does to a packet from
// the other endpoint, predicted from the route back and the effective sysctls.
type drop string

const (
	dropNone    drop = ""
	dropLocal   drop = "martian"   // the source is a local address and accept_local is off
	dropStrict  drop = "rp_filter" // strict rp_filter and the route back leaves elsewhere
	dropUnknown drop = "unknown"
)

// predict says what D's source check does to SRC -> DST arriving on D.
func (r ruler) predict(d *DirectionEvidence) drop {
	dst := r.nic(d.DstNIC)
	if dst == nil || d.RouteBack.Type == "" {
		return dropUnknown
	}
	local := d.RouteBack.Type == "local"
	switch {
	case local && dst.AcceptLocal == 0:
		return dropLocal
	case dst.RPFilter == 1 && d.RouteBack.Dev != d.DstNIC && (d.RouteBack.Type == "unicast" || local && dst.AcceptLocal == 1):
		return dropStrict
	case dst.AcceptLocal < 0 || dst.RPFilter < 0:
		return dropUnknown
	}
	return dropNone
}

func (r ruler) sourceCheckLines(d *DirectionEvidence) []string {
	var ev []string
	if dst := r.nic(d.DstNIC); dst != nil {
		ev = append(ev, fmt.Sprintf("%s: accept_local=%d (all OR %s), rp_filter=%d (max of all and %s)", d.DstNIC, dst.AcceptLocal, d.DstNIC, dst.RPFilter, d.DstNIC))
	}
	ev = append(ev, "route back: "+d.RouteBack.String())
	if d.RouteIn.Type != "" || d.RouteIn.Error != "" {
		ev = append(ev, "input route: "+d.RouteIn.String())
	}
	return ev
}

func (r ruler) martianDelta(s *counters.Snapshot) (uint64, bool) {
	return s.KernelCounter(counters.CounterMartianSrc)
}

// neighbor: ARP between the NICs failed, seen as an unresolved neighbour together with a
// connect timeout or a failing probe neighbour layer.
func (r ruler) neighbor() *Finding {
	var ev []string
	var dirs []*DirectionEvidence
	for i := range r.ev.Directions {
		d := &r.ev.Directions[i]
		if d.Neighbor.Usable() || d.Neighbor.State == "" {
			continue
		}
		probeNeigh := d.Probe != nil && d.Probe.Layer == probe.LayerNeighbor
		connect := false
		for _, b := range r.batches() {
			if b.Class == traffic.ClassConnectTimeout {
				connect = true
			}
		}
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
		m, _ := r.martianDelta(c)
		martian += m
		sent, _ := c.RDMACounter(b.SenderDevice, counters.CounterRXEHWSentPkts)
		rsent, _ := c.RDMACounter(b.ReceiverDevice, counters.CounterRXEHWSentPkts)
		ev = append(ev, fmt.Sprintf("%s %s: connect failed after %s: %s; in_martian_src +%d; %s sent_pkts +%d, %s sent_pkts +%d (no RoCE packet left)",
			b.Name, b.Direction, traffic.FormatMS(b.ConnectMS), b.ConnectError, m, b.SenderDevice, sent, b.ReceiverDevice, rsent))
	}
	strict, local := false, false
	for _, d := range dirs {
		switch r.predict(d) {
		case dropStrict:
			strict = true
		case dropLocal:
			local = true
		}
		ev = append(ev, prefixed(d.Name+" ", r.sourceCheckLines(d))...)
	}
	if strict {
		if t := r.ev.Traffic; t != nil && t.Delta != nil {
			m, _ := t.Delta.KernelCounter(counters.CounterMartianSrc)
			rpf, _ := t.Delta.KernelCounter(counters.CounterRPFilter)
			ev = append(ev, fmt.Sprintf("rt_cache.in_martian_src +%d (the kernel counts the ARP's failed source check there), %s +%d (it counts IP packets only)", m, counters.CounterRPFilter, rpf))
		}
	}
	ev = append(ev, r.traceLines("ARP")...)
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

func prefixed(p string, lines []string) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = p + l
	}
	return out
}

// martianSource: RoCE packets crossed the cable (sender NIC tx and receiver NIC rx moved) and
// the receiving kernel dropped them in input routing: in_martian_src rose by about the packets
// sent and the receiving device counted none.
func (r ruler) martianSource() *Finding {
	var ev []string
	strict, found := false, false
	for _, b := range r.batches() {
		if b.Pass {
			continue
		}
		c := r.counters(b)
		sent, sok := c.RDMACounter(b.SenderDevice, counters.CounterRXEHWSentPkts)
		rcvd, _ := c.RDMACounter(b.ReceiverDevice, counters.CounterRXEHWRcvdPkts)
		tx, _ := c.Link(b.SenderNIC)
		rx, _ := c.Link(b.ReceiverNIC)
		m, _ := r.martianDelta(c)
		rpf, _ := c.KernelCounter(counters.CounterRPFilter)
		if !sok || sent == 0 || rcvd != 0 || tx.TxPackets == 0 || rx.RxPackets == 0 {
			continue
		}
		// The martian counter is host-wide: demand it covers (nearly) every packet sent.
		if m*10 < sent*9 && rpf == 0 {
			continue
		}
		found = true
		ev = append(ev, fmt.Sprintf("%s %s: %s sent_pkts +%d, %s rcvd_pkts +%d", b.Name, b.Direction, b.SenderDevice, sent, b.ReceiverDevice, rcvd),
			fmt.Sprintf("%s tx +%d, %s rx +%d: the packets crossed the cable", b.SenderNIC, tx.TxPackets, b.ReceiverNIC, rx.RxPackets),
			fmt.Sprintf("rt_cache.in_martian_src +%d (≈ the %d packets sent)", m, sent))
		if rpf > 0 {
			strict = true
			ev = append(ev, fmt.Sprintf("%s +%d", counters.CounterRPFilter, rpf))
		}
		if rc, ok := c.RDMACounter(b.SenderDevice, counters.CounterRXECompRetryErr); ok && rc > 0 {
			ev = append(ev, fmt.Sprintf("%s completer_retry_err +%d", b.SenderDevice, rc))
		}
		if b.FirstError != "" {
			ev = append(ev, fmt.Sprintf("requester completion %s after %s; responder completions: %d", b.FirstError, traffic.FormatMS(b.FirstErrorMS), b.ReceiverCompletions))
		}
		if d := r.direction(b.SenderNIC); d != nil {
			switch r.predict(d) {
			case dropStrict:
				strict = true
			}
			if d.RouteIn.Errno == "EXDEV" {
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
			if p != dropLocal && p != dropStrict && d.RouteIn.Errno != "EXDEV" {
				continue
			}
			found = true
			strict = strict || p == dropStrict || d.RouteIn.Errno == "EXDEV"
			ev = append(ev, prefixed(d.Name+" ", r.sourceCheckLines(d))...)
		}
	}
	if !found {
		return nil
	}
	ev = append(ev, r.traceLines("IPv4")...)
	if strict {
		return &Finding{Code: CodeRPFilter, Severity: SeverityError,
			Summary:  "the RoCE packets cross the cable and the receiving NIC's strict reverse-path filter (rp_filter=1) drops every one in input routing: the route back to the sender leaves through another NIC",
			Evidence: ev, Fix: r.policyRoutingFix(true)}
	}
	return &Finding{Code: CodeMartianSource, Severity: SeverityError,
		Summary:  "the RoCE packets cross the cable and the receiving NIC drops every one in input routing as a martian source: their source address is one of this host's own and accept_local=0",
		Evidence: ev, Fix: r.policyRoutingFix(false)}
}

func (r ruler) trafficRan() bool { return r.ev.Traffic != nil && r.ev.Traffic.Ran }

// notOnWire: the packets did not cross the cable: lo carried them, or the output route of the
// RoCE path leaves through another device.
func (r ruler) notOnWire() *Finding {
	var ev []string
	for _, b := range r.batches() {
		c := r.counters(b)
		lo, lok := c.Link("lo")
		rx, _ := c.Link(b.ReceiverNIC)
		sent, _ := c.RDMACounter(b.SenderDevice, counters.CounterRXEHWSentPkts)
		if b.Class == traffic.ClassNotOnWire || (lok && sent > 0 && lo.TxPackets >= sent && rx.RxPackets < sent) {
			ev = append(ev, fmt.Sprintf("%s %s: %s sent_pkts +%d, %s rx +%d, lo tx +%d", b.Name, b.Direction, b.SenderDevice, sent, b.ReceiverNIC, rx.RxPackets, lo.TxPackets))
			if b.Class == traffic.ClassNotOnWire {
				ev = append(ev, b.Verdict)
			}
		}
	}
	for _, d := range r.ev.Directions {
		if d.RouteOut.Error == "" && d.RouteOut.Type != "" && (d.RouteOut.Dev != d.SrcNIC || d.RouteOut.Type != "unicast") {
			ev = append(ev, fmt.Sprintf("%s output route: %s (not unicast out of %s)", d.Name, d.RouteOut.String(), d.SrcNIC))
		}
	}
	if len(ev) == 0 {
		return nil
	}
	summary := "the traffic does not provably cross the cable: the counters do not show every packet on both NICs and devices, so a pass would not prove the NICs work"
	for _, l := range ev {
		if strings.Contains(l, "output route") || strings.Contains(l, "lo tx +") && !strings.HasSuffix(l, "lo tx +0") {
			summary = "the traffic does not cross the cable: it leaves through lo or another NIC, so a pass would not prove the NICs work"
		}
	}
	return &Finding{Code: CodeNotOnWire, Severity: r.severity(),
		Summary:  summary,
		Evidence: ev, Fix: r.policyRoutingFix(false)}
}

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

func (r ruler) retryExceeded() *Finding {
	var ev []string
	for _, b := range r.batches() {
		if b.Class != traffic.ClassRetryExceeded {
			continue
		}
		c := r.counters(b)
		sent, _ := c.RDMACounter(b.SenderDevice, counters.CounterRXEHWSentPkts)
		rcvd, _ := c.RDMACounter(b.ReceiverDevice, counters.CounterRXEHWRcvdPkts)
		rsent, _ := c.RDMACounter(b.ReceiverDevice, counters.CounterRXEHWSentPkts)
		ev = append(ev, fmt.Sprintf("%s %s: %s got %s after %s; %s sent_pkts +%d, %s rcvd_pkts +%d sent_pkts +%d (ACKs)",
			b.Name, b.Direction, b.SenderDevice, b.FirstError, traffic.FormatMS(b.FirstErrorMS), b.SenderDevice, sent, b.ReceiverDevice, rcvd, rsent))
	}
	if len(ev) == 0 {
		return nil
	}
	return &Finding{Code: CodeRetryExceeded, Severity: SeverityError,
		Summary:  "the requester exhausted its retries (IBV_WC_RETRY_EXC_ERR): no ACK came back from the responder",
		Evidence: ev, Fix: &FindingFix{Description: "find where the packets or their ACKs died: the findings before this one, or the counters",
			Scenario: "# no scenario change follows from the retry error alone", Commands: []string{"rdma statistic show link " + r.deviceList() + "  # sent_pkts/rcvd_pkts on both ends", "nstat -az Udp* TcpExtIPReversePathFilter"}}}
}

func (r ruler) deviceList() string {
	var out []string
	for _, e := range r.ev.Endpoints {
		out = append(out, e.Device+"/1")
	}
	return strings.Join(out, " ")
}

// unexplained: the traffic failed (or could not run) and no rule matched.
func (r ruler) unexplained() *Finding {
	t := r.ev.Traffic
	if t == nil || (t.Ran && t.Pass) {
		return nil
	}
	if !t.Ran && t.Error == "" {
		return nil
	}
	ev := r.trafficLines()
	if t.Error != "" {
		ev = append(ev, "traffic: "+t.Error)
	}
	if t.Delta != nil {
		ev = append(ev, strings.Split(strings.TrimSpace(t.Delta.String()), "\n")...)
	}
	for _, d := range r.ev.Directions {
		if d.Probe != nil {
			ev = append(ev, fmt.Sprintf("%s probe %s: %s", d.Name, d.Probe.Layer, d.Probe.Detail))
		}
	}
	return &Finding{Code: CodeUnexplained, Severity: SeverityError,
		Summary:  "the traffic failed and no rule explains it; the evidence is below",
		Evidence: ev, Fix: &FindingFix{Description: "no known remedy", Scenario: "# none", Commands: []string{"dmesg | tail  # with net.ipv4.conf.all.log_martians=1"}}}
}

// trafficLines are the batch verdicts of failed batches.
func (r ruler) trafficLines() []string {
	var out []string
	for _, b := range r.batches() {
		if !b.Pass {
			out = append(out, fmt.Sprintf("traffic %s %s: %s", b.Name, b.Direction, b.Verdict))
		}
	}
	if t := r.ev.Traffic; t != nil && !t.Ran && t.Error != "" {
		out = append(out, "traffic not run: "+t.Error)
	}
	return out
}

// traceLines are the kfree_skb groups of one protocol.
func (r ruler) traceLines(proto string) []string {
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

// hasPolicyRouting reports whether the scenario already routes each endpoint's traffic
// through its own NIC (a generated or written-out fix that moves the local rule).
func (r ruler) hasPolicyRouting() bool {
	for _, f := range r.ev.Fixes {
		if f.PolicyRouting != nil || f.MoveLocalRule != 0 {
			return true
		}
	}
	return false
}

// policyRoutingFix is the remedy for the same-host martian drops: the measured policy-routing
// recipe (works with any rp_filter), with the sysctl alternative among the commands.
func (r ruler) policyRoutingFix(strict bool) *FindingFix {
	a, b := r.endpoint("a"), r.endpoint("b")
	if a == nil || b == nil {
		return nil
	}
	pr := scenario.PolicyRouting{}.WithDefaults()
	cmds := []string{
		fmt.Sprintf("ip rule add pref %d lookup local", pr.LocalRulePriority),
		"ip rule del pref 0",
		fmt.Sprintf("ip route add %s dev %s src %s table %d", b.Address, a.NIC, a.Address, pr.TableA),
		fmt.Sprintf("ip rule add pref %d iif lo from %s to %s lookup %d", pr.RulePriority, a.Address, b.Address, pr.TableA),
		fmt.Sprintf("ip route add %s dev %s src %s table %d", a.Address, b.NIC, b.Address, pr.TableB),
		fmt.Sprintf("ip rule add pref %d iif lo from %s to %s lookup %d", pr.RulePriority+1, b.Address, a.Address, pr.TableB),
	}
	var alt string
	if strict {
		alt = fmt.Sprintf("# or keep accept_local and loosen the filter: sysctl -w net.ipv4.conf.all.rp_filter=2 net.ipv4.conf.%s.rp_filter=2 net.ipv4.conf.%s.rp_filter=2", a.NIC, b.NIC)
	} else {
		alt = fmt.Sprintf("# or: sysctl -w net.ipv4.conf.{all,%s,%s}.accept_local=1 with rp_filter 0 or 2 on all, %s and %s", a.NIC, b.NIC, a.NIC, b.NIC)
	}
	cmds = append(cmds, alt)
	fix := &FindingFix{
		Description: "route each endpoint's traffic out of its own NIC (policy routing), so the receiving NIC's source check finds a unicast route back through itself; it works with any rp_filter",
		Scenario:    "fixes:\n  - name: policy-routing\n    policy_routing: {}",
		Commands:    cmds,
	}
	if r.hasPolicyRouting() {
		fix.Description = "the scenario already has policy routing, so it is incomplete or overridden: compare `ip rule` and the tables with the commands below"
		return fix
	}
	fix.Apply = &scenario.Fix{Name: FixName, Description: "added by rocebed diagnose --fix", PolicyRouting: &pr}
	return fix
}

// FixName names the fix group `diagnose --fix` adds.
const FixName = "diagnose-policy-routing"

func nsCmd(ns, cmd string) string {
	if ns == "" {
		return cmd
	}
	if rest, ok := strings.CutPrefix(cmd, "ip "); ok {
		return "ip -n " + ns + " " + rest
	}
	return "ip netns exec " + ns + " " + cmd
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

// ---- output ----

// WriteText prints the diagnosis for people: each finding with its evidence and fix, then
// what each layer concluded.
func (d *Diagnosis) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "diagnose lab %s: ", d.Lab)
	switch {
	case len(d.Findings) == 0 && d.TrafficPassed:
		b.WriteString("healthy: the traffic crossed the cable and passed; no finding\n")
	case len(d.Findings) == 0:
		b.WriteString("no finding\n")
	default:
		fmt.Fprintf(&b, "%d finding(s), root cause %s\n", len(d.Findings), d.Findings[0].Code)
	}
	for i, f := range d.Findings {
		fmt.Fprintf(&b, "\n%d. %s [%s, %s]\n   %s\n", i+1, f.Code, f.Severity, f.Role, f.Summary)
		if len(f.Evidence) > 0 {
			b.WriteString("   evidence:\n")
			for _, e := range f.Evidence {
				fmt.Fprintf(&b, "     %s\n", e)
			}
		}
		if f.Fix != nil && f.Role != RoleConsequence {
			fmt.Fprintf(&b, "   fix: %s\n", f.Fix.Description)
			if f.Fix.Scenario != "" {
				b.WriteString("   in the scenario:\n")
				for _, l := range strings.Split(f.Fix.Scenario, "\n") {
					fmt.Fprintf(&b, "     %s\n", l)
				}
			}
			if len(f.Fix.Commands) > 0 {
				b.WriteString("   or by hand:\n")
				for _, c := range f.Fix.Commands {
					fmt.Fprintf(&b, "     %s\n", c)
				}
			}
		}
	}
	if len(d.Layers) > 0 {
		b.WriteString("\nlayers:\n")
		for _, l := range d.Layers {
			fmt.Fprintf(&b, "  %s\n", l)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteJSON writes the diagnosis, evidence included.
func (d *Diagnosis) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(d)
}

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
	switch {
	case t == nil:
		d.Layers = append(d.Layers, "traffic: not run")
	case !t.Ran:
		d.Layers = append(d.Layers, "traffic: not run: "+t.Error)
	default:
		var cls []string
		for _, b := range t.Batches {
			c := "pass"
			if !b.Pass {
				c = string(b.Class)
			}
			cls = append(cls, fmt.Sprintf("%s %s %s", b.Name, b.Direction, c))
		}
		d.Layers = append(d.Layers, fmt.Sprintf("traffic (%s): %s", t.Source, strings.Join(cls, ", ")))
		if t.Delta != nil {
			var moved []string
			for _, k := range []string{counters.CounterMartianSrc, counters.CounterRPFilter, counters.CounterUDPNoPorts} {
				for _, name := range slices.Sorted(maps.Keys(t.Delta.Kernel)) {
					if (name == k || strings.HasSuffix(name, "/"+k)) && t.Delta.Kernel[name] > 0 {
						moved = append(moved, fmt.Sprintf("%s +%d", name, t.Delta.Kernel[name]))
					}
				}
			}
			if len(moved) == 0 {
				moved = []string{"no drop counter moved"}
			}
			d.Layers = append(d.Layers, "counters: "+strings.Join(moved, ", "))
		}
	}
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
	switch tr := ev.Trace; {
	case tr == nil:
		d.Layers = append(d.Layers, "trace: off ("+TraceWarning+")")
	case !tr.Available:
		d.Layers = append(d.Layers, "trace: unavailable: "+tr.Reason+"; the findings rest on the counters, routes and sysctls")
	default:
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
		d.Layers = append(d.Layers, line)
	}
	for _, n := range append(notes, ev.Notes...) {
		d.Layers = append(d.Layers, "note: "+n)
	}
	return d
}

func answerShort(a RouteAnswer) string {
	switch {
	case a.Error != "":
		if a.Errno != "" {
			return a.Errno
		}
		return a.Error
	case a.Type == "":
		return "not asked"
	}
	s := a.Type
	if a.Dev != "" {
		s += " dev " + a.Dev
	}
	return s
}

// atoiOr parses a sysctl value, -1 when unreadable.
func atoiOr(s string) int {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return -1
	}
	return n
}

// TraceWarning is why the kfree_skb layer is opt-in.
const TraceWarning = "--trace turns it on; off by default because on the Debian 6.1 test kernel under QEMU TCG, setting up or removing the tracefs instance soft-locked a CPU in about 1 of 5 diagnoses"

// Options control Run.
type Options struct {
	// Traffic is the report of traffic that already ran (a failed `run`): Run then runs
	// none and takes the counters from the report's batches.
	Traffic *traffic.Report
	// NoTraffic diagnoses from configuration, routes and the probe alone.
	NoTraffic bool
	// Trace adds the skb:kfree_skb layer (TraceWarning says why it is off by default).
	Trace bool
	// NoProbe leaves out Probe.
	NoProbe bool
}

// FixResult is what `diagnose --fix` did: the fix groups it added, the scenario the lab now
// runs, and the traffic before (in Before) and after.
type FixResult struct {
	Applied []scenario.Fix  `json:"applied"`
	Before  *Diagnosis      `json:"before"`
	After   *traffic.Report `json:"after,omitempty"`
	// Source is the scenario text the lab was brought up again with (kept in its journal).
	Source string `json:"source"`
	// Passed is true when the traffic passed after the fix.
	Passed bool `json:"passed"`
}

// FixedScenario returns s with fixes added and its expectation set to pass, re-parsed from
// the YAML it returns, so the journal of the fixed lab holds a scenario that loads again.
func FixedScenario(s *scenario.Scenario, fixes []scenario.Fix) (*scenario.Scenario, []byte, error) {
	fx := *s
	fx.Fixes = append(slices.Clone(s.Fixes), fixes...)
	fx.Expect = scenario.Expect{Result: scenario.ResultPass}
	fx.Description = strings.TrimSpace(s.Description + " (with rocebed diagnose --fix)")
	src, err := yaml.Marshal(&fx)
	if err != nil {
		return nil, nil, fmt.Errorf("write the fixed scenario: %w", err)
	}
	out, err := scenario.Parse(s.File, src, nil)
	if err != nil {
		return nil, src, fmt.Errorf("the fixed scenario does not validate: %w", err)
	}
	return out, src, nil
}

// ---- kfree_skb trace parsing (the kernel side is in trace_linux.go) ----

// traceLines returns the first n event lines of a trace file (comments left out).
func traceLines(data string, n int) []string {
	var out []string
	for _, l := range strings.Split(data, "\n") {
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		out = append(out, strings.TrimSpace(l))
		if len(out) == n {
			break
		}
	}
	return out
}

var (
	traceEntry = regexp.MustCompile(`kfree_skb:.*?protocol=(\d+)\s+location=(\S+)(?:\s+reason:\s*(\S+))?`)
)

func protoName(p string) string {
	switch p {
	case "2048":
		return "IPv4"
	case "2054":
		return "ARP"
	}
	return "ethertype " + p
}

// groupKfreeLines groups recorded kfree_skb lines by protocol, freeing function (named by
// resolve) and reason, largest group first.
func groupKfreeLines(data string, resolve func(string) string) []TraceDrop {
	idx := map[[3]string]int{}
	var out []TraceDrop
	for _, l := range strings.Split(data, "\n") {
		m := traceEntry.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		k := [3]string{protoName(m[1]), resolve(m[2]), m[3]}
		if i, ok := idx[k]; ok {
			out[i].Count++
			continue
		}
		idx[k] = len(out)
		out = append(out, TraceDrop{Protocol: k[0], Location: k[1], Reason: k[2], Count: 1})
	}
	slices.SortStableFunc(out, func(a, b TraceDrop) int { return b.Count - a.Count })
	return out
}
