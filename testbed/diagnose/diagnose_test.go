package diagnose

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rocebed/rocebed/internal/kernel"
	"github.com/rocebed/rocebed/rdma"
	"github.com/rocebed/rocebed/rdma/verbs"
	"github.com/rocebed/rocebed/testbed/counters"
	"github.com/rocebed/rocebed/testbed/scenario"
	"github.com/rocebed/rocebed/testbed/traffic"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// recordedCase is one file of testdata: evidence captured by Run on a real
// kernel (TestDiagnoseRXE with ROCEBED_DIAG_RECORD=1 in the VM) and the root cause the
// kernel's behaviour calls for.
type recordedCase struct {
	Want  FindingCode   `json:"want"`
	Codes []FindingCode `json:"codes,omitempty"`
	// RootEvidenceContains are strings the root cause's evidence must show.
	RootEvidenceContains []string  `json:"root_evidence_contains,omitempty"`
	Comment              string    `json:"comment,omitempty"`
	Evidence             *Evidence `json:"evidence"`
}

func TestDiagnoseRecordedEvidence(t *testing.T) {
	files, err := filepath.Glob("testdata/*.json")
	require.NoError(t, err)
	require.NotEmpty(t, files, "no recorded evidence in testdata")
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".json"), func(t *testing.T) {
			data, err := os.ReadFile(f)
			require.NoError(t, err)
			var rc recordedCase
			dec := json.NewDecoder(bytes.NewReader(data))
			dec.DisallowUnknownFields()
			require.NoError(t, dec.Decode(&rc))
			require.NotNil(t, rc.Evidence)
			d := Conclude(rc.Evidence)
			var b strings.Builder
			require.NoError(t, d.WriteText(&b))
			t.Logf("%s", b.String())
			if rc.Want == "" {
				assert.Empty(t, d.Findings, "healthy lab: %v", d.Codes())
				assert.True(t, d.TrafficPassed)
				return
			}
			require.NotEmpty(t, d.Findings)
			assert.Equal(t, rc.Want, d.FirstCode(), "codes %v", d.Codes())
			if rc.Codes != nil {
				assert.Equal(t, rc.Codes, d.Codes())
			}
			root := strings.Join(d.Findings[0].Evidence, "\n")
			for _, want := range rc.RootEvidenceContains {
				assert.Contains(t, root, want)
			}
			assertWellFormed(t, d)
		})
	}
}

// assertWellFormed: every finding has a role, evidence and a fix with commands; exactly the
// first is the root cause; no code twice; codes in causal order.
func assertWellFormed(t *testing.T, d *Diagnosis) {
	t.Helper()
	seen := map[FindingCode]bool{}
	last := -1
	for i, f := range d.Findings {
		assert.False(t, seen[f.Code], "code %s twice", f.Code)
		seen[f.Code] = true
		assert.GreaterOrEqual(t, codeRank(f.Code), last, "%s out of causal order", f.Code)
		last = codeRank(f.Code)
		if i == 0 {
			assert.Equal(t, RoleRootCause, f.Role)
		} else {
			assert.Contains(t, []Role{RoleConsequence, RoleUnrelated}, f.Role)
		}
		assert.NotEmpty(t, f.Summary)
		assert.NotEmpty(t, f.Evidence, "%s has no evidence", f.Code)
		if assert.NotNil(t, f.Fix, "%s has no fix", f.Code) {
			assert.NotEmpty(t, f.Fix.Commands, "%s fix has no commands", f.Code)
			assert.NotEmpty(t, f.Fix.Scenario, "%s fix has no scenario snippet", f.Code)
		}
	}
}

