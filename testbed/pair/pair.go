// Package pair connects the rocebed processes on the two hosts of a two-host lab. One listens
// on a management address, the other connects, as perftest and the pingpong examples do; the
// connection is ordinary TCP, on a network other than the lab's cable. Each introduces itself
// (lab, fingerprint of the scenario, which host it is), so two processes that run different
// labs or the same side refuse each other before anything is changed. The connection then
// carries the traffic engine's messages (it is a traffic.Peer) and the runner's.
//
// Messages are frames: a 4-byte big-endian length, then JSON {"kind": ..., "body": ...}. A
// reader goroutine takes every frame off the socket as it arrives, so neither host's sends ever
// wait for the other to read, and a closed or broken connection is seen at once (Lost).
package pair

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/rocebed/rocebed/testbed/scenario"
	"github.com/rocebed/rocebed/testbed/traffic"
)

// Protocol is the version of the messages; both hosts must speak the same.
const Protocol = 1

// maxFrame bounds one message: a batch of a million messages sends a million completions.
const maxFrame = 1 << 30

// writeTimeout bounds a send whose context has no deadline.
const writeTimeout = time.Minute

// retryEvery is how often Dial tries again while nothing listens at the other host yet.
const retryEvery = 250 * time.Millisecond

// hello is the first message each way.
type hello struct {
	Protocol    int               `json:"protocol"`
	Lab         string            `json:"lab"`
	Fingerprint string            `json:"fingerprint"`
	Host        scenario.HostName `json:"host"`
	Version     string            `json:"version,omitempty"`
}

// frame is one message on the wire.
type frame struct {
	Kind string          `json:"kind"`
	Body json.RawMessage `json:"body"`
}

// Conn is the connection to the other host's rocebed. It implements traffic.Peer; Send may be
// called from one goroutine at a time, and so may Recv and Poll.
type Conn struct {
	c    net.Conn
	name string

	wmu sync.Mutex

	mu     sync.Mutex
	queue  []frame
	notify chan struct{} // a frame was queued
	lost   chan struct{} // closed when the connection is gone
	err    error         // why, wrapping traffic.ErrPeerLost
}

var _ traffic.Peer = (*Conn)(nil)

// Listen waits on addr (host:port of this host, e.g. its management address) for the other
// host's rocebed to connect, until ctx ends, and introduces this host (s: its part of the lab,
// from scenario.ForHost). Only the first connection is taken.
func Listen(ctx context.Context, addr string, s *scenario.Scenario, version string) (*Conn, error) {
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s for the other host: %w: give --listen an address of this host that the other host can reach, and a free port", addr, err)
	}
	return Accept(ctx, ln, s, version)
}

// Accept is Listen on a listener the caller made; it closes ln.
func Accept(ctx context.Context, ln net.Listener, s *scenario.Scenario, version string) (*Conn, error) {
	defer ln.Close()
	addr := ln.Addr().String()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	c, err := ln.Accept()
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("wait on %s for the other host to connect: %w: start `rocebed run %s --side %s --connect %s` there", addr, ctx.Err(), s.Name, s.Host.Other(), addr)
		}
		return nil, fmt.Errorf("wait on %s for the other host to connect: %w", addr, err)
	}
	return start(ctx, c, s, version)
}

// Dial connects to the other host's rocebed listening at addr, trying again while nothing
// listens there yet (it may not have started), until ctx ends, and introduces this host.
func Dial(ctx context.Context, addr string, s *scenario.Scenario, version string) (*Conn, error) {
	d := net.Dialer{}
	for {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			return start(ctx, c, s, version)
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("connect to the other host at %s: %w (last: %v): start `rocebed run %s --side %s --listen %s` there, and check that this host can reach it",
				addr, ctx.Err(), err, s.Name, s.Host.Other(), addr)
		}
		if !retryable(err) {
			return nil, fmt.Errorf("connect to the other host at %s: %w: check the address", addr, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(retryEvery):
		}
	}
}

// retryable reports whether a dial error may go away once the other host listens.
func retryable(err error) bool {
	var ne net.Error
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EHOSTUNREACH) ||
		errors.Is(err, syscall.ENETUNREACH) || (errors.As(err, &ne) && ne.Timeout())
}

// start sets up the connection and exchanges hellos.
func start(ctx context.Context, c net.Conn, s *scenario.Scenario, version string) (*Conn, error) {
	if tc, ok := c.(*net.TCPConn); ok {
		// A host that vanishes without closing the connection (powered off, cable pulled) is
		// noticed within about 20 s even between messages.
		_ = tc.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: 5 * time.Second, Interval: 5 * time.Second, Count: 3})
	}
	p := &Conn{c: c, name: fmt.Sprintf("the other host (%s)", c.RemoteAddr()), notify: make(chan struct{}, 1), lost: make(chan struct{})}
	go p.read()
	mine := hello{Protocol: Protocol, Lab: s.Name, Fingerprint: s.Fingerprint(), Host: s.Host, Version: version}
	var theirs hello
	err := p.Send(ctx, "hello", mine)
	if err == nil {
		err = p.Recv(ctx, "hello", &theirs)
	}
	if err == nil {
		err = check(mine, theirs, p.name)
	}
	if err != nil {
		p.Close()
		return nil, err
	}
	p.mu.Lock()
	p.name = fmt.Sprintf("host %s (%s)", theirs.Host, c.RemoteAddr())
	p.mu.Unlock()
	return p, nil
}

// ErrMismatch says the two hosts were not started as two sides of one lab: another lab or
// scenario, the same --side, another rocebed protocol.
var ErrMismatch = errors.New("the two hosts do not run one lab")

