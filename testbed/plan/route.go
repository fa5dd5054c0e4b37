package plan

import (
	"errors"
	"fmt"
	"net"

	"github.com/rocebed/rocebed/internal/host"
	"github.com/rocebed/rocebed/internal/kernel"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Route adds a route. Index is the ifindex of its device when Prepare ran.
type Route struct {
	Route *RouteSpec `json:"route"`
	Index int        `json:"ifindex,omitempty"`
}

func (*Route) Kind() Kind            { return KindRoute }
func (*Route) Transition() string    { return "" }
func (c *Route) Command() string     { return "ip route add " + c.Route.String() }
func (c *Route) UndoCommand() string { return "ip route del " + c.Route.String() }

func (c *Route) Prepare(env *host.Env) error {
	_, err := prepareLink(env, c.Route.Dev, &c.Index)
	return err
}

func (c *Route) Apply(env *host.Env) error {
	l, err := appliedLink(env, c.Route.Dev, c.Index)
	if err != nil {
		return notMade(err)
	}
	r, err := netlinkRoute(env, *c.Route)
	if err != nil {
		return notMade(err)
	}
	r.LinkIndex = l.Attrs().Index
	// EEXIST: the route is there already, added by someone else since planning.
	if err := notMade(env.NL.RouteAdd(r)); err != nil {
		return explainRouteErr(env, c.Route, err)
	}
	return nil
}

// explainRouteErr adds what the kernel knows but netlink's EINVAL does not say: an IPv6 route
// whose source is not (yet) a usable address of this host is refused with "Invalid source
// address" in the extended ack, which rocebed's netlink handles do not ask for.
func explainRouteErr(env *host.Env, rs *RouteSpec, err error) error {
	src := net.ParseIP(rs.Src)
	if !errors.Is(err, unix.EINVAL) || src == nil || src.To4() != nil {
		return err
	}
	addrs, lerr := kernel.Dump(func() ([]netlink.Addr, error) { return env.NL.AddrList(nil, netlink.FAMILY_V6) })
	if lerr != nil {
		return err
	}
	for _, a := range addrs {
		if !a.IP.Equal(src) {
			continue
		}
		switch {
		case a.Flags&unix.IFA_F_DADFAILED != 0:
			return fmt.Errorf("%w: src %s failed duplicate address detection, so the kernel refuses it as a source: another node on its link uses it", err, rs.Src)
		case a.Flags&unix.IFA_F_TENTATIVE != 0:
			return fmt.Errorf("%w: src %s is still tentative (duplicate address detection running), and the kernel refuses a tentative address as a source: wait for DAD (`ip -6 addr show tentative`) or add the address with nodad", err, rs.Src)
		}
		return err
	}
	return fmt.Errorf("%w: src %s is not an address of this host", err, rs.Src)
}

func (c *Route) Undo(env *host.Env) error {
	l, err := linkAt(env, c.Route.Dev, c.Index)
	if err != nil || l == nil {
		return err // the device is gone, and its routes with it
	}
	r, err := netlinkRoute(env, *c.Route)
	if err != nil {
		return err
	}
	r.LinkIndex = l.Attrs().Index
	return ignoreGone(env.NL.RouteDel(r))
}

func (c *Route) Check() error { return c.Route.check() }

// netlinkRoute converts rocebed's route form to netlink's, resolving the device by name in
// the lab's namespace (index 0 when it does not exist).
func netlinkRoute(env *host.Env, rs RouteSpec) (*netlink.Route, error) {
	_, dst, err := net.ParseCIDR(rs.To)
	if err != nil {
		return nil, fmt.Errorf("route to %q: %w", rs.To, err)
	}
	r := &netlink.Route{Dst: dst, Table: rs.Table, Scope: netlink.SCOPE_LINK}
	if r.Table == 0 {
		r.Table = kernel.TableMain
	}
	if rs.Src != "" {
		r.Src = net.ParseIP(rs.Src)
	}
	if rs.Via != "" {
		r.Gw = net.ParseIP(rs.Via)
		r.Scope = netlink.SCOPE_UNIVERSE
	}
	if rs.Dev != "" {
		l, err := env.NL.LinkByName(rs.Dev)
		if err == nil {
			r.LinkIndex = l.Attrs().Index
		}
	}
	return r, nil
}
