package diagnose

import (
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
		te.Delta = counters.Sum(te.Delta, b.Counters)
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
	ev.Traffic.Delta = counters.Sum(nil, b.Counters)
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
	assert.Contains(t, f.Fix.Commands, "ip rule add pref 10 iif lo from 10.10.0.1/32 to 10.10.0.2/32 lookup 100")
	assert.Contains(t, f.Fix.Commands, "ip route add 10.10.0.1/32 dev vB src 10.10.0.2 table 101")
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

// not-on-wire says the traffic leaves through lo or another NIC when lo moved or an output
// route leaves elsewhere; otherwise only that the counters do not prove it crossed.
func TestFindingsNotOnWireSummary(t *testing.T) {
	const elsewhere, unproven = "it leaves through lo or another NIC", "does not provably cross the cable"
	ev := healthyEvidence()
	ev.Directions[1].RouteOut = RouteAnswer{Query: "out", Type: RouteUnicast, Dev: "eth0", Table: "main"}
	d := Conclude(ev)
	require.Equal(t, []FindingCode{CodeNotOnWire}, d.Codes())
	assert.Contains(t, d.Findings[0].Summary, elsewhere)

	ev = healthyEvidence()
	ev.Traffic.Source = SourceRun // a report's verdict: not re-judged
	b := &ev.Traffic.Batches[0]
	b.Pass, b.Class, b.Verdict = false, traffic.ClassNotOnWire, "all 100 messages completed, but ... rxe0 rcvd_pkts (ACKs) +0 < 1 (... lo tx +0 rx +0)"
	ev.Traffic.Pass = false
	d = Conclude(ev)
	require.Equal(t, []FindingCode{CodeNotOnWire}, d.Codes())
	assert.Contains(t, d.Findings[0].Summary, unproven)

	b.Counters.Links["lo"] = counters.LinkCounters{TxPackets: 100, RxPackets: 100}
	d = Conclude(ev)
	require.Equal(t, []FindingCode{CodeNotOnWire}, d.Codes())
	assert.Contains(t, d.Findings[0].Summary, elsewhere)
}

// A NIC that is down comes first in link-down's summary: it explains its peer's missing
// carrier; the other problems keep their order.
func TestFindingsLinkDownOrder(t *testing.T) {
	ev := healthyEvidence()
	ev.NICs = append([]NICEvidence{{Name: "vC"}}, ev.NICs...)
	ev.NICs[1].Carrier = false
	ev.NICs[2].Up, ev.NICs[2].Carrier = false, false
	ev.Traffic = &TrafficEvidence{Source: SourceDiagnose, Error: "skipped: vB is down"}
	d := Conclude(ev)
	require.Equal(t, CodeLinkDown, d.FirstCode(), "%v", d.Codes())
	assert.True(t, strings.HasPrefix(d.Findings[0].Summary, "vB is administratively down; vC does not exist; vA has no carrier:"), d.Findings[0].Summary)
}

// The receiving NIC's source check is kernel.PredictSource over the route back and the NIC's
// effective sysctls.
func TestPredictUsesTheReceivingNIC(t *testing.T) {
	ev := seedLike(healthyEvidence(), 30)
	r := ruler{ev: ev}
	d := &ev.Directions[0]
	assert.Equal(t, kernel.SourceMartian, r.predict(d))
	ev.NICs[1].AcceptLocal, ev.NICs[1].RPFilter = 1, 1
	assert.Equal(t, kernel.SourceRPFilter, r.predict(d))
	ev.NICs[1].RPFilter = 2
	assert.Equal(t, kernel.SourceAccepted, r.predict(d))
	d.RouteBack = RouteAnswer{Query: "back", Error: "no route"}
	assert.Equal(t, kernel.SourceUnknown, r.predict(d))
	d.DstNIC = "nowhere"
	assert.Equal(t, kernel.SourceUnknown, r.predict(d))
}

// seedV6Like turns the healthy evidence into seed-v6 as measured: IPv6 endpoints, no policy
// routing, the output route of both directions the local table's route to lo, a->b RoCE
// packets sent by rxe0 and seen by no NIC (rxe looped them back into itself).
func seedV6Like(ev *Evidence) *Evidence {
	ev.Fixes = nil
	ev.NICs[0].Addresses, ev.NICs[1].Addresses = []string{"fd00::1/64"}, []string{"fd00::2/64"}
	ev.Endpoints[0].Address, ev.Endpoints[1].Address = "fd00::1", "fd00::2"
	ev.Endpoints[0].GID, ev.Endpoints[1].GID = "1 fd00::1 (RoCE v2) on vA", "1 fd00::2 (RoCE v2) on vB"
	for i := range ev.Directions {
		d := &ev.Directions[i]
		d.Family = scenario.FamilyIPv6
		d.SrcAddr, d.DstAddr = map[string]string{"vA": "fd00::1", "vB": "fd00::2"}[d.SrcNIC], map[string]string{"vA": "fd00::1", "vB": "fd00::2"}[d.DstNIC]
		d.RouteOut = RouteAnswer{Query: "ip route get " + d.DstAddr + " from " + d.SrcAddr + " oif " + d.SrcNIC, Type: RouteLocal, Dev: "lo", Table: "local"}
		d.RouteBack = RouteAnswer{Query: "back", Type: RouteLocal, Dev: "lo", Table: "local"}
		d.ProbePassed = false
	}
	b := &ev.Traffic.Batches[0]
	b.Family = scenario.FamilyIPv6
	b.Pass, b.Class = false, traffic.ClassRetryExceeded
	b.Tally.FirstError, b.Tally.FirstErrorMS = CompletionStatus(verbs.WCRetryExcErr), 58
	b.Tally.SenderOK, b.Tally.ReceiverCompletions, b.Tally.ReceiverOK = 0, 0, 0
	b.Counters = &counters.Snapshot{
		RDMA:   map[string]rdma.Counters{"rxe0": {"sent_pkts": 30, "rcvd_pkts": 0, "completer_retry_err": 3}, "rxe1": {"sent_pkts": 0, "rcvd_pkts": 0}},
		Links:  map[string]counters.LinkCounters{"vA": {}, "vB": {}, "lo": {}},
		Kernel: map[string]uint64{counters.CounterMartianSrc: 0},
	}
	ev.Traffic.Batches = ev.Traffic.Batches[:1]
	ev.Traffic.Pass = false
	ev.Traffic.Delta = counters.Sum(nil, b.Counters)
	return ev
}

// TestFindingsSeedV6LocalRoute: seed-v6's packets went to lo; the root cause is local-route,
// its fix the IPv6 policy routing (with the oif rules, without the IPv4-only accept_local).
func TestFindingsSeedV6LocalRoute(t *testing.T) {
	d := Conclude(seedV6Like(healthyEvidence()))
	assert.Equal(t, []FindingCode{CodeLocalRoute, CodeNotOnWire, CodeRetryExceeded}, d.Codes())
	assertWellFormed(t, d)
	f := d.Findings[0]
	assert.Equal(t, RoleRootCause, f.Role)
	assert.Contains(t, f.Summary, "IPv6 packets to a local address went to lo")
	ev := strings.Join(f.Evidence, "\n")
	assert.Contains(t, ev, "a->b output route: ip route get fd00::2 from fd00::1 oif vA: local dev lo table local")
	assert.Contains(t, ev, "rc-both a->b: rxe0 sent_pkts +30, vA tx +0, lo tx +0, rxe1 rcvd_pkts +0: the packets never reached a NIC (rxe looped them back into rxe0)")
	require.NotNil(t, f.Fix.Apply)
	assert.Equal(t, FixName, f.Fix.Apply.Name)
	assert.Contains(t, f.Fix.Commands, "ip -6 rule add pref 14 oif vA from fd00::1/128 to fd00::2/128 lookup 100")
	assert.Contains(t, f.Fix.Commands, "ip route add fd00::2/128 dev vA src fd00::1 table 100")
	assert.NotContains(t, strings.Join(f.Fix.Commands, "\n"), "accept_local", "accept_local is IPv4 only")
	for _, c := range d.Findings[1:] {
		assert.Equal(t, RoleConsequence, c.Role)
	}
}

// TestFindingsLocalRouteIsIPv6Only: an IPv4 lab whose route-out answer is local is not
// local-route (IPv4 honours rxe's output interface; that is another story).
func TestFindingsLocalRouteIsIPv6Only(t *testing.T) {
	ev := seedV6Like(healthyEvidence())
	for i := range ev.Directions {
		ev.Directions[i].Family = scenario.FamilyIPv4
	}
	ev.Traffic.Batches[0].Family = ""
	d := Conclude(ev)
	assert.NotContains(t, d.Codes(), CodeLocalRoute)
}
