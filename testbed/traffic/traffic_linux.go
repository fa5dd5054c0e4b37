package traffic

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
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

	// A side with work outstanding polls its CQ without sleeping for spinFor after its last
	// completion (while traffic flows one comes every few tens of µs, and under TCG a sleep
	// costs more than many polls), then sleeps, backing off from minWait to maxWait.
	spinFor          = 2 * time.Millisecond
	minWait, maxWait = 20 * time.Microsecond, time.Millisecond

	// maxInline is the largest message sent inline (copied into the work request at post),
	// perftest's default for its latency tests.
	maxInline = 236
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

// open creates the device context, PD, one CQ for both queues, a buffer of bufBytes and a QP
// that sends messages of up to inline bytes inline.
func (v *verbsSide) open(typ verbs.QPType, cqDepth, bufBytes, sendWin, recvWin, inline int) error {
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
	v.qp, err = v.pd.CreateQP(verbs.QPConfig{Type: typ, SendCQ: v.cq, RecvCQ: v.cq, MaxSend: sendWin, MaxRecv: recvWin, MaxSGE: 1, MaxInline: inline})
	if err != nil && inline > 0 {
		// A device that cannot send inline sends from the buffer.
		v.qp, err = v.pd.CreateQP(verbs.QPConfig{Type: typ, SendCQ: v.cq, RecvCQ: v.cq, MaxSend: sendWin, MaxRecv: recvWin, MaxSGE: 1})
	}
	v.psn = randomPSN()
	return err
}

