package probe

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rocebed/rocebed/internal/host"
	"github.com/rocebed/rocebed/internal/nsutil"
	"github.com/rocebed/rocebed/internal/testenv"
	"github.com/rocebed/rocebed/sysctl"
	"github.com/rocebed/rocebed/testbed/scenario"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// The same-host fixes, proven on the running kernel with the probe: vA 10.10.0.1/24 and
// vB 10.10.0.2/24 on one veth pair in a throwaway namespace, as in the lab.

// fixLab is the two-NIC topology in ns.
type fixLab struct {
	ns     *testenv.NetNS
	vA, vB netlink.Link
}

func newFixLab(t *testing.T) *fixLab {
	t.Helper()
	ns := testenv.NewNetNS(t)
	la := netlink.NewLinkAttrs()
	la.Name = "vA"
	require.NoError(t, ns.NL.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "vB"}))
	l := &fixLab{ns: ns}
	var err error
	l.vA, err = ns.NL.LinkByName("vA")
	require.NoError(t, err)
	l.vB, err = ns.NL.LinkByName("vB")
	require.NoError(t, err)
	for _, x := range []struct {
		link netlink.Link
		addr string
	}{{l.vA, "10.10.0.1/24"}, {l.vB, "10.10.0.2/24"}} {
		a, err := netlink.ParseAddr(x.addr)
		require.NoError(t, err)
		require.NoError(t, ns.NL.AddrAdd(x.link, a))
		require.NoError(t, ns.NL.LinkSetUp(x.link))
	}
	// Re-read so the MACs and flags are current.
	l.vA, _ = ns.NL.LinkByName("vA")
	l.vB, _ = ns.NL.LinkByName("vB")
	return l
}

// sysctls sets net.ipv4.conf.{all,vA,vB}.NAME=VALUE inside the namespace.
func (l *fixLab) sysctls(t *testing.T, name, value string) {
	t.Helper()
	err := nsutil.Do(l.ns.Handle, func() error {
		for _, dev := range []string{"all", "vA", "vB"} {
			if err := (sysctl.Sysctl{}).Set("net.ipv4.conf."+dev+"."+name, value); err != nil {
				return err
			}
		}
		return nil
	})
	require.NoError(t, err)
}

// policyRouting applies the measured recipe:
//
//	ip rule add pref 100 lookup local; ip rule del pref 0
//	ip route add 10.10.0.2 dev vA src 10.10.0.1 table 100
//	ip rule add pref 10 iif lo from 10.10.0.1 to 10.10.0.2 lookup 100
//	ip route add 10.10.0.1 dev vB src 10.10.0.2 table 101
//	ip rule add pref 11 iif lo from 10.10.0.2 to 10.10.0.1 lookup 101
func (l *fixLab) policyRouting(t *testing.T) {
	t.Helper()
	nl := l.ns.NL
	local := netlink.NewRule()
	local.Family = unix.AF_INET
	local.Priority = 100
	local.Table = unix.RT_TABLE_LOCAL
	require.NoError(t, nl.RuleAdd(local))
	old := netlink.NewRule()
	old.Family = unix.AF_INET
	old.Priority = 0
	old.Table = unix.RT_TABLE_LOCAL
	require.NoError(t, nl.RuleDel(old))
	host := func(s string) *net.IPNet { return &net.IPNet{IP: net.ParseIP(s).To4(), Mask: net.CIDRMask(32, 32)} }
	for _, x := range []struct {
		link     netlink.Link
		src, dst string
		table    int
		pref     int
	}{{l.vA, "10.10.0.1", "10.10.0.2", 100, 10}, {l.vB, "10.10.0.2", "10.10.0.1", 101, 11}} {
		require.NoError(t, nl.RouteAdd(&netlink.Route{LinkIndex: x.link.Attrs().Index, Dst: host(x.dst), Src: net.ParseIP(x.src),
			Table: x.table, Scope: netlink.SCOPE_LINK}))
		r := netlink.NewRule()
		r.Priority = x.pref
		r.IifName = "lo"
		r.Src = host(x.src)
		r.Dst = host(x.dst)
		r.Table = x.table
		require.NoError(t, nl.RuleAdd(r))
	}
}

// staticNeighbors: ip neigh replace 10.10.0.2 lladdr <vB mac> dev vA nud permanent, and the mirror.
func (l *fixLab) staticNeighbors(t *testing.T) {
	t.Helper()
	for _, x := range []struct {
		on, peer netlink.Link
		ip       string
	}{{l.vA, l.vB, "10.10.0.2"}, {l.vB, l.vA, "10.10.0.1"}} {
		require.NoError(t, l.ns.NL.NeighSet(&netlink.Neigh{LinkIndex: x.on.Attrs().Index, Family: unix.AF_INET,
			State: netlink.NUD_PERMANENT, IP: net.ParseIP(x.ip), HardwareAddr: x.peer.Attrs().HardwareAddr}))
	}
}

func (l *fixLab) env(t *testing.T) *host.Env {
	t.Helper()
	env, err := host.Open(l.ns.Name)
	require.NoError(t, err)
	t.Cleanup(env.Close)
	return env
}

