//go:build linux

package lab_test

import (
	"context"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/rocebed/rocebed/internal/host"
	"github.com/rocebed/rocebed/internal/preflight"
	"github.com/rocebed/rocebed/internal/testenv"
	"github.com/rocebed/rocebed/internal/testlab"
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
	before := ns.Dump(t)
	l := testlab.UpRXE(t, "same-host", nil)

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

	l.Down(t)
	for _, dev := range []string{"rxe0", "rxe1"} {
		ok, err := plan.View(l.Env).RDMADevice(dev)
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
	r := testlab.RunToolPair(t, ctx, tool, serverArgs, clientArgs)
	require.NoError(t, r.ClientErr, "%s client: %s", tool, r.ClientOut)
	require.NoError(t, r.ServerErr, "%s server: %s", tool, r.ServerOut)
	t.Logf("%s client:\n%s", tool, r.ClientOut)
}

// TestHardwareEndpointMissing: hw-to-rxe on a host whose named NIC has no RDMA device stops
// before any change, says what is missing (exit 3 in the CLI), and leaves the host as it was.
func TestHardwareEndpointMissing(t *testing.T) {
	testenv.RequireRXE(t)
	ns := testenv.InitialNetNS(t)
	// Not eth1/eth2: the guest's own NICs may have those names.
	testlab.ExistingPairNamed(t, ns, "hwtest1", "hwtest2")
	t.Cleanup(func() {
		if l, err := ns.NL.LinkByName("hwtest1"); err == nil {
			_ = ns.NL.LinkDel(l)
		}
	})
	env, err := host.Open("")
	require.NoError(t, err)
	defer env.Close()
	s, err := scenario.Load("hw-to-rxe", []string{"hw_nic=hwtest1", "rxe_nic=hwtest2"})
	require.NoError(t, err)
	before := ns.Dump(t)
	_, err = lab.Up(context.Background(), env, s, lab.UpOptions{StateDir: t.TempDir()})
	var pe *preflight.Error
	require.ErrorAs(t, err, &pe)
	assert.Contains(t, err.Error(), "hardware RDMA (RoCE) device on hwtest1")
	testenv.SameState(t, before, ns.Dump(t))
}
