package traffic

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"syscall"
	"time"

	"github.com/rocebed/rocebed/internal/host"
	"github.com/rocebed/rocebed/internal/preflight"
	"github.com/rocebed/rocebed/rdma"
	"github.com/rocebed/rocebed/rdma/verbs"
	"github.com/rocebed/rocebed/testbed/counters"
	"github.com/rocebed/rocebed/testbed/lab"
	"github.com/rocebed/rocebed/testbed/scenario"
)

const (
	trafficQKey = 0x11111111 // UD queue key both ends agree on
	hopLimit    = 64
	minRNRTimer = 12 // 0.64 ms, ibv_rc_pingpong's value

	// Work-request windows. All receives of a batch are posted before its first send when
	// they fit (up to maxRecvWindow, and maxWindowBytes of buffer); more are re-posted as
	// receives complete. Sends are kept maxSendWindow deep.
	maxRecvWindow  = 1024
	maxSendWindow  = scenario.MaxWindow
	maxWindowBytes = 64 << 20

	// After the sender has every completion, the receiver gets this long without progress
	// before the batch stops waiting: RC receives complete before their ACK is sent, so any
	// missing one is lost; UD has no ACK, so allow for a slow receive path.
	rcReceiverGrace = 100 * time.Millisecond
	udReceiverGrace = time.Second

	// endpointWait bounds waiting for a port to be ACTIVE and its RoCE v2 GID to appear
	// right after `up`.
	endpointWait = 10 * time.Second
)

// trafficEnd is one endpoint resolved to its device and GID, with the GID in verbs' form.
type trafficEnd struct {
	lab.Endpoint
	vgid verbs.GID
}

// Run runs every traffic item of a lab that is up, each direction as its own batch,
// with both endpoints in this process (the equivalent of an ibv_rc_pingpong or
// ibv_ud_pingpong server and client with -d and -g on each side, connected in memory). It
// records every completion and the counters around each batch and judges the result.
//
// rxe devices exist only in the initial network namespace, so the process must be there.
// A connection that cannot be made is a recorded outcome, not an error: the error return
// is for a lab that is not usable at all (no verbs, no device) or a cancelled ctx, in which
// case the report so far is returned too.
func Run(ctx context.Context, env *host.Env, s *scenario.Scenario) (*Report, error) {
	r := &Report{Lab: s.Name, File: s.File, Expect: s.Expect, Started: time.Now()}
	finish := func() {
		r.DurationMS = msSince(r.Started)
		r.Finish()
	}
	resolved := map[scenario.Family][2]trafficEnd{}
	for _, t := range s.Traffic {
		ends, ok := resolved[t.Family]
		if !ok {
			var err error
			if ends, err = resolveTrafficEnds(ctx, env, s, t.Family); err != nil {
				if len(r.Batches) == 0 {
					return nil, err
				}
				finish()
				return r, err
			}
			resolved[t.Family] = ends
		}
		for _, dir := range batchDirections(t.Direction) {
			if err := ctx.Err(); err != nil {
				finish()
				return r, fmt.Errorf("traffic interrupted before %s %s: %w", t.Name, dir, err)
			}
			b, err := runBatch(ctx, env, s, t, dir, ends)
			if b != nil {
				r.Batches = append(r.Batches, b)
			}
			if err != nil {
				finish()
				return r, err
			}
			slog.Info("batch done", "traffic", t.Name, "direction", dir, "connect_ms", round1(b.ConnectMS), "elapsed_ms", round1(b.ElapsedMS), "completions", len(b.Completions))
		}
	}
	finish()
	if err := ctx.Err(); err != nil {
		// A Ctrl-C during a blocking connect lets the batch finish; still say it was interrupted.
		return r, fmt.Errorf("traffic interrupted: %w", err)
	}
	return r, nil
}

func batchDirections(d scenario.Direction) []scenario.Direction {
	switch d {
	case scenario.DirectionBoth:
		return []scenario.Direction{scenario.DirectionAToB, scenario.DirectionBToA}
	case scenario.DirectionBToA:
		return []scenario.Direction{scenario.DirectionBToA}
	}
	return []scenario.Direction{scenario.DirectionAToB}
}

