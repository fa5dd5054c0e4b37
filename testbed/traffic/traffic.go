package traffic

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/rocebed/rocebed/rdma/verbs"
	"github.com/rocebed/rocebed/testbed/counters"
	"github.com/rocebed/rocebed/testbed/scenario"
)

// FailureClass is how a traffic batch went wrong, as observed. Expectations (Failure) are
// matched against it together with the counters (MatchExpectation).
type FailureClass string

const (
	// ClassConnectTimeout: modify-QP-to-RTR (RC) or address-handle creation (UD) failed with
	// ETIMEDOUT: the RDMA core could not resolve the peer's MAC.
	ClassConnectTimeout FailureClass = "connect-timeout"
	// ClassConnectError: the connection failed another way.
	ClassConnectError FailureClass = "connect-error"
	// ClassRetryExceeded: the requester got IBV_WC_RETRY_EXC_ERR: no ACK after retry_cnt
	// retransmissions.
	ClassRetryExceeded FailureClass = "retry-exceeded"
	// ClassErrorCompletion: some other completion had a non-success status.
	ClassErrorCompletion FailureClass = "error-completion"
	// ClassMissingCompletions: completions were still missing at the deadline, or the receiver
	// stopped making progress after the sender finished.
	ClassMissingCompletions FailureClass = "missing-completions"
	// ClassPayloadMismatch: a receive completed with the wrong length or content.
	ClassPayloadMismatch FailureClass = "payload-mismatch"
	// ClassNotOnWire: every completion arrived, but the counters do not show the packets
	// crossing the cable (the NICs did not move, or lo did).
	ClassNotOnWire FailureClass = "not-on-wire"
	// ClassPeerLost: in a two-host lab, the other host's rocebed stopped answering during the
	// batch (it was killed, or its host or the management link went away).
	ClassPeerLost FailureClass = "peer-lost"
)

// Roles of the two ends of a batch.
const (
	RoleSender   = "sender"
	RoleReceiver = "receiver"
	// RoleEcho marks the completions of a ping-pong's way back: the receiver's SEND of each
	// message and the sender's RECV of it.
	RoleEcho = "echo"
)

// CompletionRecord is one polled work completion, as the report keeps it.
type CompletionRecord struct {
	Side      string         `json:"side"` // "a" or "b"
	Role      string         `json:"role"` // RoleSender, RoleReceiver or RoleEcho
	Device    string         `json:"device"`
	WRID      uint64         `json:"wr_id"`
	Status    verbs.WCStatus `json:"-"`
	Opcode    verbs.WCOpcode `json:"-"`
	ByteLen   uint32         `json:"byte_len"`
	QPN       uint32         `json:"qp_num"`
	SrcQP     uint32         `json:"src_qp"`
	WCFlags   uint32         `json:"wc_flags"`
	VendorErr uint32         `json:"vendor_err"`
	// AtMS is when the completion was polled, in ms since the batch's clock started, just
	// before its first send was posted (0.2–0.3 ms before, for a send stream in the guest).
	AtMS float64 `json:"at_ms"`
	// Payload is "ok", or what is wrong with the received data; empty for sends and failures.
	Payload string `json:"payload,omitempty"`
}

// MarshalJSON adds the status and opcode by name (and number), so the JSON reads like
// ibv_poll_cq(3).
func (c CompletionRecord) MarshalJSON() ([]byte, error) {
	type plain CompletionRecord
	return json.Marshal(struct {
		plain
		Status     string `json:"status"`
		StatusCode uint32 `json:"status_code"`
		StatusText string `json:"status_text"`
		Opcode     string `json:"opcode"`
		OpcodeCode uint32 `json:"opcode_code"`
	}{plain(c), c.Status.CName(), uint32(c.Status), c.Status.String(), c.opcodeName(), uint32(c.Opcode)})
}

// UnmarshalJSON reads what MarshalJSON writes, status and opcode from their numbers: the two
// hosts of a two-host lab send each other their completions this way.
func (c *CompletionRecord) UnmarshalJSON(b []byte) error {
	type plain CompletionRecord
	var x struct {
		plain
		StatusCode uint32 `json:"status_code"`
		OpcodeCode uint32 `json:"opcode_code"`
	}
	if err := json.Unmarshal(b, &x); err != nil {
		return err
	}
	*c = CompletionRecord(x.plain)
	c.Status, c.Opcode = verbs.WCStatus(x.StatusCode), verbs.WCOpcode(x.OpcodeCode)
	return nil
}

// opcodeName is the opcode's C name; ibv_poll_cq(3) defines it only for successful
// completions, so failures say so instead of a misleading name.
func (c CompletionRecord) opcodeName() string {
	if c.Status != verbs.WCSuccess {
		return "(undefined: status is not success)"
	}
	return c.Opcode.CName()
}

