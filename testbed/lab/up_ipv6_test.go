package lab_test

import (
	"context"
	"net"
	"strings"
	"testing"

	"github.com/rocebed/rocebed/internal/host"
	"github.com/rocebed/rocebed/internal/testenv"
	"github.com/rocebed/rocebed/internal/testlab"
	"github.com/rocebed/rocebed/testbed/lab"
	"github.com/rocebed/rocebed/testbed/plan"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// existingV6Scenario puts IPv6 addresses on two existing NICs: they go through DAD, which
// rocebed waits for before the policy-routing routes that use them as source.
const existingV6Scenario = `version: 1
name: existing-v6
nics:
  - {name: eth1, kind: existing, addresses: ["fd00::1/64"]}
  - {name: eth2, kind: existing, addresses: ["fd00::2/64"]}
endpoints:
  a: {nic: eth1, rxe: rxe0}
  b: {nic: eth2, rxe: rxe1}
fixes:
  - {name: pr, policy_routing: {}}
expect: {result: pass}
`

// TestExistingNICsWaitForDAD: IPv6 addresses added to existing NICs are tentative until DAD is
// over; up waits for it (a DADWait step per address, after the links are up) so the routes
// with those sources can be added, and down restores the namespace exactly.
func TestExistingNICsWaitForDAD(t *testing.T) {
	testenv.KernelDependent(t)
	ns := testenv.NewNetNS(t)
	testlab.ExistingPair(t, ns)
	ns.SetUp(t, "eth2", "eth1") // as a host's cabled NICs are
	env, err := host.Open(ns.Name)
	require.NoError(t, err)
	defer env.Close()
	before := ns.Dump(t)

	s := testlab.MustParse(t, existingV6Scenario)
	state := t.TempDir()
	p, err := lab.Up(context.Background(), env, s, lab.UpOptions{StateDir: state, SkipRDMA: true})
	require.NoError(t, err)
	var waits []string
	firstRoute := -1
	for i, st := range p.Steps {
		switch c := st.Change.(type) {
		case *plan.DADWait:
			waits = append(waits, c.Link)
			assert.Less(t, firstRoute, 0, "DAD wait on %s comes after a route that needs it", c.Link)
		case *plan.Sysctl:
			assert.NotContains(t, c.Key, "accept_dad", "an existing NIC's DAD is not rocebed's to turn off")
		case *plan.Addr:
			assert.False(t, c.NoDAD, "an existing NIC's address skipped DAD: %s", c.Addr)
		case *plan.Route:
			if firstRoute < 0 {
				firstRoute = i
			}
		}
	}
	assert.Equal(t, []string{"eth1", "eth2"}, waits)
	for _, name := range []string{"eth1", "eth2"} {
		l, err := ns.NL.LinkByName(name)
		require.NoError(t, err)
		addrs, err := ns.NL.AddrList(l, netlink.FAMILY_V6)
		require.NoError(t, err)
		for _, a := range addrs {
			assert.Zero(t, a.Flags&unix.IFA_F_TENTATIVE, "%s %s is still tentative after up", name, a.IP)
		}
	}
	routes, err := ns.NL.RouteListFiltered(netlink.FAMILY_V6, &netlink.Route{Table: 100}, netlink.RT_FILTER_TABLE)
	require.NoError(t, err)
	require.Len(t, routes, 1)
	assert.Equal(t, "fd00::1", routes[0].Src.String())

	require.NoError(t, lab.Down(context.Background(), state, s.Name))
	testenv.SameState(t, before, ns.Dump(t))
}

// TestCreatedVethsSkipDAD: the veths of an IPv6 lab get their addresses with nodad and
// accept_dad=0 before they come up, so right after up no IPv6 address of theirs — not even
// the kernel's link-local one — is tentative; down restores everything (test in
// TestUpDownRestoresExactly).
func TestCreatedVethsSkipDAD(t *testing.T) {
	testenv.KernelDependent(t)
	ns, env, s := testlab.InNetNS(t, "same-host-v6")
	state := t.TempDir()
	p, err := lab.Up(context.Background(), env, s, lab.UpOptions{StateDir: state, SkipRDMA: true})
	require.NoError(t, err)
	defer func() { require.NoError(t, lab.Down(context.Background(), state, s.Name)) }()
	var dad []string
	for _, st := range p.Steps {
		if c, ok := st.Change.(*plan.Sysctl); ok && strings.HasSuffix(c.Key, ".accept_dad") {
			dad = append(dad, c.Key+"="+c.Value)
		}
		assert.NotEqual(t, plan.KindDAD, st.Kind(), "nothing to wait for on veths rocebed creates")
	}
	assert.Equal(t, []string{"net.ipv6.conf.vA.accept_dad=0", "net.ipv6.conf.vB.accept_dad=0"}, dad)
	for _, name := range []string{"vA", "vB"} {
		l, err := ns.NL.LinkByName(name)
		require.NoError(t, err)
		addrs, err := ns.NL.AddrList(l, netlink.FAMILY_V6)
		require.NoError(t, err)
		for _, a := range addrs {
			assert.Zero(t, a.Flags&unix.IFA_F_TENTATIVE, "%s %s is tentative right after up", name, a.IP)
		}
	}
}

// TestDADFailureRollsBack: an address another node on the link already uses fails DAD; up
// says so (plan.ErrDADFailed, naming the address and the NIC) and rolls back exactly.
func TestDADFailureRollsBack(t *testing.T) {
	testenv.KernelDependent(t)
	ns := testenv.NewNetNS(t)
	testlab.ExistingPair(t, ns)
	ns.SetUp(t, "eth2", "eth1") // as a host's cabled NICs are
	// eth2, the other end of eth1's cable, already answers for fd00::1.
	l, err := ns.NL.LinkByName("eth2")
	require.NoError(t, err)
	require.NoError(t, ns.NL.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: net.ParseIP("fd00::1"), Mask: net.CIDRMask(64, 128)}, Flags: unix.IFA_F_NODAD}))
	env, err := host.Open(ns.Name)
	require.NoError(t, err)
	defer env.Close()
	before := ns.Dump(t)

	s := testlab.MustParse(t, existingV6Scenario)
	_, err = lab.Up(context.Background(), env, s, lab.UpOptions{StateDir: t.TempDir(), SkipRDMA: true})
	require.ErrorIs(t, err, plan.ErrDADFailed)
	assert.Contains(t, err.Error(), "address fd00::1 on eth1 failed duplicate address detection")
	assert.Contains(t, err.Error(), "choose another address in the scenario")
	testenv.SameState(t, before, ns.Dump(t))
}
