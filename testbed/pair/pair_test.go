package pair

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/rocebed/rocebed/testbed/scenario"
	"github.com/rocebed/rocebed/testbed/traffic"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// sides loads the shipped two-hosts lab (with sets) as host h's part.
func side(t *testing.T, h scenario.HostName, sets ...string) *scenario.Scenario {
	t.Helper()
	s, err := scenario.Load("two-hosts", sets)
	require.NoError(t, err)
	s, err = s.ForHost(h)
	require.NoError(t, err)
	return s
}

// connect runs Accept for a and Dial for b on the loopback and returns both ends, or their errors.
func connect(t *testing.T, a, b *scenario.Scenario) (*Conn, *Conn, error, error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	// A bound on the whole exchange, so a bug fails the test instead of hanging it.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	type res struct {
		c   *Conn
		err error
	}
	acc := make(chan res, 1)
	go func() {
		c, err := Accept(ctx, ln, a, "test")
		acc <- res{c, err}
	}()
	cb, errB := Dial(ctx, ln.Addr().String(), b, "test")
	ra := <-acc
	for _, c := range []*Conn{ra.c, cb} {
		if c != nil {
			t.Cleanup(func() { c.Close() })
		}
	}
	return ra.c, cb, ra.err, errB
}

func TestHelloAndMessages(t *testing.T) {
	a, b, errA, errB := connect(t, side(t, scenario.HostA), side(t, scenario.HostB))
	require.NoError(t, errA)
	require.NoError(t, errB)
	assert.True(t, strings.HasPrefix(a.Name(), "host b (127.0.0.1:"), a.Name())
	assert.True(t, strings.HasPrefix(b.Name(), "host a (127.0.0.1:"), b.Name())

	ctx := context.Background()
	type msg struct{ N int }
	var got msg
	ok, err := b.Poll("x", &got)
	require.NoError(t, err)
	assert.False(t, ok, "nothing sent yet")
	require.NoError(t, a.Send(ctx, "x", msg{1}))
	require.NoError(t, a.Send(ctx, "y", msg{2}))
	require.NoError(t, b.Recv(ctx, "x", &got))
	assert.Equal(t, 1, got.N)
	err = b.Recv(ctx, "z", &got)
	assert.ErrorContains(t, err, "sent a y message where this host expected z: the two hosts are out of step")

	// Both send a large message before either reads: the reader goroutines take them off the
	// sockets, so neither send waits for the other host to read.
	big := strings.Repeat("x", 2<<20) // more than both sockets' buffers hold
	errs := make(chan error, 2)
	for _, c := range []*Conn{a, b} {
		go func() { errs <- c.Send(ctx, "big", big) }()
	}
	require.NoError(t, <-errs)
	require.NoError(t, <-errs)
	for _, c := range []*Conn{a, b} {
		var s string
		require.NoError(t, c.Recv(ctx, "big", &s))
		assert.Len(t, s, len(big))
	}

	// A wait that runs out of time is not a lost peer.
	short, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	err = a.Recv(short, "never", &got)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.False(t, errors.Is(err, traffic.ErrPeerLost))
	assert.NoError(t, a.Lost())
}

// TestLostAtOnce: when one side's process goes away its connection closes, and the other sees
// it at once — in Lost, Poll and a Recv with no deadline — after any message sent before.
func TestLostAtOnce(t *testing.T) {
	a, b, errA, errB := connect(t, side(t, scenario.HostA), side(t, scenario.HostB))
	require.NoError(t, errA)
	require.NoError(t, errB)
	require.NoError(t, b.Send(context.Background(), "last", 7))
	require.NoError(t, b.Close())
	var n int
	require.NoError(t, a.Recv(context.Background(), "last", &n), "a message sent before the close still arrives")
	assert.Equal(t, 7, n)
	err := a.Recv(context.Background(), "next", &n)
	assert.ErrorIs(t, err, traffic.ErrPeerLost)
	assert.ErrorContains(t, err, "host b (127.0.0.1:", "after the hello the other host has its name")
	assert.ErrorContains(t, err, "connection closed")
	assert.ErrorIs(t, a.Lost(), traffic.ErrPeerLost)
	_, err = a.Poll("next", &n)
	assert.ErrorIs(t, err, traffic.ErrPeerLost)
	assert.ErrorIs(t, a.Send(context.Background(), "x", 1), traffic.ErrPeerLost)
}

func TestHelloRefusals(t *testing.T) {
	for _, tc := range []struct {
		name   string
		a, b   *scenario.Scenario
		wantA  string
		wantB  string
		status string
	}{
		{"same side", side(t, scenario.HostA), side(t, scenario.HostA),
			"the other host (127.0.0.1:", "also says it is host a: run one host with --side a and the other with --side b", ""},
		{"other sets", side(t, scenario.HostA), side(t, scenario.HostB, "addr_b=10.20.0.9/24"),
			"the other host (127.0.0.1:", "runs lab two-hosts with other contents", "give both hosts the same scenario file and the same --set values"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, errA, errB := connect(t, tc.a, tc.b)
			for _, err := range []error{errA, errB} {
				require.Error(t, err)
				assert.ErrorContains(t, err, tc.wantB)
				if tc.status != "" {
					assert.ErrorContains(t, err, tc.status)
				}
			}
			assert.ErrorContains(t, errB, tc.wantA)
		})
	}
}

// TestDialRetriesUntilListening: the connecting side may start first; it keeps trying until
// the other listens.
func TestDialRetriesUntilListening(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close()) // nothing listens there now: connections are refused
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		c, err := Dial(ctx, addr, side(t, scenario.HostB), "test")
		if c != nil {
			c.Close()
		}
		done <- err
	}()
	ln, err = net.Listen("tcp", addr)
	require.NoError(t, err)
	c, err := Accept(ctx, ln, side(t, scenario.HostA), "test")
	require.NoError(t, err)
	c.Close()
	require.NoError(t, <-done)

	short, cancel2 := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel2()
	_, err = Dial(short, addr, side(t, scenario.HostB), "test")
	assert.ErrorContains(t, err, "start `rocebed run two-hosts --side a --listen "+addr+"` there")
}