// healthyEvidence is a same-host lab with policy routing after a passing rc-both run, as
// Run records it (values from a VM run).
func healthyEvidence() *Evidence {
	batch := func(dir scenario.Direction, snd, sdev, rcv, rdev string) BatchEvidence {
		return BatchEvidence{BatchResult: traffic.BatchResult{Traffic: "rc-both", Transport: scenario.TransportRC, Direction: dir, Messages: 100,
			Sender: traffic.End{Device: sdev, NIC: snd}, Receiver: traffic.End{Device: rdev, NIC: rcv}, Pass: true, Verdict: "ok",
			Counters: &counters.Snapshot{
				RDMA:   map[string]rdma.Counters{sdev: {"sent_pkts": 100, "rcvd_pkts": 100}, rdev: {"sent_pkts": 100, "rcvd_pkts": 100}},
				Links:  map[string]counters.LinkCounters{snd: {TxPackets: 100, RxPackets: 100}, rcv: {TxPackets: 100, RxPackets: 100}, "lo": {}},
				Kernel: map[string]uint64{counters.CounterMartianSrc: 0, counters.CounterUDPNoPorts: 0, counters.CounterRPFilter: 0},
			}},
			Tally: CompletionTally{SenderCompletions: 100, SenderOK: 100, ReceiverCompletions: 100, ReceiverOK: 100}}
	}
	nic := func(name, mac, addr string) NICEvidence {
		return NICEvidence{Name: name, Found: true, Up: true, Carrier: true, OperState: "up", MTU: 1500, MAC: mac,
			Addresses: []string{addr}, Sysctls: map[string]string{"rp_filter": "0", "accept_local": "0"}, RPFilter: 0, AcceptLocal: 0}
	}
	dir := func(name scenario.Direction, s, d, sa, da, dmac string) DirectionEvidence {
		return DirectionEvidence{Name: name, SrcNIC: s, DstNIC: d, SrcAddr: sa, DstAddr: da,
			Neighbor:    NeighborEvidence{State: NeighborEntryState(kernel.NUDReachable), LLAddr: dmac, PeerMAC: dmac},
			RouteOut:    RouteAnswer{Query: "out", Type: RouteUnicast, Dev: s, Src: sa, Table: "100"},
			RouteIn:     RouteAnswer{Query: "in", Type: RouteLocal, Dev: "lo", Table: "local"},
			RouteBack:   RouteAnswer{Query: "back", Type: RouteUnicast, Dev: d, Table: "101"},
			ProbePassed: true}
	}
	pr := scenario.PolicyRouting{}.WithDefaults()
	te := &TrafficEvidence{Ran: true, Source: SourceDiagnose, Pass: true, Batches: []BatchEvidence{
		batch(scenario.DirectionAToB, "vA", "rxe0", "vB", "rxe1"), batch(scenario.DirectionBToA, "vB", "rxe1", "vA", "rxe0")}}
	for _, b := range te.Batches {
		te.Delta = addSnapshots(te.Delta, b.Counters)
	}
	return &Evidence{
		Lab: "same-host", Kernel: "6.1.0-56-amd64", RDMANetnsMode: "shared",
		Fixes: []scenario.Fix{{Name: "policy-routing", PolicyRouting: &pr}},
		NICs:  []NICEvidence{nic("vA", "02:00:00:00:00:0a", "10.10.0.1/24"), nic("vB", "02:00:00:00:00:0b", "10.10.0.2/24")},
		Endpoints: []EndpointEvidence{
			{Side: SideA, NIC: "vA", Address: "10.10.0.1", Device: "rxe0", DevicePresent: true, PortNetdev: "vA", PortState: PortStateOf(rdma.PortActive), ActiveMTU: 1024, GID: "1 10.10.0.1 (RoCE v2) on vA"},
			{Side: SideB, NIC: "vB", Address: "10.10.0.2", Device: "rxe1", DevicePresent: true, PortNetdev: "vB", PortState: PortStateOf(rdma.PortActive), ActiveMTU: 1024, GID: "1 10.10.0.2 (RoCE v2) on vB"},
		},
		Directions: []DirectionEvidence{
			dir(scenario.DirectionAToB, "vA", "vB", "10.10.0.1", "10.10.0.2", "02:00:00:00:00:0b"),
			dir(scenario.DirectionBToA, "vB", "vA", "10.10.0.2", "10.10.0.1", "02:00:00:00:00:0a"),
		},
		Traffic: te,
		Trace:   &TraceEvidence{Reason: "no tracefs"},
	}
}

