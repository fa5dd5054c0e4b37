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
	Index int    `json:"ifindex,omitempty"`
	NoDAD bool   `json:"nodad,omitempty"`
}

func (*Addr) Kind() Kind         { return KindAddr }
func (*Addr) Transition() string { return "" }

func (c *Addr) Prepare(env *host.Env) error {
	_, err := prepareLink(env, c.Link, &c.Index)
	return err
}

func (c *Addr) Command() string {
	cmd := fmt.Sprintf("ip addr add %s dev %s", Quote(c.Addr), Quote(c.Link))
	// netlink's AddrAdd sets the IPv4 broadcast address below /31; `brd +` does the same.
	if p, err := netip.ParsePrefix(c.Addr); err == nil && p.Addr().Is4() && p.Bits() < 31 {
		cmd = fmt.Sprintf("ip addr add %s brd + dev %s", Quote(c.Addr), Quote(c.Link))
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
		return fmt.Sprintf("ip -6 addr flush dev %s to %s", Quote(c.Link), netip.PrefixFrom(p.Addr(), 128))
	}
	return fmt.Sprintf("ip addr del %s dev %s", Quote(c.Addr), Quote(c.Link))
}

func (c *Addr) Apply(env *host.Env) error {
	l, err := appliedLink(env, c.Link, c.Index)
	if err != nil {
		return notMade(err)
	}
	a, err := netlink.ParseAddr(c.Addr)
	if err != nil {
		return notMade(err)
	}
	if c.NoDAD {
		a.Flags |= unix.IFA_F_NODAD
	}
	// EEXIST: the address is there already, put there by someone else since planning.
	return notMade(env.NL.AddrAdd(l, a))
}

func (c *Addr) Undo(env *host.Env) error {
	l, err := linkAt(env, c.Link, c.Index)
	if err != nil || l == nil {
		return err
	}
	a, err := netlink.ParseAddr(c.Addr)
	if err != nil {
		return err
	}
	return ignoreGone(env.NL.AddrDel(l, a))
}

func (c *Addr) Check() error {
	if err := checkIfName(c.Link); err != nil {
		return err
	}
	if _, err := netip.ParsePrefix(c.Addr); err != nil {
		return fmt.Errorf("address %q: %w", c.Addr, err)
	}
	return nil
}

// Neighbor sets a permanent neighbour entry. Old, OldState and OldRouter are the entry it
// replaced — any entry with a link-layer address: permanent, or one the kernel learnt
// (reachable, stale, ...) — which Undo puts back; without one, Undo deletes the entry.
type Neighbor struct {
	Link      string `json:"link"`
	MAC       string `json:"mac"` // scenario.PeerMAC is resolved by Prepare
	Addr      string `json:"addr"`
	Old       string `json:"old,omitempty"`
	OldState  string `json:"old_state,omitempty"` // iproute2's name: permanent, noarp, reachable, stale
	OldRouter bool   `json:"old_router,omitempty"`
	Index     int    `json:"ifindex,omitempty"`
}

func (*Neighbor) Kind() Kind         { return KindNeighbor }
func (*Neighbor) Transition() string { return "" }

func (c *Neighbor) Command() string {
	return fmt.Sprintf("ip neigh replace %s lladdr %s dev %s nud permanent", Quote(c.Addr), Quote(c.MAC), Quote(c.Link))
}

func (c *Neighbor) UndoCommand() string {
	if c.Old != "" {
		cmd := fmt.Sprintf("ip neigh replace %s lladdr %s dev %s nud %s", Quote(c.Addr), Quote(c.Old), Quote(c.Link), Quote(c.oldState()))
		if c.OldRouter {
			cmd += " router"
		}
		return cmd
	}
	return fmt.Sprintf("ip neigh del %s dev %s", Quote(c.Addr), Quote(c.Link))
}

// neighStates are the entry states Undo can put back, by iproute2 name. An entry in a
// passing state (delay, probe) comes back stale, which is where the kernel takes it next.
var neighStates = map[string]int{
	"permanent": netlink.NUD_PERMANENT,
	"noarp":     netlink.NUD_NOARP,
	"reachable": netlink.NUD_REACHABLE,
	"stale":     netlink.NUD_STALE,
}

func (c *Neighbor) oldState() string {
	if c.OldState == "" {
		return "permanent" // journals that predate OldState recorded only permanent entries
	}
	return c.OldState
}

