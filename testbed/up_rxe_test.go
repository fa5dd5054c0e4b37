package testbed

import (
	"context"
	"net/netip"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/rocebed/rocebed/internal/host"
	"github.com/rocebed/rocebed/internal/testenv"
	"github.com/rocebed/rocebed/rdma"
	"github.com/rocebed/rocebed/testbed/lab"
	"github.com/rocebed/rocebed/testbed/plan"
	"github.com/rocebed/rocebed/testbed/scenario"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestUpDownWithRXE brings the default lab up with its rxe devices on a kernel that has them
// (the VM tier), checks that both ports are ACTIVE with RoCE v2 GIDs for the NIC addresses,
// lets outside clients (ibv_rc_pingpong, perftest's ib_send_bw in verbs mode) talk across
// rocebed's link, and checks that down removes everything.
func TestUpDownWithRXE(t *testing.T) {
	testenv.RequireRXE(t)
	ns := testenv.InitialNetNS(t)
	env, err := host.Open("")
	require.NoError(t, err)
	defer env.Close()
	s, err := scenario.Load("same-host", nil)
	require.NoError(t, err)
	before := ns.Dump(t)
	state := t.TempDir()
	_, err = lab.Up(context.Background(), env, s, lab.UpOptions{StateDir: state})
	require.NoError(t, err)
	downed := false
	t.Cleanup(func() {
		if !downed {
			_ = lab.Down(context.Background(), state, s.Name)
		}
	})

	sys := rdma.Sysfs{}
	gid := map[string]int{}
	for dev, addr := range map[string]string{"rxe0": "10.10.0.1", "rxe1": "10.10.0.2"} {
		st, err := sys.PortState(dev, 1)
		require.NoError(t, err)
		assert.Equal(t, rdma.PortActive, st, dev)
		g, err := sys.FindGID(dev, 1, netip.MustParseAddr(addr))
		require.NoError(t, err)
		assert.Equal(t, rdma.RoCEv2, g.Type)
		gid[dev] = g.Index
		nd, err := sys.PortNetdev(dev, 1)
		require.NoError(t, err)
		assert.Equal(t, map[string]string{"rxe0": "vA", "rxe1": "vB"}[dev], nd)
	}

	sent := func(dev string) uint64 {
		c, err := sys.HWCounters(dev, 1)
		require.NoError(t, err)
		return c["sent_pkts"]
	}
	s0, s1 := sent("rxe0"), sent("rxe1")
	pair(t, "ibv_rc_pingpong",
		[]string{"-d", "rxe1", "-g", strconv.Itoa(gid["rxe1"]), "-n", "50"},
		[]string{"-d", "rxe0", "-g", strconv.Itoa(gid["rxe0"]), "-n", "50", "127.0.0.1"})
	pair(t, "ib_send_bw",
		[]string{"-d", "rxe1", "-x", strconv.Itoa(gid["rxe1"]), "-F", "-n", "200"},
		[]string{"-d", "rxe0", "-x", strconv.Itoa(gid["rxe0"]), "-F", "-n", "200", "10.10.0.2"})
	assert.Greater(t, sent("rxe0"), s0+200, "rxe0 sent nothing: the clients did not use rocebed's devices")
	assert.Greater(t, sent("rxe1"), s1+50, "rxe1 sent nothing")

	require.NoError(t, lab.Down(context.Background(), state, s.Name))
	downed = true
	for _, dev := range []string{"rxe0", "rxe1"} {
		ok, err := plan.View(env).RDMADevice(dev)
		require.NoError(t, err)
		assert.False(t, ok, "%s still exists after down", dev)
	}
	testenv.SameState(t, before, ns.Dump(t))
}

// pair runs a server and a client of an outside tool (fixed arguments) and requires both to
// succeed within a bound.
func pair(t *testing.T, tool string, serverArgs, clientArgs []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r := runToolPair(t, ctx, tool, serverArgs, clientArgs)
	require.NoError(t, r.clientErr, "%s client: %s", tool, r.clientOut)
	require.NoError(t, r.serverErr, "%s server: %s", tool, r.serverOut)
	t.Logf("%s client:\n%s", tool, r.clientOut)
}

// TestHardwareEndpointMissing: hw-to-rxe on a host whose named NIC has no RDMA device stops
// before any change, says what is missing (exit 3 in the CLI), and leaves the host as it was.
func TestHardwareEndpointMissing(t *testing.T) {
	testenv.RequireRXE(t)
	ns := testenv.InitialNetNS(t)
	existingPair(t, ns)
	t.Cleanup(func() {
		if l, err := ns.NL.LinkByName("eth1"); err == nil {
			_ = ns.NL.LinkDel(l)
		}
	})
	env, err := host.Open("")
	require.NoError(t, err)
	defer env.Close()
	s, err := scenario.Load("hw-to-rxe", []string{"hw_nic=eth1", "rxe_nic=eth2"})
	require.NoError(t, err)
	before := ns.Dump(t)
	_, err = lab.Up(context.Background(), env, s, lab.UpOptions{StateDir: t.TempDir()})
	var pe *PreflightError
	require.ErrorAs(t, err, &pe)
	assert.Contains(t, err.Error(), "hardware RDMA (RoCE) device on eth1")
	testenv.SameState(t, before, ns.Dump(t))
}

// toolPairResult is what a server and client of an outside tool did.
type toolPairResult struct {
	clientOut, serverOut string
	clientErr, serverErr error
	clientTook           time.Duration
}

// runToolPair starts the server, starts the client once the server listens on the tools'
// default QP exchange port (18515, perftest's and the pingpong examples'), and waits for both.
// A server that exits before it listens ends the test with its output.
func runToolPair(tb testing.TB, ctx context.Context, tool string, serverArgs, clientArgs []string) toolPairResult {
	tb.Helper()
	if _, err := exec.LookPath(tool); err != nil {
		tb.Fatalf("%s not installed: apt-get install ibverbs-utils perftest", tool)
	}
	srv := exec.CommandContext(ctx, tool, serverArgs...)
	srvOut := &lockedBuffer{}
	srv.Stdout, srv.Stderr = srvOut, srvOut
	require.NoError(tb, srv.Start())
	exited := make(chan struct{})
	var r toolPairResult
	go func() { r.serverErr = srv.Wait(); close(exited) }()
	if err := testenv.WaitTCPListen(ctx, 18515, exited); err != nil {
		<-exited
		tb.Fatalf("%s server: %v (exit: %v): %s", tool, err, r.serverErr, srvOut.String())
	}
	start := time.Now()
	out, err := exec.CommandContext(ctx, tool, clientArgs...).CombinedOutput()
	r.clientTook = time.Since(start)
	r.clientOut, r.clientErr = string(out), err
	<-exited
	r.serverOut = srvOut.String()
	return r
}
