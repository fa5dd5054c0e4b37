package traffic

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"strings"
	"testing"

	"github.com/rocebed/rocebed/rdma"
	"github.com/rocebed/rocebed/rdma/verbs"
	"github.com/rocebed/rocebed/testbed/counters"
	"github.com/rocebed/rocebed/testbed/scenario"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// wire returns counter deltas of n messages that crossed vA → vB: both rxe devices and both
// NICs moved by n, lo did not, no martian drop.
func wire(n uint64) *counters.Snapshot {
	return &counters.Snapshot{
		RDMA: map[string]rdma.Counters{
			"rxe0": {"sent_pkts": n, "rcvd_pkts": n, "completer_retry_err": 0},
			"rxe1": {"sent_pkts": n, "rcvd_pkts": n},
		},
		Links: map[string]counters.LinkCounters{
			"vA": {TxPackets: n, RxPackets: n}, "vB": {TxPackets: n, RxPackets: n}, "lo": {},
		},
		Kernel: map[string]uint64{counters.CounterMartianSrc: 0, counters.CounterRPFilter: 0, counters.CounterUDPNoPorts: 0},
	}
}

// okBatch is a batch of n messages where every completion arrived intact and the cable moved.
func okBatch(tr scenario.Transport, n int) *BatchResult {
	b := &BatchResult{
		Traffic: "t", Transport: tr, Direction: scenario.DirectionAToB, Messages: n, Size: 1024, DeadlineMS: 30000,
		Sender:    End{Side: "a", Device: "rxe0", NIC: "vA", Address: "10.10.0.1", QPN: 0x11},
		Receiver:  End{Side: "b", Device: "rxe1", NIC: "vB", Address: "10.10.0.2", QPN: 0x12},
		ConnectMS: 1.5, ElapsedMS: 10, StopReason: "complete", Posted: n, Counters: wire(uint64(n)),
	}
	recvLen := uint32(1024)
	if tr == scenario.TransportUD {
		recvLen += verbs.GRHLen
	}
	for i := range n {
		b.Completions = append(b.Completions,
			CompletionRecord{Side: "a", Role: RoleSender, Device: "rxe0", WRID: uint64(i), Status: verbs.WCSuccess, Opcode: verbs.WCSend, QPN: 0x11, AtMS: float64(i)},
			CompletionRecord{Side: "b", Role: RoleReceiver, Device: "rxe1", WRID: uint64(i), Status: verbs.WCSuccess, Opcode: verbs.WCRecv, ByteLen: recvLen, QPN: 0x12, SrcQP: 0x11, AtMS: float64(i) + 0.5, Payload: "ok"})
	}
	return b
}

// connectTimeoutBatch is the no-fix lab: RTR timed out, ARPs dropped as martians, no RoCE packet.
func connectTimeoutBatch() *BatchResult {
	b := okBatch(scenario.TransportRC, 10)
	b.Completions, b.Posted, b.ElapsedMS, b.StopReason = nil, 0, 0, ""
	b.ConnectMS, b.ConnectError, b.ConnectTimedOut = 1020, "modify RC qp 0x11 on rxe0 to RTR: connection timed out", true
	b.Counters = wire(0)
	b.Counters.Kernel[counters.CounterMartianSrc] = 3
	b.Counters.Links["vA"] = counters.LinkCounters{TxPackets: 3}
	b.Counters.Links["vB"] = counters.LinkCounters{RxPackets: 3}
	return b
}

// retryBatch is the seed: the requester's sends retried and died as martian sources.
func retryBatch(martian uint64) *BatchResult {
	b := okBatch(scenario.TransportRC, 10)
	b.Completions = []CompletionRecord{{Side: "a", Role: RoleSender, Device: "rxe0", WRID: 0, Status: verbs.WCRetryExcErr, QPN: 0x11, VendorErr: 0, AtMS: 58}}
	for i := 1; i < 10; i++ {
		b.Completions = append(b.Completions, CompletionRecord{Side: "a", Role: RoleSender, Device: "rxe0", WRID: uint64(i), Status: verbs.WCWRFlushErr, QPN: 0x11, AtMS: 58.1})
	}
	b.StopReason = "receiver idle"
	b.Counters = wire(0)
	b.Counters.RDMA["rxe0"]["sent_pkts"] = 30
	b.Counters.RDMA["rxe0"]["completer_retry_err"] = 3
	b.Counters.Links["vA"] = counters.LinkCounters{TxPackets: 30}
	b.Counters.Links["vB"] = counters.LinkCounters{RxPackets: 30}
	b.Counters.Kernel[counters.CounterMartianSrc] = martian
	return b
}