// batch is the state of one running batch. Its sender and receiver are verbs objects in this
// process (snd, rcv); in a two-host lab one of them is nil, that end being on the other host,
// reached through peer. The fields under "sender" are guarded by sendMu, those under
// "receiver" by recvMu; runBatch reads them once the workers are done.
type batch struct {
	res       *BatchResult
	snd, rcv  *verbsSide
	sndSide   string
	rcvSide   string
	ends      map[string]endMsg // both ends by side: this host's, and the other host's
	dir       verbs.Direction
	size      int
	messages  int
	recvSlot  int // bytes per receive buffer (size, +GRH on UD)
	recvOff   int // payload offset in a receive buffer
	sendWin   int
	recvWin   int
	sendSlots int  // send buffer slots: every message when they fit, else a ring refilled on use
	prefilled bool // every message was filled before the first send
	remoteQPN uint32
	pingpong  bool // the receiver sends each message back (pingpong_linux.go)
	t0        time.Time

	// sender
	sendMu   sync.Mutex
	sendWCs  [verbs.PollBatch]verbs.Completion
	sendWRs  []verbs.SendWR // the list postSends builds, kept between calls
	sendEnd  string         // why the sender stopped ("" while it runs)
	sendErr  error
	postAt   []time.Duration // when message k was posted, since t0
	posted   int
	sendDone int
	stopSend bool
	latSum   time.Duration
	latN     int
	sendRecs []CompletionRecord
	sendErrs []string
	peerSent bool // the remote sender said it stopped

	// receiver
	recvMu     sync.Mutex
	recvWCs    [verbs.PollBatch]verbs.Completion
	recvEnd    string // why the receiver stopped ("" while it runs)
	recvErr    error
	recvPosted int
	recvDone   int
	seen       map[uint32]bool // UD: sequence numbers received
	recvAt     []time.Duration // when message k's RECV completion was polled, since t0 (0: not yet)
	recvRecs   []CompletionRecord
	recvErrs   []string

	// A ping-pong's loop (pingpong_linux.go), the echoes that came back to the sender
	// (under sendMu) and those the receiver sent (under recvMu).
	pp       *verbs.PingPong
	stream   *verbs.SendStream       // the sender's loop in C (stream_linux.go), or nil
	filled   int                     // messages filled so far, unless prefilled (sender)
	pingRecs []verbs.TimedCompletion // what a Run polled, kept between Runs (sender)
	pongRecs []verbs.TimedCompletion // (receiver)
	echo     echoIn
	echoOut  echoOut

	// shared: receives posted so far (the sender keeps no more SENDs outstanding than there
	// are receives for them), the receiver's last progress, when the sender finished, that the
	// receiver stopped, and that either side failed (the other then stops too).
	recvReady      atomic.Int64
	recvProgressNS atomic.Int64 // since t0
	sendFinishedNS atomic.Int64 // since t0, +1 (0: not finished)
	recvStopped    atomic.Bool
	failed         atomic.Bool
	ended          atomic.Pointer[string] // stopCancelled or stopDeadline, once the batch's context ends (watchEnd)

	// Two-host labs only.
	peer    Peer
	host    scenario.HostName
	ctx     context.Context // the run's: cancelled on Ctrl-C
	pctx    context.Context // bounds every wait for the other host
	bound   time.Duration   // pctx's bound, for messages
	counted bool            // res.Counters are taken
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
	b := &batch{sndSide: "a", rcvSide: "b", dir: verbs.AToB, size: t.Size, messages: t.Messages, peer: peer, host: s.Host, ctx: ctx,
		pingpong: t.Pattern == scenario.PatternPingPong}
	if dir == scenario.DirectionBToA {
		b.sndSide, b.rcvSide, b.dir = "b", "a", verbs.BToA
	}
	res = &BatchResult{
		Traffic: t.Name, Transport: t.Transport, Direction: dir, Family: endsFamily(ends), Messages: t.Messages, Size: t.Size,
		RC: t.RC, DeadlineMS: t.DeadlineMS, Window: t.Window, Pattern: t.Pattern,
		Sender: declaredEnd(s, b.sndSide), Receiver: declaredEnd(s, b.rcvSide), Completions: []CompletionRecord{},
	}
	b.res = res
	if b.pingpong && peer != nil {
		return res, fmt.Errorf("%s: pattern pingpong runs both ends in one process, not in a two-host lab", res.Name())
	}
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
	if b.pingpong {
		b.sendWin = min(t.Messages, pingPongSendQueue)
	}
	b.recvWin = clampWindow(t.Messages, maxRecvWindow, b.recvSlot)
	b.sendSlots, b.prefilled = prefillSlots(t.Messages, b.sendWin, t.Size)
	inline := 0
	if t.Size <= maxInline {
		inline = maxInline
	}
	depth := b.sendWin + b.recvWin + 16
	sndBytes, rcvBytes := b.sendSlots*t.Size, b.recvWin*b.recvSlot
	if b.pingpong {
		// Each end also has the other's half: receives for the echoes after the sender's
		// slots, the echoes' slots (as many as the messages') after the receiver's.
		b.echoOut.slots, b.echoOut.prefilled = b.sendSlots, b.prefilled
		b.echo.recvOff, b.echoOut.sendOff = sndBytes, rcvBytes
		sndBytes, rcvBytes = sndBytes+b.recvWin*b.recvSlot, rcvBytes+b.echoOut.slots*t.Size
	}
	var openErr error
	if b.snd != nil {
		if err := b.snd.open(typ, depth, sndBytes, b.sendWin, b.recvWin, inline); err != nil {
			openErr = fmt.Errorf("%s %s: set up sender %s: %w", t.Name, dir, b.snd.end.Device, err)
		}
	}
	if b.rcv != nil && openErr == nil {
		if err := b.rcv.open(typ, depth, rcvBytes, b.sendWin, b.recvWin, inline); err != nil {
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
		for b.pingpong && b.echo.recvPosted < min(b.recvWin, t.Messages) && postErr == nil {
			postErr = b.postEchoRecv()
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
		// Every message filled when they all fit: the timed part is posting, transport and
		// completions.
		if b.snd != nil && b.prefilled {
			fillMessages(b.snd.mr.Bytes(), b.size, t.Messages, b.dir)
		}
		if b.pingpong && b.echoOut.prefilled {
			fillMessages(b.rcv.mr.Bytes()[b.echoOut.sendOff:], b.size, t.Messages, b.echoDir())
		}
		b.postAt = make([]time.Duration, t.Messages)
		b.recvAt = make([]time.Duration, t.Messages)
		if b.pingpong {
			b.echo.at = make([]time.Duration, t.Messages)
		}
		b.seen = map[uint32]bool{}
		b.sendRecs = make([]CompletionRecord, 0, t.Messages)
		b.recvRecs = make([]CompletionRecord, 0, t.Messages)
		slog.Debug("batch started", "traffic", t.Name, "direction", dir, "host", s.Host)
		err = b.run(ctx, bctx, t)
		res.ElapsedMS = msSince(b.t0)
		if b.latN > 0 {
			res.MeanLatencyUS = float64(b.latSum.Microseconds()) / float64(b.latN)
		}
		if b.snd != nil && b.rcv != nil {
			res.OneWayUS = b.oneWay() // the two ends' clocks are one only on one host
		}
		if b.pingpong {
			res.HalfRoundTripUS = b.halfRoundTrips()
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

// connect brings this host's QPs to RTS. RC: INIT, then RTR (each end resolves the other's MAC,
// which the lab's up resolved already; ETIMEDOUT when it never resolves) with the other end's QP number,
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
	b.recvReady.Store(int64(b.recvPosted))
	return nil
}

// prefillSlots is how many buffer slots a batch's messages of size bytes, sent with a window
// of win, get: every message when they fit in maxPrefillBytes (then all are filled before the
// first send, and prefilled is true), else a ring of at least win slots refilled on use.
func prefillSlots(messages, win, size int) (slots int, prefilled bool) {
	slots = min(messages, max(win, maxPrefillBytes/max(size, 1)))
	return slots, slots == messages
}

// sendSlot is the offset of message seq's slot in the send buffer, filled first unless every
// message was filled before the first send.
func (b *batch) sendSlot(seq int) int {
	off := (seq % b.sendSlots) * b.size
	if !b.prefilled {
		fillMessage(b.snd.mr.Bytes()[off:off+b.size], b.dir, uint32(seq))
	}
	return off
}

// postSend posts the next message as one signalled SEND: every UD SEND, and a ping-pong's (a
// stream's RC SENDs go as lists: postSends). A failed post stops sending (the batch then lacks
// completions) and is noted.
func (b *batch) postSend() {
	seq := b.posted
	off := b.sendSlot(seq)
	b.postAt[seq] = time.Since(b.t0)
	var err error
	if b.snd.qp.Type() == verbs.QPTypeUD {
		err = b.snd.qp.PostSendUD(b.snd.mr, off, b.size, uint64(seq), b.snd.ah, b.remoteQPN, trafficQKey)
	} else {
		err = b.snd.qp.PostSend(b.snd.mr, off, b.size, uint64(seq), true)
	}
	if err != nil {
		b.stopSend = true
		b.sendErrs = append(b.sendErrs, fmt.Sprintf("post send %d: %v", seq, err))
		return
	}
	b.posted++
	b.res.Posted = b.posted
}

// postSends posts, as one work-request list (verbs.QP.PostSends: one doorbell), every RC
// SEND that may go now — up to the window and the receives posted — each signalled, filling
// their slots first unless every message was; a short list waits (see below). A failed post
// stops sending and is noted.
func (b *batch) postSends() {
	n := 0
	for seq := b.posted; !b.stopSend && seq < b.messages && seq-b.sendDone < b.sendWin && b.mayPost(seq); seq++ {
		n++
	}
	// Each list is one doorbell, a system call in which rxe runs the requester: wait until a
	// quarter of the window can go at once, while more than that is still in flight (the
	// queue stays three quarters full) and more messages follow. In the guest this raised the
	// rate by about a fifth over posting whatever had just been freed.
	quarter := b.sendWin / 4
	if n == 0 || n < quarter && b.posted+n < b.messages && b.posted-b.sendDone > quarter {
		return
	}
	wrs := b.sendWRs[:0]
	for seq := b.posted; seq < b.posted+n; seq++ {
		wrs = append(wrs, verbs.SendWR{Offset: b.sendSlot(seq), Length: b.size, WRID: uint64(seq), Signaled: true})
	}
	b.sendWRs = wrs
	at := time.Since(b.t0)
	for _, w := range wrs {
		b.postAt[w.WRID] = at
	}
	posted, err := b.snd.qp.PostSends(b.snd.mr, wrs)
	b.posted += posted
	b.res.Posted = b.posted
	if err != nil {
		b.stopSend = true
		b.sendErrs = append(b.sendErrs, fmt.Sprintf("post send %d: %v", b.posted, err))
	}
}

// run drives the batch with two workers, one on this goroutine and one on another, so that
// receiving and checking payloads runs beside sending on another CPU; a batch sent one message
// at a time (window 1), or on a machine where the two could not run at once (one CPU, or
// GOMAXPROCS 1), has one worker; a ping-pong runs its own loop (runPingPong), and an RC
// stream with both ends here and every message filled sends from C (runStream).
// Each worker serves its own side first and then the other one if nobody is serving it, so
// the batch keeps moving when one worker's CPU is taken away (under TCG on a busy host a vCPU
// can stall for many milliseconds). It returns when both sides are done: every completion in,
// the deadline (bctx), the receiver idle for its grace after the sender finished, or ctx
// cancelled. The goroutines are not locked to threads: a locked goroutine that yields hands
// its thread over through the kernel, which costs milliseconds under TCG.
func (b *batch) run(ctx, bctx context.Context, t scenario.Traffic) error {
	grace := rcReceiverGrace
	if t.Transport == scenario.TransportUD {
		grace = udReceiverGrace
	}
	if b.rcv == nil {
		b.endRecv(stopDone, nil) // the receiver is on the other host
	}
	recv := func() (int, int) { return b.serveRecv(grace) }
	switch {
	case b.pingpong:
		b.runPingPong(ctx, bctx, grace)
	case b.streams(t):
		b.runStream(ctx, bctx, recv)
	default:
		defer b.watchEnd(ctx, bctx, nil)()
		b.t0 = time.Now()
		send := b.serveSend
		if b.sendWin == 1 || !twoCPUs() {
			// One message at a time leaves nothing to overlap: one worker posts and polls
			// both sides. rxe delivers over a veth inside the post, so the RECV completion
			// is there when the post returns, and no second worker has to be scheduled to
			// see it — under TCG that wait was most of the one-way latency. On one CPU a
			// second worker would only take turns with the first, through the scheduler.
			work(send, recv)
		} else {
			// Each worker serves its own side first.
			bothAtOnce(func() { work(send, recv) }, func() { work(recv, send) })
		}
	}

	b.res.Completions = mergeByTime(b.sendRecs, b.recvRecs)
	b.res.Errors = append(append(b.res.Errors, b.sendErrs...), b.recvErrs...)
	switch {
	case b.sendErr != nil || b.recvErr != nil:
		err := errors.Join(b.sendErr, b.recvErr)
		b.res.StopReason = "polling failed"
		if errors.Is(err, ErrPeerLost) {
			b.res.StopReason = "the other host's rocebed stopped answering"
		}
		return err
	case b.sendEnd == stopCancelled || b.recvEnd == stopCancelled:
		b.res.StopReason = "cancelled"
		return fmt.Errorf("traffic %s interrupted: %w", t.Name, ctx.Err())
	case b.rcv == nil && b.sendEnd == stopDone && b.stopSend:
		b.res.StopReason = "sending stopped at an error completion"
	case b.sendEnd == stopDone && b.recvEnd == stopDone:
		b.res.StopReason = "complete"
	case b.recvEnd == stopIdle:
		b.res.StopReason = fmt.Sprintf("the receiver stayed idle for %s after the sender finished", grace)
	default:
		b.res.StopReason = fmt.Sprintf("deadline %d ms reached", t.DeadlineMS)
	}
	return nil
}

// bothAtOnce runs here on this goroutine and there on another, and returns when both have.
func bothAtOnce(here, there func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		there()
	}()
	here()
	<-done
}

// twoCPUs says whether two goroutines can run at once here: two Ps, and two CPUs this process
// may use (the VM test driver gives a one-vCPU guest two Ps, to quieten the runtime's sysmon).
func twoCPUs() bool {
	if workers != 0 {
		return workers == 2
	}
	return runtime.GOMAXPROCS(0) > 1 && runtime.NumCPU() > 1
}

// Every message (and a ping-pong's every echo) is filled before the first send when they all
// fit in maxPrefillBytes; a longer batch refills a ring of buffers, each when its slot comes
// round. A variable so that the tests can run the ring with a few messages.
var maxPrefillBytes = 64 << 20

// workers, when not 0, makes every batch that can have two workers have them (2), even on
// one CPU, or have one (1): the tests' way to run both paths whatever the guest's CPUs.
var workers int

// maxRecvWindow bounds the receives in flight (see maxWindowBytes), and with them a
// ping-pong's Runs. A variable so that the tests can run a ping-pong in several Runs.
var maxRecvWindow = 1024

// Why a side stopped.
const (
	stopDone      = "done"
	stopIdle      = "idle"
	stopDeadline  = "deadline"
	stopCancelled = "cancelled"
	stopFailed    = "failed" // polling failed, or the other host went away
)

// work serves the given sides in turn — each only when no other worker is serving it — until
// all of them have stopped. A side returns how many completions it took and 1 once it has
// stopped (serveSend, serveRecv).
func work(sides ...func() (moved, finished int)) {
	w := newWaiter()
	for {
		moved, finished := 0, 0
		for _, serve := range sides {
			n, fin := serve()
			moved, finished = moved+n, finished+fin
		}
		switch {
		case finished == len(sides):
			return
		case moved > 0:
			w.progress()
		default:
			w.idle()
		}
	}
}

// serveSend, unless another worker is at it, keeps up to sendWin SENDs outstanding (and never
// more than the receives posted for them) and polls the sender's CQ. It returns how many
// completions it took and 1 once the sender has stopped: every posted SEND completed and
// nothing left to post, or the batch ended. A sender on the other host is served by
// watching for its word (serveRemoteSend).
func (b *batch) serveSend() (int, int) {
	if !b.sendMu.TryLock() {
		return 0, 0
	}
	defer b.sendMu.Unlock()
	if b.sendEnd != "" {
		return 0, 1
	}
	if b.failed.Load() {
		b.endSend(stopFailed, nil)
		return 0, 1
	}
	if b.peer != nil {
		if err := b.peer.Lost(); err != nil {
			b.endSend(stopFailed, err)
			return 0, 1
		}
	}
	if b.snd == nil {
		return b.serveRemoteSend()
	}
	if b.snd.qp.Type() == verbs.QPTypeRC {
		b.postSends()
	} else {
		for !b.stopSend && b.posted < b.messages && b.posted-b.sendDone < b.sendWin && b.mayPost(b.posted) {
			b.postSend()
		}
	}
	if (b.stopSend || b.posted == b.messages) && b.sendDone == b.posted {
		b.endSend(stopDone, nil)
		return 0, 1
	}
	n, err := b.snd.cq.PollInto(b.sendWCs[:])
	if err != nil {
		b.endSend(stopFailed, err)
		return 0, 1
	}
	if n > 0 {
		at := time.Since(b.t0)
		for _, wc := range b.sendWCs[:n] {
			b.recordSend(wc, at)
		}
	}
	if n == 0 {
		if reason := b.endedBy(); reason != "" {
			b.endSend(reason, nil)
			return 0, 1
		}
	}
	return n, 0
}

// serveRemoteSend stands for a sender on the other host: it has stopped once it says so
// (the receiver's idle grace counts from then), or once the receiver here has every message
// (runBatch then waits for the word).
func (b *batch) serveRemoteSend() (int, int) {
	var m sentMsg
	ok, err := b.peer.Poll(msgSent, &m)
	if err == nil && ok {
		err = checkBatch(b.peer, msgSent, b.res.Name(), m.Batch)
	}
	switch {
	case err != nil:
		b.endSend(stopFailed, err)
		return 0, 1
	case ok:
		b.peerSent = true
		b.endSend(stopDone, nil)
		return 1, 1
	case b.recvStopped.Load():
		b.endSend(stopDone, nil)
		return 0, 1
	}
	if reason := b.endedBy(); reason != "" {
		b.endSend(reason, nil)
		return 0, 1
	}
	return 0, 0
}

// endSend records why the sender stopped (under sendMu); an error stops the receiver too.
func (b *batch) endSend(reason string, err error) {
	b.sendEnd, b.sendErr = reason, err
	b.sendFinishedNS.Store(int64(time.Since(b.t0)) + 1)
	if err != nil {
		b.failed.Store(true)
	}
}

// endRecv records why the receiver stopped (under recvMu, or before the workers start); an
// error stops the sender too.
func (b *batch) endRecv(reason string, err error) {
	b.recvEnd, b.recvErr = reason, err
	b.recvStopped.Store(true)
	if err != nil {
		b.failed.Store(true)
	}
}

// mayPost says whether SEND seq has a receive posted for it. Where the batch has more
// messages than receives in flight, the sender waits for the receiver to repost, unless the
// receiver has made no progress for its grace (UD messages that were lost never free their
// receive): then it sends anyway. A receiver on the other host is not waited for: it posted
// every receive it has room for before it said it was ready; RC's receiver-not-ready retries
// cover the rest, and a UD batch longer than its receive window may lose messages there.
func (b *batch) mayPost(seq int) bool {
	if b.rcv == nil || int64(seq) < b.recvReady.Load() {
		return true
	}
	return time.Since(b.t0)-time.Duration(b.recvProgressNS.Load()) > udReceiverGrace
}

// serveRecv, unless another worker is at it, polls the receiver's CQ, checks each payload and
// reposts its receive. It returns how many completions it took and 1 once the receiver has
// stopped: every message arrived, it stayed idle for grace after the sender finished, the
// batch ended, or the sender failed.
func (b *batch) serveRecv(grace time.Duration) (int, int) {
	if !b.recvMu.TryLock() {
		return 0, 0
	}
	defer b.recvMu.Unlock()
	if b.recvEnd != "" {
		return 0, 1
	}
	if b.failed.Load() {
		b.endRecv(stopFailed, nil)
		return 0, 1
	}
	n, err := b.rcv.cq.PollInto(b.recvWCs[:])
	if err != nil {
		b.endRecv(stopFailed, err)
		return 0, 1
	}
	if n > 0 {
		at := time.Since(b.t0)
		for _, wc := range b.recvWCs[:n] {
			b.recordRecv(wc, at)
		}
		b.recvProgressNS.Store(int64(at))
		if b.stream != nil {
			b.stream.Allow(b.recvPosted)
		}
	}
	switch {
	case b.recvDone >= b.messages:
		b.endRecv(stopDone, nil)
		return n, 1
	case n > 0:
		return n, 0
	}
	if fin := b.sendFinishedNS.Load(); fin != 0 {
		quiet := time.Duration(max(fin-1, b.recvProgressNS.Load()))
		if time.Since(b.t0)-quiet > grace {
			b.endRecv(stopIdle, nil)
			return 0, 1
		}
	}
	if reason := b.endedBy(); reason != "" {
		b.endRecv(reason, nil)
		return 0, 1
	}
	return 0, 0
}

// watchEnd records, once bctx ends, whether the batch was cancelled (ctx) or reached its
// deadline, so that endedBy is one atomic load on every empty poll: a select on the two
// contexts' channels takes their locks, and two workers polling on two CPUs contended for
// them. It then calls then, if any (a ping-pong's Stop). The returned func stops watching.
func (b *batch) watchEnd(ctx, bctx context.Context, then func()) (stop func() bool) {
	return context.AfterFunc(bctx, func() {
		reason := stopDeadline
		if ctx.Err() != nil {
			reason = stopCancelled
		}
		b.ended.Store(&reason)
		if then != nil {
			then()
		}
	})
}

// endedBy says whether the batch was cancelled or reached its deadline ("" while neither).
func (b *batch) endedBy() string {
	if r := b.ended.Load(); r != nil {
		return *r
	}
	return ""
}

// waiter paces a polling loop that found nothing: it keeps polling for spinFor after the last
// completion (yielding where GOMAXPROCS is 1, so that the rest of the program runs), then
// sleeps, backing off from minWait to maxWait, so a stalled batch does not hold a CPU until
// its deadline.
type waiter struct {
	since time.Time
	wait  time.Duration
	yield bool // GOMAXPROCS is 1, read once: reading it takes the scheduler's lock
}

func newWaiter() waiter { return waiter{yield: runtime.GOMAXPROCS(0) == 1} }

func (w *waiter) progress() { w.since, w.wait = time.Time{}, 0 }

func (w *waiter) idle() {
	now := time.Now()
	if w.since.IsZero() {
		w.since = now
	}
	if now.Sub(w.since) < spinFor {
		if w.yield {
			runtime.Gosched() // the peer's connection, a signal handler
		}
		return
	}
	w.wait = min(max(2*w.wait, minWait), maxWait)
	time.Sleep(w.wait)
}

// recordSend keeps one SEND completion, polled at at (since t0).
func (b *batch) recordSend(wc verbs.Completion, at time.Duration) {
	b.sendDone++
	if wc.Status != verbs.WCSuccess {
		b.stopSend = true // the QP is in error; what is posted flushes
	} else if int(wc.WRID) < len(b.postAt) {
		b.latSum += at - b.postAt[wc.WRID]
		b.latN++
	}
	b.sendRecs = append(b.sendRecs, b.completionRecord(b.snd, RoleSender, wc, at))
}

// recordRecv keeps one RECV completion, polled at at (since t0), checks its payload and
// reposts the receive.
func (b *batch) recordRecv(wc verbs.Completion, at time.Duration) {
	c := b.completionRecord(b.rcv, RoleReceiver, wc, at)
	b.recvDone++
	if wc.Status == verbs.WCSuccess {
		var seq int
		seq, c.Payload = b.checkPayload(wc)
		if seq >= 0 && seq < len(b.recvAt) && b.recvAt[seq] == 0 {
			b.recvAt[seq] = at
		}
		if b.recvPosted < b.messages {
			if err := b.postRecv(); err != nil {
				b.recvErrs = append(b.recvErrs, err.Error())
			}
		}
	}
	b.recvRecs = append(b.recvRecs, c)
}

func (b *batch) completionRecord(v *verbsSide, role string, wc verbs.Completion, at time.Duration) CompletionRecord {
	return CompletionRecord{
		Side: v.end.Side, Role: role, Device: v.end.Device, WRID: wc.WRID, Status: wc.Status, Opcode: wc.Opcode,
		ByteLen: wc.ByteLen, QPN: wc.QPN, SrcQP: wc.SrcQP, WCFlags: uint32(wc.Flags), VendorErr: wc.VendorErr,
		AtMS: float64(at.Nanoseconds()) / 1e6,
	}
}

// mergeByTime merges two lists that are each in time order into one.
func mergeByTime(a, b []CompletionRecord) []CompletionRecord {
	out := make([]CompletionRecord, 0, len(a)+len(b))
	for len(a) > 0 && len(b) > 0 {
		if b[0].AtMS < a[0].AtMS {
			out, b = append(out, b[0]), b[1:]
		} else {
			out, a = append(out, a[0]), a[1:]
		}
	}
	return append(append(out, a...), b...)
}

// oneWay summarises, over the messages that arrived, the time from posting each SEND to
// polling its RECV completion.
func (b *batch) oneWay() *LatencyStats { return b.sincePosted(b.recvAt, 1) }

// sincePosted summarises, over the messages k polled at at[k] (0: never), the time from
// posting message k to then, divided by parts (2: half a round trip).
func (b *batch) sincePosted(at []time.Duration, parts float64) *LatencyStats {
	var us []float64
	for seq, t := range at {
		if t > 0 && seq < b.posted {
			us = append(us, float64((t-b.postAt[seq]).Nanoseconds())/1e3/parts)
		}
	}
	return NewLatencyStats(us)
}

// checkPayload verifies the receive buffer of wc: the message's sequence number (-1 if it
// cannot be told) and "ok" or what is wrong.
func (b *batch) checkPayload(wc verbs.Completion) (int, string) {
	want := b.size + b.recvOff
	if int(wc.ByteLen) != want {
		return -1, fmt.Sprintf("byte_len %d, want %d", wc.ByteLen, want)
	}
	slot := int(wc.WRID) % b.recvWin
	buf := b.rcv.mr.Bytes()[slot*b.recvSlot+b.recvOff : slot*b.recvSlot+b.recvOff+b.size]
	seq := uint32(wc.WRID) // RC: message k lands in receive k
	if b.rcv.qp.Type() == verbs.QPTypeUD && b.size >= verbs.PayloadHeaderLen {
		// UD may lose a message; name what arrived by its header, and catch duplicates.
		if _, hs, ok := verbs.ParsePayloadHeader(buf); ok {
			if b.seen[hs] {
				return -1, fmt.Sprintf("duplicate of message %d", hs)
			}
			b.seen[hs] = true
			seq = hs
		}
	}
	if err := verifyMessage(buf, b.dir, seq); err != nil {
		return int(seq), err.Error()
	}
	return int(seq), "ok"
}

// fillMessages fills the first n slots of size bytes in buf with messages 0..n-1 of d.
func fillMessages(buf []byte, size, n int, d verbs.Direction) {
	for seq := range n {
		fillMessage(buf[seq*size:(seq+1)*size], d, uint32(seq))
	}
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