// resolveTrafficEnds finds both endpoints in family f ("" for their own), waiting a bounded
// time for ports and GIDs.
func resolveTrafficEnds(ctx context.Context, env *host.Env, s *scenario.Scenario, f scenario.Family) ([2]trafficEnd, error) {
	var ends [2]trafficEnd
	wctx, cancel := context.WithTimeout(ctx, endpointWait)
	defer cancel()
	resolved, err := lab.ResolveEndpointsIn(wctx, env, s, f)
	if err != nil {
		var ee *lab.EndpointError
		if errors.As(err, &ee) {
			return ends, labNotReady(ee)
		}
		return ends, err
	}
	for i, e := range resolved {
		ends[i] = trafficEnd{Endpoint: e, vgid: verbs.GID(e.GID.Addr.As16())}
	}
	return ends, nil
}

// labNotReady turns "device or GID missing" into a PreflightError: the lab is not (fully) up.
func labNotReady(e *lab.EndpointError) error {
	if errors.Is(e, rdma.ErrNotFound) || errors.Is(e, rdma.ErrNoRDMA) {
		return &preflight.Error{Check: "endpoint " + e.Side, Need: "an ACTIVE RDMA device on " + e.NIC + " with a RoCE v2 GID for its address",
			Have: e.Err.Error(), Err: e, Hint: "bring the lab up with `rocebed up` (a kernel without rdma_rxe needs `rocebed vm run`)"}
	}
	return e
}

// verbsSide is one end's verbs objects for one batch.
type verbsSide struct {
	end  trafficEnd
	ctx  *verbs.Context
	pd   *verbs.PD
	cq   *verbs.CQ
	mr   *verbs.MR
	qp   *verbs.QP
	ah   *verbs.AH
	attr verbs.PortAttr
}

// close closes the objects children first (QP, AH, MR, CQ, PD, context) and returns what
// failed.
func (v *verbsSide) close() error {
	var errs []error
	if v.qp != nil {
		errs = append(errs, v.qp.Close())
	}
	if v.ah != nil {
		errs = append(errs, v.ah.Close())
	}
	if v.mr != nil {
		errs = append(errs, v.mr.Close())
	}
	if v.cq != nil {
		errs = append(errs, v.cq.Close())
	}
	if v.pd != nil {
		errs = append(errs, v.pd.Close())
	}
	if v.ctx != nil {
		errs = append(errs, v.ctx.Close())
	}
	return errors.Join(errs...)
}

// open creates the device context, PD, one CQ for both queues, a buffer of bufBytes and a QP.
func (v *verbsSide) open(typ verbs.QPType, cqDepth, bufBytes, sendWin, recvWin int) error {
	var err error
	if v.ctx, err = verbs.OpenDevice(v.end.Device); err != nil {
		if errors.Is(err, verbs.ErrNoVerbs) || errors.Is(err, verbs.ErrDeviceNotFound) {
			return &preflight.Error{Check: "verbs", Need: "RDMA device " + v.end.Device + " usable through libibverbs", Have: err.Error(), Err: err,
				Hint: "install rdma-core/libibverbs, build rocebed with cgo, and bring the lab up (`rocebed vm run` on a kernel without rdma_rxe)"}
		}
		return err
	}
	if v.attr, err = v.ctx.QueryPort(lab.RDMAPort); err != nil {
		return err
	}
	if v.pd, err = v.ctx.AllocPD(); err != nil {
		return err
	}
	if v.cq, err = v.ctx.CreateCQ(cqDepth); err != nil {
		return err
	}
	if v.mr, err = v.pd.RegMR(bufBytes); err != nil {
		return err
	}
	v.qp, err = v.pd.CreateQP(verbs.QPConfig{Type: typ, SendCQ: v.cq, RecvCQ: v.cq, MaxSend: sendWin, MaxRecv: recvWin, MaxSGE: 1})
	return err
}