// End is one end of a batch: its device, address and QP, and how long its connect took.
type End struct {
	Side string `json:"side"`
	// Host is set in a two-host lab ("a" or "b"): the batch's counters name this end's
	// device and NIC "HOST/NAME" (counters.Snapshot.Qualified).
	Host     string `json:"host,omitempty"`
	Device   string `json:"device"`
	NIC      string `json:"nic"`
	Address  string `json:"address"`
	GIDIndex int    `json:"gid_index"`
	QPN      uint32 `json:"qp_num,omitempty"`
	// RTRMS is how long modify-to-RTR took (RC), or address-handle creation (UD sender).
	RTRMS float64 `json:"rtr_ms,omitempty"`
}

// name is the end's device for people: "rxe0", or in a two-host lab "a/rxe0", as its counters
// are named.
func (e End) name() string { return e.counter(e.Device) }

// counter names one of this end's netdevs or devices as the batch's counters do.
func (e End) counter(name string) string {
	if e.Host == "" {
		return name
	}
	return e.Host + "/" + name
}

// BatchResult is one traffic item in one direction: what was done, every completion, the
// counter deltas, and the verdict.
type BatchResult struct {
	Traffic   string             `json:"traffic"`
	Transport scenario.Transport `json:"transport"`
	Direction scenario.Direction `json:"direction"` // a->b or b->a
	// Family is the address family of the endpoints' GIDs (the traffic item's, or the
	// endpoints' own).
	Family     scenario.Family    `json:"family,omitempty"`
	Messages   int                `json:"messages"`
	Size       int                `json:"size"`
	RC         *scenario.RCParams `json:"rc,omitempty"`
	DeadlineMS int                `json:"deadline_ms"`
	Window     int                `json:"window,omitempty"`
	PathMTU    int                `json:"path_mtu,omitempty"`

	Sender   End `json:"sender"`
	Receiver End `json:"receiver"`

	// ConnectMS is QP setup through RTS (RC: both sides; UD: address handle included).
	ConnectMS        float64 `json:"connect_ms"`
	ConnectError     string  `json:"connect_error,omitempty"`
	ConnectTimedOut  bool    `json:"connect_timed_out,omitempty"`
	ConnectFailedEnd string  `json:"connect_failed_side,omitempty"`

	Posted      int                `json:"posted"`
	Completions []CompletionRecord `json:"completions"`
	// ElapsedMS runs from the first send to the end of polling.
	ElapsedMS float64 `json:"elapsed_ms"`
	// StopReason says why polling ended: "complete", "deadline", "receiver idle", "cancelled".
	StopReason string  `json:"stop_reason,omitempty"`
	MsgPerSec  float64 `json:"msg_per_sec,omitempty"`
	// MeanLatencyUS is the mean time from posting a send to its completion; with up to 128
	// sends in flight it includes queueing, so compare it only between runs of one scenario.
	MeanLatencyUS float64 `json:"mean_latency_us,omitempty"`
	// OneWayUS is the time from posting each SEND to polling its RECV completion, over the
	// messages that arrived: with one message in flight, a one-way latency; with more, their
	// queueing too. ib_send_lat's t_typical is a half round trip: HalfRoundTripUS.
	OneWayUS *LatencyStats `json:"one_way_us,omitempty"`
	// Pattern is the traffic's pattern (empty: stream).
	Pattern scenario.Pattern `json:"pattern,omitempty"`
	// HalfRoundTripUS is, for a ping-pong, half the time from posting each SEND to polling
	// its echo: what ib_send_lat measures, whose t_typical is this median.
	HalfRoundTripUS *LatencyStats `json:"half_round_trip_us,omitempty"`
	// Counters are the deltas over the batch.
	Counters *counters.Snapshot `json:"counters,omitempty"`
	// Errors are problems that did not decide the verdict (closing verbs objects, counters).
	Errors []string `json:"errors,omitempty"`
	// PeerLost says, in a two-host lab, how the other host's rocebed stopped answering during
	// the batch; the batch then holds what this host recorded.
	PeerLost string `json:"peer_lost,omitempty"`

	Class   FailureClass `json:"failure,omitempty"`
	Pass    bool         `json:"pass"`
	Verdict string       `json:"verdict"`
	// ExpectationMet and Expectation say whether the scenario's expectation holds for this
	// batch, and why.
	ExpectationMet bool   `json:"expectation_met"`
	Expectation    string `json:"expectation"`
}

// LatencyStats summarises latencies in µs, as perftest's latency tests print them.
type LatencyStats struct {
	N      int     `json:"n"`
	Min    float64 `json:"min"`
	Median float64 `json:"median"` // perftest's t_typical
	Mean   float64 `json:"mean"`
	P99    float64 `json:"p99"`
	Max    float64 `json:"max"`
}

