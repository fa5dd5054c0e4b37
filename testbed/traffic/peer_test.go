package traffic

import (
	"encoding/json"
	"testing"

	"github.com/rocebed/rocebed/rdma/verbs"
	"github.com/rocebed/rocebed/testbed/scenario"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// halves splits a one-host batch into what each host of a two-host lab records: its own end,
// its completions, its host's counters (named after the host), with the other end as it
// learned it from the other host (no RTR time).
func halves(b *BatchResult) (snd, rcv *BatchResult) {
	b.Sender.Host, b.Receiver.Host = "a", "b"
	b.Sender.RTRMS, b.Receiver.RTRMS = 1.25, 2.5
	wireA, wireB := wire(uint64(b.Messages)), wire(uint64(b.Messages))
	delete(wireA.RDMA, "rxe1")
	delete(wireA.Links, "vB")
	delete(wireB.RDMA, "rxe0")
	delete(wireB.Links, "vA")
	s, r := *b, *b
	s.Completions, r.Completions = nil, nil
	for _, c := range b.Completions {
		if c.Role == RoleSender {
			s.Completions = append(s.Completions, c)
		} else {
			r.Completions = append(r.Completions, c)
		}
	}
	s.Receiver.RTRMS, r.Sender.RTRMS = 0, 0
	s.Counters, r.Counters = wireA.Qualified("a"), wireB.Qualified("b")
	s.StopReason, r.StopReason = "complete", "complete"
	s.MsgPerSec, r.MeanLatencyUS = 0, 0
	r.ConnectMS = 3
	return &s, &r
}

// roundTrip is a half as the other host decodes it.
func roundTrip(t *testing.T, b *BatchResult) *BatchResult {
	t.Helper()
	_, back, err := halfJSON(b)
	require.NoError(t, err)
	return back
}

// TestMergeHalvesOneVerdict: both hosts merge the sender's and the receiver's halves — one from
// memory's encoded form, one from the wire — into the same batch, which passes on the counters
// of both hosts.
func TestMergeHalvesOneVerdict(t *testing.T) {
	for _, tr := range []scenario.Transport{scenario.TransportRC, scenario.TransportUD} {
		snd, rcv := halves(okBatch(tr, 20))
		onA := mergeHalves(roundTrip(t, snd), roundTrip(t, rcv))
		onB := mergeHalves(roundTrip(t, snd), roundTrip(t, rcv))
		onA.Judge()
		onB.Judge()
		assert.True(t, onA.Pass, onA.Verdict)
		assert.Equal(t, onA, onB, "both hosts judge the same batch")
		assert.Equal(t, 1.25, onA.Sender.RTRMS, "the sender's own end")
		assert.Equal(t, 2.5, onA.Receiver.RTRMS, "the receiver's own end")
		assert.Equal(t, 3.0, onA.ConnectMS, "the slower host's connect")
		assert.Len(t, onA.Completions, 40)
		assert.Equal(t, RoleSender, onA.Completions[0].Role, "the sender's completions first")
		assert.Equal(t, verbs.WCRecv, onA.Completions[39].Opcode, "opcodes survive the wire")
		assert.Contains(t, onA.Verdict, "a/rxe0 sent_pkts +20 rcvd_pkts +20, b/rxe1 sent_pkts +20 rcvd_pkts +20, a/vA tx +20 rx +20, b/vB tx +20 rx +20, a/lo tx +0 rx +0, b/lo tx +0 rx +0, in_martian_src +0")
		assert.Equal(t, "complete", onA.StopReason)

		// Either host's loopback carrying the packets fails the cable check.
		_, r2 := halves(okBatch(tr, 20))
		lo := r2.Counters.Links["b/lo"]
		lo.TxPackets = 20
		r2.Counters.Links["b/lo"] = lo
		bad := mergeHalves(roundTrip(t, snd), roundTrip(t, r2))
		bad.Judge()
		assert.Equal(t, ClassNotOnWire, bad.Class)
		assert.Contains(t, bad.Verdict, "b/lo moved by tx +20")
	}
}

// TestMergeHalvesConnectFailure: the end that could not connect says why, from its own host.
func TestMergeHalvesConnectFailure(t *testing.T) {
	snd, rcv := halves(connectTimeoutBatch())
	snd.ConnectError, snd.ConnectTimedOut = "", false
	rcv.ConnectError, rcv.ConnectTimedOut, rcv.ConnectFailedEnd = "modify RC qp 0x12 on rxe1 to RTR: connection timed out", true, "b"
	m := mergeHalves(roundTrip(t, snd), roundTrip(t, rcv))
	m.Judge()
	assert.Equal(t, ClassConnectTimeout, m.Class)
	assert.Equal(t, "b", m.ConnectFailedEnd)
	assert.Contains(t, m.Verdict, "rxe1 to RTR: connection timed out")
}

// TestPeerLostVerdict: a host whose peer went away judges the batch from its own half.
func TestPeerLostVerdict(t *testing.T) {
	snd, _ := halves(okBatch(scenario.TransportRC, 10))
	snd.Completions = snd.Completions[:4]
	snd.PeerLost = "host b (192.168.100.2:7471): connection closed (EOF): the other host's rocebed stopped answering"
	snd.Judge()
	assert.Equal(t, ClassPeerLost, snd.Class)
	assert.False(t, snd.Pass)
	assert.Contains(t, snd.Verdict, "host b (192.168.100.2:7471): connection closed")
	assert.Contains(t, snd.Verdict, "recorded so far: 4/10 IBV_WC_SEND ok, 0/10 IBV_WC_RECV ok")
	ok, why := MatchExpectation(snd, scenario.Expect{Result: scenario.ResultPass})
	assert.False(t, ok)
	assert.Equal(t, "expected pass, got peer-lost", why)
}

func TestCompletionRecordJSONRoundTrip(t *testing.T) {
	in := CompletionRecord{Side: "b", Role: RoleReceiver, Device: "rxe0", WRID: 9, Status: verbs.WCRetryExcErr, Opcode: verbs.WCRecv,
		ByteLen: 1064, QPN: 0x12, SrcQP: 0x11, WCFlags: 1, VendorErr: 0x81, AtMS: 1.5, Payload: "ok"}
	raw, err := json.Marshal(in)
	require.NoError(t, err)
	var out CompletionRecord
	require.NoError(t, json.Unmarshal(raw, &out))
	assert.Equal(t, in, out)
	assert.Contains(t, string(raw), `"status":"IBV_WC_RETRY_EXC_ERR"`)
}