// batch is the state of one running batch.
type batch struct {
	res        *BatchResult
	snd, rcv   *verbsSide
	dir        verbs.Direction
	size       int
	recvSlot   int // bytes per receive buffer (size, +GRH on UD)
	recvOff    int // payload offset in a receive buffer
	sendWin    int
	recvWin    int
	remoteQPN  uint32
	t0         time.Time
	postAt     []time.Duration
	posted     int // sends posted
	sendDone   int // send completions
	recvPosted int
	recvDone   int
	stopSend   bool
	seen       map[uint32]bool // UD: sequence numbers received
	latSum     time.Duration
	latN       int
}

func runBatch(ctx context.Context, env *host.Env, s *scenario.Scenario, t scenario.Traffic, dir scenario.Direction, ends [2]trafficEnd) (res *BatchResult, err error) {
	sndEnd, rcvEnd, vdir := ends[0], ends[1], verbs.AToB
	if dir == scenario.DirectionBToA {
		sndEnd, rcvEnd, vdir = ends[1], ends[0], verbs.BToA
	}
	res = &BatchResult{
		Traffic: t.Name, Transport: t.Transport, Direction: dir, Family: scenario.FamilyOf(sndEnd.Addr), Messages: t.Messages, Size: t.Size,
		RC: t.RC, DeadlineMS: t.DeadlineMS,
		Sender:      End{Side: sndEnd.Side, Device: sndEnd.Device, NIC: sndEnd.NIC, Address: sndEnd.Addr.String(), GIDIndex: sndEnd.GID.Index},
		Receiver:    End{Side: rcvEnd.Side, Device: rcvEnd.Device, NIC: rcvEnd.NIC, Address: rcvEnd.Addr.String(), GIDIndex: rcvEnd.GID.Index},
		Completions: []CompletionRecord{},
	}
	deadline := time.Duration(t.DeadlineMS) * time.Millisecond
	if deadline <= 0 {
		deadline = scenario.DefaultDeadlineMS * time.Millisecond
	}
	bctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()

	before, err := counters.TakeSnapshot(env, s)
	if err != nil {
		return nil, err
	}
	defer func() {
		after, serr := counters.TakeSnapshotAfter(env, s, before)
		if serr != nil {
			res.Errors = append(res.Errors, "counters after the batch: "+serr.Error())
			return
		}
		res.Counters = after.Delta(before)
	}()

	b := &batch{res: res, dir: vdir, size: t.Size, snd: &verbsSide{end: sndEnd}, rcv: &verbsSide{end: rcvEnd}}
	defer func() {
		for _, v := range []*verbsSide{b.snd, b.rcv} {
			if cerr := v.close(); cerr != nil {
				res.Errors = append(res.Errors, "close verbs objects on "+v.end.Device+": "+cerr.Error())
			}
		}
	}()

	typ := verbs.QPTypeRC
	b.recvSlot = t.Size
	if t.Transport == scenario.TransportUD {
		typ = verbs.QPTypeUD
		b.recvSlot += verbs.GRHLen
		b.recvOff = verbs.GRHLen
	}
	b.sendWin = clampWindow(t.Messages, maxSendWindow, t.Size)
	if t.Window > 0 {
		b.sendWin = min(b.sendWin, t.Window)
	}
	b.recvWin = clampWindow(t.Messages, maxRecvWindow, b.recvSlot)
	depth := b.sendWin + b.recvWin + 16
	if err := b.snd.open(typ, depth, b.sendWin*t.Size, b.sendWin, b.recvWin); err != nil {
		return res, fmt.Errorf("%s %s: set up sender %s: %w", t.Name, dir, sndEnd.Device, err)
	}
	if err := b.rcv.open(typ, depth, b.recvWin*b.recvSlot, b.sendWin, b.recvWin); err != nil {
		return res, fmt.Errorf("%s %s: set up receiver %s: %w", t.Name, dir, rcvEnd.Device, err)
	}
	res.Sender.QPN, res.Receiver.QPN = b.snd.qp.QPN(), b.rcv.qp.QPN()
	b.remoteQPN = b.rcv.qp.QPN()
	res.PathMTU = min(b.snd.attr.ActiveMTU, b.rcv.attr.ActiveMTU).Bytes()

	connStart := time.Now()
	cerr := b.connect(t, min(b.snd.attr.ActiveMTU, b.rcv.attr.ActiveMTU))
	res.ConnectMS = msSince(connStart)
	if cerr != nil {
		res.ConnectError = cerr.Error()
		res.ConnectTimedOut = errors.Is(cerr, syscall.ETIMEDOUT)
		slog.Info("connect failed", "traffic", t.Name, "direction", dir, "after_ms", round1(res.ConnectMS), "error", cerr)
		return res, nil
	}

	// Every receive (up to the window) before any send.
	for b.recvPosted < min(b.recvWin, t.Messages) {
		if err := b.postRecv(); err != nil {
			return res, err
		}
	}
	b.postAt = make([]time.Duration, t.Messages)
	b.seen = map[uint32]bool{}
	b.t0 = time.Now()
	for b.posted < min(b.sendWin, t.Messages) && !b.stopSend {
		b.postSend()
	}
	err = b.poll(ctx, bctx, t)
	res.ElapsedMS = msSince(b.t0)
	if b.latN > 0 {
		res.MeanLatencyUS = float64(b.latSum.Microseconds()) / float64(b.latN)
	}
	if last := lastRecvAt(res.Completions); last > 0 && b.recvDone == t.Messages {
		res.MsgPerSec = float64(t.Messages) / (last / 1000)
	}
	return res, err
}

