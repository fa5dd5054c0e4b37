//go:build linux

package runner

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/rocebed/rocebed/internal/host"
	"github.com/rocebed/rocebed/internal/testenv"
	"github.com/rocebed/rocebed/rdma/verbs"
	"github.com/rocebed/rocebed/testbed/lab"
	"github.com/rocebed/rocebed/testbed/pair"
	"github.com/rocebed/rocebed/testbed/scenario"
	"github.com/rocebed/rocebed/testbed/traffic"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// oneGuestTwoHosts is a two-host lab whose "hosts" are the guest's eth1 and eth2, one kernel:
// each side sets accept_local on its own NIC only, which lets the two NICs of one kernel talk
// (the same-host problem) without either side touching what the other does. Real two-host
// labs need no fix; the two-guest test (TestVMPair) runs them.
const oneGuestTwoHosts = `version: 1
name: one-guest-two-hosts
nics:
  - {name: eth1, host: a, kind: existing, addresses: [10.10.0.1/24]}
  - {name: eth2, host: b, kind: existing, addresses: [10.10.0.2/24]}
endpoints:
  a: {nic: eth1, rxe: rxe0}
  b: {nic: eth2, rxe: rxe1}
fixes:
  - name: accept-local
    sysctls: [net.ipv4.conf.eth1.accept_local=1, net.ipv4.conf.eth2.accept_local=1]
traffic:
  - {name: rc-both, transport: rc, direction: both, messages: 100, size: 1024, rc: {timeout: 14, retry_cnt: 6}}
  - {name: ud-both, transport: ud, direction: both, messages: 100, size: 1024}
expect:
  result: pass
`

// sideRun is one side's outcome.
type sideRun struct {
	host scenario.HostName
	res  *Result
	err  error
}

// runTwoSides runs both sides of a two-host lab in this process, each with its own Env and
// state dir, connected over TCP on 127.0.0.1; wrapB, if set, wraps side b's connection.
func runTwoSides(t *testing.T, text string, wrapB func(*pair.Conn) traffic.Peer) (a, b sideRun) {
	t.Helper()
	whole, err := scenario.Parse("inline.yaml", []byte(text), nil)
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	// Bounds the whole run so that a bug fails the test rather than hanging it; every wait in
	// RunSide has its own, shorter bound.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	done := make(chan sideRun, 2)
	for _, h := range []scenario.HostName{scenario.HostA, scenario.HostB} {
		s, err := whole.ForHost(h)
		require.NoError(t, err)
		env, err := host.Open("")
		require.NoError(t, err)
		t.Cleanup(env.Close)
		state := t.TempDir()
		t.Cleanup(func() { _ = lab.Down(context.Background(), state, s.Name) })
		opts := SideOptions{Up: lab.UpOptions{StateDir: state, Source: []byte(text)}, PeerTimeout: time.Minute}
		go func() {
			conn, err := connectSide(ctx, ln, s, h)
			if err != nil {
				done <- sideRun{host: h, err: err}
				return
			}
			defer conn.Close()
			var peer traffic.Peer = conn
			if h == scenario.HostB && wrapB != nil {
				peer = wrapB(conn)
			}
			res, err := RunSide(ctx, env, s, peer, opts)
			done <- sideRun{h, res, err}
		}()
	}
	for range 2 {
		r := <-done
		require.NotNil(t, r.res, "host %s did not connect: %v", r.host, r.err)
		if r.host == scenario.HostA {
			a = r
		} else {
			b = r
		}
	}
	return a, b
}