// fixScenario is the lab as a validated scenario would describe it.
func fixScenario() *scenario.Scenario {
	return &scenario.Scenario{
		Version: 1,
		Name:    "probe-test",
		NICs: []scenario.NIC{
			{Name: "vA", Kind: scenario.NICVeth, Peer: "vB", Addresses: []string{"10.10.0.1/24"}},
			{Name: "vB", Kind: scenario.NICVeth, Peer: "vA", Addresses: []string{"10.10.0.2/24"}},
		},
		Endpoints: scenario.Endpoints{
			A: scenario.Endpoint{NIC: "vA", RXE: "rxe0", Address: "10.10.0.1"},
			B: scenario.Endpoint{NIC: "vB", RXE: "rxe1", Address: "10.10.0.2"},
		},
	}
}

// layerStatuses renders a direction as "link=pass neighbor=fail ...".
func layerStatuses(d DirectionReport) string {
	var parts []string
	for _, l := range d.Layers {
		parts = append(parts, string(l.Layer)+"="+string(l.Status))
	}
	return strings.Join(parts, " ")
}

func evidenceUint(t *testing.T, l LayerResult, key string) uint64 {
	t.Helper()
	v, ok := l.Evidence[key]
	require.True(t, ok, "evidence %q missing from %s: %v", key, l.Layer, l.Evidence)
	n, err := strconv.ParseUint(v, 10, 64)
	require.NoError(t, err, "evidence %s=%q", key, v)
	return n
}