// clampWindow is how many work requests of slot bytes to keep posted.
func clampWindow(messages, maxWin, slot int) int {
	w := min(messages, maxWin, max(1, maxWindowBytes/max(slot, 1)))
	return max(w, 1)
}

func lastRecvAt(cs []CompletionRecord) float64 {
	var last float64
	for _, c := range cs {
		if c.Role == RoleReceiver {
			last = max(last, c.AtMS)
		}
	}
	return last
}

func randomPSN() uint32 {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return binary.BigEndian.Uint32(b[:]) & 0xffffff
}

// connect brings both QPs to RTS. RC: INIT, then RTR on the sender and on the receiver (each
// resolves the other's MAC: ~1 s on a cold neighbour, ETIMEDOUT when it never resolves), then
// RTS. UD: INIT/RTR/RTS with the queue key, and an address handle to the receiver's GID.
func (b *batch) connect(t scenario.Traffic, mtu verbs.MTU) error {
	sides := []*verbsSide{b.snd, b.rcv}
	for _, v := range sides {
		if err := v.qp.ToInit(lab.RDMAPort, trafficQKey); err != nil {
			return err
		}
	}
	if t.Transport == scenario.TransportUD {
		for _, v := range sides {
			if err := v.qp.ToRTR(verbs.RTRConfig{Port: lab.RDMAPort}); err != nil {
				return err
			}
			if err := v.qp.ToRTS(verbs.RTSConfig{PSN: randomPSN()}); err != nil {
				return err
			}
		}
		start := time.Now()
		ah, err := b.snd.pd.CreateAH(lab.RDMAPort, b.rcv.end.vgid, b.snd.end.GID.Index, hopLimit)
		b.res.Sender.RTRMS = msSince(start)
		if err != nil {
			b.res.ConnectFailedEnd = b.snd.end.Side
			return err
		}
		b.snd.ah = ah
		return nil
	}
	rc := t.RC
	if rc == nil {
		rc = &scenario.RCParams{}
	}
	timeout, retry, rnr := intOr(rc.Timeout, scenario.DefaultRCTimeout), intOr(rc.RetryCount, scenario.DefaultRCRetryCount), intOr(rc.RNRRetry, scenario.DefaultRCRNRRetry)
	psn := map[*verbsSide]uint32{b.snd: randomPSN(), b.rcv: randomPSN()}
	peer := map[*verbsSide]*verbsSide{b.snd: b.rcv, b.rcv: b.snd}
	timing := map[*verbsSide]*float64{b.snd: &b.res.Sender.RTRMS, b.rcv: &b.res.Receiver.RTRMS}
	for _, v := range sides {
		p := peer[v]
		start := time.Now()
		err := v.qp.ToRTR(verbs.RTRConfig{
			Port: lab.RDMAPort, RemoteQPN: p.qp.QPN(), RemotePSN: psn[p], DestGID: p.end.vgid,
			SGIDIndex: v.end.GID.Index, PathMTU: mtu, HopLimit: hopLimit, MinRNRTimer: minRNRTimer,
		})
		*timing[v] = msSince(start)
		if err != nil {
			b.res.ConnectFailedEnd = v.end.Side
			return err
		}
	}
	for _, v := range sides {
		err := v.qp.ToRTS(verbs.RTSConfig{PSN: psn[v], Timeout: uint8(timeout), RetryCnt: uint8(retry), RNRRetry: uint8(rnr)})
		if err != nil {
			b.res.ConnectFailedEnd = v.end.Side
			return err
		}
	}
	return nil
}

