package diagnose

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/rocebed/rocebed/rdma/verbs"
	"github.com/rocebed/rocebed/testbed/counters"
	"github.com/rocebed/rocebed/testbed/scenario"
	"github.com/rocebed/rocebed/testbed/traffic"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Every field of the evidence JSON of a batch maps to BatchEvidence and back: a field added to
// batchWire but forgotten in batchWireOf or evidence fails here.
func TestBatchWireRoundTrip(t *testing.T) {
	var w batchWire
	fillDistinct(t, reflect.ValueOf(&w).Elem(), new(int))
	be := w.evidence()
	assert.Equal(t, w, batchWireOf(&be.BatchResult, be.Tally))
}

// fillDistinct gives every field of v a different non-zero value.
func fillDistinct(t *testing.T, v reflect.Value, n *int) {
	*n++
	switch v.Kind() {
	case reflect.Struct:
		for i := range v.NumField() {
			fillDistinct(t, v.Field(i), n)
		}
	case reflect.String:
		v.SetString("s" + strings.Repeat("x", *n))
	case reflect.Int, reflect.Int64:
		v.SetInt(int64(*n))
	case reflect.Uint32:
		v.SetUint(uint64(*n))
	case reflect.Float64:
		v.SetFloat(float64(*n) + 0.5)
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		v.Elem().FieldByName("Kernel").Set(reflect.ValueOf(map[string]uint64{"k": uint64(*n)}))
	default:
		t.Fatalf("fillDistinct: no value for a %s", v.Type())
	}
}

func exampleBatch() *traffic.BatchResult {
	return &traffic.BatchResult{
		Traffic: "rc-both", Transport: scenario.TransportRC, Direction: scenario.DirectionAToB, Messages: 2, Size: 1024,
		RC: &scenario.RCParams{}, DeadlineMS: 500, Posted: 4, ElapsedMS: 60,
		Sender:   traffic.End{Side: "a", Device: "rxe0", NIC: "vA", Address: "10.10.0.1", QPN: 17},
		Receiver: traffic.End{Side: "b", Device: "rxe1", NIC: "vB", Address: "10.10.0.2", QPN: 18},
		Class:    traffic.ClassRetryExceeded, Verdict: "requester rxe0 got IBV_WC_RETRY_EXC_ERR",
		Counters: &counters.Snapshot{Kernel: map[string]uint64{counters.CounterMartianSrc: 30}},
		Completions: []traffic.CompletionRecord{
			{Role: traffic.RoleReceiver, Status: verbs.WCSuccess, AtMS: 1},
			{Role: traffic.RoleSender, Status: verbs.WCSuccess, AtMS: 2},
			{Role: traffic.RoleSender, Status: verbs.WCRetryExcErr, AtMS: 58},
			{Role: traffic.RoleReceiver, Status: verbs.WCWRFlushErr, AtMS: 60},
		},
	}
}

func TestBatchEvidenceOfTalliesAndKeepsWhatReplays(t *testing.T) {
	be := BatchEvidenceOf(exampleBatch())
	assert.Equal(t, CompletionTally{SenderCompletions: 2, SenderOK: 1, ReceiverCompletions: 2, ReceiverOK: 1,
		FirstError: CompletionStatus(verbs.WCRetryExcErr), FirstErrorMS: 58}, be.Tally)
	assert.Equal(t, "rc-both", be.Traffic)
	assert.Equal(t, "rxe0", be.Sender.Device)
	assert.Equal(t, "vB", be.Receiver.NIC)
	assert.False(t, be.AllCompleted())
	// What the JSON does not carry is not in live evidence either.
	assert.Zero(t, be.Size)
	assert.Nil(t, be.Completions)
	assert.Empty(t, be.Sender.Address)

	data, err := json.Marshal(be)
	require.NoError(t, err)
	var back BatchEvidence
	require.NoError(t, json.Unmarshal(data, &back))
	assert.Equal(t, be, back)
}

// The JSON of a batch keeps the names, order and spellings evidence has always had.
func TestBatchEvidenceJSON(t *testing.T) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	require.NoError(t, enc.Encode(BatchEvidenceOf(exampleBatch())))
	assert.Equal(t, `{"name":"rc-both","transport":"rc","direction":"a->b","messages":2,"sender_device":"rxe0","sender_nic":"vA",`+
		`"receiver_device":"rxe1","receiver_nic":"vB","pass":false,"class":"retry-exceeded","verdict":"requester rxe0 got IBV_WC_RETRY_EXC_ERR",`+
		`"connect_ms":0,"sender_completions":2,"sender_ok":1,"receiver_completions":2,"receiver_ok":1,"first_error":"IBV_WC_RETRY_EXC_ERR",`+
		`"first_error_ms":58,"counters":{"taken":"0001-01-01T00:00:00Z","kernel":{"rt_cache.in_martian_src":30}}}`+"\n", b.String())
	// An encoder that escapes HTML still does, as it did before.
	data, err := json.Marshal(BatchEvidenceOf(exampleBatch()))
	require.NoError(t, err)
	assert.Contains(t, string(data), `"direction":"a-\u003eb"`)

	var be BatchEvidence
	assert.ErrorContains(t, json.Unmarshal([]byte(`{"name":"x","size":3}`), &be), "size", "an unknown field is an error")
}