// NewLatencyStats summarises us (nil when it is empty). The median of an even count is the
// upper middle value, as perftest takes it.
func NewLatencyStats(us []float64) *LatencyStats {
	if len(us) == 0 {
		return nil
	}
	s := slices.Clone(us)
	slices.Sort(s)
	var sum float64
	for _, v := range s {
		sum += v
	}
	return &LatencyStats{N: len(s), Min: s[0], Median: s[len(s)/2], Mean: sum / float64(len(s)),
		P99: s[min(len(s)-1, len(s)*99/100)], Max: s[len(s)-1]}
}

// Name is "traffic direction", the JUnit test case name.
func (b *BatchResult) Name() string { return fmt.Sprintf("%s %s", b.Traffic, b.Direction) }

// Report is the outcome of a lab's traffic.
type Report struct {
	Lab        string          `json:"lab"`
	File       string          `json:"file,omitempty"`
	Expect     scenario.Expect `json:"expect"`
	Started    time.Time       `json:"started"`
	DurationMS float64         `json:"duration_ms"`
	Batches    []*BatchResult  `json:"batches"`
	// Pass is true when every batch passed (traffic worked).
	Pass bool `json:"pass"`
	// ExpectationMet is true when every batch met the scenario's expectation.
	ExpectationMet bool   `json:"expectation_met"`
	Verdict        string `json:"verdict"`
}

// Finish judges every batch and the report as a whole. Run calls it; tests call it on
// constructed results.
func (r *Report) Finish() {
	r.Pass, r.ExpectationMet = true, true
	var failed []string
	for _, b := range r.Batches {
		b.Judge()
		b.ExpectationMet, b.Expectation = MatchExpectation(b, r.Expect)
		r.Pass = r.Pass && b.Pass
		if !b.ExpectationMet {
			r.ExpectationMet = false
			failed = append(failed, b.Name())
		}
	}
	want := string(r.Expect.Result)
	if r.Expect.Result == scenario.ResultFail {
		want = "fail with " + string(r.Expect.Failure)
	}
	switch {
	case len(r.Batches) == 0:
		r.ExpectationMet = false
		r.Verdict = "no traffic ran: the scenario declares none"
	case r.ExpectationMet:
		r.Verdict = fmt.Sprintf("expectation held (%s) in %d of %d batches", want, len(r.Batches), len(r.Batches))
	default:
		r.Verdict = fmt.Sprintf("expectation (%s) did not hold in %s", want, strings.Join(failed, ", "))
	}
}

