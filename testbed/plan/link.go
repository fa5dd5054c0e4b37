package plan

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"

	"github.com/rocebed/rocebed/internal/host"
	"github.com/rocebed/rocebed/internal/kernel"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Veth creates the lab's cable: a veth pair.
type Veth struct {
	Link    string `json:"link"`
	Peer    string `json:"peer"`
	MAC     string `json:"mac,omitempty"`
	PeerMAC string `json:"peer_mac,omitempty"`
	MTU     int    `json:"mtu,omitempty"`
	// Index is the ifindex Prepare chose for Link. Apply creates the link with it and Undo
	// deletes only the veth that has it, so a link of the same name that another process made
	// — a lab with the same NIC names started at the same moment — is never touched.
	Index int `json:"ifindex,omitempty"`
}

func (*Veth) Kind() Kind         { return KindVeth }
func (*Veth) Transition() string { return "" }

func (c *Veth) Command() string {
	cmd := "ip link add " + Quote(c.Link)
	if c.MAC != "" {
		cmd += " address " + Quote(c.MAC)
	}
	if c.MTU != 0 {
		cmd += fmt.Sprintf(" mtu %d", c.MTU)
	}
	cmd += " type veth peer name " + Quote(c.Peer)
	if c.PeerMAC != "" {
		cmd += " address " + Quote(c.PeerMAC)
	}
	if c.MTU != 0 {
		cmd += fmt.Sprintf(" mtu %d", c.MTU)
	}
	return cmd
}

func (c *Veth) UndoCommand() string { return "ip link del " + Quote(c.Link) }

// ifindexes is the range Prepare picks a new link's ifindex from: clear of the small numbers
// the kernel hands out itself on a host without much churn, and short enough to read.
const minIfindex, maxIfindex = 1000, 9999

// Prepare checks that neither end's name is taken and chooses a free ifindex for the link.
func (c *Veth) Prepare(env *host.Env) error {
	links, err := kernel.Dump(func() ([]netlink.Link, error) { return env.NL.LinkList() })
	if err != nil {
		return fmt.Errorf("list links: %w", err)
	}
	used := map[int]bool{}
	for _, l := range links {
		used[l.Attrs().Index] = true
		if n := l.Attrs().Name; n == c.Link || n == c.Peer {
			return fmt.Errorf("interface %s exists already (ifindex %d): it is not this lab's, so rocebed will not create it", n, l.Attrs().Index)
		}
	}
	for range 1000 {
		if i := minIfindex + rand.IntN(maxIfindex-minIfindex+1); !used[i] {
			c.Index = i
			return nil
		}
	}
	return fmt.Errorf("no free ifindex between %d and %d for %s", minIfindex, maxIfindex, c.Link)
}

func (c *Veth) Apply(env *host.Env) error {
	if c.Index == 0 {
		return notMade(errors.New("no ifindex chosen (Prepare was not run)"))
	}
	la := netlink.NewLinkAttrs()
	la.Name = c.Link
	la.MTU = c.MTU
	la.Index = c.Index
	// PeerTxQLen -1 leaves the peer at the kernel default, as `ip link add` does; 0 would
	// really set a zero-length queue.
	v := &netlink.Veth{LinkAttrs: la, PeerName: c.Peer, PeerMTU: uint32(c.MTU), PeerTxQLen: -1}
	if c.MAC != "" {
		mac, err := net.ParseMAC(c.MAC)
		if err != nil {
			return notMade(err)
		}
		v.HardwareAddr = mac
	}
	if c.PeerMAC != "" {
		mac, err := net.ParseMAC(c.PeerMAC)
		if err != nil {
			return notMade(err)
		}
		v.PeerHardwareAddr = mac
	}
	// The kernel creates both ends or neither: an error here (the name or the ifindex is
	// taken, most likely by someone else's link) means nothing of this lab exists.
	if err := env.NL.LinkAdd(v); err != nil {
		return notMade(err)
	}
	l, err := env.NL.LinkByIndex(c.Index)
	if err != nil {
		return fmt.Errorf("look up the new link %s (ifindex %d): %w", c.Link, c.Index, err)
	}
	if l.Attrs().Name != c.Link {
		return fmt.Errorf("the kernel named the new link %q, not %q", l.Attrs().Name, c.Link)
	}
	return nil
}

// Undo deletes the veth this step created — the link with the recorded ifindex, if it is still
// a veth called Link — and its peer with it. A link called Link at another ifindex is someone
// else's and stays.
func (c *Veth) Undo(env *host.Env) error {
	if c.Index == 0 {
		return nil // never prepared, so never created
	}
	l, err := env.NL.LinkByIndex(c.Index)
	if err != nil {
		return ignoreGone(err)
	}
	if l.Type() != "veth" || l.Attrs().Name != c.Link {
		return fmt.Errorf("ifindex %d is now %s %q, not this lab's veth %s: rocebed will not delete it; delete it by hand if it is the lab's", c.Index, l.Type(), l.Attrs().Name, c.Link)
	}
	return ignoreGone(env.NL.LinkDel(l)) // deletes the peer too
}

func (c *Veth) Check() error {
	for _, n := range []string{c.Link, c.Peer} {
		if err := checkIfName(n); err != nil {
			return err
		}
	}
	for _, m := range []string{c.MAC, c.PeerMAC} {
		if m == "" {
			continue
		}
		if hw, err := net.ParseMAC(m); err != nil || len(hw) != 6 {
			return fmt.Errorf("mac %q is not a MAC address", m)
		}
	}
	switch {
	case c.Link == c.Peer:
		return fmt.Errorf("veth %s is its own peer", c.Link)
	case c.MTU != 0 && (c.MTU < 68 || c.MTU > 65535):
		return fmt.Errorf("mtu %d out of range", c.MTU)
	case c.Index < 0:
		return fmt.Errorf("ifindex %d out of range", c.Index)
	}
	return nil
}