// loRouteBatch is seed-v6 as measured on 6.1: rxe0 sent 30 packets, none reached vA (nor lo:
// rxe looped them back into rxe0), and rxe1 received none.
func loRouteBatch() *BatchResult {
	b := retryBatch(0)
	b.Family = scenario.FamilyIPv6
	b.Sender.Address, b.Receiver.Address = "fd00::1", "fd00::2"
	b.Counters.Links["vA"] = counters.LinkCounters{RxPackets: 1, IP6InReceives: 1}
	b.Counters.Links["vB"] = counters.LinkCounters{TxPackets: 1}
	return b
}

// udMartianBatch is the seed with UD: the sends complete locally, every packet dies as a
// martian source, and no receive completes.
func udMartianBatch() *BatchResult {
	b := okBatch(scenario.TransportUD, 10)
	var sends []CompletionRecord
	for _, c := range b.Completions {
		if c.Role == RoleSender {
			sends = append(sends, c)
		}
	}
	b.Completions, b.StopReason = sends, "receiver idle for 1s after the sender finished"
	b.Counters = wire(0)
	b.Counters.RDMA["rxe0"]["sent_pkts"] = 10
	b.Counters.Links["vA"] = counters.LinkCounters{TxPackets: 10}
	b.Counters.Links["vB"] = counters.LinkCounters{RxPackets: 10}
	b.Counters.Kernel[counters.CounterMartianSrc] = 10
	return b
}

// TestHardwareCountersFallBackToPMA: a hardware RoCE NIC has no sent_pkts; its IB PMA
// port_xmit_packets/port_rcv_packets prove the wire instead.
func TestHardwareCountersFallBackToPMA(t *testing.T) {
	b := okBatch(scenario.TransportRC, 10)
	b.Sender.Device = "mlx5_0"
	b.Counters.RDMA["mlx5_0"] = rdma.Counters{"port_xmit_packets": 10, "port_rcv_packets": 10, "rx_write_requests": 0}
	assert.True(t, judged(b).Pass, b.Verdict)
	assert.Contains(t, b.Verdict, "mlx5_0 sent_pkts +10 rcvd_pkts +10")
	b.Counters.RDMA["mlx5_0"]["port_xmit_packets"] = 2
	assert.False(t, judged(b).Pass)
	assert.Contains(t, b.Verdict, "mlx5_0 sent_pkts +2 < 10")
}

func judged(b *BatchResult) *BatchResult { b.Judge(); return b }

func TestJudgePass(t *testing.T) {
	for _, tr := range []scenario.Transport{scenario.TransportRC, scenario.TransportUD} {
		b := judged(okBatch(tr, 100))
		assert.True(t, b.Pass, b.Verdict)
		assert.Empty(t, b.Class)
		assert.Contains(t, b.Verdict, "100 IBV_WC_SEND + 100 IBV_WC_RECV ok")
		assert.Contains(t, b.Verdict, "rxe0 sent_pkts +100")
		assert.Contains(t, b.Verdict, "lo tx +0 rx +0")
		ok, why := MatchExpectation(b, scenario.Expect{Result: scenario.ResultPass})
		assert.True(t, ok, why)
		ok, why = MatchExpectation(b, scenario.Expect{Result: scenario.ResultFail, Failure: scenario.FailureRetryExceeded})
		assert.False(t, ok, why)
		assert.Contains(t, why, "passed")
	}
}

