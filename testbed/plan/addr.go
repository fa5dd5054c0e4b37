package plan

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/rocebed/rocebed/internal/host"
	"github.com/rocebed/rocebed/internal/kernel"
	"github.com/rocebed/rocebed/testbed/scenario"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Addr adds an address to a NIC. NoDAD adds an IPv6 address without duplicate address
// detection (IFA_F_NODAD, `nodad`): usable at once instead of tentative for a second or more,
// which rocebed does on the veths it creates — nothing else is on their link.
type Addr struct {
	Link  string `json:"link"`
	Addr  string `json:"addr"` // CIDR
	NoDAD bool   `json:"nodad,omitempty"`
}

func (*Addr) Kind() Kind              { return KindAddr }
func (*Addr) Transition() string      { return "" }
func (*Addr) Prepare(*host.Env) error { return nil }

func (c *Addr) Command() string {
	cmd := fmt.Sprintf("ip addr add %s dev %s", c.Addr, c.Link)
	// netlink's AddrAdd sets the IPv4 broadcast address below /31; `brd +` does the same.
	if p, err := netip.ParsePrefix(c.Addr); err == nil && p.Addr().Is4() && p.Bits() < 31 {
		cmd = fmt.Sprintf("ip addr add %s brd + dev %s", c.Addr, c.Link)
	}
	if c.NoDAD {
		cmd += " nodad"
	}
	return cmd
}

// UndoCommand deletes the address. An IPv6 one is gone already when its link went down before
// (IPv6 drops a link's addresses on down unless keep_addr_on_down), where `ip addr del` would
// fail: flushing exactly that address succeeds either way, as Undo does.
func (c *Addr) UndoCommand() string {
	if p, err := netip.ParsePrefix(c.Addr); err == nil && p.Addr().Is6() && !p.Addr().Is4In6() {
		return fmt.Sprintf("ip -6 addr flush dev %s to %s", c.Link, netip.PrefixFrom(p.Addr(), 128))
	}
	return fmt.Sprintf("ip addr del %s dev %s", c.Addr, c.Link)
}

func (c *Addr) Apply(env *host.Env) error {
	l, err := env.NL.LinkByName(c.Link)
	if err != nil {
		return err
	}
	a, err := netlink.ParseAddr(c.Addr)
	if err != nil {
		return err
	}
	if c.NoDAD {
		a.Flags |= unix.IFA_F_NODAD
	}
	return env.NL.AddrAdd(l, a)
}

func (c *Addr) Undo(env *host.Env) error {
	l, err := env.NL.LinkByName(c.Link)
	if err != nil {
		return ignoreGone(err)
	}
	a, err := netlink.ParseAddr(c.Addr)
	if err != nil {
		return err
	}
	return ignoreGone(env.NL.AddrDel(l, a))
}

// Neighbor sets a permanent neighbour entry; Old is the lladdr of a permanent entry it
// replaced.
type Neighbor struct {
	Link string `json:"link"`
	MAC  string `json:"mac"` // scenario.PeerMAC is resolved by Prepare
	Addr string `json:"addr"`
	Old  string `json:"old,omitempty"`
}

func (*Neighbor) Kind() Kind         { return KindNeighbor }
func (*Neighbor) Transition() string { return "" }

func (c *Neighbor) Command() string {
	return fmt.Sprintf("ip neigh replace %s lladdr %s dev %s nud permanent", c.Addr, c.MAC, c.Link)
}

func (c *Neighbor) UndoCommand() string {
	if c.Old != "" {
		return fmt.Sprintf("ip neigh replace %s lladdr %s dev %s nud permanent", c.Addr, c.Old, c.Link)
	}
	return fmt.Sprintf("ip neigh del %s dev %s", c.Addr, c.Link)
}

func (c *Neighbor) Prepare(env *host.Env) error {
	l, err := env.NL.LinkByName(c.Link)
	if err != nil {
		return fmt.Errorf("look up %s: %w", c.Link, err)
	}
	if c.MAC == scenario.PeerMAC {
		mac, err := peerMAC(env, l)
		if err != nil {
			return err
		}
		c.MAC = mac
	}
	c.Old = ""
	ip := net.ParseIP(c.Addr)
	neighs, err := env.NL.NeighList(l.Attrs().Index, kernel.FamilyOf(ip))
	if err != nil {
		return fmt.Errorf("list neighbours of %s: %w", c.Link, err)
	}
	for _, n := range neighs {
		if n.IP.Equal(ip) && n.State&netlink.NUD_PERMANENT != 0 {
			c.Old = n.HardwareAddr.String()
		}
	}
	return nil
}

func (c *Neighbor) Apply(env *host.Env) error { return setNeighbor(env, c.Link, c.Addr, c.MAC) }

func (c *Neighbor) Undo(env *host.Env) error {
	l, err := env.NL.LinkByName(c.Link)
	if err != nil {
		return ignoreGone(err)
	}
	if c.Old != "" {
		return setNeighbor(env, c.Link, c.Addr, c.Old)
	}
	ip := net.ParseIP(c.Addr)
	return ignoreGone(env.NL.NeighDel(&netlink.Neigh{LinkIndex: l.Attrs().Index, Family: kernel.FamilyOf(ip), IP: ip}))
}

func setNeighbor(env *host.Env, link, ip, mac string) error {
	l, err := env.NL.LinkByName(link)
	if err != nil {
		return err
	}
	hw, err := net.ParseMAC(mac)
	if err != nil {
		return fmt.Errorf("neighbour %s on %s: %w", ip, link, err)
	}
	addr := net.ParseIP(ip)
	return env.NL.NeighSet(&netlink.Neigh{LinkIndex: l.Attrs().Index, Family: kernel.FamilyOf(addr), State: netlink.NUD_PERMANENT, IP: addr, HardwareAddr: hw})
}

// peerMAC returns the MAC of the other end of a veth.
func peerMAC(env *host.Env, l netlink.Link) (string, error) {
	if _, ok := l.(*netlink.Veth); !ok {
		return "", fmt.Errorf("neighbour mac %q on %s: %s is not a veth", scenario.PeerMAC, l.Attrs().Name, l.Attrs().Name)
	}
	// IFLA_LINK of a veth is its peer's index (in the same namespace). VethPeerIndex would
	// use an ethtool ioctl in the caller's namespace, which is not the lab's.
	idx := l.Attrs().ParentIndex
	if idx == 0 {
		return "", fmt.Errorf("find the veth peer of %s: the kernel did not report it", l.Attrs().Name)
	}
	p, err := env.NL.LinkByIndex(idx)
	if err != nil {
		return "", fmt.Errorf("look up the veth peer of %s: %w", l.Attrs().Name, err)
	}
	return p.Attrs().HardwareAddr.String(), nil
}
