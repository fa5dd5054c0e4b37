//go:build linux

package traffic

import (
	"context"
	"fmt"
	"time"

	"github.com/rocebed/rocebed/rdma/verbs"
)

// A ping-pong batch (pattern pingpong) is a stream batch whose receiver sends every message
// back: the sender posts message k only once echo k-1 is in, and the receiver posts echo k as
// soon as message k's RECV completes — ib_send_lat's loop, run in C (runPingPong). Both ends
// are in this process. Every SEND and RECV completion of both ways is recorded, and every
// payload of both ways checked.

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
	sendOff    int  // where the echo send slots start in the receiver's buffer
	slots      int  // echo send slots: every echo when they fit, else a ring refilled on use
	prefilled  bool // every echo was filled before the first message
	filled     int  // echoes filled so far (unless prefilled)
	posted     int
	done       int  // echo SEND completions, ok or not
	failed     bool // the receiver sends no more echoes (a completion or a post failed)
	postFailed bool // an echo could not be posted (noted once)
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

// runPingPong runs the batch's loop in C (verbs.PingPong): with two CPUs the sender and the
// receiver each on their own goroutine, as ib_send_lat's two processes (the receiver polls
// on its CPU while the sender's post is in the kernel), else both on this one. Go runs only
// between a Run's limits: it records what was polled, checks the payloads, reposts the
// receives and fills the next slots. A limit never goes past the receives posted (no receive
// slot is reused before its payload was checked) nor past the free send slots.
func (b *batch) runPingPong(ctx, bctx context.Context, grace time.Duration) {
	pp, err := verbs.NewPingPong(verbs.PingPongConfig{
		Ping:      verbs.PingPongEnd{QP: b.snd.qp, CQ: b.snd.cq, MR: b.snd.mr, SendOffset: 0, SendSlots: b.sendSlots},
		Pong:      verbs.PingPongEnd{QP: b.rcv.qp, CQ: b.rcv.cq, MR: b.rcv.mr, SendOffset: b.echoOut.sendOff, SendSlots: b.echoOut.slots},
		Size:      b.size,
		Messages:  b.messages,
		SendQueue: b.sendWin,
		Window:    b.recvWin,
		EchoWRID:  echoWRID,
		Spin:      spinFor, MinWait: minWait, MaxWait: maxWait, IdleGrace: grace,
	})
	if err != nil {
		b.failedToStart(err)
		return
	}
	defer pp.Close()
	b.pp = pp
	defer b.watchEnd(ctx, bctx, pp.Stop)()
	b.t0 = pp.Start()
	if twoCPUs() {
		bothAtOnce(b.pings, b.pongs)
		return
	}
	for b.sendEnd == "" || b.recvEnd == "" {
		var pingLimit, pongLimit int
		if b.sendEnd == "" {
			pingLimit = b.pingLimit()
		}
		if b.recvEnd == "" {
			pongLimit = b.pongLimit()
		}
		switch {
		case b.sendEnd == "" && b.recvEnd == "":
			ping, pong, err := b.pp.RunBoth(pingLimit, pongLimit)
			b.takePings(ping, err)
			b.takePongs(pong, err)
		case b.sendEnd == "":
			b.takePings(b.pp.Run(verbs.Ping, pingLimit))
		case b.recvEnd == "":
			b.takePongs(b.pp.Run(verbs.Pong, pongLimit))
		}
	}
}

// pings runs the sender's part until it stops.
func (b *batch) pings() {
	for b.sendEnd == "" {
		if limit := b.pingLimit(); b.sendEnd == "" {
			b.takePings(b.pp.Run(verbs.Ping, limit))
		}
	}
}

// pongs runs the receiver's part until it stops.
func (b *batch) pongs() {
	for b.recvEnd == "" {
		if limit := b.pongLimit(); b.recvEnd == "" {
			b.takePongs(b.pp.Run(verbs.Pong, limit))
		}
	}
}

// pingLimit is how far the sender's next Run may go: no further than the echo receives
// posted and the send slots free (filled here unless every message was). When that leaves
// it nothing to do (an echo receive could not be posted) it ends the sender.
func (b *batch) pingLimit() int {
	limit := min(b.messages, b.echo.recvPosted, b.sendDone+b.sendSlots)
	if limit <= b.posted && b.sendDone == b.posted && b.echo.done >= b.posted {
		b.stopSend = true
		b.endPings(stopDone, nil)
		return 0
	}
	for ; !b.prefilled && b.filled < limit; b.filled++ {
		b.sendSlot(b.filled) // fills it
	}
	return limit
}