// postRecv posts the next receive into its slot of the receive window.
func (b *batch) postRecv() error {
	wr := uint64(b.recvPosted)
	slot := b.recvPosted % b.recvWin
	if err := b.rcv.qp.PostRecv(b.rcv.mr, slot*b.recvSlot, b.recvSlot, wr); err != nil {
		return fmt.Errorf("post receive %d on %s: %w", wr, b.rcv.end.Device, err)
	}
	b.recvPosted++
	return nil
}

// postSend fills the next message into its slot and posts it signalled. A failed post stops
// sending (the batch then lacks completions) and is noted.
func (b *batch) postSend() {
	seq := b.posted
	slot := seq % b.sendWin
	buf := b.snd.mr.Bytes()[slot*b.size : (slot+1)*b.size]
	fillMessage(buf, b.dir, uint32(seq))
	var err error
	if b.snd.qp.Type() == verbs.QPTypeUD {
		err = b.snd.qp.PostSendUD(b.snd.mr, slot*b.size, b.size, uint64(seq), b.snd.ah, b.remoteQPN, trafficQKey)
	} else {
		err = b.snd.qp.PostSend(b.snd.mr, slot*b.size, b.size, uint64(seq), true)
	}
	if err != nil {
		b.stopSend = true
		b.res.Errors = append(b.res.Errors, fmt.Sprintf("post send %d: %v", seq, err))
		return
	}
	b.postAt[seq] = time.Since(b.t0)
	b.posted++
	b.res.Posted = b.posted
}

// poll polls both CQs until every completion arrived, the deadline (bctx), the receiver going
// idle after the sender finished, or ctx's cancellation.
func (b *batch) poll(ctx, bctx context.Context, t scenario.Traffic) error {
	grace := rcReceiverGrace
	if t.Transport == scenario.TransportUD {
		grace = udReceiverGrace
	}
	const minWait, maxWait = 20 * time.Microsecond, time.Millisecond
	wait := minWait
	lastProgress := time.Now()
	for {
		got := 0
		for _, v := range []*verbsSide{b.snd, b.rcv} {
			wcs, err := v.cq.Poll(64)
			if err != nil {
				return err
			}
			for _, wc := range wcs {
				b.record(v, wc)
			}
			got += len(wcs)
		}
		if got > 0 {
			wait = minWait
			lastProgress = time.Now()
		}
		sendFinished := (b.stopSend || b.posted == t.Messages) && b.sendDone == b.posted
		switch {
		case sendFinished && b.recvDone == t.Messages:
			b.res.StopReason = "complete"
			return nil
		case sendFinished && time.Since(lastProgress) > grace:
			b.res.StopReason = fmt.Sprintf("the receiver stayed idle for %s after the sender finished", grace)
			return nil
		case ctx.Err() != nil:
			b.res.StopReason = "cancelled"
			return fmt.Errorf("traffic %s interrupted: %w", t.Name, ctx.Err())
		case bctx.Err() != nil:
			b.res.StopReason = fmt.Sprintf("deadline %d ms reached", t.DeadlineMS)
			return nil
		}
		if got == 0 {
			time.Sleep(wait)
			wait = min(2*wait, maxWait)
		}
	}
}

