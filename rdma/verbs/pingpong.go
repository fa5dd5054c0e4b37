package verbs

import (
	"fmt"
	"slices"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// A PingPong is ib_send_lat's loop between two connected RC QPs of this process, run in C:
// the pinger posts message k once echo k-1 is in, the ponger sends message k back as soon as
// its RECV completes. In the guest a Go loop calling C once per verb measured 1.3–1.6 times
// ib_send_lat's latency (the runtime's sysmon and preemption wake the busy-polling threads);
// here no Go code runs between an echo arriving and the next message going out.
//
// The caller owns the receives and the payloads: before each Run it posts the receives (the
// ponger's for the messages, the pinger's for the echoes, WR IDs of echoes carrying
// EchoWRID) and fills the send slots up to the limits it passes, and after it takes the
// completions (Completions), checks the payloads and reposts. A Run ends at its limits, so a
// receive slot is never reused while its payload is unchecked.
//
// Ping and Pong may run on two goroutines at once (one per CPU, as ib_send_lat's two
// processes), or both on one (RunBoth). Close frees the C state once neither runs.
type PingPong struct {
	cLoop
	ends     [2]*PingPongEnd
	messages int
}

// PingPongEnd is one end of a ping-pong: its QP (RC, connected), the CQ both its queues use,
// and the region its SENDs go from: message (or echo) k from SendOffset + (k % SendSlots) *
// Size.
type PingPongEnd struct {
	QP         *QP
	CQ         *CQ
	MR         *MR
	SendOffset int
	SendSlots  int
}

// PingPongConfig describes a ping-pong.
type PingPongConfig struct {
	Ping, Pong PingPongEnd
	Size       int    // bytes per message and echo
	Messages   int    // messages in all
	SendQueue  int    // SENDs an end may have posted and not seen complete
	Window     int    // most messages one Run covers: sizes the completion records
	EchoWRID   uint64 // a bit set in the WR IDs of echoes (the ponger's SENDs, the pinger's RECVs)
	// Pacing of a role that finds nothing: it polls without sleeping for Spin after its last
	// completion, then sleeps from MinWait doubling to MaxWait. The ponger stops once nothing
	// came for IdleGrace after the pinger ended (EndPing).
	Spin, MinWait, MaxWait, IdleGrace time.Duration
}

// PingPongRole is an end's role.
type PingPongRole int

// The two roles.
const (
	Ping PingPongRole = 0
	Pong PingPongRole = 1
)

// PingPongStop says why a role's part of a Run ended.
type PingPongStop int

// Why a Run ended for a role (the values of rb_pp_run).
const (
	PingPongRunning    PingPongStop = iota // the other role's part ended first (RunBoth)
	PingPongLimit                          // it reached its limit; every SEND it posted completed
	PingPongFull                           // its completion records are full: take them and run again
	PingPongFailed                         // a completion or a post failed; every SEND it posted completed
	PingPongPeerEnded                      // pinger: the ponger sends no more echoes; every SEND completed
	PingPongStopped                        // Stop was called
	PingPongIdle                           // ponger: nothing came for IdleGrace after the pinger ended
	PingPongPollFailed                     // ibv_poll_cq failed (Progress().PollErr)
)

// TimedCompletion is a completion and when the poll that returned it returned, since Start.
type TimedCompletion struct {
	Completion
	At time.Duration
}

// PingPongProgress is a role's counters.
type PingPongProgress struct {
	Posted    int  // SENDs posted: messages (pinger) or echoes (ponger)
	SendsDone int  // SEND completions, ok or not
	Arrived   int  // RECV completions, ok or not: echoes (pinger) or messages (ponger)
	Failed    bool // it sends no more
	PostErr   error
	PollErr   error
}

// loopEnd is one end of a loop in C (a ping-pong's end, a send stream) in the form
// sysNewPingPong and sysNewSendStream take: its SENDs go from sendOff + (k % slots) * size.
type loopEnd struct {
	qp, cq, buf    unsafe.Pointer
	lkey           uint32
	inlineMax      int
	sendOff, slots int
}

type pingPongPace struct{ spin, minWait, maxWait, idleGrace time.Duration }

// NewPingPong checks cfg and allocates the ping-pong's C state.
func NewPingPong(cfg PingPongConfig) (*PingPong, error) {
	op := "set up ping-pong"
	if cfg.Size <= 0 || cfg.Messages <= 0 || cfg.SendQueue <= 0 || cfg.Window <= 0 {
		return nil, &Error{Op: op, Err: fmt.Errorf("size %d, messages %d, send queue %d and window %d must be positive: %w",
			cfg.Size, cfg.Messages, cfg.SendQueue, cfg.Window, syscall.EINVAL)}
	}
	if cfg.EchoWRID == 0 || cfg.EchoWRID&(cfg.EchoWRID-1) != 0 || cfg.EchoWRID <= uint64(cfg.Messages) {
		return nil, &Error{Op: op, Err: fmt.Errorf("echo WR ID %#x must be one bit above every message number: %w", cfg.EchoWRID, syscall.EINVAL)}
	}
	var ends [2]loopEnd
	for i, e := range []*PingPongEnd{&cfg.Ping, &cfg.Pong} {
		role := []string{"pinger", "ponger"}[i]
		switch {
		case e.QP == nil || e.CQ == nil || e.MR == nil:
			return nil, &Error{Op: op, Err: fmt.Errorf("the %s needs a QP, a CQ and an MR: %w", role, syscall.EINVAL)}
		case e.QP.typ != QPTypeRC:
			return nil, &Error{Op: op, Err: fmt.Errorf("the %s's QP is %s; a ping-pong is RC: %w", role, e.QP.typ, syscall.EINVAL)}
		case e.CQ.ctx != e.QP.ctx || e.MR.pd.ctx != e.QP.ctx:
			return nil, &Error{Op: op, Err: fmt.Errorf("the %s's CQ and MR must be on its QP's device: %w", role, syscall.EINVAL)}
		case e.SendSlots <= 0:
			return nil, &Error{Op: op, Err: fmt.Errorf("the %s has %d send slots: %w", role, e.SendSlots, syscall.EINVAL)}
		}
		if err := e.MR.checkRange(op, e.SendOffset, e.SendSlots*cfg.Size); err != nil {
			return nil, err
		}
		ends[i] = loopEnd{qp: e.QP.h, cq: e.CQ.h, buf: e.MR.buf, lkey: e.MR.lkey, inlineMax: e.QP.caps.MaxInline,
			sendOff: e.SendOffset, slots: e.SendSlots}
		if ends[i].qp == nil || ends[i].cq == nil || e.MR.h == nil {
			return nil, &Error{Op: op, Err: fmt.Errorf("the %s's QP, CQ or MR: %w", role, ErrClosed)}
		}
	}
	// Per role and Run: the SENDs of the window and those still outstanding from before, the
	// RECVs of the window, and every posted receive flushing after an error.
	recs := 3*cfg.Window + 2*cfg.SendQueue + 64
	h, err := sysNewPingPong(op, ends, cfg.Size, cfg.Messages, cfg.SendQueue, recs, cfg.EchoWRID,
		pingPongPace{cfg.Spin, cfg.MinWait, cfg.MaxWait, cfg.IdleGrace})
	if err != nil {
		return nil, err
	}
	return &PingPong{cLoop: cLoop{h: h}, ends: [2]*PingPongEnd{&cfg.Ping, &cfg.Pong}, messages: cfg.Messages}, nil
}

// Start sets the time completions and posts are measured from, and returns it.
func (p *PingPong) Start() time.Time { return p.start() }

// Run serves role until its part ends: every message below limit has gone out and come back
// (pinger) or arrived and gone back (ponger), every SEND it posted completed, or see
// PingPongStop. The pinger sends message k only once the ponger runs with a limit above k.
func (p *PingPong) Run(role PingPongRole, limit int) (PingPongStop, error) {
	pingLimit, pongLimit := limit, 0
	if role == Pong {
		pingLimit, pongLimit = 0, limit
	}
	ping, pong, err := p.run(1<<role, pingLimit, pongLimit)
	if role == Pong {
		return pong, err
	}
	return ping, err
}

// RunBoth serves both roles on this goroutine (one CPU) until either one's part ends; the
// other's stop is then PingPongRunning.
func (p *PingPong) RunBoth(pingLimit, pongLimit int) (ping, pong PingPongStop, err error) {
	return p.run(1<<Ping|1<<Pong, pingLimit, pongLimit)
}

// run holds the roles' QPs, CQs and MRs open while C runs them.
func (p *PingPong) run(mask int, pingLimit, pongLimit int) (ping, pong PingPongStop, err error) {
	op := "run ping-pong"
	if err := p.begin(op); err != nil {
		return 0, 0, err
	}
	defer p.running.Done()
	var nodes []*node
	for _, role := range []PingPongRole{Ping, Pong} {
		limit := []int{pingLimit, pongLimit}[role]
		if mask&(1<<role) == 0 {
			continue
		}
		if limit <= 0 || limit > p.messages {
			return 0, 0, &Error{Op: op, Err: fmt.Errorf("limit %d outside 1..%d: %w", limit, p.messages, syscall.EINVAL)}
		}
		e := p.ends[role]
		nodes = append(nodes, &e.QP.node, &e.CQ.node, &e.MR.node)
	}
	release, err := holdOpen(op, nodes...)
	if err != nil {
		return 0, 0, err
	}
	defer release()
	ping, pong = sysRunPingPong(p.h, mask, pingLimit, pongLimit)
	return ping, pong, nil
}

// Completions appends role's completions since the last call to dst, and forgets them. Call it
// from the goroutine that runs role, between its Runs.
func (p *PingPong) Completions(role PingPongRole, dst []TimedCompletion) []TimedCompletion {
	if p.begin("take ping-pong completions") != nil {
		return dst
	}
	defer p.running.Done()
	return sysTakePingPong(p.h, role, p.t0ns, dst)
}

// Progress returns role's counters (between its Runs).
func (p *PingPong) Progress(role PingPongRole) PingPongProgress {
	if p.begin("read ping-pong progress") != nil {
		return PingPongProgress{}
	}
	defer p.running.Done()
	return sysPingPongProgress(p.h, role)
}

// PostedAt says when message k was posted, since Start (0 if it was not).
func (p *PingPong) PostedAt(k int) time.Duration {
	return p.postedAt("read ping-pong post time", k, p.messages, sysPingPostedNS)
}

// Stop makes every Run return PingPongStopped at its next poll (from any goroutine: a
// deadline or a cancelled batch).
func (p *PingPong) Stop() { p.signal(sysStopPingPong) }

// EndPing says the pinger sends no more: the ponger's idle grace counts from now.
func (p *PingPong) EndPing() { p.signal(sysEndPing) }

// EndPong says the ponger sends no more echoes: the pinger stops once its SENDs complete.
func (p *PingPong) EndPong() { p.signal(sysEndPong) }

func (p *PingPong) signal(fn func(unsafe.Pointer)) { p.cLoop.signal("signal ping-pong", fn) }

// Close frees the C state once no Run is in progress; a second Close does nothing.
func (p *PingPong) Close() error {
	p.close(sysFreePingPong)
	return nil
}

// cLoop is the C state of a loop that runs in C (PingPong, SendStream), and the calls using
// it, so that close frees it only once none of them runs.
type cLoop struct {
	h       unsafe.Pointer
	closeMu sync.Mutex
	running sync.WaitGroup
	t0ns    uint64 // C's clock at start
}

// start sets the time the loop's completions and posts are measured from, and returns it.
func (c *cLoop) start() time.Time {
	t0 := time.Now()
	c.t0ns = sysNowNS()
	return t0
}

// postedAt says when message k (of messages) was posted, since start (0 if it was not), read
// from the C state by read.
func (c *cLoop) postedAt(op string, k, messages int, read func(h unsafe.Pointer, k int) uint64) time.Duration {
	if k < 0 || k >= messages || c.begin(op) != nil {
		return 0
	}
	defer c.running.Done()
	ns := read(c.h, k)
	if ns == 0 {
		return 0
	}
	return time.Duration(ns - c.t0ns)
}

// begin counts a call that uses the C state, unless close freed it.
func (c *cLoop) begin(op string) error {
	c.closeMu.Lock()
	defer c.closeMu.Unlock()
	if c.h == nil {
		return &Error{Op: op, Err: ErrClosed}
	}
	c.running.Add(1)
	return nil
}

// signal calls fn with the C state, unless close freed it.
func (c *cLoop) signal(op string, fn func(unsafe.Pointer)) {
	if c.begin(op) != nil {
		return
	}
	defer c.running.Done()
	fn(c.h)
}

// close waits for the calls in progress and frees the C state once.
func (c *cLoop) close(free func(unsafe.Pointer)) {
	c.closeMu.Lock()
	defer c.closeMu.Unlock()
	if c.h == nil {
		return
	}
	c.running.Wait()
	free(c.h)
	c.h = nil
}

// holdOpen read-locks each of nodes once (one end's CQ may be another's), so that none is
// closed while C uses it, and returns what unlocks them.
func holdOpen(op string, nodes ...*node) (release func(), err error) {
	var held []*node
	release = func() {
		for _, n := range held {
			n.mu.RUnlock()
		}
	}
	for _, n := range nodes {
		if slices.Contains(held, n) {
			continue
		}
		if _, err := n.acquire(op); err != nil {
			release()
			return nil, err
		}
		held = append(held, n)
	}
	return release, nil
}
