package traffic

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/rocebed/rocebed/rdma/verbs"
	"github.com/rocebed/rocebed/testbed/counters"
)

// This file holds what the two ends of a batch tell each other when they run in two processes,
// one per host of a two-host lab (RunSide): the messages, and how the two hosts' halves of a
// batch become one BatchResult, the same on both hosts.
//
// Per batch, in order, each host sends one message of each kind and receives the other's:
//
//	end     its end: device, NIC, address, GID, QP number, PSN, active MTU (or why it has none)
//	ready   its QP is connected (RTS; the receiver's receives are posted), or why it is not
//	sent    sender only: it stopped sending (every send completed, or the deadline passed)
//	result  its half: its end, its completions, its host's counters
//
// Both hosts merge the two halves in one order (sender's, then receiver's), so both judge the
// same data and give the same verdict.

// Peer is the rocebed process on the other host of a two-host lab, as the traffic engine sees
// it: typed messages, in order. Package pair implements it over TCP.
type Peer interface {
	// Send sends v as the next message, of kind.
	Send(ctx context.Context, kind string, v any) error
	// Recv waits for the next message, which must be of kind, and decodes it into v. It fails
	// when ctx ends, when the other process is gone (errors.Is ErrPeerLost), or when the next
	// message is of another kind (the two processes are out of step).
	Recv(ctx context.Context, kind string, v any) error
	// Poll is Recv without waiting: false when no message has arrived yet.
	Poll(kind string, v any) (bool, error)
	// Lost is non-nil (wrapping ErrPeerLost) once the other process is gone.
	Lost() error
	// Name names the other host for messages: "host b (192.168.100.2:7471)".
	Name() string
}

// ErrPeerLost says the other host's rocebed is gone: its connection closed or broke, or it did
// not answer in time.
var ErrPeerLost = errors.New("the other host's rocebed stopped answering")

// Message kinds of a batch.
const (
	msgEnd    = "end"
	msgReady  = "ready"
	msgSent   = "sent"
	msgResult = "result"
)

// endMsg is one end of a batch, for the other: what its QP needs to connect (QP number, PSN,
// GID and active MTU) and what the report names.
type endMsg struct {
	Batch string    `json:"batch"` // "rc-both a->b": both processes must be at the same batch
	End   End       `json:"end"`
	GID   verbs.GID `json:"gid"`
	PSN   uint32    `json:"psn"`
	MTU   verbs.MTU `json:"active_mtu"`
	// Error says why this host has no end for the batch (its device could not be opened);
	// the batch then stops on both hosts.
	Error string `json:"error,omitempty"`
}

// readyMsg says an end's QP is connected, or why it is not.
type readyMsg struct {
	Batch        string  `json:"batch"`
	ConnectMS    float64 `json:"connect_ms"`
	ConnectError string  `json:"connect_error,omitempty"`
}

// sentMsg says the sender stopped sending.
type sentMsg struct {
	Batch  string `json:"batch"`
	Posted int    `json:"posted"`
}

// checkBatch says whether a message belongs to the batch this process is at.
func checkBatch(p Peer, kind, want, got string) error {
	if got != want {
		return fmt.Errorf("%s is at batch %q, this host at %q (%s message): the two hosts are out of step; run the same scenario on both", p.Name(), got, want, kind)
	}
	return nil
}

// halfJSON encodes a host's half of a batch as the other host gets it; both hosts merge the
// decoded form, so both judge identical values.
func halfJSON(b *BatchResult) (json.RawMessage, *BatchResult, error) {
	raw, err := json.Marshal(b)
	if err != nil {
		return nil, nil, fmt.Errorf("encode this host's half of batch %s: %w", b.Name(), err)
	}
	var back BatchResult
	if err := json.Unmarshal(raw, &back); err != nil {
		return nil, nil, fmt.Errorf("decode this host's half of batch %s: %w", b.Name(), err)
	}
	return raw, &back, nil
}

// mergeHalves makes one batch of the sender host's half and the receiver host's: each end and
// connect outcome from its own host, the sender's completions then the receiver's, both hosts'
// counters (already Qualified), and both hosts' notes. A nil half is a host that never sent
// its half; the other's view of that end stays. Both hosts call it with the same halves.
func mergeHalves(snd, rcv *BatchResult) *BatchResult {
	base := snd
	if base == nil {
		base = rcv
	}
	m := *base
	m.Completions = []CompletionRecord{}
	m.Counters, m.Errors = nil, nil
	m.ConnectMS, m.ConnectError, m.ConnectTimedOut, m.ConnectFailedEnd = 0, "", false, ""
	m.Posted, m.ElapsedMS, m.MsgPerSec, m.MeanLatencyUS, m.StopReason = 0, 0, 0, 0, ""
	var stops []string
	for _, h := range []struct {
		half *BatchResult
		role string
	}{{snd, RoleSender}, {rcv, RoleReceiver}} {
		x := h.half
		if x == nil {
			continue
		}
		if h.role == RoleSender {
			m.Sender, m.Posted, m.MeanLatencyUS = x.Sender, x.Posted, x.MeanLatencyUS
		} else {
			m.Receiver, m.MsgPerSec = x.Receiver, x.MsgPerSec
		}
		m.ConnectMS = max(m.ConnectMS, x.ConnectMS)
		if m.ConnectError == "" && x.ConnectError != "" {
			m.ConnectError, m.ConnectTimedOut, m.ConnectFailedEnd = x.ConnectError, x.ConnectTimedOut, x.ConnectFailedEnd
		}
		m.Completions = append(m.Completions, x.Completions...)
		m.ElapsedMS = max(m.ElapsedMS, x.ElapsedMS)
		if x.StopReason != "" {
			stops = append(stops, h.role+": "+x.StopReason)
		}
		m.Counters = counters.Sum(m.Counters, x.Counters)
		m.Errors = append(m.Errors, x.Errors...)
		if m.PeerLost == "" {
			m.PeerLost = x.PeerLost
		}
	}
	switch {
	case len(stops) == 2 && snd.StopReason == rcv.StopReason:
		m.StopReason = snd.StopReason
	case len(stops) > 0:
		m.StopReason = stops[0]
		if len(stops) == 2 {
			m.StopReason += "; " + stops[1]
		}
	}
	return &m
}
