package diagnose

import (
	"bytes"
	"encoding/json"

	"github.com/rocebed/rocebed/testbed/counters"
	"github.com/rocebed/rocebed/testbed/scenario"
	"github.com/rocebed/rocebed/testbed/traffic"
)

// BatchEvidence is one traffic batch as the rules read it: the batch itself, as traffic
// reported it, with its completions summed up in Tally.
//
// Evidence keeps of a batch what its JSON carries (batchWire): name, transport, direction,
// messages, both ends' device and NIC, the connect outcome, the verdict and the counters.
// BatchEvidenceOf passes the batch through that same form, so evidence taken live holds
// exactly what recorded evidence replays, and a rule cannot come to depend on a field
// (completions, size, timings) that a replay would not have.
type BatchEvidence struct {
	traffic.BatchResult
	Tally CompletionTally
}

// CompletionTally sums a batch's completions: all of them and the successful ones, per role,
// and the first one that failed.
type CompletionTally struct {
	SenderCompletions   int `json:"sender_completions"`
	SenderOK            int `json:"sender_ok"`
	ReceiverCompletions int `json:"receiver_completions"`
	ReceiverOK          int `json:"receiver_ok"`
	// FirstError is the first failed completion's status (IBV_WC_RETRY_EXC_ERR) and when it
	// was polled, in ms since the first send.
	FirstError   CompletionStatus `json:"first_error,omitempty"`
	FirstErrorMS float64          `json:"first_error_ms,omitempty"`
}

// AllCompleted reports whether every message completed successfully on both ends.
func (b *BatchEvidence) AllCompleted() bool {
	return b.Tally.SenderOK >= b.Messages && b.Tally.ReceiverOK >= b.Messages
}

// Cable is what the batch's packets move when they cross the cable.
func (b *BatchEvidence) Cable() counters.Cable {
	return counters.Cable{SenderDevice: b.Sender.Device, ReceiverDevice: b.Receiver.Device, SenderNIC: b.Sender.NIC, ReceiverNIC: b.Receiver.NIC,
		IPv6: b.Family == scenario.FamilyIPv6}
}

// BatchEvidenceOf is what the evidence keeps of a traffic batch (see BatchEvidence).
func BatchEvidenceOf(b *traffic.BatchResult) BatchEvidence {
	return batchWireOf(b, TallyCompletions(b.Completions)).evidence()
}

// batchWire is BatchEvidence as the evidence JSON spells it (testdata/*.json and
// `diagnose --json`): flat, in this order. batchWireOf and evidence are the only two places
// that map it to and from traffic.BatchResult; TestBatchWireRoundTrip checks that every
// field survives both.
type batchWire struct {
	Name           string               `json:"name"`
	Transport      scenario.Transport   `json:"transport"`
	Direction      scenario.Direction   `json:"direction"`
	Family         scenario.Family      `json:"family,omitempty"`
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
	CompletionTally
	Counters *counters.Snapshot `json:"counters,omitempty"`
}

func batchWireOf(b *traffic.BatchResult, t CompletionTally) batchWire {
	return batchWire{
		Name: b.Traffic, Transport: b.Transport, Direction: b.Direction, Family: b.Family, Messages: b.Messages,
		SenderDevice: b.Sender.Device, SenderNIC: b.Sender.NIC, ReceiverDevice: b.Receiver.Device, ReceiverNIC: b.Receiver.NIC,
		Pass: b.Pass, Class: b.Class, Verdict: b.Verdict,
		ConnectMS: b.ConnectMS, ConnectError: b.ConnectError, ConnectTimeout: b.ConnectTimedOut,
		CompletionTally: t, Counters: b.Counters,
	}
}

func (w batchWire) evidence() BatchEvidence {
	return BatchEvidence{
		BatchResult: traffic.BatchResult{
			Traffic: w.Name, Transport: w.Transport, Direction: w.Direction, Family: w.Family, Messages: w.Messages,
			Sender: traffic.End{Device: w.SenderDevice, NIC: w.SenderNIC}, Receiver: traffic.End{Device: w.ReceiverDevice, NIC: w.ReceiverNIC},
			Pass: w.Pass, Class: w.Class, Verdict: w.Verdict,
			ConnectMS: w.ConnectMS, ConnectError: w.ConnectError, ConnectTimedOut: w.ConnectTimeout,
			Counters: w.Counters,
		},
		Tally: w.CompletionTally,
	}
}

// MarshalJSON writes batchWire. It leaves HTML characters ("a->b") as they are: the encoder
// that called it escapes them when it is set to.
func (b BatchEvidence) MarshalJSON() ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(batchWireOf(&b.BatchResult, b.Tally)); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// UnmarshalJSON reads the form MarshalJSON writes; an unknown field is an error, so evidence
// that no longer matches the model does not replay silently.
func (b *BatchEvidence) UnmarshalJSON(data []byte) error {
	var w batchWire
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return err
	}
	*b = w.evidence()
	return nil
}