// seedLike turns the healthy evidence into the seed's failure: no policy routing, permanent
// neighbours, a->b RoCE packets dropped on vB as martian sources.
func seedLike(ev *Evidence, martian uint64) *Evidence {
	ev.Fixes = nil
	for i := range ev.Directions {
		d := &ev.Directions[i]
		d.Neighbor.State = NeighborEntryState(kernel.NUDPermanent)
		d.RouteOut = RouteAnswer{Query: "out", Type: RouteUnicast, Dev: d.SrcNIC, Src: d.SrcAddr, Table: "main"}
		d.RouteIn = RouteAnswer{Query: "in", Errno: Errno(unix.EINVAL), Error: "invalid argument"}
		d.RouteBack = RouteAnswer{Query: "back", Type: RouteLocal, Dev: "lo", Table: "local"}
		d.ProbePassed = false
	}
	b := &ev.Traffic.Batches[0]
	b.Pass, b.Class = false, traffic.ClassRetryExceeded
	b.Tally.FirstError, b.Tally.FirstErrorMS = CompletionStatus(verbs.WCRetryExcErr), 58
	b.Tally.SenderOK, b.Tally.ReceiverCompletions, b.Tally.ReceiverOK = 0, 0, 0
	b.Counters = &counters.Snapshot{
		RDMA:   map[string]rdma.Counters{"rxe0": {"sent_pkts": 30, "rcvd_pkts": 0, "completer_retry_err": 3}, "rxe1": {"sent_pkts": 0, "rcvd_pkts": 0}},
		Links:  map[string]counters.LinkCounters{"vA": {TxPackets: 30}, "vB": {RxPackets: 30}, "lo": {}},
		Kernel: map[string]uint64{counters.CounterMartianSrc: martian},
	}
	ev.Traffic.Batches = ev.Traffic.Batches[:1]
	ev.Traffic.Pass = false
	ev.Traffic.Delta = addSnapshots(nil, b.Counters)
	return ev
}

func TestFindingsHealthyLabHasNone(t *testing.T) {
	d := Conclude(healthyEvidence())
	assert.Empty(t, d.Findings)
	assert.True(t, d.TrafficPassed)
	var b strings.Builder
	require.NoError(t, d.WriteText(&b))
	assert.Contains(t, b.String(), "healthy")
	assert.Contains(t, b.String(), "trace: unavailable: no tracefs")
}

func TestFindingsSeedMartianSource(t *testing.T) {
	d := Conclude(seedLike(healthyEvidence(), 30))
	assert.Equal(t, []FindingCode{CodeMartianSource, CodeRetryExceeded}, d.Codes())
	assertWellFormed(t, d)
	f := d.Findings[0]
	ev := strings.Join(f.Evidence, "\n")
	assert.Contains(t, ev, "rt_cache.in_martian_src +30")
	assert.Contains(t, ev, "vA tx +30, vB rx +30")
	assert.Contains(t, ev, "accept_local=0")
	require.NotNil(t, f.Fix.Apply)
	assert.Equal(t, FixName, f.Fix.Apply.Name)
	assert.Contains(t, f.Fix.Commands, "ip rule add pref 10 iif lo from 10.10.0.1 to 10.10.0.2 lookup 100")
	assert.Contains(t, f.Fix.Commands, "ip route add 10.10.0.1 dev vB src 10.10.0.2 table 101")
	assert.Equal(t, RoleConsequence, d.Findings[1].Role)
	assert.Len(t, d.Fixes(), 1)
}

// The martian counter is host-wide: a few martians elsewhere do not explain 30 lost packets.
func TestFindingsMartianSourceNeedsCounterToCoverPackets(t *testing.T) {
	d := Conclude(seedLike(healthyEvidence(), 3))
	assert.Equal(t, CodeRetryExceeded, d.FirstCode(), "codes %v", d.Codes())
}

