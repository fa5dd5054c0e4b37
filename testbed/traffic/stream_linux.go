package traffic

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/rocebed/rocebed/rdma/verbs"
	"github.com/rocebed/rocebed/testbed/scenario"
)

// streamList is how many SENDs one doorbell of a send stream posts at most: fewer system
// calls than ib_send_bw's one SEND a doorbell. In the guest, rounds of the rate bench (paired
// ratios to ib_send_bw): lists of 16 gave 0.98–1.08 in five rounds, 4 gave 0.96–1.04 in five,
// 32 gave 0.95–1.04 and 8 gave 0.93–0.98 in three, 1 gave 0.87 and 1.03 in two.
const streamList = 16

// A send stream's receiver polls in bursts: when its CQ is empty while the sender is still
// sending and at least recvNapDepth receives stay posted, it sleeps recvNap instead of
// spinning. The stream sends on into those receives meanwhile (64 in 200 µs is 320 000
// messages a second), and the receiver's CPU is free for other work: under TCG, the host CPU
// that the sending vCPU's thread would otherwise share. In the guest, three sets of 30 rounds
// of 2000 × 4 KiB, each round napping, spinning and ib_send_bw back to back: medians 7838,
// 7871 and 7447 msg/s napping, 7651, 7578 and 7466 spinning, 7457, 7256 and 6608 for
// ib_send_bw (the third on a slowed host; median ratios 1.059, 1.093 and 1.080 napping, 1.036,
// 1.060 and 1.047 spinning). Naps of 1 ms did no better than 200 µs; keeping the sending
// thread on one CPU as well helped in one set and hurt in another.
const (
	recvNap      = 200 * time.Microsecond
	recvNapDepth = 64
)

// streamNaps counts the naps of every send stream's receiver in this process, so that a test
// can tell the napping path ran.
var streamNaps atomic.Int64

// streams says whether the batch's SENDs go from a send stream (verbs.SendStream, ib_send_bw's
// loop in C): an RC stream with both ends in this process, two CPUs to run its two workers,
// and every message filled before the first send (a ring of slots is refilled from Go as
// SENDs complete).
func (b *batch) streams(t scenario.Traffic) bool {
	return b.snd != nil && b.rcv != nil && !b.pingpong && t.Transport == scenario.TransportRC &&
		b.prefilled && b.sendWin > 1 && twoCPUs()
}

// runStream drives a batch whose SENDs go from a send stream: the stream's C loop on this
// goroutine's thread, which then runs nothing of Go's between doorbells, and the receiver on
// another goroutine, which polls in bursts, checks each payload, reposts the receive and lets
// the stream send as far as the receives posted.
func (b *batch) runStream(ctx, bctx context.Context, recv func() (int, int)) {
	st, err := verbs.NewSendStream(verbs.SendStreamConfig{
		QP: b.snd.qp, CQ: b.snd.cq, MR: b.snd.mr, Slots: b.sendSlots, Size: b.size, Messages: b.messages,
		Queue: b.sendWin, List: streamList, Spin: spinFor, MinWait: minWait, MaxWait: maxWait,
	})
	if err != nil {
		b.failedToStart(err)
		return
	}
	defer st.Close()
	b.stream = st
	defer b.watchEnd(ctx, bctx, st.Stop)()
	b.t0 = st.Start()
	st.Allow(int(b.recvReady.Load()))
	bothAtOnce(b.streamSends, func() {
		b.receiveInBursts(recv)
		if b.recvEnd != stopDone {
			st.Stop() // no more receives come: the SENDs waiting for them never go
		}
	})
}

// receiveInBursts runs a send stream's receiver (recv) until it finishes, napping between
// bursts while the sender has receives enough to go on without it. Only this goroutine
// changes recvPosted and recvDone while the stream runs.
func (b *batch) receiveInBursts(recv func() (int, int)) {
	w := newWaiter()
	for {
		n, finished := recv()
		switch {
		case finished > 0:
			return
		case n > 0:
			w.progress()
		case b.sendFinishedNS.Load() == 0 && b.recvPosted-b.recvDone >= recvNapDepth:
			// The CQ was empty: every receive not polled is still posted.
			streamNaps.Add(1)
			time.Sleep(recvNap)
		default:
			w.idle()
		}
	}
}

// failedToStart ends both sides of a batch whose loop in C could not be set up.
func (b *batch) failedToStart(err error) {
	b.t0 = time.Now()
	b.endSend(stopFailed, err)
	b.endRecv(stopFailed, err)
}

// streamSends runs the send stream until the sender stops, recording what it polled.
func (b *batch) streamSends() {
	b.sendMu.Lock()
	defer b.sendMu.Unlock()
	var recs []verbs.TimedCompletion
	for b.sendEnd == "" {
		stop, err := b.stream.Run(b.messages)
		recs = b.stream.Completions(recs[:0])
		prog := b.stream.Progress()
		for k := b.posted; k < prog.Posted; k++ {
			b.postAt[k] = b.stream.PostedAt(k)
		}
		b.posted, b.res.Posted = prog.Posted, prog.Posted
		if prog.PostErr != nil && !b.stopSend {
			b.stopSend = true
			b.sendErrs = append(b.sendErrs, prog.PostErr.Error())
		}
		for _, c := range recs {
			b.recordSend(c.Completion, c.At)
		}
		switch {
		case err != nil:
			b.endSend(stopFailed, err)
		case stop == verbs.SendStreamLimit, stop == verbs.SendStreamFailed:
			b.endSend(stopDone, nil)
		case stop == verbs.SendStreamStopped:
			b.endSend(b.stoppedBy(), nil)
		case stop == verbs.SendStreamPollFailed:
			b.endSend(stopFailed, prog.PollErr)
		}
	}
}