// Judge sets Class, Pass and Verdict from what the batch recorded: the connect outcome, every
// completion and the counter deltas. Pass needs, on the receiver, one successful IBV_WC_RECV
// of the right length with an intact payload per message; on the sender, one successful
// IBV_WC_SEND per message; and counters showing the packets crossed the cable.
func (b *BatchResult) Judge() {
	b.Class, b.Pass = "", false
	if b.PeerLost != "" {
		b.Class = ClassPeerLost
		t := b.tally()
		b.Verdict = fmt.Sprintf("%s; recorded so far: %d/%d IBV_WC_SEND ok, %d/%d IBV_WC_RECV ok; %s",
			b.PeerLost, t.sendOK, b.Messages, t.recvOK, b.Messages, b.evidence(true))
		return
	}
	if b.ConnectError != "" {
		b.Class = ClassConnectError
		if b.ConnectTimedOut {
			b.Class = ClassConnectTimeout
		}
		b.Verdict = fmt.Sprintf("connect failed after %s: %s; %s", FormatMS(b.ConnectMS), b.ConnectError, b.evidence(false))
		return
	}
	t := b.tally()
	switch {
	case t.retryExc != nil:
		b.Class = ClassRetryExceeded
		b.Verdict = fmt.Sprintf("requester %s got %s (%s) %s after the first send; responder %s: %s; %s",
			b.Sender.name(), t.retryExc.Status.CName(), t.retryExc.Status, FormatMS(t.retryExc.AtMS),
			b.Receiver.name(), t.recvSummary(), b.evidence(true))
	case t.firstErr != nil:
		b.Class = ClassErrorCompletion
		e := t.firstErr
		b.Verdict = fmt.Sprintf("%s %s got %s (%s, vendor_err %#x) on wr %d %s after the first send; %d/%d sends ok, %d/%d receives ok; %s",
			e.Role, e.Device, e.Status.CName(), e.Status, e.VendorErr, e.WRID, FormatMS(e.AtMS),
			t.sendOK, b.Messages, t.recvOK, b.Messages, b.evidence(true))
	case t.badPayload != nil:
		b.Class = ClassPayloadMismatch
		at, total := b.Receiver.name(), t.recvTotal
		if t.badPayload.Role == RoleEcho {
			at, total = b.Sender.name()+" (echoes)", t.echoRecvTotal
		}
		b.Verdict = fmt.Sprintf("%d of %d receives on %s carried wrong data; first: wr %d: %s",
			t.badCount, total, at, t.badPayload.WRID, t.badPayload.Payload)
	case t.sendOK < b.Messages || t.recvOK < b.Messages || b.Pattern == scenario.PatternPingPong && (t.echoSendOK < b.Messages || t.echoRecvOK < b.Messages):
		b.Class = ClassMissingCompletions
		why := b.StopReason
		if why == "" {
			why = "polling stopped"
		}
		echoes := ""
		if b.Pattern == scenario.PatternPingPong {
			echoes = fmt.Sprintf("; back: %s got %d of %d IBV_WC_SEND, %s got %d of %d IBV_WC_RECV",
				b.Receiver.name(), t.echoSendOK, b.Messages, b.Sender.name(), t.echoRecvOK, b.Messages)
		}
		b.Verdict = fmt.Sprintf("%s (%s after the first send): %s got %d of %d IBV_WC_SEND, %s got %d of %d IBV_WC_RECV%s; %s",
			why, FormatMS(b.ElapsedMS), b.Sender.name(), t.sendOK, b.Messages, b.Receiver.name(), t.recvOK, b.Messages, echoes, b.evidence(true))
	default:
		if ok, what := b.onWire(t.sendOK); !ok {
			b.Class = ClassNotOnWire
			b.Verdict = fmt.Sprintf("all %d messages completed, but the packets did not provably cross the cable: %s", b.Messages, what)
			return
		}
		b.Pass = true
		rate := ""
		if b.MsgPerSec > 0 {
			rate = fmt.Sprintf(", %.0f msg/s", b.MsgPerSec)
		}
		if b.MeanLatencyUS > 0 {
			rate += fmt.Sprintf(", mean post→completion %.0f µs", b.MeanLatencyUS)
		}
		if b.OneWayUS != nil {
			rate += fmt.Sprintf(", median one-way %.1f µs", b.OneWayUS.Median)
		}
		back := ""
		if b.Pattern == scenario.PatternPingPong {
			back = fmt.Sprintf(" and back (%d IBV_WC_SEND + %d IBV_WC_RECV ok)", t.echoSendOK, t.echoRecvOK)
			if b.HalfRoundTripUS != nil {
				rate += fmt.Sprintf(", median half round trip %.1f µs", b.HalfRoundTripUS.Median)
			}
		}
		b.Verdict = fmt.Sprintf("%d × %d B %s → %s%s: %d IBV_WC_SEND + %d IBV_WC_RECV ok, payloads intact, in %s%s; connect %s; %s",
			b.Messages, b.Size, b.Sender.name(), b.Receiver.name(), back, t.sendOK, t.recvOK, FormatMS(t.lastAt), rate, FormatMS(b.ConnectMS), b.evidence(true))
	}
}

// tally counts a batch's completions by side and outcome.
type tally struct {
	sendOK, recvOK, recvTotal, badCount   int
	echoSendOK, echoRecvOK, echoRecvTotal int // a ping-pong's way back
	retryExc, firstErr, badPayload        *CompletionRecord
	lastAt                                float64
}

func (t tally) recvSummary() string {
	if t.recvTotal == 0 {
		return "no completion"
	}
	return fmt.Sprintf("%d completions, %d ok", t.recvTotal, t.recvOK)
}

func (b *BatchResult) tally() tally {
	var t tally
	wantLen := uint32(b.Size)
	if b.Transport == scenario.TransportUD {
		wantLen += verbs.GRHLen
	}
	for i := range b.Completions {
		c := &b.Completions[i]
		t.lastAt = max(t.lastAt, c.AtMS)
		switch {
		case c.Role == RoleReceiver:
			t.recvTotal++
		case c.Role == RoleEcho && c.Side == b.Sender.Side: // the echoes arrive at the sender
			t.echoRecvTotal++
		}
		if c.Status != verbs.WCSuccess {
			if c.Status == verbs.WCRetryExcErr && c.Role == RoleSender && t.retryExc == nil {
				t.retryExc = c
			}
			// A flush follows the first real error; the first real error is the story.
			if t.firstErr == nil || (t.firstErr.Status == verbs.WCWRFlushErr && c.Status != verbs.WCWRFlushErr) {
				t.firstErr = c
			}
			continue
		}
		switch c.Role {
		case RoleSender:
			if c.Opcode == verbs.WCSend {
				t.sendOK++
			}
		case RoleEcho:
			switch {
			case c.Opcode == verbs.WCSend:
				t.echoSendOK++
			case c.Opcode == verbs.WCRecv && c.Payload == "ok":
				t.echoRecvOK++
			default:
				t.badCount++
				if t.badPayload == nil {
					cp := *c
					cp.Payload = "echo: " + c.Payload
					t.badPayload = &cp
				}
			}
		case RoleReceiver:
			bad := ""
			switch {
			case c.Opcode != verbs.WCRecv:
				bad = fmt.Sprintf("opcode %s, want IBV_WC_RECV", c.Opcode.CName())
			case c.ByteLen != wantLen:
				bad = fmt.Sprintf("byte_len %d, want %d", c.ByteLen, wantLen)
			case c.Payload != "ok":
				bad = c.Payload
				if bad == "" {
					bad = "payload not checked"
				}
			}
			if bad != "" {
				t.badCount++
				if t.badPayload == nil {
					cp := *c
					cp.Payload = bad
					t.badPayload = &cp
				}
				continue
			}
			t.recvOK++
		}
	}
	return t
}