func TestFindingsStrictFilterOnDataIsRPFilter(t *testing.T) {
	ev := seedLike(healthyEvidence(), 30)
	for i := range ev.NICs {
		ev.NICs[i].AcceptLocal, ev.NICs[i].RPFilter = 1, 1
	}
	d := Conclude(ev)
	assert.Equal(t, CodeRPFilter, d.FirstCode(), "codes %v", d.Codes())
	assert.Contains(t, strings.Join(d.Findings[0].Fix.Commands, "\n"), "rp_filter=2")
}

func TestFindingsMTUMismatchWhileTrafficPasses(t *testing.T) {
	ev := healthyEvidence()
	ev.NICs[0].MTU, ev.NICs[1].MTU = 1280, 9000
	ev.Endpoints[0].ActiveMTU, ev.Endpoints[1].ActiveMTU = 1024, 4096
	d := Conclude(ev)
	require.Equal(t, []FindingCode{CodeMTUMismatch}, d.Codes())
	assertWellFormed(t, d)
	assert.Equal(t, SeverityWarning, d.Findings[0].Severity)
	assert.Contains(t, d.Findings[0].Fix.Commands, "ip link set dev vB mtu 1280")
	assert.Nil(t, d.Findings[0].Fix.Apply, "an MTU change is not a fix group")
}

func TestFindingsMTUMismatchIsUnrelatedToAMartianDrop(t *testing.T) {
	ev := seedLike(healthyEvidence(), 30)
	ev.NICs[1].MTU = 9000
	d := Conclude(ev)
	require.Equal(t, []FindingCode{CodeMartianSource, CodeMTUMismatch, CodeRetryExceeded}, d.Codes())
	assert.Equal(t, RoleUnrelated, d.Findings[1].Role)
	assert.Equal(t, RoleConsequence, d.Findings[2].Role)
}

func TestFindingsLinkDownComesFirst(t *testing.T) {
	ev := healthyEvidence()
	ev.NICs[1].Up, ev.NICs[1].Carrier, ev.NICs[1].OperState = false, false, "down"
	ev.NICs[0].Carrier, ev.NICs[0].OperState = false, "lowerlayerdown"
	ev.NICs[0].Peer, ev.NICs[1].Peer = "vB", "vA"
	ev.Endpoints[1].PortState, ev.Endpoints[1].GID = PortStateOf(rdma.PortDown), ""
	ev.Endpoints[1].GIDError = "no RoCE v2 gid"
	ev.Traffic = &TrafficEvidence{Source: SourceDiagnose, Error: "skipped: vB is down"}
	d := Conclude(ev)
	assert.Equal(t, []FindingCode{CodeLinkDown, CodeGIDMissing}, d.Codes())
	assertWellFormed(t, d)
	assert.True(t, strings.HasPrefix(d.Findings[0].Summary, "vB is administratively down; vA has no carrier (its peer vB is down)"), d.Findings[0].Summary)
	assert.Equal(t, []string{"ip link set dev vB up"}, d.Findings[0].Fix.Commands)
	assert.Equal(t, RoleConsequence, d.Findings[1].Role)
}