func TestJudgeFailures(t *testing.T) {
	cases := []struct {
		name  string
		b     func() *BatchResult
		class FailureClass
		text  string
	}{
		{"connect timeout", connectTimeoutBatch, ClassConnectTimeout, "connect failed after 1.02 s: modify RC qp 0x11 on rxe0 to RTR: connection timed out; rxe0 sent_pkts +0 rcvd_pkts +0, rxe1 sent_pkts +0 rcvd_pkts +0, in_martian_src +3"},
		{"connect error", func() *BatchResult { b := connectTimeoutBatch(); b.ConnectTimedOut = false; return b }, ClassConnectError, "connect failed"},
		{"retry exceeded", func() *BatchResult { return retryBatch(30) }, ClassRetryExceeded, "requester rxe0 got IBV_WC_RETRY_EXC_ERR (transport retry counter exceeded) 58.0 ms after the first send; responder rxe1: no completion"},
		{"error completion", func() *BatchResult {
			b := okBatch(scenario.TransportRC, 4)
			b.Completions[2].Status = verbs.WCRemAccessErr
			return b
		}, ClassErrorCompletion, "sender rxe0 got IBV_WC_REM_ACCESS_ERR"},
		{"flush is not the story", func() *BatchResult {
			b := okBatch(scenario.TransportRC, 4)
			b.Completions[2].Status = verbs.WCWRFlushErr
			b.Completions[4].Status = verbs.WCLocLenErr
			return b
		}, ClassErrorCompletion, "IBV_WC_LOC_LEN_ERR"},
		{"payload mismatch", func() *BatchResult {
			b := okBatch(scenario.TransportRC, 4)
			b.Completions[3].Payload = "payload a->b seq 1 (1024 bytes): body byte at offset 99 is 0x00, want 0x17"
			return b
		}, ClassPayloadMismatch, "1 of 4 receives on rxe1 carried wrong data; first: wr 1: payload a->b seq 1"},
		{"wrong byte_len", func() *BatchResult {
			b := okBatch(scenario.TransportUD, 4)
			b.Completions[1].ByteLen = 1024 // the GRH is missing
			return b
		}, ClassPayloadMismatch, "byte_len 1024, want 1064"},
		{"missing receives", func() *BatchResult {
			b := okBatch(scenario.TransportUD, 4)
			b.Completions = b.Completions[:6]
			b.StopReason = "deadline 30000 ms reached"
			return b
		}, ClassMissingCompletions, "deadline 30000 ms reached (10.0 ms after the first send): rxe0 got 3 of 4 IBV_WC_SEND, rxe1 got 3 of 4 IBV_WC_RECV"},
		{"lo moved", func() *BatchResult {
			b := okBatch(scenario.TransportRC, 100)
			b.Counters.Links["lo"] = counters.LinkCounters{TxPackets: 200, RxPackets: 200}
			b.Counters.Links["vA"] = counters.LinkCounters{}
			return b
		}, ClassNotOnWire, "vA tx_packets +0 < 100"},
		{"counters unreadable", func() *BatchResult {
			b := okBatch(scenario.TransportRC, 100)
			delete(b.Counters.RDMA, "rxe1")
			return b
		}, ClassNotOnWire, "rxe1 rcvd_pkts unreadable"},
		{"IPv6 packets not counted as IPv6 on the receiving NIC", func() *BatchResult {
			b := okBatch(scenario.TransportRC, 100)
			b.Family = scenario.FamilyIPv6
			return b
		}, ClassNotOnWire, "vB Ip6InReceives +0 < 100"},
		{"no ACKs came back", func() *BatchResult {
			b := okBatch(scenario.TransportRC, 100)
			b.Counters.RDMA["rxe1"]["sent_pkts"] = 0
			return b
		}, ClassNotOnWire, "rxe1 sent_pkts (ACKs) +0 < 1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := judged(c.b())
			assert.False(t, b.Pass)
			assert.Equal(t, c.class, b.Class)
			assert.Contains(t, b.Verdict, c.text)
		})
	}
}

func TestUDNeedsNoACKs(t *testing.T) {
	b := okBatch(scenario.TransportUD, 10)
	b.Counters.RDMA["rxe1"]["sent_pkts"] = 0
	b.Counters.RDMA["rxe0"]["rcvd_pkts"] = 0
	assert.True(t, judged(b).Pass, b.Verdict)
}

