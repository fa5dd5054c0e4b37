package verbs

import (
	"fmt"
	"syscall"
	"time"
	"unsafe"
)

// A SendStream is ib_send_bw's sending loop on one connected RC QP, run in C on the calling
// goroutine's thread: it keeps up to Queue SENDs outstanding, each signalled, posts them as
// lists of at most List (one doorbell each), and polls their CQ, recording every completion
// and when it was polled. 6.1's rxe runs the requester, and over a veth the rest of the
// transfer, inside the doorbell's system call, so the rate is the sending CPU's kernel time.
// In the guest, with this loop in Go, that CPU was in the kernel 75–94 % of the time (pinned)
// or the kernel's work spread over both CPUs (unpinned); with the loop here it was there
// 93–99 % of the time in the bench runs, as ib_send_bw's is.
//
// The caller owns the payloads and the receives: message k goes from slot k % Slots, filled
// before Run reaches it, and goes only once Allow has said that its receive is posted.
// Completions hands the records over between Runs, or after the last.
type SendStream struct {
	cLoop
	cfg SendStreamConfig
}

// SendStreamConfig describes a send stream: message k is Size bytes at Offset + (k % Slots) *
// Size in MR.
type SendStreamConfig struct {
	QP                     *QP
	CQ                     *CQ // the CQ of QP's send queue, which only this stream polls
	MR                     *MR
	Offset, Slots, Size    int
	Messages               int
	Queue                  int           // SENDs posted and not yet seen complete, at most
	List                   int           // SENDs one doorbell posts, at most (1..64)
	Spin, MinWait, MaxWait time.Duration // pacing of empty polls, as PingPongConfig's
}

// SendStreamStop says why a Run ended.
type SendStreamStop int

// Why a Run ended (the values of rb_ss_run).
const (
	SendStreamRunning    SendStreamStop = iota
	SendStreamLimit                     // every SEND below the limit went and completed
	SendStreamFull                      // the completion records are full: take them and run again
	SendStreamFailed                    // a completion or a post failed; every SEND posted completed
	SendStreamStopped                   // Stop was called
	SendStreamPollFailed                // ibv_poll_cq failed (Progress().PollErr)
)

// SendStreamProgress is a stream's counters.
type SendStreamProgress struct {
	Posted  int  // SENDs posted
	Done    int  // SEND completions, ok or not
	Failed  bool // it posts no more
	PostErr error
	PollErr error
}

// NewSendStream checks cfg and allocates the stream's C state.
func NewSendStream(cfg SendStreamConfig) (*SendStream, error) {
	op := "set up send stream"
	switch {
	case cfg.QP == nil || cfg.CQ == nil || cfg.MR == nil:
		return nil, &Error{Op: op, Err: fmt.Errorf("a send stream needs a QP, a CQ and an MR: %w", syscall.EINVAL)}
	case cfg.QP.typ != QPTypeRC:
		return nil, &Error{Op: op, Err: fmt.Errorf("the QP is %s; a send stream is RC: %w", cfg.QP.typ, syscall.EINVAL)}
	case cfg.CQ.ctx != cfg.QP.ctx || cfg.MR.pd.ctx != cfg.QP.ctx:
		return nil, &Error{Op: op, Err: fmt.Errorf("the CQ and the MR must be on the QP's device: %w", syscall.EINVAL)}
	case cfg.Size < 0 || cfg.Messages <= 0 || cfg.Slots <= 0 || cfg.Queue <= 0:
		return nil, &Error{Op: op, Err: fmt.Errorf("size %d, messages %d, slots %d and queue %d: the size must not be negative and the rest must be positive: %w",
			cfg.Size, cfg.Messages, cfg.Slots, cfg.Queue, syscall.EINVAL)}
	case cfg.List < 1 || cfg.List > maxSendList:
		return nil, &Error{Op: op, Err: fmt.Errorf("list %d outside 1..%d: %w", cfg.List, maxSendList, syscall.EINVAL)}
	}
	if err := cfg.MR.checkRange(op, cfg.Offset, cfg.Slots*cfg.Size); err != nil {
		return nil, err
	}
	e := loopEnd{qp: cfg.QP.h, cq: cfg.CQ.h, buf: cfg.MR.buf, lkey: cfg.MR.lkey, inlineMax: cfg.QP.caps.MaxInline,
		sendOff: cfg.Offset, slots: cfg.Slots}
	if e.qp == nil || e.cq == nil || cfg.MR.h == nil {
		return nil, &Error{Op: op, Err: fmt.Errorf("the QP, CQ or MR: %w", ErrClosed)}
	}
	// Every SEND posted completes once, ok or flushed: Messages records hold them all.
	h, err := sysNewSendStream(op, e, cfg, cfg.Messages)
	if err != nil {
		return nil, err
	}
	return &SendStream{cLoop: cLoop{h: h}, cfg: cfg}, nil
}

// Start sets the time completions and posts are measured from, and returns it.
func (s *SendStream) Start() time.Time { return s.start() }

// Allow lets messages below n go (their receives are posted); from any goroutine, while Run
// runs. n never goes down.
func (s *SendStream) Allow(n int) {
	s.signal("allow send stream", func(h unsafe.Pointer) { sysAllowSendStream(h, n) })
}

// Run posts and polls until every message below limit went and completed, or see
// SendStreamStop.
func (s *SendStream) Run(limit int) (SendStreamStop, error) {
	op := "run send stream"
	if limit <= 0 || limit > s.cfg.Messages {
		return 0, &Error{Op: op, Err: fmt.Errorf("limit %d outside 1..%d: %w", limit, s.cfg.Messages, syscall.EINVAL)}
	}
	if err := s.begin(op); err != nil {
		return 0, err
	}
	defer s.running.Done()
	release, err := holdOpen(op, &s.cfg.QP.node, &s.cfg.CQ.node, &s.cfg.MR.node)
	if err != nil {
		return 0, err
	}
	defer release()
	return sysRunSendStream(s.h, limit), nil
}

// Completions appends the completions polled since the last call to dst and forgets them.
// Call it from the goroutine that runs the stream, between its Runs.
func (s *SendStream) Completions(dst []TimedCompletion) []TimedCompletion {
	if s.begin("take send stream completions") != nil {
		return dst
	}
	defer s.running.Done()
	return sysTakeSendStream(s.h, s.t0ns, dst)
}

// Progress returns the stream's counters (between its Runs).
func (s *SendStream) Progress() SendStreamProgress {
	if s.begin("read send stream progress") != nil {
		return SendStreamProgress{}
	}
	defer s.running.Done()
	return sysSendStreamProgress(s.h)
}

// PostedAt says when message k was posted, since Start (0 if it was not).
func (s *SendStream) PostedAt(k int) time.Duration {
	return s.postedAt("read send stream post time", k, s.cfg.Messages, sysSendPostedNS)
}

// Stop makes Run return SendStreamStopped at its next poll (from any goroutine).
func (s *SendStream) Stop() { s.signal("stop send stream", sysStopSendStream) }

// Close frees the C state once no Run is in progress; a second Close does nothing.
func (s *SendStream) Close() error {
	s.close(sysFreeSendStream)
	return nil
}
