//go:build linux

package traffic

import (
	"fmt"
	"time"

	"github.com/rocebed/rocebed/rdma/verbs"
)

// A ping-pong batch (pattern pingpong) is a stream batch whose receiver sends every message
// back: the sender posts message k only once echo k-1 is in, and the receiver posts echo k as
// soon as message k's RECV completes — ib_send_lat's loop. Both ends are in this process; with
// two CPUs each has its own worker (run), so the receiver sees the RECV while the sender's
// post is still in the kernel, as ib_send_lat's server does. Every SEND and RECV completion of
// both ways is recorded, and every payload of both ways checked.

// pingPongSendQueue is how many SENDs an end of a ping-pong may have posted and not yet seen
// complete: the next message waits for its echo, not for the previous SEND's completion,
// which can come after the echo.
const pingPongSendQueue = 16

// echoWRID marks the work requests of echoes (the receiver's SENDs and the sender's RECVs for
// them), so that a completion in error, whose opcode is undefined, still says what it was.
const echoWRID = 1 << 62

func isEcho(wrid uint64) bool { return wrid&echoWRID != 0 }

// echoIn is the sender's side of the echoes (under sendMu).
type echoIn struct {
	recvOff    int             // where the echo receive slots start in the sender's buffer
	recvPosted int             // echo receives posted
	done       int             // echo RECV completions, ok or not
	at         []time.Duration // when intact echo k was polled, since t0 (0: not yet)
}

// echoOut is the receiver's side of the echoes (under recvMu).
type echoOut struct {
	sendOff   int  // where the echo send slots start in the receiver's buffer
	slots     int  // echo send slots: every echo when they fit, else a ring refilled on use
	prefilled bool // every echo was filled before the first message
	owed      int  // messages that arrived (successful RECVs) and are to be sent back, in order
	posted    int
	done      int // echo SEND completions, ok or not
}

// echoDir is the direction of the echoes.
func (b *batch) echoDir() verbs.Direction {
	if b.dir == verbs.AToB {
		return verbs.BToA
	}
	return verbs.AToB
}

// postEchoRecv posts the sender's next receive for an echo.
func (b *batch) postEchoRecv() error {
	k := b.echo.recvPosted
	off := b.echo.recvOff + (k%b.recvWin)*b.recvSlot
	if err := b.snd.qp.PostRecv(b.snd.mr, off, b.recvSlot, echoWRID|uint64(k)); err != nil {
		return fmt.Errorf("post echo receive %d on %s: %w", k, b.snd.end.Device, err)
	}
	b.echo.recvPosted++
	return nil
}

// servePings is serveSend for a ping-pong: it polls the sender's CQ (SEND completions and
// echoes), then posts the next message when the last one's echo is in. The sender has stopped
// once every SEND it posted completed and every echo is in, or an error stopped it, or the
// receiver can send no more echoes.
func (b *batch) servePings() (int, int) {
	n, err := b.snd.cq.PollInto(b.sendWCs[:])
	if err != nil {
		b.endSend(stopFailed, err)
		return 0, 1
	}
	var at time.Duration
	if n > 0 {
		at = time.Since(b.t0)
	}
	// The echo that lets the next message go is the round trip's critical path: post that
	// message before recording and checking what was polled (ib_send_lat posts first too),
	// unless something polled failed, which stops the sender once recorded.
	if echoes, ok := succeeded(b.sendWCs[:n]); n > 0 && ok && b.mayPing(b.echo.done+echoes) {
		b.postSend()
	}
	for _, wc := range b.sendWCs[:n] {
		if isEcho(wc.WRID) {
			b.recordEcho(wc, at)
		} else {
			b.recordSend(wc, at)
		}
	}
	if b.mayPing(b.echo.done) {
		b.postSend() // the first message, or one that waited for the send queue
	}
	stopped := b.stopSend || b.echoFailed.Load()
	if b.sendDone == b.posted && (stopped || b.posted == b.messages && b.echo.done == b.posted) {
		b.endSend(stopDone, nil)
		return n, 1
	}
	if n == 0 {
		if reason := b.endedBy(); reason != "" {
			b.endSend(reason, nil)
			return 0, 1
		}
	}
	return n, 0
}

