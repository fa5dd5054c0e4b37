package plan

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/rocebed/rocebed/internal/host"
	"github.com/rocebed/rocebed/internal/kernel"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// hostView reads the planning inputs from an Env; it changes nothing.
type hostView struct{ e *host.Env }

// View returns the read-only view of the environment that planning uses.
func View(env *host.Env) HostView { return hostView{env} }

func (v hostView) Link(name string) (LinkState, bool, error) {
	l, err := v.e.NL.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return LinkState{}, false, nil
		}
		return LinkState{}, false, err
	}
	st := LinkState{MTU: l.Attrs().MTU, Up: l.Attrs().Flags&net.FlagUp != 0}
	addrs, err := kernel.Dump(func() ([]netlink.Addr, error) { return v.e.NL.AddrList(l, netlink.FAMILY_ALL) })
	if err != nil {
		return LinkState{}, false, err
	}
	for _, a := range addrs {
		if p, ok := ipNetToPrefix(a.IPNet); ok {
			st.Addrs = append(st.Addrs, p)
		}
	}
	return st, true, nil
}

// DefaultRouteLinks names every interface a default route can leave through: in any table a
// policy rule looks up (not only main), through any of a multipath route's nexthops. A
// default route whose device the kernel does not say (a nexthop object, with
// nexthop_compat_mode off) could leave through any interface, so then every interface is
// named.
func (v hostView) DefaultRouteLinks() ([]string, error) {
	tables := map[int]bool{}
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		rules, err := kernel.Dump(func() ([]netlink.Rule, error) { return v.e.NL.RuleList(fam) })
		if err != nil {
			return nil, err
		}
		for _, r := range rules {
			if r.Table > 0 {
				tables[r.Table] = true
			}
		}
	}
	idx := map[int]bool{}
	unknown := false
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		// Table RT_TABLE_UNSPEC with the table filter lists every table.
		routes, err := kernel.Dump(func() ([]netlink.Route, error) {
			return v.e.NL.RouteListFiltered(fam, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
		})
		if err != nil {
			return nil, err
		}
		for _, r := range routes {
			if !tables[r.Table] || !isDefault(r) || r.Type == unix.RTN_BLACKHOLE || r.Type == unix.RTN_UNREACHABLE || r.Type == unix.RTN_PROHIBIT {
				continue
			}
			if r.LinkIndex > 0 {
				idx[r.LinkIndex] = true
			}
			for _, nh := range r.MultiPath {
				if nh != nil && nh.LinkIndex > 0 {
					idx[nh.LinkIndex] = true
				}
			}
			if r.LinkIndex <= 0 && len(r.MultiPath) == 0 {
				unknown = true
			}
		}
	}
	links, err := kernel.Dump(func() ([]netlink.Link, error) { return v.e.NL.LinkList() })
	if err != nil {
		return nil, err
	}
	var out []string
	for _, l := range links {
		if unknown || idx[l.Attrs().Index] {
			out = append(out, l.Attrs().Name)
		}
	}
	return out, nil
}

// isDefault reports whether a route is a default route (0.0.0.0/0 or ::/0).
func isDefault(r netlink.Route) bool {
	if r.Dst == nil {
		return true
	}
	ones, _ := r.Dst.Mask.Size()
	return ones == 0
}

func (v hostView) Sysctl(key string) (string, error) { return v.e.GetSysctl(key) }

func (v hostView) Rules(family int) ([]RuleSpec, error) {
	rules, err := kernel.Dump(func() ([]netlink.Rule, error) { return v.e.NL.RuleList(family) })
	if err != nil {
		return nil, err
	}
	out := make([]RuleSpec, 0, len(rules))
	for _, r := range rules {
		out = append(out, RuleSpecOf(family, r))
	}
	return out, nil
}

func (v hostView) RouteExists(r RouteSpec) (bool, error) {
	nr, err := netlinkRoute(v.e, r)
	if err != nil {
		return false, err
	}
	fam := netlink.FAMILY_V4
	if nr.Dst.IP.To4() == nil {
		fam = netlink.FAMILY_V6
	}
	routes, err := kernel.Dump(func() ([]netlink.Route, error) {
		return v.e.NL.RouteListFiltered(fam, &netlink.Route{Table: nr.Table, Dst: nr.Dst}, netlink.RT_FILTER_TABLE|netlink.RT_FILTER_DST)
	})
	if err != nil {
		return false, err
	}
	return len(routes) > 0, nil
}

// RDMADevice looks in sysfs, which works even where NETLINK_RDMA does not exist.
func (v hostView) RDMADevice(name string) (bool, error) {
	_, err := os.Lstat(filepath.Join(v.e.SysfsRoot, "class/infiniband", name))
	if err == nil {
		return true, nil
	}
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	return false, err
}

func ipNetToPrefix(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones), true
}