func (c *Neighbor) Prepare(env *host.Env) error {
	l, err := prepareLink(env, c.Link, &c.Index)
	if err != nil {
		return err
	}
	if c.MAC == scenario.PeerMAC {
		mac, err := peerMAC(env, l)
		if err != nil {
			return err
		}
		c.MAC = mac
	}
	c.Old, c.OldState, c.OldRouter = "", "", false
	ip := net.ParseIP(c.Addr)
	neighs, err := kernel.Dump(func() ([]netlink.Neigh, error) { return env.NL.NeighList(l.Attrs().Index, kernel.FamilyOf(ip)) })
	if err != nil {
		return fmt.Errorf("list neighbours of %s: %w", c.Link, err)
	}
	for _, n := range neighs {
		if !n.IP.Equal(ip) || len(n.HardwareAddr) == 0 {
			continue
		}
		switch {
		case n.State&netlink.NUD_PERMANENT != 0:
			c.OldState = "permanent"
		case n.State&netlink.NUD_NOARP != 0:
			c.OldState = "noarp"
		case n.State&netlink.NUD_REACHABLE != 0:
			c.OldState = "reachable"
		case n.State&(netlink.NUD_STALE|netlink.NUD_DELAY|netlink.NUD_PROBE) != 0:
			c.OldState = "stale"
		default:
			continue // incomplete or failed: nothing to put back
		}
		c.Old = n.HardwareAddr.String()
		c.OldRouter = n.Flags&netlink.NTF_ROUTER != 0
	}
	return nil
}

func (c *Neighbor) Apply(env *host.Env) error {
	l, err := appliedLink(env, c.Link, c.Index)
	if err != nil {
		return notMade(err)
	}
	return notMade(setNeighbor(env, l, c.Addr, c.MAC, netlink.NUD_PERMANENT, false))
}

func (c *Neighbor) Undo(env *host.Env) error {
	l, err := linkAt(env, c.Link, c.Index)
	if err != nil || l == nil {
		return err
	}
	if c.Old != "" {
		state, ok := neighStates[c.oldState()]
		if !ok {
			return fmt.Errorf("neighbour %s on %s: unknown old state %q", c.Addr, c.Link, c.OldState)
		}
		return setNeighbor(env, l, c.Addr, c.Old, state, c.OldRouter)
	}
	ip := net.ParseIP(c.Addr)
	return ignoreGone(env.NL.NeighDel(&netlink.Neigh{LinkIndex: l.Attrs().Index, Family: kernel.FamilyOf(ip), IP: ip}))
}

func (c *Neighbor) Check() error {
	if err := checkIfName(c.Link); err != nil {
		return err
	}
	if _, err := netip.ParseAddr(c.Addr); err != nil {
		return fmt.Errorf("neighbour %q: %w", c.Addr, err)
	}
	if c.MAC == "" {
		return fmt.Errorf("neighbour %s has no mac", c.Addr)
	}
	// MAC may still be "peer" in a plan (Prepare resolves it); Old is always an address.
	for _, m := range []string{c.MAC, c.Old} {
		if m == "" || (m == c.MAC && m == scenario.PeerMAC) {
			continue
		}
		if hw, err := net.ParseMAC(m); err != nil || len(hw) != 6 {
			return fmt.Errorf("neighbour mac %q is not a MAC address", m)
		}
	}
	if c.Old == scenario.PeerMAC {
		return fmt.Errorf("neighbour old mac %q is not a MAC address", c.Old)
	}
	if _, ok := neighStates[c.oldState()]; c.Old != "" && !ok {
		return fmt.Errorf("neighbour old state %q: want permanent, noarp, reachable or stale", c.OldState)
	}
	return nil
}

func setNeighbor(env *host.Env, l netlink.Link, ip, mac string, state int, router bool) error {
	hw, err := net.ParseMAC(mac)
	if err != nil {
		return fmt.Errorf("neighbour %s on %s: %w", ip, l.Attrs().Name, err)
	}
	addr := net.ParseIP(ip)
	n := &netlink.Neigh{LinkIndex: l.Attrs().Index, Family: kernel.FamilyOf(addr), State: state, IP: addr, HardwareAddr: hw}
	if router {
		n.Flags = netlink.NTF_ROUTER
	}
	return env.NL.NeighSet(n)
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