// mayPing says whether the sender may post its next message once echoes echoes are in: every
// message before it came back, and the send queue and the receiver have room for it.
func (b *batch) mayPing(echoes int) bool {
	return !b.stopSend && !b.echoFailed.Load() && b.posted < b.messages && b.posted == echoes &&
		b.posted-b.sendDone < b.sendWin && b.mayPost(b.posted)
}

// succeeded counts the echoes among the sender's completions wcs and says whether every one
// of wcs succeeded.
func succeeded(wcs []verbs.Completion) (echoes int, ok bool) {
	for _, wc := range wcs {
		if wc.Status != verbs.WCSuccess {
			return echoes, false
		}
		if isEcho(wc.WRID) {
			echoes++
		}
	}
	return echoes, true
}

// recordEcho keeps one echo RECV completion on the sender, polled at at, checks its payload
// and reposts the receive.
func (b *batch) recordEcho(wc verbs.Completion, at time.Duration) {
	c := b.completionRecord(b.snd, RoleEcho, wc, at)
	b.echo.done++
	if wc.Status != verbs.WCSuccess {
		b.stopSend = true // the QP is in error
		b.sendRecs = append(b.sendRecs, c)
		return
	}
	k := int(wc.WRID &^ echoWRID)
	c.Payload = "ok"
	if int(wc.ByteLen) != b.size+b.recvOff {
		c.Payload = fmt.Sprintf("byte_len %d, want %d", wc.ByteLen, b.size+b.recvOff)
	} else {
		off := b.echo.recvOff + (k%b.recvWin)*b.recvSlot + b.recvOff
		if err := verifyMessage(b.snd.mr.Bytes()[off:off+b.size], b.echoDir(), uint32(k)); err != nil {
			c.Payload = err.Error()
		}
	}
	if c.Payload == "ok" && k < len(b.echo.at) && b.echo.at[k] == 0 {
		b.echo.at[k] = at
	}
	if b.echo.recvPosted < b.messages {
		if err := b.postEchoRecv(); err != nil {
			b.sendErrs = append(b.sendErrs, err.Error())
		}
	}
	b.sendRecs = append(b.sendRecs, c)
}

// echoArrivals is, for a ping-pong's receiver, how many of wcs are messages that arrived (not
// echo SENDs) with success: each is owed back, whatever its payload (it is checked and
// recorded after the echo goes).
func echoArrivals(wcs []verbs.Completion) int {
	n := 0
	for _, wc := range wcs {
		if !isEcho(wc.WRID) && wc.Status == verbs.WCSuccess {
			n++
		}
	}
	return n
}

// postEchoes sends back, in order, every message that arrived intact and has not been sent
// back yet, as far as the echo send queue allows. A post that fails ends the echoes.
func (b *batch) postEchoes() {
	for !b.echoFailed.Load() && b.echoOut.posted < b.echoOut.owed && b.echoOut.posted-b.echoOut.done < b.sendWin {
		k := b.echoOut.posted
		off := b.echoOut.sendOff + (k%b.echoOut.slots)*b.size
		if !b.echoOut.prefilled {
			fillMessage(b.rcv.mr.Bytes()[off:off+b.size], b.echoDir(), uint32(k))
		}
		if err := b.rcv.qp.PostSend(b.rcv.mr, off, b.size, echoWRID|uint64(k), true); err != nil {
			b.recvErrs = append(b.recvErrs, fmt.Sprintf("post echo %d: %v", k, err))
			b.echoFailed.Store(true)
			return
		}
		b.echoOut.posted++
	}
}

// recordEchoSend keeps one echo SEND completion on the receiver, polled at at; one in error
// ends the echoes.
func (b *batch) recordEchoSend(wc verbs.Completion, at time.Duration) {
	b.echoOut.done++
	if wc.Status != verbs.WCSuccess {
		b.echoFailed.Store(true)
	}
	b.recvRecs = append(b.recvRecs, b.completionRecord(b.rcv, RoleEcho, wc, at))
}

// echoesSettled says whether the receiver has sent back everything it owes and seen each echo
// SEND complete (or can send no more).
func (b *batch) echoesSettled() bool {
	return b.echoOut.done == b.echoOut.posted && (b.echoOut.posted == b.echoOut.owed || b.echoFailed.Load())
}

// halfRoundTrips summarises, over the messages whose echo came back, half the time from
// posting each SEND to polling its echo: what ib_send_lat reports (t_typical is the median).
func (b *batch) halfRoundTrips() *LatencyStats { return b.sincePosted(b.echo.at, 2) }
