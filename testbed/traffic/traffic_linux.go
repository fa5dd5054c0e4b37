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
// case the report so far is returned too. A two-host lab runs with RunSide instead.
func Run(ctx context.Context, env *host.Env, s *scenario.Scenario) (*Report, error) {
	if s.TwoHost() {
		return nil, fmt.Errorf("lab %s spans two hosts: its traffic runs on both, one end each (`rocebed run %s --side a|b`)", s.Name, s.Name)
	}
	return run(ctx, env, s, nil)
}

// RunSide runs the traffic of a two-host lab from one of its hosts: s is this host's part
// (scenario.ForHost), whose endpoint is one end of every batch, and peer is rocebed on the
// other host, running RunSide with the other end. Each batch is Run's: the same QPs, windows,
// deadline and checks, with each host opening and polling its own end, the two exchanging
// what a QP needs of its peer (QP number, PSN, GID, MTU) and, at the end, their completions
// and counters, so both judge the same batch and give the same verdict (see peer.go).
//
// When the other host's rocebed goes away, the batch in progress is judged peer-lost from
// what this host recorded, no later batch runs, and the report comes back with an error
// wrapping ErrPeerLost; every wait for the other host is bounded by the batch's deadline.
func RunSide(ctx context.Context, env *host.Env, s *scenario.Scenario, peer Peer) (*Report, error) {
	if s.Host == "" || peer == nil {
		return nil, fmt.Errorf("lab %s: RunSide needs one host's part of a two-host lab (scenario.ForHost) and the other host", s.Name)
	}
	return run(ctx, env, s, peer)
}