func TestFindingsNoListenerInOtherNamespace(t *testing.T) {
	ev := healthyEvidence()
	ev.NICs[1].Netns = "peer"
	b := &ev.Traffic.Batches[0]
	b.Pass, b.Class, b.Tally.FirstError = false, traffic.ClassRetryExceeded, CompletionStatus(verbs.WCRetryExcErr)
	b.Counters = &counters.Snapshot{
		RDMA:   map[string]rdma.Counters{"rxe0": {"sent_pkts": 30}, "rxe1": {"rcvd_pkts": 0}},
		Links:  map[string]counters.LinkCounters{"vA": {TxPackets: 30}, "vB": {RxPackets: 30}},
		Kernel: map[string]uint64{"peer/" + counters.CounterUDPNoPorts: 30, counters.CounterUDPNoPorts: 0},
	}
	ev.Traffic.Batches = ev.Traffic.Batches[:1]
	ev.Traffic.Pass = false
	d := Conclude(ev)
	assert.Equal(t, []FindingCode{CodeNoListener, CodeRetryExceeded}, d.Codes())
	assertWellFormed(t, d)
	ev0 := strings.Join(d.Findings[0].Evidence, "\n")
	assert.Contains(t, ev0, `found in netns "peer"`)
	assert.Contains(t, ev0, "peer/Udp.NoPorts +30")
	assert.Contains(t, d.Findings[0].Fix.Commands, "ip -n peer link set dev vB netns 1")
}

func TestFindingsNotOnWire(t *testing.T) {
	ev := healthyEvidence()
	ev.Directions[0].RouteOut = RouteAnswer{Query: "ip route get 10.10.0.2 from 10.10.0.1 oif vA", Type: RouteLocal, Dev: "lo", Table: "local"}
	d := Conclude(ev)
	assert.Equal(t, []FindingCode{CodeNotOnWire}, d.Codes())
	assert.Equal(t, SeverityWarning, d.Findings[0].Severity)
}

// A batch the traffic judged not-on-wire from a stale counter read passes when the counters
// Run read after the run show its packets crossing; one whose packets went over lo does not.
func TestFindingsStaleNotOnWireIsReconciled(t *testing.T) {
	ev := healthyEvidence()
	b := &ev.Traffic.Batches[0]
	b.Pass, b.Class, b.Verdict = false, traffic.ClassNotOnWire, "all 100 messages completed, but ... rxe0 rcvd_pkts (ACKs) +0 < 1"
	ev.Traffic.Pass = false
	d := Conclude(ev)
	assert.Empty(t, d.Findings, "codes %v", d.Codes())
	assert.True(t, d.TrafficPassed)
	assert.Contains(t, strings.Join(d.Layers, "\n"), "that read was stale")
	assert.False(t, ev.Traffic.Batches[0].Pass, "the recorded evidence is not changed")

	lo := ev.Traffic.Delta.Links["lo"]
	lo.TxPackets, lo.RxPackets = 200, 200
	ev.Traffic.Delta.Links["lo"] = lo
	d = Conclude(ev)
	assert.Equal(t, []FindingCode{CodeNotOnWire}, d.Codes())
	assert.False(t, d.TrafficPassed)
}

func TestFindingsUnexplainedFailure(t *testing.T) {
	ev := healthyEvidence()
	b := &ev.Traffic.Batches[0]
	b.Pass, b.Class, b.Verdict = false, traffic.ClassMissingCompletions, "receiver idle"
	ev.Traffic.Pass = false
	d := Conclude(ev)
	require.Equal(t, []FindingCode{CodeUnexplained}, d.Codes())
	assertWellFormed(t, d)
	assert.Contains(t, strings.Join(d.Findings[0].Evidence, "\n"), "receiver idle")
}

func TestFindingsExistingPolicyRoutingIsNotAddedAgain(t *testing.T) {
	ev := seedLike(healthyEvidence(), 30)
	pr := scenario.PolicyRouting{}.WithDefaults()
	ev.Fixes = []scenario.Fix{{Name: "policy-routing", PolicyRouting: &pr}}
	d := Conclude(ev)
	require.Equal(t, CodeMartianSource, d.FirstCode())
	assert.Nil(t, d.Findings[0].Fix.Apply)
	assert.Contains(t, d.Findings[0].Fix.Description, "already has policy routing")
	assert.Empty(t, d.Fixes())
}