// onWire checks that n messages crossed the cable: the sender's RDMA device sent and the
// receiver's received at least n packets, the sender's NIC transmitted and the receiver's NIC
// received at least n, RC ACKs came back, and lo carried fewer than n. It returns what moved.
func (b *BatchResult) onWire(n int) (bool, string) {
	if b.Counters == nil {
		return false, "no counters were read"
	}
	cable := counters.Cable{SenderDevice: b.Sender.counter(b.Sender.Device), ReceiverDevice: b.Receiver.counter(b.Receiver.Device),
		SenderNIC: b.Sender.counter(b.Sender.NIC), ReceiverNIC: b.Receiver.counter(b.Receiver.NIC), IPv6: b.Family == scenario.FamilyIPv6}
	if b.Sender.Host != "" {
		cable.Loopbacks = []string{b.Sender.counter("lo"), b.Receiver.counter("lo")}
	}
	missing := b.Counters.Crossed(cable, uint64(n), b.Transport == scenario.TransportRC)
	if len(missing) > 0 {
		return false, strings.Join(missing, "; ") + " (" + b.evidence(true) + ")"
	}
	return true, ""
}

// evidence lists what moved: both devices' packets, the NICs, lo and the martian counter.
func (b *BatchResult) evidence(withLinks bool) string {
	c := b.Counters
	if c == nil {
		return "no counters"
	}
	var parts []string
	for _, dev := range []string{b.Sender.counter(b.Sender.Device), b.Receiver.counter(b.Receiver.Device)} {
		sent, ok1 := c.SentPackets(dev)
		rcvd, ok2 := c.ReceivedPackets(dev)
		if ok1 || ok2 {
			s := fmt.Sprintf("%s sent_pkts +%d rcvd_pkts +%d", dev, sent, rcvd)
			if r, ok := c.RDMACounter(dev, counters.CounterRXECompRetryErr); ok && r > 0 {
				s += fmt.Sprintf(" completer_retry_err +%d", r)
			}
			parts = append(parts, s)
		}
	}
	if withLinks {
		nics := []string{b.Sender.counter(b.Sender.NIC), b.Receiver.counter(b.Receiver.NIC), "lo"}
		if b.Sender.Host != "" {
			nics = []string{nics[0], nics[1], b.Sender.counter("lo"), b.Receiver.counter("lo")}
		}
		for _, nic := range nics {
			if l, ok := c.Link(nic); ok {
				p := fmt.Sprintf("%s tx +%d rx +%d", nic, l.TxPackets, l.RxPackets)
				if b.Family == scenario.FamilyIPv6 {
					p += fmt.Sprintf(" (IPv6 in +%d)", l.IP6InReceives)
				}
				parts = append(parts, p)
			}
		}
	}
	if m, ok := b.kernelCounter(counters.CounterMartianSrc); ok {
		parts = append(parts, fmt.Sprintf("in_martian_src +%d", m))
	}
	for _, k := range []string{counters.CounterRPFilter, counters.CounterUDPNoPorts} {
		if v, ok := b.kernelCounter(k); ok && v > 0 {
			parts = append(parts, fmt.Sprintf("%s +%d", k, v))
		}
	}
	return strings.Join(parts, ", ")
}

// kernelCounter is a kernel counter of the batch: the lab's namespace's, or in a two-host lab
// the sum over both hosts (read: whether either host's was read).
func (b *BatchResult) kernelCounter(name string) (uint64, bool) {
	if b.Sender.Host == "" {
		return b.Counters.KernelCounter(name)
	}
	if b.Counters == nil {
		return 0, false
	}
	_, okS := b.Counters.KernelCounter(b.Sender.counter(name))
	_, okR := b.Counters.KernelCounter(b.Receiver.counter(name))
	total, _ := b.Counters.KernelSum(name)
	return total, okS || okR
}