func TestMatchExpectation(t *testing.T) {
	nm := scenario.Expect{Result: scenario.ResultFail, Failure: scenario.FailureNeighborMartian}
	ms := scenario.Expect{Result: scenario.ResultFail, Failure: scenario.FailureMartianSource}
	re := scenario.Expect{Result: scenario.ResultFail, Failure: scenario.FailureRetryExceeded}
	rp := scenario.Expect{Result: scenario.ResultFail, Failure: scenario.FailureRPFilter}
	nl := scenario.Expect{Result: scenario.ResultFail, Failure: scenario.FailureNoListener}
	lr := scenario.Expect{Result: scenario.ResultFail, Failure: scenario.FailureLocalRoute}
	cases := []struct {
		name string
		b    func() *BatchResult
		e    scenario.Expect
		ok   bool
		why  string
	}{
		{"neighbor-martian", connectTimeoutBatch, nm, true, "in_martian_src +3, no RoCE packet sent"},
		{"neighbor-martian without martian drops", func() *BatchResult {
			b := connectTimeoutBatch()
			b.Counters.Kernel[counters.CounterMartianSrc] = 0
			return b
		}, nm, false, "did not move"},
		{"neighbor-martian but packets sent", func() *BatchResult {
			b := connectTimeoutBatch()
			b.Counters.RDMA["rxe0"]["sent_pkts"] = 4
			return b
		}, nm, false, "RoCE packets were sent"},
		{"neighbor-martian vs retry", func() *BatchResult { return retryBatch(30) }, nm, false, "got retry-exceeded"},
		{"connect timeout vs pass", connectTimeoutBatch, scenario.Expect{Result: scenario.ResultPass}, false, "expected pass, got connect-timeout"},
		{"martian-source", func() *BatchResult { return retryBatch(30) }, ms, true, "in_martian_src +30 ≥ 30 packets sent"},
		{"martian-source, too few martians", func() *BatchResult { return retryBatch(5) }, ms, false, "in_martian_src +5 < 30"},
		{"martian-source with a responder CQE", func() *BatchResult {
			b := retryBatch(30)
			b.Completions = append(b.Completions, CompletionRecord{Role: RoleReceiver, Device: "rxe1", Status: verbs.WCSuccess, Opcode: verbs.WCRecv, ByteLen: 1024, Payload: "ok"})
			return b
		}, ms, false, "responder has 1 completions"},
		{"martian-source vs connect timeout", connectTimeoutBatch, ms, false, "got connect-timeout"},
		{"martian-source on UD: receives missing", udMartianBatch, ms, true, "receives missing, no responder completion, in_martian_src +10 ≥ 10"},
		{"martian-source on RC needs the retry error", func() *BatchResult {
			b := udMartianBatch()
			b.Transport = scenario.TransportRC
			return b
		}, ms, false, "got missing-completions"},
		{"retry-exceeded", func() *BatchResult { return retryBatch(0) }, re, true, "IBV_WC_RETRY_EXC_ERR"},
		{"rp-filter", func() *BatchResult {
			b := retryBatch(0)
			b.Counters.Kernel[counters.CounterRPFilter] = 30
			return b
		}, rp, true, "TcpExt.IPReversePathFilter +30"},
		{"rp-filter without its counter", func() *BatchResult { return retryBatch(0) }, rp, false, "did not move"},
		{"no-listener in another netns", func() *BatchResult {
			b := retryBatch(0)
			b.Counters.Kernel["peer/"+counters.CounterUDPNoPorts] = 30
			return b
		}, nl, true, "Udp.NoPorts +30"},
		{"no-listener without NoPorts", func() *BatchResult { return retryBatch(0) }, nl, false, "did not move"},
		{"local-route", loRouteBatch, lr, true, "local-route: retry-exceeded, no responder completion, rxe0 sent_pkts +30 but vA tx +0, lo tx +0, rxe1 rcvd_pkts +0: the packets never reached a NIC"},
		{"local-route, but on the cable", func() *BatchResult { return retryBatch(0) }, lr, false, "vA tx +30 ≥ 30 packets sent: they reached the cable"},
		{"local-route, but received", func() *BatchResult {
			b := loRouteBatch()
			b.Counters.RDMA["rxe1"]["rcvd_pkts"] = 30
			return b
		}, lr, false, "rxe1 rcvd_pkts +30: packets arrived"},
		{"local-route, and the cable too", func() *BatchResult {
			b := loRouteBatch()
			b.Counters.Links["vA"] = counters.LinkCounters{TxPackets: 30}
			return b
		}, lr, false, "vA tx +30 ≥ 30 packets sent: they reached the cable"},
		{"local-route vs connect timeout", connectTimeoutBatch, lr, false, "expected local-route"},
		{"unknown failure", func() *BatchResult { return retryBatch(0) }, scenario.Expect{Result: scenario.ResultFail, Failure: "gremlins"}, false, "cannot be matched"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := judged(c.b())
			ok, why := MatchExpectation(b, c.e)
			assert.Equal(t, c.ok, ok, why)
			assert.Contains(t, why, c.why)
		})
	}
}

