package plan_test

import (
	"net"
	"testing"
	"time"

	"github.com/rocebed/rocebed/internal/host"
	"github.com/rocebed/rocebed/internal/testenv"
	"github.com/rocebed/rocebed/testbed/plan"
	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netlink"
)

// TestResolveAsksAgain: a request that goes out before the peer can answer (here its end of
// the cable comes up 100 ms after the first request) is asked again within ResolveWait,
// instead of waiting for the kernel's own retransmission a second later — what made an IPv6
// resolve of a lab that had just come up fail under load.
func TestResolveAsksAgain(t *testing.T) {
	ns := testenv.NewNetNS(t)
	env, err := host.Open(ns.Name)
	require.NoError(t, err)
	t.Cleanup(env.Close)
	la := netlink.NewLinkAttrs()
	la.Name = "rA"
	require.NoError(t, ns.NL.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "rB"}))
	links := map[string]netlink.Link{}
	for i, name := range []string{"rA", "rB"} {
		l, err := ns.NL.LinkByName(name)
		require.NoError(t, err)
		links[name] = l
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(10, 77, 0, byte(i+1)), Mask: net.CIDRMask(24, 32)}}
		require.NoError(t, ns.NL.AddrAdd(l, addr))
	}
	// Both NICs are this namespace's: without the accept-local fix the ARP request is a
	// martian on rB.
	for _, nic := range []string{"all", "rA", "rB"} {
		require.NoError(t, env.SetSysctl("net.ipv4.conf."+nic+".accept_local", "1"))
		require.NoError(t, env.SetSysctl("net.ipv4.conf."+nic+".rp_filter", "2"))
	}
	require.NoError(t, ns.NL.LinkSetUp(links["rA"])) // rB stays down: no carrier yet

	r := &plan.Resolve{NIC: "rA", Addr: "10.77.0.1", PeerNIC: "rB", PeerAddr: "10.77.0.2"}
	require.NoError(t, r.Prepare(env))
	require.Empty(t, r.Skip)
	up := time.AfterFunc(100*time.Millisecond, func() { _ = ns.NL.LinkSetUp(links["rB"]) })
	defer up.Stop()
	require.NoError(t, r.Apply(env))

	neighs, err := ns.NL.NeighList(links["rA"].Attrs().Index, netlink.FAMILY_V4)
	require.NoError(t, err)
	var state int
	for _, n := range neighs {
		if n.IP.Equal(net.IPv4(10, 77, 0, 2)) {
			state = n.State
		}
	}
	require.NotZero(t, state&(netlink.NUD_REACHABLE|netlink.NUD_STALE|netlink.NUD_DELAY|netlink.NUD_PROBE),
		"10.77.0.2 on rA: state %#x, want resolved", state)
	require.NoError(t, r.Undo(env))
}