// record keeps one completion, checks a received payload, and refills the windows.
func (b *batch) record(v *verbsSide, wc verbs.Completion) {
	at := time.Since(b.t0)
	role := RoleSender
	if v == b.rcv {
		role = RoleReceiver
	}
	c := CompletionRecord{
		Side: v.end.Side, Role: role, Device: v.end.Device, WRID: wc.WRID, Status: wc.Status, Opcode: wc.Opcode,
		ByteLen: wc.ByteLen, QPN: wc.QPN, SrcQP: wc.SrcQP, WCFlags: uint32(wc.Flags), VendorErr: wc.VendorErr,
		AtMS: float64(at.Nanoseconds()) / 1e6,
	}
	if role == RoleSender {
		b.sendDone++
		if wc.Status != verbs.WCSuccess {
			b.stopSend = true // the QP is in error; what is posted flushes
		} else {
			if int(wc.WRID) < len(b.postAt) {
				b.latSum += at - b.postAt[wc.WRID]
				b.latN++
			}
			if !b.stopSend && b.posted < b.res.Messages {
				b.postSend()
			}
		}
	} else {
		b.recvDone++
		if wc.Status == verbs.WCSuccess {
			c.Payload = b.checkPayload(wc)
			if b.recvPosted < b.res.Messages {
				if err := b.postRecv(); err != nil {
					b.res.Errors = append(b.res.Errors, err.Error())
				}
			}
		}
	}
	b.res.Completions = append(b.res.Completions, c)
}

// checkPayload verifies the receive buffer of wc: "ok" or what is wrong.
func (b *batch) checkPayload(wc verbs.Completion) string {
	want := b.size + b.recvOff
	if int(wc.ByteLen) != want {
		return fmt.Sprintf("byte_len %d, want %d", wc.ByteLen, want)
	}
	slot := int(wc.WRID) % b.recvWin
	buf := b.rcv.mr.Bytes()[slot*b.recvSlot+b.recvOff : slot*b.recvSlot+b.recvOff+b.size]
	seq := uint32(wc.WRID) // RC: message k lands in receive k
	if b.rcv.qp.Type() == verbs.QPTypeUD && b.size >= verbs.PayloadHeaderLen {
		// UD may lose a message; name what arrived by its header, and catch duplicates.
		if _, hs, ok := verbs.ParsePayloadHeader(buf); ok {
			if b.seen[hs] {
				return fmt.Sprintf("duplicate of message %d", hs)
			}
			b.seen[hs] = true
			seq = hs
		}
	}
	if err := verifyMessage(buf, b.dir, seq); err != nil {
		return err.Error()
	}
	return "ok"
}

// fillMessage writes message seq: the verbs payload pattern, or for messages shorter than its
// header a short pattern of (direction, seq).
func fillMessage(buf []byte, d verbs.Direction, seq uint32) {
	if len(buf) >= verbs.PayloadHeaderLen {
		verbs.FillPayload(buf, d, seq)
		return
	}
	for i := range buf {
		buf[i] = tinyPattern(d, seq, i)
	}
}

func verifyMessage(buf []byte, d verbs.Direction, seq uint32) error {
	if len(buf) >= verbs.PayloadHeaderLen {
		return verbs.VerifyPayload(buf, d, seq)
	}
	for i := range buf {
		if w := tinyPattern(d, seq, i); buf[i] != w {
			return fmt.Errorf("payload %s seq %d (%d bytes): byte at offset %d is %#02x, want %#02x", d, seq, len(buf), i, buf[i], w)
		}
	}
	return nil
}

func tinyPattern(d verbs.Direction, seq uint32, i int) byte {
	return byte(seq*31+uint32(i)*7) ^ byte(d)<<4
}

func intOr(p *int, def int) int {
	if p == nil {
		return def
	}
	return *p
}

func msSince(t time.Time) float64 { return float64(time.Since(t).Nanoseconds()) / 1e6 }

func round1(ms float64) float64 { return float64(int64(ms*10+0.5)) / 10 }