func TestReportFinish(t *testing.T) {
	r := &Report{Lab: "seed", Expect: scenario.Expect{Result: scenario.ResultFail, Failure: scenario.FailureMartianSource},
		Batches: []*BatchResult{retryBatch(30)}}
	r.Finish()
	assert.False(t, r.Pass)
	assert.True(t, r.ExpectationMet, r.Verdict)
	assert.Contains(t, r.Verdict, "expectation held (fail with martian-source)")

	// Every batch must meet it: a second direction that passed breaks a failure expectation.
	r.Batches = append(r.Batches, okBatch(scenario.TransportRC, 10))
	r.Batches[1].Direction = scenario.DirectionBToA
	r.Finish()
	assert.False(t, r.ExpectationMet)
	assert.Contains(t, r.Verdict, "did not hold in t b->a")

	r = &Report{Lab: "x", Expect: scenario.Expect{Result: scenario.ResultPass}}
	r.Finish()
	assert.False(t, r.ExpectationMet, "no traffic is not a pass")
}

func sampleReport() *Report {
	r := &Report{Lab: "same-host", File: "builtin:same-host", Expect: scenario.Expect{Result: scenario.ResultPass}, DurationMS: 1234,
		Batches: []*BatchResult{okBatch(scenario.TransportRC, 5), connectTimeoutBatch()}}
	r.Batches[1].Direction = scenario.DirectionBToA
	r.Batches[1].Traffic = `quote"&<less>`
	r.Finish()
	return r
}