func TestFixesProbe(t *testing.T) {
	testenv.RequireRoot(t)
	const allPass = "link=pass neighbor=pass route-out=pass route-in=pass udp=pass"
	cases := []struct {
		name string
		// setup applies the fix; rp_filter and accept_local are always set explicitly, since a
		// new namespace inherits the host's IPv4 conf/all values.
		acceptLocal, rpFilter string
		policy                bool
		// staticNeigh adds permanent neighbour entries on both NICs, so ARP is not needed: the
		// seed's exact failure, where the data packets themselves are dropped.
		staticNeigh bool
		// down sets vB down.
		down bool
		// halfPolicy removes the b side's rule (pref 11) from the policy-routing fix.
		halfPolicy bool
		// want is the layer statuses of both directions, or of a->b when wantBA is set.
		want, wantBA string
		// martianNeighbor: the neighbour layer failed and in_martian_src moved.
		martianNeighbor bool
		// routeIn is what the route-in failure must say.
		routeIn string
	}{
		{name: "none", acceptLocal: "0", rpFilter: "0",
			want: "link=pass neighbor=fail route-out=skipped route-in=skipped udp=skipped", martianNeighbor: true},
		{name: "accept_local+rp_filter=0", acceptLocal: "1", rpFilter: "0", want: allPass},
		{name: "accept_local+rp_filter=2", acceptLocal: "1", rpFilter: "2", want: allPass},
		{name: "accept_local+rp_filter=1", acceptLocal: "1", rpFilter: "1",
			want: "link=pass neighbor=fail route-out=skipped route-in=skipped udp=skipped", martianNeighbor: true},
		{name: "policy-routing", acceptLocal: "0", rpFilter: "0", policy: true, want: allPass},
		{name: "policy-routing+rp_filter=1", acceptLocal: "0", rpFilter: "1", policy: true, want: allPass},
		{name: "none+static-neighbors", acceptLocal: "0", rpFilter: "0", staticNeigh: true,
			want: "link=pass neighbor=pass route-out=pass route-in=fail udp=skipped", routeIn: "as a martian source"},
		{name: "accept_local+rp_filter=1+static-neighbors", acceptLocal: "1", rpFilter: "1", staticNeigh: true,
			want: "link=pass neighbor=pass route-out=pass route-in=fail udp=skipped", routeIn: "strict reverse-path filter (rp_filter=1)"},
		{name: "static-neighbors+policy-routing", acceptLocal: "0", rpFilter: "1", staticNeigh: true, policy: true, want: allPass},
		// vB's source check for 10.10.0.1 uses the b side's rule (iif lo from 10.10.0.2 to
		// 10.10.0.1): without it, a->b breaks and b->a still works.
		{name: "policy-routing-missing-b-rule", acceptLocal: "0", rpFilter: "0", policy: true, halfPolicy: true,
			want: "link=pass neighbor=fail route-out=skipped route-in=skipped udp=skipped", wantBA: allPass},
		{name: "peer-down", acceptLocal: "1", rpFilter: "2", down: true,
			want: "link=fail neighbor=skipped route-out=skipped route-in=skipped udp=skipped"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			lab := newFixLab(t)
			lab.sysctls(t, "accept_local", tc.acceptLocal)
			lab.sysctls(t, "rp_filter", tc.rpFilter)
			if tc.policy {
				lab.policyRouting(t)
			}
			if tc.halfPolicy {
				r := netlink.NewRule()
				r.Priority = 11
				r.Table = 101
				r.IifName = "lo"
				r.Src = &net.IPNet{IP: net.IPv4(10, 10, 0, 2).To4(), Mask: net.CIDRMask(32, 32)}
				r.Dst = &net.IPNet{IP: net.IPv4(10, 10, 0, 1).To4(), Mask: net.CIDRMask(32, 32)}
				require.NoError(t, lab.ns.NL.RuleDel(r))
			}
			if tc.staticNeigh {
				lab.staticNeighbors(t)
			}
			if tc.down {
				require.NoError(t, lab.ns.NL.LinkSetDown(lab.vB))
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			rep, err := Run(ctx, lab.env(t), fixScenario())
			require.NoError(t, err)
			var text strings.Builder
			require.NoError(t, rep.WriteText(&text))
			t.Logf("\n%s", text.String())

			require.Len(t, rep.Directions, 2)
			wantBA := tc.want
			if tc.wantBA != "" {
				wantBA = tc.wantBA
			}
			assert.Equal(t, tc.want, layerStatuses(rep.Directions[0]), "direction a->b")
			assert.Equal(t, wantBA, layerStatuses(rep.Directions[1]), "direction b->a")
			assert.Equal(t, tc.want == allPass && wantBA == allPass, rep.Passed)
			if tc.halfPolicy {
				n := rep.Directions[0].Layers[1]
				assert.Greater(t, evidenceUint(t, n, "in_martian_src_delta"), uint64(0))
				assert.Equal(t, "local 10.10.0.1/32 dev vA src 10.10.0.1 table local", n.Evidence["route_back"])
				assert.Contains(t, n.Fix, "policy routing is in place but incomplete")
				assert.Contains(t, n.Fix, "iif lo from 10.10.0.2 to 10.10.0.1")
			}

			if tc.martianNeighbor {
				for _, d := range rep.Directions {
					n := d.Layers[1]
					require.Equal(t, LayerNeighbor, n.Layer)
					assert.Greater(t, evidenceUint(t, n, "in_martian_src_delta"), uint64(0), "direction %s: ARP was not dropped as martian", d.Name)
					assert.Contains(t, n.Detail, "martian source")
					assert.NotEqual(t, "REACHABLE", n.Evidence["state"])
					assert.True(t, strings.HasPrefix(n.Evidence["route_back"], "local "), "route back: %q", n.Evidence["route_back"])
				}
				d, l := rep.FirstFailure()
				require.NotNil(t, l)
				assert.Equal(t, "a->b", d.Name)
				assert.Equal(t, LayerNeighbor, l.Layer)
				assert.NotEmpty(t, l.Fix)
			}
			if tc.routeIn != "" {
				for _, d := range rep.Directions {
					assert.Equal(t, "PERMANENT", d.Layers[1].Evidence["state"])
					in := d.Layers[3]
					assert.Contains(t, in.Detail, tc.routeIn, "direction %s", d.Name)
					// The kernel refuses the input route: EINVAL for a martian source; for the
					// reverse-path filter 6.1 answers EXDEV and 6.18 EINVAL (both measured).
					assert.Regexp(t, "invalid argument|invalid cross-device link", in.Evidence["error"], "the kernel's answer to `ip route get ... iif`")
					assert.NotEmpty(t, in.Fix)
				}
			}
			if tc.down {
				for _, d := range rep.Directions {
					// Carrier drops at once; the oper state follows when linkwatch runs (~1 s
					// later on the guest), so either may be what the probe saw first.
					assert.Equal(t, Fail, d.Layers[0].Status, "direction %s", d.Name)
					assert.Regexp(t, "down|no carrier", d.Layers[0].Detail, "direction %s", d.Name)
				}
			}
			if tc.want == allPass {
				for _, d := range rep.Directions {
					src, dst := lab.vA, lab.vB
					if d.Name == "b->a" {
						src, dst = lab.vB, lab.vA
					}
					n := d.Layers[1]
					assert.Equal(t, dst.Attrs().HardwareAddr.String(), n.Evidence["lladdr"], "direction %s resolved to the wrong MAC", d.Name)
					out := d.Layers[2]
					assert.Contains(t, out.Evidence["route"], "dev "+src.Attrs().Name)
					in := d.Layers[3]
					assert.True(t, strings.HasPrefix(in.Evidence["route"], "local"), "route-in: %s", in.Evidence["route"])
					u := d.Layers[4]
					sent := evidenceUint(t, u, "sent")
					assert.Equal(t, uint64(probeDatagrams), sent)
					assert.GreaterOrEqual(t, evidenceUint(t, u, dst.Attrs().Name+".rx_packets_delta"), sent)
					assert.GreaterOrEqual(t, evidenceUint(t, u, src.Attrs().Name+".tx_packets_delta"), sent)
					assert.Equal(t, sent, evidenceUint(t, u, "received"), "listener on %s", dst.Attrs().Name)
					assert.Equal(t, uint64(0), evidenceUint(t, u, "lo.rx_packets_delta"), "datagrams went over lo")
					// in_martian_src is not asserted here: the kernel counts it host-wide, and
					// other namespaces' drops land in it too.
				}
			}
		})
	}
}