// TestTwoHostSidesInOneGuest runs the two sides of a two-host lab as two processes would, in
// one guest over its eth1–eth2 cable: each brings up only its part, runs its end of every
// batch, and both get the same report, with completions and counters from both hosts; both
// restore their part, and the guest is as before.
func TestTwoHostSidesInOneGuest(t *testing.T) {
	ns, _, before := cabledNICs(t)
	a, b := runTwoSides(t, oneGuestTwoHosts, nil)
	require.NoError(t, a.err)
	require.NoError(t, b.err)
	var ta, tb strings.Builder
	require.NoError(t, a.res.Traffic.WriteText(&ta))
	require.NoError(t, b.res.Traffic.WriteText(&tb))
	t.Logf("host a's report:\n%s", ta.String())
	require.True(t, a.res.Traffic.Pass, a.res.Traffic.Verdict)
	assert.Equal(t, a.res.Traffic.Verdict, b.res.Traffic.Verdict, "one verdict on both hosts")
	require.Len(t, a.res.Traffic.Batches, 4)
	for i, ba := range a.res.Traffic.Batches {
		bb := b.res.Traffic.Batches[i]
		assert.Equal(t, ba.Verdict, bb.Verdict, "%s: the same verdict on both hosts", ba.Name())
		assert.Equal(t, ba.Completions, bb.Completions, "%s: the same completions on both hosts", ba.Name())
		sends, recvs := 0, 0
		for _, c := range ba.Completions {
			if c.Status == verbs.WCSuccess && c.Opcode == verbs.WCSend && c.Side == ba.Sender.Side {
				sends++
			}
			if c.Status == verbs.WCSuccess && c.Opcode == verbs.WCRecv && c.Side == ba.Receiver.Side && c.Payload == "ok" {
				recvs++
			}
		}
		assert.Equal(t, ba.Messages, sends, "%s: the sender host's completions", ba.Name())
		assert.Equal(t, ba.Messages, recvs, "%s: the receiver host's completions", ba.Name())
		for _, name := range []string{"a/eth1", "b/eth2", "a/lo", "b/lo"} {
			_, ok := ba.Counters.Link(name)
			assert.True(t, ok, "%s: no counters of %s", ba.Name(), name)
		}
		assert.NotZero(t, ba.Sender.RTRMS+ba.Receiver.RTRMS, "%s: each host's own connect time", ba.Name())
	}
	for _, r := range []sideRun{a, b} {
		assert.True(t, r.res.Down, "host %s restored itself", r.host)
		require.NotNil(t, r.res.Peer.Restored, r.res.Peer.Summary())
		assert.True(t, *r.res.Peer.Restored, r.res.Peer.Summary())
		require.Len(t, r.res.Plan.Steps, 4, "address, accept_local, up and rxe of one NIC")
	}
	testenv.SameState(t, before, ns.Dump(t), "the two sides left changes behind")
}

// cutPeer is side b's connection, closed as b is about to send its message of kind at:
// what the other host sees when b's process dies there.
type cutPeer struct {
	*pair.Conn
	at string
}

func (c *cutPeer) Send(ctx context.Context, kind string, v any) error {
	if kind == c.at {
		c.Conn.Close()
	}
	return c.Conn.Send(ctx, kind, v)
}

// TestTwoHostPeerLostInOneGuest: when the other host's connection goes away in the middle of a
// batch, this host judges the batch peer-lost at once (well within its deadline), runs no
// further batch, and restores its part; the other host restores its own.
func TestTwoHostPeerLostInOneGuest(t *testing.T) {
	ns, _, before := cabledNICs(t)
	a, b := runTwoSides(t, oneGuestTwoHosts, func(c *pair.Conn) traffic.Peer { return &cutPeer{Conn: c, at: "ready"} })
	require.ErrorIs(t, a.err, traffic.ErrPeerLost)
	require.ErrorIs(t, b.err, traffic.ErrPeerLost)
	rep := a.res.Traffic
	require.NotNil(t, rep)
	var sb strings.Builder
	require.NoError(t, rep.WriteText(&sb))
	t.Logf("host a's report:\n%s", sb.String())
	require.Len(t, rep.Batches, 1, "no batch after the other host went away")
	bt := rep.Batches[0]
	assert.Equal(t, traffic.ClassPeerLost, bt.Class)
	assert.False(t, rep.ExpectationMet)
	assert.Contains(t, bt.Verdict, "host b (127.0.0.1:")
	assert.Less(t, bt.ConnectMS+bt.ElapsedMS, float64(bt.DeadlineMS), "the verdict came before the batch's deadline")
	for _, r := range []sideRun{a, b} {
		assert.True(t, r.res.Down, "host %s restored itself", r.host)
		assert.Nil(t, r.res.Peer.Restored, "the other host said nothing after it went away")
	}
	testenv.SameState(t, before, ns.Dump(t), "the two sides left changes behind")
}
