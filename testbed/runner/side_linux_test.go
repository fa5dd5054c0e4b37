//go:build linux

package runner

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/rocebed/rocebed/internal/host"
	"github.com/rocebed/rocebed/internal/preflight"
	"github.com/rocebed/rocebed/internal/testenv"
	"github.com/rocebed/rocebed/testbed/lab"
	"github.com/rocebed/rocebed/testbed/pair"
	"github.com/rocebed/rocebed/testbed/scenario"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netlink"
)

// TestRunSideOtherHostFailsToComeUp: host a's part comes up (network only), host b's cannot
// (its eth1 does not exist): host a fails with the other host's exit code, runs no traffic and
// restores itself; host b fails with its own error; neither host is changed.
func TestRunSideOtherHostFailsToComeUp(t *testing.T) {
	nsA, nsB := testenv.NewNetNS(t), testenv.NewNetNS(t)
	la := netlink.NewLinkAttrs()
	la.Name = "eth1"
	require.NoError(t, nsA.NL.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "cable", PeerTxQLen: -1}))
	nsA.UpOnce(t, "eth1", "cable")
	beforeA, beforeB := nsA.Dump(t), nsB.Dump(t)
	whole, err := scenario.Load("two-hosts", nil)
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	// Bounds the test if RunSide were to wait on a host that said nothing.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	exitCode := func(err error) int {
		var pe *preflight.Error
		if errors.As(err, &pe) {
			return 3
		}
		return 4
	}
	type out struct {
		res *Result
		err error
	}
	done := map[scenario.HostName]chan out{scenario.HostA: make(chan out, 1), scenario.HostB: make(chan out, 1)}
	for h, ns := range map[scenario.HostName]*testenv.NetNS{scenario.HostA: nsA, scenario.HostB: nsB} {
		s, err := whole.ForHost(h)
		require.NoError(t, err)
		env, err := host.Open(ns.Name)
		require.NoError(t, err)
		t.Cleanup(env.Close)
		opts := SideOptions{Up: lab.UpOptions{StateDir: t.TempDir(), SkipRDMA: true}, PeerTimeout: time.Minute, ExitCode: exitCode}
		go func() {
			conn, err := connectSide(ctx, ln, s, h)
			if err != nil {
				done[h] <- out{err: err}
				return
			}
			defer conn.Close()
			res, err := RunSide(ctx, env, s, conn, opts)
			done[h] <- out{res, err}
		}()
	}
	a, b := <-done[scenario.HostA], <-done[scenario.HostB]

	var pe *PeerError
	require.ErrorAs(t, a.err, &pe)
	assert.Equal(t, 3, pe.Exit, "host a fails with host b's exit code")
	assert.Contains(t, a.err.Error(), "host b (127.0.0.1:")
	assert.Contains(t, a.err.Error(), "its part of the lab did not come up: interface eth1: need an existing interface eth1")
	assert.NotNil(t, a.res.Plan, "host a's part came up")
	assert.Nil(t, a.res.Traffic, "no traffic without both parts")
	assert.True(t, a.res.Down, "host a restored itself")
	assert.False(t, a.res.Peer.Up)

	var bpe *preflight.Error
	assert.ErrorAs(t, b.err, &bpe, "host b fails with its own error")
	assert.Nil(t, b.res.Plan)

	testenv.SameState(t, beforeA, nsA.Dump(t), "host a")
	testenv.SameState(t, beforeB, nsB.Dump(t), "host b")
}

// connectSide connects host h of a two-host test to the other over ln, as `run --side` does:
// host a accepts, host b dials.
func connectSide(ctx context.Context, ln net.Listener, s *scenario.Scenario, h scenario.HostName) (*pair.Conn, error) {
	if h == scenario.HostA {
		return pair.Accept(ctx, ln, s, "test")
	}
	return pair.Dial(ctx, ln.Addr().String(), s, "test")
}
