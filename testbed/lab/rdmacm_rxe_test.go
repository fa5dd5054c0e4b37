//go:build linux

package lab_test

import (
	"context"
	"os/exec"
	"testing"
	"time"

	"github.com/rocebed/rocebed/internal/testenv"
	"github.com/rocebed/rocebed/internal/testlab"
	"github.com/rocebed/rocebed/rdma"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// cmPorts are the rdma_cm ports rping and ucmatose listen on by default.
const (
	rpingPort    = 7174
	ucmatosePort = 7471
)

// TestRDMACMOverIPv6 runs rdma_cm software on same-host-v6 as its users do — rping bound to
// endpoint a's address and unbound, ucmatose bound — and checks each connects and its traffic
// crossed the cable (both devices sent, vA carried packets). Then it deletes the fix's two
// oif rules and shows the bound rping refused exactly as without them: rdma_cm on the
// accepting side checks, with the route from its address back to the client looked up with its
// NIC as output interface and no input interface (validate_ipv6_net_dev), that the answer
// leaves through its NIC; IPv6 answers with the local table's route of the client's address,
// on the client's NIC, and the connection is rejected (RDMA_CM_EVENT_REJECTED, status 28).
func TestRDMACMOverIPv6(t *testing.T) {
	testenv.RequireRXE(t)
	ns := testenv.InitialNetNS(t)
	before := ns.Dump(t)
	l := testlab.UpRXE(t, "same-host-v6", nil)

	sys := rdma.Sysfs{}
	sent := func(dev string) uint64 {
		c, err := sys.HWCounters(dev, 1)
		require.NoError(t, err)
		return c["sent_pkts"]
	}
	txOf := func(nic string) uint64 {
		lk, err := l.Env.NL.LinkByName(nic)
		require.NoError(t, err)
		return lk.Attrs().Statistics.TxPackets
	}
	run := func(t *testing.T, tool string, port int, server, client []string) testlab.ToolPairResult {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		return testlab.RunCMPair(t, ctx, tool, port, server, client)
	}
	for _, tc := range []struct {
		name, tool     string
		port           int
		server, client []string
	}{
		{"rping bound", "rping", rpingPort, []string{"-s", "-a", "fd00::2", "-C", "10"}, []string{"-c", "-I", "fd00::1", "-a", "fd00::2", "-C", "10"}},
		{"rping unbound", "rping", rpingPort, []string{"-s", "-a", "fd00::2", "-C", "10"}, []string{"-c", "-a", "fd00::2", "-C", "10"}},
		{"ucmatose bound", "ucmatose", ucmatosePort, []string{"-f", "ipv6", "-b", "fd00::2", "-c", "1", "-C", "10"}, []string{"-f", "ipv6", "-b", "fd00::1", "-s", "fd00::2", "-c", "1", "-C", "10"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s0, s1, tx := sent("rxe0"), sent("rxe1"), txOf("vA")
			r := run(t, tc.tool, tc.port, tc.server, tc.client)
			t.Logf("%s client (%s):\n%s\nserver:\n%s", tc.tool, r.ClientTook.Round(time.Millisecond), r.ClientOut, r.ServerOut)
			require.NoError(t, r.ClientErr, "client: %s", r.ClientOut)
			require.NoError(t, r.ServerErr, "server: %s", r.ServerOut)
			d0, d1, dtx := sent("rxe0")-s0, sent("rxe1")-s1, txOf("vA")-tx
			t.Logf("rxe0 sent_pkts +%d, rxe1 sent_pkts +%d, vA tx +%d", d0, d1, dtx)
			assert.Positive(t, d0, "rxe0 sent nothing: the client's traffic did not leave through vA's device")
			assert.Positive(t, d1, "rxe1 sent nothing")
			assert.GreaterOrEqual(t, dtx, d0, "rxe0's packets must leave through vA")
		})
	}

	t.Run("without the oif rules, rdma_cm rejects", func(t *testing.T) {
		for _, pref := range []string{"14", "15"} {
			out, err := exec.Command("ip", "-6", "rule", "del", "pref", pref).CombinedOutput()
			require.NoError(t, err, "ip -6 rule del pref %s: %s", pref, out)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		r := testlab.RunCMPair(t, ctx, "rping", rpingPort, []string{"-s", "-a", "fd00::2", "-C", "3", "-v"}, []string{"-c", "-I", "fd00::1", "-a", "fd00::2", "-C", "3", "-v"})
		t.Logf("client:\n%s\nserver:\n%s", r.ClientOut, r.ServerOut)
		assert.Contains(t, r.ClientOut, "RDMA_CM_EVENT_REJECTED, error 28")
	})

	l.Down(t)
	testenv.SameState(t, before, ns.Dump(t))
}