// MatchExpectation says whether batch b meets the scenario's expectation, and why. A pass
// expectation needs the batch to pass; a failure expectation needs the named failure to have
// happened, proven by the class and the counters:
//
//   - neighbor-martian: connect-timeout, in_martian_src moved, and no RoCE packet was sent;
//   - martian-source: retry-exceeded (RC) or missing receives (UD), no completion on the
//     responder, and in_martian_src moved by at least the packets the requester sent;
//   - retry-exceeded: retry-exceeded;
//   - rp-filter: the connection or the traffic failed and TcpExt.IPReversePathFilter moved;
//   - no-listener: retry-exceeded or missing completions, and Udp.NoPorts moved (in any of the
//     lab's namespaces);
//   - local-route: retry-exceeded (RC) or missing receives (UD), no completion on the
//     responder, the requester sent packets that neither reached its NIC nor the other
//     device: routed to lo, rxe looped them back into the sending device (see
//     scenario.FailureLocalRoute).
func MatchExpectation(b *BatchResult, e scenario.Expect) (bool, string) {
	if e.Result != scenario.ResultFail {
		if b.Pass {
			return true, "passed as expected"
		}
		return false, fmt.Sprintf("expected pass, got %s", b.Class)
	}
	if b.Pass {
		return false, fmt.Sprintf("expected failure %s, but the traffic passed", e.Failure)
	}
	c := b.Counters
	martian, mok := b.kernelCounter(counters.CounterMartianSrc)
	sentS, sok := c.SentPackets(b.Sender.counter(b.Sender.Device))
	sentR, rok := c.SentPackets(b.Receiver.counter(b.Receiver.Device))
	got := fmt.Sprintf("got %s", b.Class)
	switch e.Failure {
	case scenario.FailureNeighborMartian:
		switch {
		case b.Class != ClassConnectTimeout:
			return false, "expected neighbor-martian (connect-timeout with martian drops), " + got
		case !mok || martian == 0:
			return false, "connect timed out, but in_martian_src did not move: the neighbour failed for another reason"
		case !sok || !rok || sentS != 0 || sentR != 0:
			return false, fmt.Sprintf("connect timed out, but RoCE packets were sent (%s +%d, %s +%d)", b.Sender.name(), sentS, b.Receiver.name(), sentR)
		}
		return true, fmt.Sprintf("neighbor-martian: connect timed out, in_martian_src +%d, no RoCE packet sent", martian)
	case scenario.FailureMartianSource:
		recv := 0
		for _, c := range b.Completions {
			if c.Role == RoleReceiver {
				recv++
			}
		}
		// RC retries and gives up; UD has no ACKs, so the receives are simply missing.
		what := "retry exceeded"
		if b.Class == ClassMissingCompletions {
			what = "receives missing"
		}
		switch {
		case b.Class != ClassRetryExceeded && !(b.Class == ClassMissingCompletions && b.Transport == scenario.TransportUD):
			return false, "expected martian-source (retry-exceeded, or missing UD receives, with martian drops), " + got
		case recv > 0:
			return false, fmt.Sprintf("%s, but the responder has %d completions", what, recv)
		case !sok || sentS == 0:
			return false, what + ", but the requester's sent_pkts did not move"
		case !mok || martian < sentS:
			return false, fmt.Sprintf("%s, but in_martian_src +%d < %d packets sent: the packets died elsewhere", what, martian, sentS)
		}
		return true, fmt.Sprintf("martian-source: %s, no responder completion, in_martian_src +%d ≥ %d packets sent", what, martian, sentS)
	case scenario.FailureRetryExceeded:
		if b.Class != ClassRetryExceeded {
			return false, "expected retry-exceeded, " + got
		}
		return true, "retry-exceeded: the requester got IBV_WC_RETRY_EXC_ERR"
	case scenario.FailureRPFilter:
		v, ok := b.kernelCounter(counters.CounterRPFilter)
		switch {
		case b.Class != ClassConnectTimeout && b.Class != ClassRetryExceeded && b.Class != ClassMissingCompletions:
			return false, "expected rp-filter, " + got
		case !ok || v == 0:
			return false, fmt.Sprintf("%s, but %s did not move", b.Class, counters.CounterRPFilter)
		}
		return true, fmt.Sprintf("rp-filter: %s with %s +%d", b.Class, counters.CounterRPFilter, v)
	case scenario.FailureLocalRoute:
		recv := 0
		for _, c := range b.Completions {
			if c.Role == RoleReceiver {
				recv++
			}
		}
		lo, _ := c.Link("lo")
		tx, txok := c.Link(b.Sender.NIC)
		rcvd, rcok := c.ReceivedPackets(b.Receiver.Device)
		switch {
		case b.Class != ClassRetryExceeded && !(b.Class == ClassMissingCompletions && b.Transport == scenario.TransportUD):
			return false, "expected local-route (retry-exceeded, or missing UD receives, with the packets kept off the cable), " + got
		case recv > 0:
			return false, fmt.Sprintf("%s, but the responder has %d completions", b.Class, recv)
		case !sok || sentS == 0:
			return false, string(b.Class) + ", but the requester's sent_pkts did not move"
		case !txok || tx.TxPackets >= sentS:
			return false, fmt.Sprintf("%s, but %s tx +%d ≥ %d packets sent: they reached the cable", b.Class, b.Sender.NIC, tx.TxPackets, sentS)
		case !rcok || rcvd > 0:
			return false, fmt.Sprintf("%s, but %s rcvd_pkts +%d: packets arrived", b.Class, b.Receiver.Device, rcvd)
		}
		return true, fmt.Sprintf("local-route: %s, no responder completion, %s sent_pkts +%d but %s tx +%d, lo tx +%d, %s rcvd_pkts +0: the packets never reached a NIC", b.Class, b.Sender.Device, sentS, b.Sender.NIC, tx.TxPackets, lo.TxPackets, b.Receiver.Device)
	case scenario.FailureNoListener:
		noPorts, _ := c.KernelSum(counters.CounterUDPNoPorts)
		switch {
		case b.Class != ClassRetryExceeded && b.Class != ClassMissingCompletions:
			return false, "expected no-listener, " + got
		case noPorts == 0:
			return false, fmt.Sprintf("%s, but Udp.NoPorts did not move", b.Class)
		}
		return true, fmt.Sprintf("no-listener: %s with Udp.NoPorts +%d", b.Class, noPorts)
	}
	return false, fmt.Sprintf("failure %q cannot be matched: rocebed knows %v", e.Failure, scenario.KnownFailures)
}