func TestWriteJUnitIsValidJUnit(t *testing.T) {
	r := sampleReport()
	var buf bytes.Buffer
	require.NoError(t, r.WriteJUnit(&buf))
	require.True(t, strings.HasPrefix(buf.String(), "<?xml"))

	var doc struct {
		XMLName  xml.Name `xml:"testsuites"`
		Tests    int      `xml:"tests,attr"`
		Failures int      `xml:"failures,attr"`
		Time     string   `xml:"time,attr"`
		Suites   []struct {
			Name     string `xml:"name,attr"`
			Tests    int    `xml:"tests,attr"`
			Failures int    `xml:"failures,attr"`
			Time     string `xml:"time,attr"`
			Cases    []struct {
				Name      string `xml:"name,attr"`
				Classname string `xml:"classname,attr"`
				Time      string `xml:"time,attr"`
				Failure   *struct {
					Message string `xml:"message,attr"`
					Type    string `xml:"type,attr"`
					Text    string `xml:",chardata"`
				} `xml:"failure"`
				SystemOut string `xml:"system-out"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	require.NoError(t, xml.Unmarshal(buf.Bytes(), &doc), buf.String())
	assert.Equal(t, 2, doc.Tests)
	assert.Equal(t, 1, doc.Failures)
	assert.Equal(t, "1.234", doc.Time)
	require.Len(t, doc.Suites, 1)
	s := doc.Suites[0]
	assert.Equal(t, "same-host", s.Name)
	assert.Equal(t, 2, s.Tests)
	assert.Equal(t, 1, s.Failures)
	require.Len(t, s.Cases, 2)
	assert.Equal(t, "t a->b", s.Cases[0].Name)
	assert.Nil(t, s.Cases[0].Failure)
	assert.Contains(t, s.Cases[0].SystemOut, "5 IBV_WC_SEND + 5 IBV_WC_RECV ok")
	assert.Equal(t, `quote"&<less> b->a`, s.Cases[1].Name, "attributes must survive escaping")
	require.NotNil(t, s.Cases[1].Failure)
	assert.Equal(t, "connect-timeout", s.Cases[1].Failure.Type)
	assert.Contains(t, s.Cases[1].Failure.Message, "expected pass, got connect-timeout")
	assert.Contains(t, s.Cases[1].Failure.Text, "connection timed out")
	assert.Equal(t, "1.020", s.Cases[1].Time)
	for _, c := range s.Cases {
		assert.Equal(t, "rocebed.same-host", c.Classname)
	}
}

func TestWriteJSONHasEveryCompletion(t *testing.T) {
	r := sampleReport()
	r.Batches = append(r.Batches, retryBatch(30))
	var buf bytes.Buffer
	require.NoError(t, r.WriteJSON(&buf))
	var doc struct {
		Lab            string `json:"lab"`
		ExpectationMet bool   `json:"expectation_met"`
		Batches        []struct {
			Verdict     string           `json:"verdict"`
			Failure     string           `json:"failure"`
			Completions []map[string]any `json:"completions"`
			Counters    struct {
				RDMA   map[string]map[string]uint64 `json:"rdma"`
				Kernel map[string]uint64            `json:"kernel"`
			} `json:"counters"`
		} `json:"batches"`
	}
	require.NoError(t, json.Unmarshal(buf.Bytes(), &doc))
	assert.Equal(t, "same-host", doc.Lab)
	require.Len(t, doc.Batches, 3)
	for i, b := range r.Batches {
		require.Len(t, doc.Batches[i].Completions, len(b.Completions))
		assert.Equal(t, string(b.Class), doc.Batches[i].Failure)
		for j, c := range b.Completions {
			got := doc.Batches[i].Completions[j]
			assert.Equal(t, c.Status.CName(), got["status"])
			assert.EqualValues(t, c.WRID, got["wr_id"])
			assert.EqualValues(t, c.ByteLen, got["byte_len"])
			assert.EqualValues(t, c.QPN, got["qp_num"])
			for _, k := range []string{"side", "role", "device", "opcode", "src_qp", "wc_flags", "vendor_err", "at_ms", "status_text"} {
				assert.Contains(t, got, k)
			}
		}
	}
	first := doc.Batches[2].Completions[0]
	assert.Equal(t, "IBV_WC_RETRY_EXC_ERR", first["status"])
	assert.Equal(t, "transport retry counter exceeded", first["status_text"])
	assert.Contains(t, first["opcode"], "undefined")
	assert.Equal(t, "IBV_WC_RECV", doc.Batches[0].Completions[1]["opcode"])
	assert.EqualValues(t, 30, doc.Batches[2].Counters.Kernel[counters.CounterMartianSrc])
	assert.EqualValues(t, 5, doc.Batches[0].Counters.RDMA["rxe0"]["sent_pkts"])
}

func TestWriteText(t *testing.T) {
	var buf bytes.Buffer
	require.NoError(t, sampleReport().WriteText(&buf))
	out := buf.String()
	assert.Contains(t, out, "lab same-host (builtin:same-host): expect pass")
	assert.Contains(t, out, "ok   t a->b: rc rxe0(vA 10.10.0.1) → rxe1(vB 10.10.0.2), 5 × 1024 B: pass")
	assert.Contains(t, out, "FAIL quote\"&<less> b->a")
	assert.Contains(t, out, "connect-timeout")
	assert.Contains(t, out, "EXPECTATION FAILED")
}

// TestIPv6BatchPasses: an IPv6 batch passes when the receiving NIC counted the packets as
// IPv6, and its verdict shows the IPv6 counts of both NICs and lo.
func TestIPv6BatchPasses(t *testing.T) {
	b := okBatch(scenario.TransportRC, 100)
	b.Family = scenario.FamilyIPv6
	b.Sender.Address, b.Receiver.Address = "fd00::1", "fd00::2"
	b.Counters.Links["vA"] = counters.LinkCounters{TxPackets: 100, RxPackets: 100, IP6InReceives: 100}
	b.Counters.Links["vB"] = counters.LinkCounters{TxPackets: 100, RxPackets: 100, IP6InReceives: 100}
	assert.True(t, judged(b).Pass, b.Verdict)
	assert.Contains(t, b.Verdict, "vA tx +100 rx +100 (IPv6 in +100), vB tx +100 rx +100 (IPv6 in +100), lo tx +0 rx +0 (IPv6 in +0)")
}

// pingPongBatch is okBatch as a ping-pong: every message also came back, b's SEND and a's
// RECV of it each completed, the echo intact.
func pingPongBatch(n int) *BatchResult {
	b := okBatch(scenario.TransportRC, n)
	b.Pattern = scenario.PatternPingPong
	b.HalfRoundTripUS = NewLatencyStats([]float64{40, 41, 45})
	for i := range n {
		b.Completions = append(b.Completions,
			CompletionRecord{Side: "b", Role: RoleEcho, Device: "rxe1", WRID: echoWRID | uint64(i), Status: verbs.WCSuccess, Opcode: verbs.WCSend, QPN: 0x12, AtMS: float64(i) + 0.6},
			CompletionRecord{Side: "a", Role: RoleEcho, Device: "rxe0", WRID: echoWRID | uint64(i), Status: verbs.WCSuccess, Opcode: verbs.WCRecv, ByteLen: 1024, QPN: 0x11, SrcQP: 0x12, AtMS: float64(i) + 0.7, Payload: "ok"})
	}
	return b
}

func TestJudgePingPong(t *testing.T) {
	b := judged(pingPongBatch(10))
	assert.True(t, b.Pass, b.Verdict)
	assert.Contains(t, b.Verdict, "rxe0 → rxe1 and back (10 IBV_WC_SEND + 10 IBV_WC_RECV ok): 10 IBV_WC_SEND + 10 IBV_WC_RECV ok")
	assert.Contains(t, b.Verdict, "median half round trip 41.0 µs")

	// The way back is judged as the way there: a missing echo, a bad one, one in error.
	lost := pingPongBatch(10)
	lost.Completions = lost.Completions[:len(lost.Completions)-1]
	lost.StopReason = "deadline 30000 ms reached"
	judged(lost)
	assert.Equal(t, ClassMissingCompletions, lost.Class, lost.Verdict)
	assert.Contains(t, lost.Verdict, "back: rxe1 got 10 of 10 IBV_WC_SEND, rxe0 got 9 of 10 IBV_WC_RECV")

	bad := pingPongBatch(10)
	bad.Completions[len(bad.Completions)-1].Payload = "payload b->a seq 9 (1024 bytes): body byte at offset 7 is 0x00, want 0x17"
	judged(bad)
	assert.Equal(t, ClassPayloadMismatch, bad.Class, bad.Verdict)
	assert.Contains(t, bad.Verdict, "1 of 10 receives on rxe0 (echoes) carried wrong data")
	assert.Contains(t, bad.Verdict, "echo: payload b->a seq 9")

	failed := pingPongBatch(10)
	failed.Completions[len(failed.Completions)-2].Status = verbs.WCRemOpErr
	judged(failed)
	assert.Equal(t, ClassErrorCompletion, failed.Class, failed.Verdict)
	assert.Contains(t, failed.Verdict, "echo rxe1 got IBV_WC_REM_OP_ERR")

	// The same completions judged as a stream pass: the echoes are only counted for a ping-pong.
	stream := pingPongBatch(10)
	stream.Pattern = ""
	stream.Completions = stream.Completions[:len(stream.Completions)-2]
	assert.True(t, judged(stream).Pass, stream.Verdict)
}