func run(ctx context.Context, env *host.Env, s *scenario.Scenario, peer Peer) (*Report, error) {
	r := &Report{Lab: s.Name, File: s.File, Expect: s.Expect, Started: time.Now()}
	finish := func() {
		r.DurationMS = msSince(r.Started)
		r.Finish()
	}
	resolved := map[scenario.Family]map[string]trafficEnd{}
	for _, t := range s.Traffic {
		ends, ok := resolved[t.Family]
		if !ok {
			var err error
			if ends, err = resolveTrafficEnds(ctx, env, s, t.Family); err != nil {
				if peer != nil {
					// The other host waits for this one's end of the batch: say why there is none.
					first := (&BatchResult{Traffic: t.Name, Direction: batchDirections(t.Direction)[0]}).Name()
					tctx, cancel := context.WithTimeout(ctx, peerGrace)
					_ = peer.Send(tctx, msgEnd, endMsg{Batch: first, Error: err.Error()})
					cancel()
				}
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
			b, err := runBatch(ctx, env, s, t, dir, ends, peer)
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

// resolveTrafficEnds finds this host's endpoints (both, or one of a two-host lab) by side, in
// family f ("" for their own), waiting a bounded time for ports and GIDs.
func resolveTrafficEnds(ctx context.Context, env *host.Env, s *scenario.Scenario, f scenario.Family) (map[string]trafficEnd, error) {
	wctx, cancel := context.WithTimeout(ctx, endpointWait)
	defer cancel()
	resolved, err := lab.ResolveLocalEndpointsIn(wctx, env, s, f)
	if err != nil {
		var ee *lab.EndpointError
		if errors.As(err, &ee) {
			return nil, labNotReady(ee)
		}
		return nil, err
	}
	ends := map[string]trafficEnd{}
	for _, e := range resolved {
		ends[e.Side] = trafficEnd{Endpoint: e, vgid: verbs.GID(e.GID.Addr.As16())}
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
	psn  uint32 // its first send PSN, which the other end's RTR needs
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
	v.psn = randomPSN()
	return err
}

// batch is the state of one running batch. Its sender and receiver are verbs objects in this
// process (snd, rcv); in a two-host lab one of them is nil, that end being on the other host,
// reached through peer.
type batch struct {
	res        *BatchResult
	snd, rcv   *verbsSide
	sndSide    string
	rcvSide    string
	ends       map[string]endMsg // both ends by side: this host's, and the other host's
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

	// Two-host labs only.
	peer     Peer
	host     scenario.HostName
	ctx      context.Context // the run's: cancelled on Ctrl-C
	pctx     context.Context // bounds every wait for the other host
	bound    time.Duration   // pctx's bound, for messages
	peerSent bool            // the remote sender said it stopped
	counted  bool            // res.Counters are taken
}

// local lists the ends in this process, sender first.
func (b *batch) local() []*verbsSide {
	var out []*verbsSide
	for _, v := range []*verbsSide{b.snd, b.rcv} {
		if v != nil {
			out = append(out, v)
		}
	}
	return out
}

// peerGrace is how long, beyond a batch's deadline, a host waits for the other host's messages
// of the batch: enough for the other to finish its own deadline, read its counters and send
// its half.
const peerGrace = 30 * time.Second

func runBatch(ctx context.Context, env *host.Env, s *scenario.Scenario, t scenario.Traffic, dir scenario.Direction, ends map[string]trafficEnd, peer Peer) (res *BatchResult, err error) {
	b := &batch{sndSide: "a", rcvSide: "b", dir: verbs.AToB, size: t.Size, peer: peer, host: s.Host, ctx: ctx}
	if dir == scenario.DirectionBToA {
		b.sndSide, b.rcvSide, b.dir = "b", "a", verbs.BToA
	}
	res = &BatchResult{
		Traffic: t.Name, Transport: t.Transport, Direction: dir, Family: endsFamily(ends), Messages: t.Messages, Size: t.Size,
		RC: t.RC, DeadlineMS: t.DeadlineMS,
		Sender: declaredEnd(s, b.sndSide), Receiver: declaredEnd(s, b.rcvSide), Completions: []CompletionRecord{},
	}
	b.res = res
	deadline := time.Duration(t.DeadlineMS) * time.Millisecond
	if deadline <= 0 {
		deadline = scenario.DefaultDeadlineMS * time.Millisecond
	}
	bctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	if peer != nil {
		var cancelP context.CancelFunc
		b.bound = deadline + peerGrace
		b.pctx, cancelP = context.WithTimeout(ctx, b.bound)
		defer cancelP()
	}
	if e, ok := ends[b.sndSide]; ok {
		b.snd = &verbsSide{end: e}
	}
	if e, ok := ends[b.rcvSide]; ok {
		b.rcv = &verbsSide{end: e}
	}

	before, err := counters.TakeSnapshot(env, s)
	if err != nil {
		return nil, err
	}
	defer func() { b.takeCounters(env, s, before) }() // on every return below that has not yet
	defer func() {
		for _, v := range b.local() {
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
	var openErr error
	if b.snd != nil {
		if err := b.snd.open(typ, depth, b.sendWin*t.Size, b.sendWin, b.recvWin); err != nil {
			openErr = fmt.Errorf("%s %s: set up sender %s: %w", t.Name, dir, b.snd.end.Device, err)
		}
	}
	if b.rcv != nil && openErr == nil {
		if err := b.rcv.open(typ, depth, b.recvWin*b.recvSlot, b.sendWin, b.recvWin); err != nil {
			openErr = fmt.Errorf("%s %s: set up receiver %s: %w", t.Name, dir, b.rcv.end.Device, err)
		}
	}
	if openErr != nil {
		if peer != nil {
			_ = peer.Send(b.pctx, msgEnd, endMsg{Batch: res.Name(), Error: openErr.Error()})
		}
		return res, openErr
	}

	// Both ends: this host's from its QPs; in a two-host lab the other's from the other host.
	b.ends = map[string]endMsg{}
	for _, v := range b.local() {
		e := declaredEnd(s, v.end.Side)
		e.Device, e.NIC, e.Address, e.GIDIndex, e.QPN = v.end.Device, v.end.NIC, v.end.Addr.String(), v.end.GID.Index, v.qp.QPN()
		b.ends[v.end.Side] = endMsg{Batch: res.Name(), End: e, GID: v.end.vgid, PSN: v.psn, MTU: v.attr.ActiveMTU}
	}
	if peer != nil {
		mine := b.ends[string(s.Host)]
		var theirs endMsg
		if err := b.exchange(msgEnd, mine, &theirs); err != nil {
			return b.stopped(env, s, before, err)
		}
		if theirs.Error != "" {
			return res, fmt.Errorf("%s could not set up its end of %s: %s", peer.Name(), res.Name(), theirs.Error)
		}
		b.ends[string(s.Host.Other())] = theirs
	}
	res.Sender, res.Receiver = b.ends[b.sndSide].End, b.ends[b.rcvSide].End
	b.remoteQPN = res.Receiver.QPN
	mtu := min(b.ends[b.sndSide].MTU, b.ends[b.rcvSide].MTU)
	res.PathMTU = mtu.Bytes()

	connStart := time.Now()
	cerr := b.connect(t, mtu)
	res.ConnectMS = msSince(connStart)
	if cerr != nil {
		res.ConnectError = cerr.Error()
		res.ConnectTimedOut = errors.Is(cerr, syscall.ETIMEDOUT)
		slog.Info("connect failed", "traffic", t.Name, "direction", dir, "after_ms", round1(res.ConnectMS), "error", cerr)
	}
	connected := cerr == nil
	var postErr error
	if connected && b.rcv != nil {
		// Every receive (up to the window) before any send.
		for b.recvPosted < min(b.recvWin, t.Messages) && postErr == nil {
			postErr = b.postRecv()
		}
	}
	if postErr != nil && peer != nil {
		// The other host is waiting for this one: a receive that cannot be posted is this
		// end failing to get ready, and the batch ends on both hosts with it.
		res.ConnectError, res.ConnectFailedEnd, connected = postErr.Error(), b.rcvSide, false
		postErr = nil
	}
	if peer != nil {
		mine := readyMsg{Batch: res.Name(), ConnectMS: res.ConnectMS, ConnectError: res.ConnectError}
		var theirs readyMsg
		if err := b.exchange(msgReady, mine, &theirs); err != nil {
			return b.stopped(env, s, before, err)
		}
		if theirs.ConnectError != "" {
			connected = false
			slog.Info("the other host could not connect", "traffic", t.Name, "direction", dir, "host", s.Host.Other(), "error", theirs.ConnectError)
		}
	}
	if postErr != nil {
		return res, postErr
	}

	if connected {
		b.postAt = make([]time.Duration, t.Messages)
		b.seen = map[uint32]bool{}
		b.t0 = time.Now()
		slog.Debug("batch started", "traffic", t.Name, "direction", dir, "host", s.Host)
		if b.snd != nil {
			for b.posted < min(b.sendWin, t.Messages) && !b.stopSend {
				b.postSend()
			}
		}
		err = b.poll(ctx, bctx, t)
		res.ElapsedMS = msSince(b.t0)
		if b.latN > 0 {
			res.MeanLatencyUS = float64(b.latSum.Microseconds()) / float64(b.latN)
		}
		if last := lastRecvAt(res.Completions); last > 0 && b.recvDone == t.Messages {
			res.MsgPerSec = float64(t.Messages) / (last / 1000)
		}
	}
	if peer == nil {
		return res, err
	}
	if err != nil {
		return b.stopped(env, s, before, err)
	}
	if connected {
		if b.snd != nil {
			err = b.peer.Send(b.pctx, msgSent, sentMsg{Batch: res.Name(), Posted: b.posted})
		} else if !b.peerSent {
			var m sentMsg
			if err = b.peer.Recv(b.pctx, msgSent, &m); err == nil {
				err = checkBatch(peer, msgSent, res.Name(), m.Batch)
			}
		}
		if err != nil {
			return b.stopped(env, s, before, b.peerErr(err))
		}
	}
	return b.merge(env, s, before)
}

// endsFamily is the address family of a batch: its ends' (this host's are enough; both ends of
// a batch are of one family).
func endsFamily(ends map[string]trafficEnd) scenario.Family {
	for _, side := range []string{"a", "b"} {
		if e, ok := ends[side]; ok {
			return scenario.FamilyOf(e.Addr)
		}
	}
	return ""
}

// declaredEnd is what the scenario says of endpoint side, before its host has opened it.
func declaredEnd(s *scenario.Scenario, side string) End {
	ep := s.Endpoint(side)
	dev := ep.RXE
	if dev == "" {
		dev = ep.Device
	}
	e := End{Side: side, Device: dev, NIC: ep.NIC, Address: ep.Address}
	if s.Host != "" {
		e.Host = side
	}
	return e
}

// takeCounters reads this host's counters after the batch into res.Counters, once; in a
// two-host lab they are named after the host (counters.Snapshot.Qualified).
func (b *batch) takeCounters(env *host.Env, s *scenario.Scenario, before *counters.Snapshot) {
	if b.counted {
		return
	}
	b.counted = true
	after, err := counters.TakeSnapshotAfter(env, s, before)
	if err != nil {
		b.res.Errors = append(b.res.Errors, "counters after the batch: "+err.Error())
		return
	}
	d := after.Delta(before)
	if b.host != "" {
		d = d.Qualified(string(b.host))
	}
	b.res.Counters = d
}

// exchange sends this host's message of kind and receives the other host's.
func (b *batch) exchange(kind string, mine, theirs any) error {
	if err := b.peer.Send(b.pctx, kind, mine); err != nil {
		return b.peerErr(err)
	}
	if err := b.peer.Recv(b.pctx, kind, theirs); err != nil {
		return b.peerErr(err)
	}
	var batch string
	switch m := theirs.(type) {
	case *endMsg:
		batch = m.Batch
	case *readyMsg:
		batch = m.Batch
	}
	return checkBatch(b.peer, kind, b.res.Name(), batch)
}

// peerErr names a wait for the other host that ran out of time as the other host lost.
func (b *batch) peerErr(err error) error {
	if err == nil || errors.Is(err, ErrPeerLost) || b.ctx.Err() != nil || b.pctx.Err() == nil {
		return err
	}
	return fmt.Errorf("%s sent nothing within %s (the batch's deadline and %s): %w", b.peer.Name(), b.bound, peerGrace, ErrPeerLost)
}

// stopped ends a two-host batch early. When the other host is gone, this host's half is judged
// peer-lost and comes back with the error, which stops the run; other errors (Ctrl-C, the two
// hosts out of step) come back as they are.
func (b *batch) stopped(env *host.Env, s *scenario.Scenario, before *counters.Snapshot, err error) (*BatchResult, error) {
	if !errors.Is(err, ErrPeerLost) {
		return b.res, err
	}
	b.closeLocal()
	b.takeCounters(env, s, before)
	b.res.PeerLost = err.Error()
	if b.res.StopReason == "" && !b.t0.IsZero() {
		b.res.StopReason = "the other host's rocebed stopped answering"
	}
	slog.Warn("the other host is gone", "traffic", b.res.Traffic, "direction", b.res.Direction, "error", err)
	return b.res, err
}

// closeLocal closes this host's verbs objects now, so the counters after the batch are not
// waiting on them; the deferred close then has nothing left to do.
func (b *batch) closeLocal() {
	for _, v := range b.local() {
		if cerr := v.close(); cerr != nil {
			b.res.Errors = append(b.res.Errors, "close verbs objects on "+v.end.Device+": "+cerr.Error())
		}
	}
}

// merge sends this host's half of the batch to the other host, receives the other's, and
// merges the two (mergeHalves) from their encoded form, as the other host does.
func (b *batch) merge(env *host.Env, s *scenario.Scenario, before *counters.Snapshot) (*BatchResult, error) {
	b.closeLocal()
	b.takeCounters(env, s, before)
	for i, e := range b.res.Errors {
		b.res.Errors[i] = "host " + string(b.host) + ": " + e
	}
	raw, mine, err := halfJSON(b.res)
	if err != nil {
		return b.res, err
	}
	if err := b.peer.Send(b.pctx, msgResult, raw); err != nil {
		return b.stopped(env, s, before, b.peerErr(err))
	}
	var theirs BatchResult
	if err := b.peer.Recv(b.pctx, msgResult, &theirs); err != nil {
		return b.stopped(env, s, before, b.peerErr(err))
	}
	if err := checkBatch(b.peer, msgResult, b.res.Name(), theirs.Name()); err != nil {
		return b.res, err
	}
	if b.snd != nil {
		return mergeHalves(mine, &theirs), nil
	}
	return mergeHalves(&theirs, mine), nil
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

// connect brings this host's QPs to RTS. RC: INIT, then RTR (each end resolves the other's MAC:
// ~1 s on a cold neighbour, ETIMEDOUT when it never resolves) with the other end's QP number,
// PSN and GID, then RTS. UD: INIT/RTR/RTS with the queue key, and on the sender an address
// handle to the receiver's GID.
func (b *batch) connect(t scenario.Traffic, mtu verbs.MTU) error {
	sides := b.local()
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
			if err := v.qp.ToRTS(verbs.RTSConfig{PSN: v.psn}); err != nil {
				return err
			}
		}
		if b.snd == nil {
			return nil
		}
		start := time.Now()
		ah, err := b.snd.pd.CreateAH(lab.RDMAPort, b.ends[b.rcvSide].GID, b.snd.end.GID.Index, hopLimit)
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
	for _, v := range sides {
		p, timing := b.ends[b.rcvSide], &b.res.Sender.RTRMS
		if v == b.rcv {
			p, timing = b.ends[b.sndSide], &b.res.Receiver.RTRMS
		}
		start := time.Now()
		err := v.qp.ToRTR(verbs.RTRConfig{
			Port: lab.RDMAPort, RemoteQPN: p.End.QPN, RemotePSN: p.PSN, DestGID: p.GID,
			SGIDIndex: v.end.GID.Index, PathMTU: mtu, HopLimit: hopLimit, MinRNRTimer: minRNRTimer,
		})
		*timing = msSince(start)
		if err != nil {
			b.res.ConnectFailedEnd = v.end.Side
			return err
		}
	}
	for _, v := range sides {
		err := v.qp.ToRTS(verbs.RTSConfig{PSN: v.psn, Timeout: uint8(timeout), RetryCnt: uint8(retry), RNRRetry: uint8(rnr)})
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

// poll polls this host's CQs until every completion arrived, the deadline (bctx), the
// receiver going idle after the sender finished, or ctx's cancellation. With both ends here it
// waits for both; a sender alone stops when its sends are done, and a receiver alone learns
// that from the other host's "sent" message.
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
		for _, v := range b.local() {
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
		if b.peer != nil {
			if err := b.pollPeer(&lastProgress); err != nil {
				if errors.Is(err, ErrPeerLost) {
					b.res.StopReason = "the other host's rocebed stopped answering"
				}
				return err
			}
		}
		sendFinished := b.sendFinished()
		switch {
		case b.rcv == nil && sendFinished:
			b.res.StopReason = "complete"
			if b.stopSend {
				b.res.StopReason = "sending stopped at an error completion"
			}
			return nil
		case sendFinished && b.recvDone == t.Messages, b.snd == nil && b.recvDone == t.Messages:
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

// sendFinished reports whether the sender is done: every posted send completed and no more
// will be posted; for a sender on the other host, whether it said so.
func (b *batch) sendFinished() bool {
	if b.snd == nil {
		return b.peerSent
	}
	return (b.stopSend || b.posted == b.res.Messages) && b.sendDone == b.posted
}

// pollPeer checks, without waiting, that the other host is still there, and on a receiver
// whether the sender there said it stopped (the receiver's idle grace counts from then).
func (b *batch) pollPeer(lastProgress *time.Time) error {
	if b.snd != nil || b.peerSent {
		return b.peer.Lost()
	}
	var m sentMsg
	ok, err := b.peer.Poll(msgSent, &m)
	if err != nil || !ok {
		return err
	}
	if err := checkBatch(b.peer, msgSent, b.res.Name(), m.Batch); err != nil {
		return err
	}
	b.peerSent = true
	*lastProgress = time.Now()
	return nil
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