// fmtMS prints a duration in ms as "58.1 ms" or "1.02 s".
func FormatMS(ms float64) string {
	if ms >= 1000 {
		return fmt.Sprintf("%.2f s", ms/1000)
	}
	return fmt.Sprintf("%.1f ms", ms)
}

// WriteText prints the report for humans: one block per batch, then the verdict.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	want := string(r.Expect.Result)
	if r.Expect.Result == scenario.ResultFail {
		want += " (" + string(r.Expect.Failure) + ")"
	}
	fmt.Fprintf(&b, "lab %s", r.Lab)
	if r.File != "" {
		fmt.Fprintf(&b, " (%s)", r.File)
	}
	fmt.Fprintf(&b, ": expect %s\n", want)
	for _, x := range r.Batches {
		mark := "ok  "
		if !x.ExpectationMet {
			mark = "FAIL"
		}
		outcome := "pass"
		if !x.Pass {
			outcome = string(x.Class)
		}
		fmt.Fprintf(&b, "%s %s: %s %s(%s %s) → %s(%s %s), %d × %d B: %s\n", mark, x.Name(), x.Transport,
			x.Sender.name(), x.Sender.NIC, x.Sender.Address, x.Receiver.name(), x.Receiver.NIC, x.Receiver.Address,
			x.Messages, x.Size, outcome)
		fmt.Fprintf(&b, "     %s\n", x.Verdict)
		conn := fmt.Sprintf("connect %s", FormatMS(x.ConnectMS))
		if x.Transport == scenario.TransportRC {
			conn += fmt.Sprintf(" (RTR %s %s, %s %s)", x.Sender.name(), FormatMS(x.Sender.RTRMS), x.Receiver.name(), FormatMS(x.Receiver.RTRMS))
		} else if x.Sender.RTRMS > 0 {
			conn += fmt.Sprintf(" (address handle %s)", FormatMS(x.Sender.RTRMS))
		}
		if x.PathMTU > 0 {
			conn += fmt.Sprintf(", path MTU %d", x.PathMTU)
		}
		if x.RC != nil && x.RC.Timeout != nil && x.RC.RetryCount != nil {
			conn += fmt.Sprintf(", timeout %d retry_cnt %d", *x.RC.Timeout, *x.RC.RetryCount)
		}
		fmt.Fprintf(&b, "     %s; %d completions recorded\n", conn, len(x.Completions))
		fmt.Fprintf(&b, "     expectation: %s\n", x.Expectation)
		for _, e := range x.Errors {
			fmt.Fprintf(&b, "     note: %s\n", e)
		}
	}
	res := "EXPECTATION HELD"
	if !r.ExpectationMet {
		res = "EXPECTATION FAILED"
	}
	fmt.Fprintf(&b, "%s: %s (%s)\n", res, r.Verdict, FormatMS(r.DurationMS))
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteJSON writes the report, every completion included, as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false) // "a->b", not "a-\u003eb"
	return enc.Encode(r)
}

// JUnit XML, the subset every CI reader accepts: testsuites > testsuite > testcase > failure.
type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name       string          `xml:"name,attr"`
	Tests      int             `xml:"tests,attr"`
	Failures   int             `xml:"failures,attr"`
	Errors     int             `xml:"errors,attr"`
	Skipped    int             `xml:"skipped,attr"`
	Time       string          `xml:"time,attr"`
	Timestamp  string          `xml:"timestamp,attr,omitempty"`
	Properties []junitProperty `xml:"properties>property,omitempty"`
	Cases      []junitCase     `xml:"testcase"`
}

type junitProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitFailure `xml:"failure,omitempty"`
	SystemOut *junitText    `xml:"system-out,omitempty"`
}

// junitText is element text as CDATA, so multi-line output stays readable.
type junitText struct {
	Text string `xml:",cdata"`
}

type junitFailure struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",chardata"`
}

func junitSeconds(ms float64) string { return fmt.Sprintf("%.3f", ms/1000) }

// WriteJUnit writes the report as JUnit XML: one testsuite for the scenario, one testcase per
// batch and direction, failed when the batch did not meet the expectation.
func (r *Report) WriteJUnit(w io.Writer) error { return WriteJUnit(w, r) }

// WriteJUnit writes reports as one JUnit document, one testsuite per scenario.
func WriteJUnit(w io.Writer, reports ...*Report) error {
	doc := junitSuites{Name: "rocebed"}
	var total float64
	for _, r := range reports {
		s := junitSuite{Name: r.Lab, Time: junitSeconds(r.DurationMS)}
		if !r.Started.IsZero() {
			s.Timestamp = r.Started.UTC().Format("2006-01-02T15:04:05")
		}
		s.Properties = []junitProperty{{"file", r.File}, {"expect.result", string(r.Expect.Result)}}
		if r.Expect.Failure != "" {
			s.Properties = append(s.Properties, junitProperty{"expect.failure", string(r.Expect.Failure)})
		}
		for _, b := range r.Batches {
			c := junitCase{Name: b.Name(), Classname: "rocebed." + r.Lab, Time: junitSeconds(b.ConnectMS + b.ElapsedMS)}
			out := b.Verdict + "\n"
			if b.Counters != nil {
				out += b.Counters.String()
			}
			c.SystemOut = &junitText{out}
			if !b.ExpectationMet {
				typ := string(b.Class)
				if typ == "" {
					typ = "pass"
				}
				c.Failure = &junitFailure{Message: b.Expectation, Type: typ, Text: b.Verdict}
				s.Failures++
			}
			s.Cases = append(s.Cases, c)
			s.Tests++
		}
		if len(r.Batches) == 0 {
			s.Cases = append(s.Cases, junitCase{Name: "traffic", Classname: "rocebed." + r.Lab, Time: "0.000",
				Failure: &junitFailure{Message: r.Verdict, Type: "no-traffic", Text: r.Verdict}})
			s.Tests, s.Failures = 1, 1
		}
		doc.Tests += s.Tests
		doc.Failures += s.Failures
		total += r.DurationMS
		doc.Suites = append(doc.Suites, s)
	}
	doc.Time = junitSeconds(total)
	return writeJUnitDoc(w, doc)
}

// JUnitCase is a testcase that is not a traffic batch: a lab that did not come up, or a
// user's command run on a lab. Failure empty means it passed.
type JUnitCase struct {
	Lab, Name  string
	MS         float64
	Failure    string // the failure's type, e.g. "up", "local-loopback"
	Message    string
	Output     string // system-out
	Properties map[string]string
}

// WriteJUnitCases writes cases as one JUnit document, one testsuite per lab, so a CI job has a
// report to read whatever happened.
func WriteJUnitCases(w io.Writer, cases ...JUnitCase) error {
	doc := junitSuites{Name: "rocebed"}
	var total float64
	for _, jc := range cases {
		s := junitSuite{Name: jc.Lab, Tests: 1, Time: junitSeconds(jc.MS)}
		for _, k := range slices.Sorted(maps.Keys(jc.Properties)) {
			s.Properties = append(s.Properties, junitProperty{k, jc.Properties[k]})
		}
		c := junitCase{Name: jc.Name, Classname: "rocebed." + jc.Lab, Time: junitSeconds(jc.MS)}
		if jc.Output != "" {
			c.SystemOut = &junitText{jc.Output}
		}
		if jc.Failure != "" {
			c.Failure = &junitFailure{Message: jc.Message, Type: jc.Failure, Text: jc.Message}
			s.Failures = 1
		}
		s.Cases = []junitCase{c}
		doc.Tests++
		doc.Failures += s.Failures
		total += jc.MS
		doc.Suites = append(doc.Suites, s)
	}
	doc.Time = junitSeconds(total)
	return writeJUnitDoc(w, doc)
}

func writeJUnitDoc(w io.Writer, doc junitSuites) error {
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}

// ExpectationError says the lab ran but the scenario's expectation did not hold. Exit code 1.
type ExpectationError struct {
	Lab string
	Msg string
}

func (e *ExpectationError) Error() string { return fmt.Sprintf("lab %q: %s", e.Lab, e.Msg) }