// pongLimit is how far the receiver's next Run may go: no further than its receives posted
// and its echo slots free (filled here unless every echo was). When that leaves it nothing
// to do (a receive could not be reposted) it ends the receiver.
func (b *batch) pongLimit() int {
	limit := min(b.messages, b.recvPosted, b.echoOut.done+b.echoOut.slots)
	if limit <= b.recvDone && b.echoOut.done == b.echoOut.posted && (b.echoOut.posted >= b.recvDone || b.echoOut.failed) {
		b.pp.EndPong()
		b.endRecv(stopIdle, nil)
		return 0
	}
	for ; !b.echoOut.prefilled && b.echoOut.filled < limit; b.echoOut.filled++ {
		k := b.echoOut.filled
		off := b.echoOut.sendOff + (k%b.echoOut.slots)*b.size
		fillMessage(b.rcv.mr.Bytes()[off:off+b.size], b.echoDir(), uint32(k))
	}
	return limit
}

// takePings records what the sender's Run polled, in order (checking the echoes' payloads
// and reposting their receives), and ends the sender when its Run says so.
func (b *batch) takePings(stop verbs.PingPongStop, err error) {
	b.pingRecs = b.pp.Completions(verbs.Ping, b.pingRecs[:0])
	prog := b.pp.Progress(verbs.Ping)
	for k := b.posted; k < prog.Posted; k++ {
		b.postAt[k] = b.pp.PostedAt(k)
	}
	b.posted, b.res.Posted = prog.Posted, prog.Posted
	if prog.PostErr != nil && !b.stopSend {
		b.stopSend = true
		b.sendErrs = append(b.sendErrs, prog.PostErr.Error())
	}
	for _, c := range b.pingRecs {
		if isEcho(c.WRID) {
			b.recordEcho(c.Completion, c.At)
		} else {
			b.recordSend(c.Completion, c.At)
		}
	}
	switch {
	case err != nil:
		b.endPings(stopFailed, err)
	case stop == verbs.PingPongLimit && b.posted == b.messages,
		stop == verbs.PingPongFailed, stop == verbs.PingPongPeerEnded:
		b.endPings(stopDone, nil)
	case stop == verbs.PingPongStopped:
		b.endPings(b.stoppedBy(), nil)
	case stop == verbs.PingPongPollFailed:
		b.endPings(stopFailed, prog.PollErr)
	}
}

// takePongs records what the receiver's Run polled, in order (checking the messages'
// payloads and reposting their receives), and ends the receiver when its Run says so.
func (b *batch) takePongs(stop verbs.PingPongStop, err error) {
	b.pongRecs = b.pp.Completions(verbs.Pong, b.pongRecs[:0])
	prog := b.pp.Progress(verbs.Pong)
	b.echoOut.posted, b.echoOut.failed = prog.Posted, prog.Failed
	if prog.PostErr != nil && !b.echoOut.postFailed {
		b.echoOut.postFailed = true
		b.recvErrs = append(b.recvErrs, "echo: "+prog.PostErr.Error())
	}
	for _, c := range b.pongRecs {
		if isEcho(c.WRID) {
			b.recordEchoSend(c.Completion, c.At)
		} else {
			b.recordRecv(c.Completion, c.At)
		}
	}
	switch {
	case err != nil:
		b.endRecv(stopFailed, err)
	case stop == verbs.PingPongLimit && b.recvDone >= b.messages:
		b.endRecv(stopDone, nil)
	case stop == verbs.PingPongIdle:
		b.endRecv(stopIdle, nil)
	case stop == verbs.PingPongStopped:
		b.endRecv(b.stoppedBy(), nil)
	case stop == verbs.PingPongPollFailed:
		b.endRecv(stopFailed, prog.PollErr)
	}
	if b.recvEnd != "" && b.recvEnd != stopDone {
		// It sends no more echoes: the sender stops waiting for them. Not when it is done:
		// then every echo went and completed, but the sender may not have polled the last.
		b.pp.EndPong()
	}
}

// endPings ends the sender and tells the receiver, whose idle grace counts from now; an
// error stops the receiver at once.
func (b *batch) endPings(reason string, err error) {
	b.endSend(reason, err)
	b.pp.EndPing()
	if err != nil {
		b.pp.Stop()
	}
}

// stoppedBy says why a Run was stopped: the other side failed, or the batch was cancelled
// or reached its deadline.
func (b *batch) stoppedBy() string {
	if reason := b.endedBy(); reason != "" && !b.failed.Load() {
		return reason
	}
	return stopFailed
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

// recordEchoSend keeps one echo SEND completion on the receiver, polled at at.
func (b *batch) recordEchoSend(wc verbs.Completion, at time.Duration) {
	b.echoOut.done++
	b.recvRecs = append(b.recvRecs, b.completionRecord(b.rcv, RoleEcho, wc, at))
}

// halfRoundTrips summarises, over the messages whose echo came back, half the time from
// posting each SEND to polling its echo: what ib_send_lat reports (t_typical is the median).
func (b *batch) halfRoundTrips() *LatencyStats { return b.sincePosted(b.echo.at, 2) }