// linkAt returns the link this step acts on: the one with the ifindex Prepare recorded, if it
// still has the name the step gives it. It returns nil (and no error) when there is no such
// link any more — it went, or that ifindex is now another link's.
func linkAt(env *host.Env, name string, index int) (netlink.Link, error) {
	l, err := env.NL.LinkByIndex(index)
	if err != nil {
		return nil, ignoreGone(err)
	}
	if l.Attrs().Name != name {
		return nil, nil
	}
	return l, nil
}

// prepareLink records the ifindex of the existing link name, for linkAt.
func prepareLink(env *host.Env, name string, index *int) (netlink.Link, error) {
	l, err := env.NL.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("look up %s: %w", name, err)
	}
	*index = l.Attrs().Index
	return l, nil
}

// appliedLink is linkAt for Apply, where the link must be there.
func appliedLink(env *host.Env, name string, index int) (netlink.Link, error) {
	l, err := linkAt(env, name, index)
	if err == nil && l == nil {
		err = fmt.Errorf("interface %s (ifindex %d) is gone", name, index)
	}
	return l, err
}

// MTU changes the MTU of an existing NIC.
type MTU struct {
	Link  string `json:"link"`
	MTU   int    `json:"mtu"`
	Old   string `json:"old,omitempty"`
	Index int    `json:"ifindex,omitempty"`
}

func (*MTU) Kind() Kind        { return KindMTU }
func (c *MTU) Command() string { return fmt.Sprintf("ip link set %s mtu %d", Quote(c.Link), c.MTU) }
func (c *MTU) UndoCommand() string {
	return fmt.Sprintf("ip link set %s mtu %s", Quote(c.Link), Quote(c.Old))
}
func (c *MTU) Transition() string { return fmt.Sprintf("%s → %d", c.Old, c.MTU) }

func (c *MTU) Prepare(env *host.Env) error {
	l, err := prepareLink(env, c.Link, &c.Index)
	if err != nil {
		return err
	}
	c.Old = strconv.Itoa(l.Attrs().MTU)
	return nil
}

func (c *MTU) Apply(env *host.Env) error {
	l, err := appliedLink(env, c.Link, c.Index)
	if err != nil {
		return notMade(err)
	}
	return notMade(env.NL.LinkSetMTU(l, c.MTU))
}

func (c *MTU) Undo(env *host.Env) error {
	old, err := strconv.Atoi(c.Old)
	if err != nil {
		return fmt.Errorf("journal has no old mtu for %s: %q", c.Link, c.Old)
	}
	l, err := linkAt(env, c.Link, c.Index)
	if err != nil {
		return err
	}
	if l == nil {
		// An existing NIC must not vanish: report it.
		return fmt.Errorf("interface %s (ifindex %d) is gone or renamed: its mtu %s cannot be put back", c.Link, c.Index, c.Old)
	}
	return env.NL.LinkSetMTU(l, old)
}

func (c *MTU) Check() error {
	if err := checkIfName(c.Link); err != nil {
		return err
	}
	if c.MTU < 68 || c.MTU > 65535 {
		return fmt.Errorf("mtu %d out of range", c.MTU)
	}
	if c.Old != "" {
		if n, err := strconv.Atoi(c.Old); err != nil || n < 0 || n > 1<<20 {
			return fmt.Errorf("old mtu %q is not a number", c.Old)
		}
	}
	return nil
}

// LinkUp brings a NIC up; Old says whether it was up already.
type LinkUp struct {
	Link  string `json:"link"`
	Old   string `json:"old,omitempty"` // "up" or "down"
	Index int    `json:"ifindex,omitempty"`
}

func (*LinkUp) Kind() Kind         { return KindUp }
func (c *LinkUp) Command() string  { return "ip link set " + Quote(c.Link) + " up" }
func (*LinkUp) Transition() string { return "" }

func (c *LinkUp) UndoCommand() string {
	if c.Old == "up" {
		return "(was already up)"
	}
	return "ip link set " + Quote(c.Link) + " down"
}

func (c *LinkUp) Prepare(env *host.Env) error {
	l, err := prepareLink(env, c.Link, &c.Index)
	if err != nil {
		return err
	}
	c.Old = "down"
	if l.Attrs().Flags&net.FlagUp != 0 {
		c.Old = "up"
	}
	return nil
}

func (c *LinkUp) Apply(env *host.Env) error {
	l, err := appliedLink(env, c.Link, c.Index)
	if err != nil {
		return notMade(err)
	}
	return notMade(env.NL.LinkSetUp(l))
}

func (c *LinkUp) Undo(env *host.Env) error {
	if c.Old == "up" {
		return nil
	}
	l, err := linkAt(env, c.Link, c.Index)
	if err != nil || l == nil {
		return err
	}
	return ignoreGone(env.NL.LinkSetDown(l))
}

func (c *LinkUp) Check() error {
	if err := checkIfName(c.Link); err != nil {
		return err
	}
	if c.Old != "" && c.Old != "up" && c.Old != "down" {
		return fmt.Errorf("old state %q: want up or down", c.Old)
	}
	return nil
}

// ignoreGone turns "it is not there" into success, for idempotent undo.
func ignoreGone(err error) error {
	var nf netlink.LinkNotFoundError
	switch {
	case err == nil, errors.As(err, &nf), errors.Is(err, unix.ENOENT), errors.Is(err, unix.ESRCH),
		errors.Is(err, unix.ENODEV), errors.Is(err, unix.EADDRNOTAVAIL):
		return nil
	}
	return err
}