// check says why two hellos cannot run a lab together (wrapping ErrMismatch).
func check(mine, theirs hello, name string) error {
	if err := mismatch(mine, theirs, name); err != nil {
		return fmt.Errorf("%w: %w", ErrMismatch, err)
	}
	return nil
}

func mismatch(mine, theirs hello, name string) error {
	switch {
	case theirs.Protocol != mine.Protocol:
		return fmt.Errorf("%s speaks protocol %d, this host %d: run the same rocebed version on both hosts (there: %s, here: %s)",
			name, theirs.Protocol, mine.Protocol, theirs.Version, mine.Version)
	case theirs.Lab != mine.Lab:
		return fmt.Errorf("%s runs lab %q, this host %q: run the same scenario on both hosts", name, theirs.Lab, mine.Lab)
	case theirs.Host == mine.Host:
		return fmt.Errorf("%s also says it is host %s: run one host with --side a and the other with --side b", name, mine.Host)
	case theirs.Host != mine.Host.Other():
		return fmt.Errorf("%s says it is host %q: want %s", name, theirs.Host, mine.Host.Other())
	case theirs.Fingerprint != mine.Fingerprint:
		return fmt.Errorf("%s runs lab %s with other contents (fingerprint %s there, %s here): give both hosts the same scenario file and the same --set values",
			name, mine.Lab, theirs.Fingerprint, mine.Fingerprint)
	}
	return nil
}

// Name names the other host: "host b (192.168.100.2:40312)".
func (p *Conn) Name() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.name
}

// Close closes the connection; the other host sees it as lost.
func (p *Conn) Close() error { return p.c.Close() }

// read queues every frame until the connection ends, then records why.
func (p *Conn) read() {
	var hdr [4]byte
	for {
		if _, err := io.ReadFull(p.c, hdr[:]); err != nil {
			p.fail(err)
			return
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if n > maxFrame {
			p.fail(fmt.Errorf("a %d-byte message is over the %d-byte limit", n, maxFrame))
			return
		}
		buf := make([]byte, n)
		if _, err := io.ReadFull(p.c, buf); err != nil {
			p.fail(err)
			return
		}
		var f frame
		if err := json.Unmarshal(buf, &f); err != nil {
			p.fail(fmt.Errorf("undecodable message: %w", err))
			return
		}
		p.mu.Lock()
		p.queue = append(p.queue, f)
		p.mu.Unlock()
		select {
		case p.notify <- struct{}{}:
		default:
		}
	}
}

// fail marks the connection lost.
func (p *Conn) fail(err error) {
	what := "connection broke"
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		what = "connection closed"
	}
	p.mu.Lock()
	if p.err == nil {
		p.err = fmt.Errorf("%s: %s (%v): %w", p.name, what, err, traffic.ErrPeerLost)
		close(p.lost)
	}
	p.mu.Unlock()
	p.c.Close()
}

// Lost is non-nil, wrapping traffic.ErrPeerLost, once the connection is gone.
func (p *Conn) Lost() error {
	select {
	case <-p.lost:
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.err
	default:
		return nil
	}
}

// Send sends v as a message of kind, within ctx's deadline.
func (p *Conn) Send(ctx context.Context, kind string, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s message: %w", kind, err)
	}
	msg, err := json.Marshal(frame{Kind: kind, Body: body})
	if err != nil {
		return fmt.Errorf("encode %s message: %w", kind, err)
	}
	if len(msg) > maxFrame {
		return fmt.Errorf("%s message of %d bytes is over the %d-byte limit: run fewer messages per traffic item", kind, len(msg), maxFrame)
	}
	if err := p.Lost(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	dl, ok := ctx.Deadline()
	if !ok {
		dl = time.Now().Add(writeTimeout)
	}
	p.wmu.Lock()
	defer p.wmu.Unlock()
	_ = p.c.SetWriteDeadline(dl)
	buf := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(msg)), uint32(len(msg)))
	if _, err := p.c.Write(append(buf, msg...)); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		p.fail(err)
		return p.Lost()
	}
	return nil
}

// Recv waits for the next message, which must be of kind, and decodes it into v. Messages that
// arrived before the connection was lost are still delivered.
func (p *Conn) Recv(ctx context.Context, kind string, v any) error {
	for {
		ok, err := p.Poll(kind, v)
		if ok || err != nil {
			return err
		}
		select {
		case <-p.notify:
		case <-p.lost:
		case <-ctx.Done():
			if ok, err := p.Poll(kind, v); ok || err != nil {
				return err
			}
			return fmt.Errorf("wait for the %s message of %s: %w", kind, p.Name(), ctx.Err())
		}
	}
}

// Poll takes the next message if one has arrived: false when none has. A message of another
// kind than expected is an error: the two hosts are out of step.
func (p *Conn) Poll(kind string, v any) (bool, error) {
	p.mu.Lock()
	if len(p.queue) == 0 {
		p.mu.Unlock()
		return false, p.Lost()
	}
	f := p.queue[0]
	p.queue = p.queue[1:]
	p.mu.Unlock()
	if f.Kind != kind {
		return false, fmt.Errorf("%s sent a %s message where this host expected %s: the two hosts are out of step; run the same rocebed and scenario on both", p.Name(), f.Kind, kind)
	}
	if err := json.Unmarshal(f.Body, v); err != nil {
		return false, fmt.Errorf("decode the %s message of %s: %w", kind, p.Name(), err)
	}
	return true, nil
}
