package lab_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/rocebed/rocebed/internal/host"
	"github.com/rocebed/rocebed/internal/nsutil"
	"github.com/rocebed/rocebed/internal/testenv"
	"github.com/rocebed/rocebed/testbed/lab"
	"github.com/rocebed/rocebed/testbed/plan"
	"github.com/rocebed/rocebed/testbed/scenario"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netlink"
)

// twoHosts makes two throwaway namespaces that play two hosts, each with an eth1, cabled to
// each other by a veth pair (each end up and down once, as a host's NIC has been).
func twoHosts(t *testing.T) (a, b *testenv.NetNS) {
	t.Helper()
	a, b = testenv.NewNetNS(t), testenv.NewNetNS(t)
	la := netlink.NewLinkAttrs()
	la.Name = "eth1"
	require.NoError(t, a.NL.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "cable-b", PeerTxQLen: -1, PeerNamespace: netlink.NsFd(b.Handle)}))
	peer, err := b.NL.LinkByName("cable-b")
	require.NoError(t, err)
	require.NoError(t, b.NL.LinkSetName(peer, "eth1"))
	a.UpOnce(t, "eth1")
	b.UpOnce(t, "eth1")
	return a, b
}

// udpCrosses sends one datagram from one host's address to the other's, each socket made in
// its host's namespace, and reports whether it arrived.
func udpCrosses(t *testing.T, from *testenv.NetNS, src string, to *testenv.NetNS, dst string) bool {
	t.Helper()
	var rc, sc *net.UDPConn
	require.NoError(t, nsutil.Do(to.Handle, func() (err error) {
		rc, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(dst)})
		return err
	}))
	defer rc.Close()
	require.NoError(t, nsutil.Do(from.Handle, func() (err error) {
		sc, err = net.DialUDP("udp4", &net.UDPAddr{IP: net.ParseIP(src)}, rc.LocalAddr().(*net.UDPAddr))
		return err
	}))
	defer sc.Close()
	msg := fmt.Sprintf("%s to %s", src, dst)
	_, err := sc.Write([]byte(msg))
	require.NoError(t, err)
	// A bound on the wait, not a timing assertion: the first datagram waits for ARP.
	require.NoError(t, rc.SetReadDeadline(time.Now().Add(10*time.Second)))
	buf := make([]byte, 64)
	n, got, err := rc.ReadFromUDP(buf)
	if err != nil {
		t.Logf("%s: %v", msg, err)
		return false
	}
	return string(buf[:n]) == msg && got.IP.String() == src
}

// TestTwoHostLabInTwoNamespaces brings each host's part of a two-host lab up in a namespace of
// its own, as `rocebed up --side` does on each host: each makes only its own changes (its
// half of the policy-routing fix), traffic crosses the cable both ways with no fix, and with
// the same-host fix under strict rp_filter — the fix is harmless between two hosts — and each
// host's down restores it byte-for-byte.
func TestTwoHostLabInTwoNamespaces(t *testing.T) {
	for _, tc := range []struct{ name, fixes string }{
		{"no fix", ""},
		{"policy routing and strict rp_filter", "fixes:\n  - name: policy-routing\n    policy_routing: {}\n    sysctls: [net.ipv4.conf.all.rp_filter=1, net.ipv4.conf.eth1.rp_filter=1]\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nsA, nsB := twoHosts(t)
			text := strings.Replace(twoHostText, "traffic:", tc.fixes+"traffic:", 1)
			whole, err := scenario.Parse("two.yaml", []byte(text), nil)
			require.NoError(t, err)
			type side struct {
				ns     *testenv.NetNS
				env    *host.Env
				s      *scenario.Scenario
				state  string
				before string
			}
			var sides []*side
			for _, h := range []struct {
				name scenario.HostName
				ns   *testenv.NetNS
			}{{scenario.HostA, nsA}, {scenario.HostB, nsB}} {
				s, err := whole.ForHost(h.name)
				require.NoError(t, err)
				env, err := host.Open(h.ns.Name)
				require.NoError(t, err)
				t.Cleanup(env.Close)
				sides = append(sides, &side{ns: h.ns, env: env, s: s, state: t.TempDir(), before: h.ns.Dump(t)})
			}
			for i, sd := range sides {
				p, err := lab.Up(context.Background(), sd.env, sd.s, lab.UpOptions{StateDir: sd.state, SkipRDMA: true, Source: []byte(text)})
				require.NoError(t, err)
				t.Cleanup(func() { _ = lab.Down(context.Background(), sd.state, sd.s.Name) })
				mine, theirs := []string{"10.20.0.1", "10.20.0.2"}[i], []string{"10.20.0.1", "10.20.0.2"}[1-i]
				for _, st := range p.Steps {
					cmd := st.Command()
					assert.NotContains(t, cmd, "src "+theirs, "host %s planned the other host's route", sd.s.Host)
					assert.NotContains(t, cmd, "from "+theirs, "host %s planned the other host's rule", sd.s.Host)
					if r, ok := st.Change.(*plan.Route); ok {
						assert.Equal(t, mine, r.Route.Src, "host %s: %s", sd.s.Host, cmd)
					}
				}
				h, _, err := lab.OpenScenario(sd.state, sd.s.Name)
				require.NoError(t, err)
				assert.Equal(t, sd.s.Host, h.Host, "the journal says which host's part this is")
				assert.Len(t, h.NICs, 1)
			}
			assert.True(t, udpCrosses(t, nsA, "10.20.0.1", nsB, "10.20.0.2"), "a → b")
			assert.True(t, udpCrosses(t, nsB, "10.20.0.2", nsA, "10.20.0.1"), "b → a")
			for _, sd := range sides {
				require.NoError(t, lab.Down(context.Background(), sd.state, sd.s.Name))
				testenv.SameState(t, sd.before, sd.ns.Dump(t), "host %s not restored", sd.s.Host)
			}
		})
	}
}

// twoHostText is the shipped two-hosts lab without parameters.
const twoHostText = `version: 1
name: two
nics:
  - {name: eth1, host: a, kind: existing, addresses: [10.20.0.1/24]}
  - {name: eth1, host: b, kind: existing, addresses: [10.20.0.2/24]}
endpoints:
  a: {nic: eth1, rxe: rxe0}
  b: {nic: eth1, rxe: rxe0}
traffic:
  - {name: rc-both, transport: rc, direction: both, messages: 10, size: 1024}
expect:
  result: pass
`
