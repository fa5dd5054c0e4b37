//go:build linux

package runner

import (
	"context"
	"net"
	"os"
	"strings"
	"testing"

	"github.com/rocebed/rocebed/internal/host"
	"github.com/rocebed/rocebed/internal/testenv"
	"github.com/rocebed/rocebed/rdma"
	"github.com/rocebed/rocebed/testbed/diagnose"
	"github.com/rocebed/rocebed/testbed/lab"
	"github.com/rocebed/rocebed/testbed/probe"
	"github.com/rocebed/rocebed/testbed/scenario"
	"github.com/rocebed/rocebed/testbed/traffic"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// cabledNICs gives the test the guest's eth1 and eth2 (virtio-net, one cable), each brought
// up and down once first as a host's NICs have been (the first `up` attaches the qdisc for
// good), and the host's state before the lab.
func cabledNICs(t *testing.T) (*testenv.NetNS, *host.Env, string) {
	t.Helper()
	testenv.RequireCabledNICs(t, "eth1", "eth2")
	ns := testenv.InitialNetNS(t)
	ns.UpOnce(t, "eth1", "eth2")
	env, err := host.Open("")
	require.NoError(t, err)
	t.Cleanup(env.Close)
	return ns, env, ns.Dump(t)
}

// TestTwoNICs runs the seed's topology on real NIC drivers: probe, traffic both ways over RC
// and UD with the packets on eth1/eth2 and none on lo, a healthy diagnosis, exact restore.
func TestTwoNICs(t *testing.T) {
	ns, env, before := cabledNICs(t)
	s, err := scenario.Load("two-nics", nil)
	require.NoError(t, err)
	state := t.TempDir()
	ctx := context.Background()
	_, err = lab.Up(ctx, env, s, lab.UpOptions{StateDir: state})
	require.NoError(t, err)
	downed := false
	t.Cleanup(func() {
		if !downed {
			_ = lab.Down(context.Background(), state, s.Name)
		}
	})
	pr, err := probe.Run(ctx, env, s)
	require.NoError(t, err)
	var pt strings.Builder
	require.NoError(t, pr.WriteText(&pt))
	_, failed := pr.FirstFailure()
	assert.Nil(t, failed, "probe:\n%s", pt.String())

	rep, err := traffic.Run(ctx, env, s)
	require.NoError(t, err)
	var rt strings.Builder
	require.NoError(t, rep.WriteText(&rt))
	t.Logf("two-nics:\n%s", rt.String())
	require.True(t, rep.Pass, rep.Verdict)
	for _, b := range rep.Batches {
		// Every batch crossed (traffic judges it from the counters: both devices, both NICs, lo
		// below the message count); show what the NIC driver counted.
		for _, nic := range []string{b.Sender.NIC, b.Receiver.NIC} {
			l, _ := b.Counters.Link(nic)
			t.Logf("%s: %s tx +%d rx +%d, rx dropped +%d, rx errors +%d", b.Name(), nic, l.TxPackets, l.RxPackets, l.RxDropped, l.RxErrors)
		}
	}

	d, err := diagnose.Run(ctx, env, s, diagnose.Options{})
	require.NoError(t, err)
	assert.Empty(t, d.Findings, "codes %v", d.Codes())

	require.NoError(t, lab.Down(ctx, state, s.Name))
	downed = true
	testenv.SameState(t, before, ns.Dump(t), "two-nics left changes on the NICs")
}

// TestSeedTwoNICs: the seed's failure on real NICs — permanent neighbours, no fix — is
// diagnosed as martian-source.
func TestSeedTwoNICs(t *testing.T) {
	ns, env, before := cabledNICs(t)
	s, err := scenario.Load("seed-two-nics", nil)
	require.NoError(t, err)
	res, err := Run(context.Background(), env, s, Options{Up: lab.UpOptions{StateDir: t.TempDir()}, Diagnose: true})
	require.NoError(t, err)
	require.NotNil(t, res.Traffic)
	assert.True(t, res.Traffic.ExpectationMet, res.Traffic.Verdict)
	require.NotNil(t, res.Diagnosis)
	assert.Equal(t, diagnose.CodeMartianSource, res.Diagnosis.FirstCode(), "codes %v", res.Diagnosis.Codes())
	testenv.SameState(t, before, ns.Dump(t))
}

// TestHardwareStandIn runs hw-to-rxe end to end with an RDMA device made outside rocebed on
// eth1 standing in for a hardware RoCE NIC: rocebed finds it (device: auto), runs traffic both
// ways, and leaves it alone on down.
func TestHardwareStandIn(t *testing.T) {
	ns, env, before := cabledNICs(t)
	h, err := env.RDMA()
	require.NoError(t, err)
	require.NoError(t, rdma.AddRXE(h, "hw0", "eth1"), "rdma link add hw0 type rxe netdev eth1")
	t.Cleanup(func() { _ = rdma.DelRXE(h, "hw0") })

	s, err := scenario.Load("hw-to-rxe", []string{"hw_nic=eth1", "rxe_nic=eth2"})
	require.NoError(t, err)
	res, err := Run(context.Background(), env, s, Options{Up: lab.UpOptions{StateDir: t.TempDir()}, Diagnose: true})
	require.NoError(t, err)
	var b strings.Builder
	require.NoError(t, res.Traffic.WriteText(&b))
	t.Logf("hw-to-rxe with the stand-in hw0:\n%s", b.String())
	assert.True(t, res.Traffic.Pass, res.Traffic.Verdict)
	devices := map[string]bool{}
	for _, bt := range res.Traffic.Batches {
		devices[bt.Sender.Device] = true
	}
	assert.Equal(t, map[string]bool{"hw0": true, "rxe0": true}, devices, "traffic both ways between the stand-in and rxe0")

	_, err = os.Stat("/sys/class/infiniband/hw0")
	assert.NoError(t, err, "down removed the stand-in device it never created")
	l, err := ns.NL.LinkByName("eth1")
	require.NoError(t, err)
	assert.Zero(t, l.Attrs().Flags&net.FlagUp, "eth1 was down before the lab")
	testenv.SameState(t, before, ns.Dump(t))
}
