package lab_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/rocebed/rocebed/internal/host"
	"github.com/rocebed/rocebed/internal/kernel"
	"github.com/rocebed/rocebed/internal/testenv"
	"github.com/rocebed/rocebed/internal/testlab"
	"github.com/rocebed/rocebed/testbed/lab"
	"github.com/rocebed/rocebed/testbed/plan"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netlink"
)

// neighbor returns the entry for addr on link (nil if there is none).
func neighbor(t *testing.T, ns *testenv.NetNS, link, addr string) *netlink.Neigh {
	t.Helper()
	l, err := ns.NL.LinkByName(link)
	require.NoError(t, err)
	ip := net.ParseIP(addr)
	list, err := ns.NL.NeighList(l.Attrs().Index, kernel.FamilyOf(ip))
	require.NoError(t, err)
	for _, n := range list {
		if n.IP.Equal(ip) {
			return &n
		}
	}
	return nil
}

func lastResolve(t *testing.T, p *plan.Plan) *plan.Resolve {
	t.Helper()
	require.NotEmpty(t, p.Steps)
	r, ok := p.Steps[len(p.Steps)-1].Change.(*plan.Resolve)
	require.True(t, ok, "the last step is %s, not resolve", p.Steps[len(p.Steps)-1].Command())
	return r
}

// TestResolveWarmsExistingNICs: on existing NICs, Up leaves both neighbours of the cable
// usable (so the first connection finds its MAC at once), and Down removes exactly those
// entries: the neighbour table comes back byte for byte.
func TestResolveWarmsExistingNICs(t *testing.T) {
	ns := testenv.NewNetNS(t)
	testlab.ExistingPair(t, ns)
	env, err := host.Open(ns.Name)
	require.NoError(t, err)
	defer env.Close()
	before := ns.Dump(t)
	state := t.TempDir()
	p, err := lab.Up(context.Background(), env, testlab.MustParse(t, existingScenario), lab.UpOptions{StateDir: state, SkipRDMA: true})
	require.NoError(t, err)
	r := lastResolve(t, p)
	assert.Equal(t, "ip neigh add 10.10.0.2 dev eth1 nud none use", r.Command())
	assert.False(t, r.Had || r.PeerHad, "the entries were not there before")
	for _, e := range [][2]string{{"eth1", "10.10.0.2"}, {"eth2", "10.10.0.1"}} {
		n := neighbor(t, ns, e[0], e[1])
		if assert.NotNil(t, n, "no entry for %s on %s", e[1], e[0]) {
			assert.NotZero(t, n.State&kernel.NUDUsable, "%s on %s is %s", e[1], e[0], kernel.NeighStateName(n.State))
		}
	}
	require.NoError(t, lab.Down(context.Background(), state, "existing"))
	testenv.SameState(t, before, ns.Dump(t))
}

// TestResolveLeavesEntriesItDidNotMake: a static entry the host already has is neither
// changed nor removed; the other direction is resolved from the peer's side. (The NICs are up,
// as a host's are: taking a link down flushes even its permanent entries.)
func TestResolveLeavesEntriesItDidNotMake(t *testing.T) {
	ns := testenv.NewNetNS(t)
	testlab.ExistingPair(t, ns)
	ns.SetUp(t, "eth2", "eth1")
	l, err := ns.NL.LinkByName("eth1")
	require.NoError(t, err)
	mac, _ := net.ParseMAC("02:00:00:00:00:42")
	require.NoError(t, ns.NL.NeighSet(&netlink.Neigh{LinkIndex: l.Attrs().Index, Family: netlink.FAMILY_V4,
		IP: net.ParseIP("10.10.0.2"), HardwareAddr: mac, State: netlink.NUD_PERMANENT}))
	env, err := host.Open(ns.Name)
	require.NoError(t, err)
	defer env.Close()
	before := ns.Dump(t)
	state := t.TempDir()
	p, err := lab.Up(context.Background(), env, testlab.MustParse(t, existingScenario), lab.UpOptions{StateDir: state, SkipRDMA: true})
	require.NoError(t, err)
	r := lastResolve(t, p)
	assert.True(t, r.Had)
	assert.Equal(t, "ip neigh add 10.10.0.1 dev eth2 nud none use", r.Command())
	n := neighbor(t, ns, "eth1", "10.10.0.2")
	require.NotNil(t, n)
	assert.Equal(t, netlink.NUD_PERMANENT, n.State)
	assert.Equal(t, mac.String(), n.HardwareAddr.String())
	n = neighbor(t, ns, "eth2", "10.10.0.1")
	if assert.NotNil(t, n) {
		assert.NotZero(t, n.State&kernel.NUDUsable, "10.10.0.1 on eth2 is %s", kernel.NeighStateName(n.State))
	}
	require.NoError(t, lab.Down(context.Background(), state, "existing"))
	testenv.SameState(t, before, ns.Dump(t))
}

// TestResolveOnABrokenLab: where ARP cannot work (no fix: the request is a martian), Up still
// succeeds within about ResolveWait and leaves no entry behind, so the lab's first connect
// fails as it would have, counting its own martian ARP.
func TestResolveOnABrokenLab(t *testing.T) {
	ns, env, s := testlab.InNetNS(t, "same-host-nofix")
	state := t.TempDir()
	start := time.Now()
	p, err := lab.Up(context.Background(), env, s, lab.UpOptions{StateDir: state, SkipRDMA: true})
	require.NoError(t, err)
	took := time.Since(start)
	lastResolve(t, p)
	assert.Nil(t, neighbor(t, ns, "vA", "10.10.0.2"), "an unresolved entry was left")
	assert.Nil(t, neighbor(t, ns, "vB", "10.10.0.1"))
	t.Logf("up took %s with a failed resolve (ResolveWait %s)", took, plan.ResolveWait)
	require.NoError(t, lab.Down(context.Background(), state, s.Name))
}

// TestResolvePlan: static neighbours a fix declares are not resolved again.
func TestResolvePlan(t *testing.T) {
	for name, want := range map[string]string{
		"same-host":        "ip neigh add 10.10.0.2 dev vA nud none use",
		"same-host-sysctl": "ip neigh add 10.10.0.2 dev vA nud none use",
		"seed":             "",
		"seed-fixed":       "",
	} {
		t.Run(name, func(t *testing.T) {
			_, env, s := testlab.InNetNS(t, name)
			p, err := plan.MakePlan(s, plan.View(env), plan.PlanOptions{SkipRDMA: true})
			require.NoError(t, err)
			got := ""
			for _, st := range p.Steps {
				if st.Kind() == plan.KindResolve {
					got = st.Command()
				}
			}
			assert.Equal(t, want, got)
		})
	}
}