func TestDiagnosisJSONCarriesCodesEvidenceAndFixes(t *testing.T) {
	d := Conclude(seedLike(healthyEvidence(), 30))
	var b bytes.Buffer
	require.NoError(t, d.WriteJSON(&b))
	var doc struct {
		Findings []struct {
			Code     string   `json:"code"`
			Role     string   `json:"role"`
			Evidence []string `json:"evidence"`
			Fix      struct {
				Scenario string        `json:"scenario"`
				Commands []string      `json:"commands"`
				Apply    *scenario.Fix `json:"apply"`
			} `json:"fix"`
		} `json:"findings"`
		Evidence *Evidence `json:"evidence"`
	}
	require.NoError(t, json.Unmarshal(b.Bytes(), &doc))
	require.Len(t, doc.Findings, 2)
	assert.Equal(t, "martian-source", doc.Findings[0].Code)
	assert.Equal(t, "root-cause", doc.Findings[0].Role)
	assert.NotEmpty(t, doc.Findings[0].Evidence)
	assert.Contains(t, doc.Findings[0].Fix.Scenario, "policy_routing: {}")
	assert.NotEmpty(t, doc.Findings[0].Fix.Commands)
	require.NotNil(t, doc.Findings[0].Fix.Apply)
	// The evidence replays through the rules to the same answer.
	assert.Equal(t, d.Codes(), Conclude(doc.Evidence).Codes())
}

func TestFixedScenarioAddsFixAndParses(t *testing.T) {
	s, err := scenario.Load("seed", nil)
	require.NoError(t, err)
	d := Conclude(seedLike(healthyEvidence(), 30))
	fixed, src, err := FixedScenario(s, d.Fixes())
	require.NoError(t, err, "%s", src)
	assert.Equal(t, scenario.ResultPass, fixed.Expect.Result)
	require.Len(t, fixed.Fixes, len(s.Fixes)+1)
	assert.Equal(t, s.Fixes, fixed.Fixes[:len(s.Fixes)])
	assert.NotNil(t, fixed.Fixes[len(s.Fixes)].PolicyRouting)
	assert.Equal(t, s.NICs, fixed.NICs)
	assert.Equal(t, s.Endpoints, fixed.Endpoints)
	assert.Equal(t, s.Traffic, fixed.Traffic)
	again, err := scenario.Parse(s.File, src, nil)
	require.NoError(t, err)
	assert.Equal(t, fixed.Fixes, again.Fixes)
}

func TestTraceParsing(t *testing.T) {
	trace := `# tracer: nop
#
          <idle>-0       [001] ..s1.   101.000001: kfree_skb: skbaddr=000000001 protocol=2048 location=0xffffffff9a8b1c20 reason: NOT_SPECIFIED
          <idle>-0       [001] ..s1.   101.000002: kfree_skb: skbaddr=000000002 protocol=2048 location=0xffffffff9a8b1c20 reason: NOT_SPECIFIED
          <idle>-0       [000] ..s1.   101.000003: kfree_skb: skbaddr=000000003 protocol=2054 location=0xffffffff9a8b2d30 reason: NOT_SPECIFIED
`
	g := groupKfreeLines(trace, func(a string) string {
		return map[string]string{"0xffffffff9a8b1c20": "ip_rcv_finish_core+0x1a0"}[a] + "|" + a
	})
	require.Len(t, g, 2)
	assert.Equal(t, TraceDrop{Protocol: "IPv4", Location: "ip_rcv_finish_core+0x1a0|0xffffffff9a8b1c20", Reason: "NOT_SPECIFIED", Count: 2}, g[0])
	assert.Equal(t, TraceARP, g[1].Protocol)
	assert.Len(t, traceLines(trace, 2), 2)
	assert.True(t, TraceDrop{Location: "rxe_responder+0xb22"}.ByRXE(), "rxe frees what it processed with kfree_skb")
	assert.False(t, g[0].ByRXE())
	assert.Equal(t, "kfree_skb: 2 × IPv4 at x reason NOT_SPECIFIED", TraceDrop{Protocol: "IPv4", Location: "x", Reason: "NOT_SPECIFIED", Count: 2}.String())
}
