package plan

import (
	"errors"
	"fmt"
	"net"
	"strconv"

	"github.com/rocebed/rocebed/internal/host"
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
}

func (*Veth) Kind() Kind              { return KindVeth }
func (*Veth) Transition() string      { return "" }
func (*Veth) Prepare(*host.Env) error { return nil }

func (c *Veth) Command() string {
	cmd := "ip link add " + c.Link
	if c.MAC != "" {
		cmd += " address " + c.MAC
	}
	if c.MTU != 0 {
		cmd += fmt.Sprintf(" mtu %d", c.MTU)
	}
	cmd += " type veth peer name " + c.Peer
	if c.PeerMAC != "" {
		cmd += " address " + c.PeerMAC
	}
	if c.MTU != 0 {
		cmd += fmt.Sprintf(" mtu %d", c.MTU)
	}
	return cmd
}

func (c *Veth) UndoCommand() string { return "ip link del " + c.Link }

func (c *Veth) Apply(env *host.Env) error {
	la := netlink.NewLinkAttrs()
	la.Name = c.Link
	la.MTU = c.MTU
	// PeerTxQLen -1 leaves the peer at the kernel default, as `ip link add` does; 0 would
	// really set a zero-length queue.
	v := &netlink.Veth{LinkAttrs: la, PeerName: c.Peer, PeerMTU: uint32(c.MTU), PeerTxQLen: -1}
	if c.MAC != "" {
		mac, err := net.ParseMAC(c.MAC)
		if err != nil {
			return err
		}
		v.HardwareAddr = mac
	}
	if c.PeerMAC != "" {
		mac, err := net.ParseMAC(c.PeerMAC)
		if err != nil {
			return err
		}
		v.PeerHardwareAddr = mac
	}
	return env.NL.LinkAdd(v)
}

func (c *Veth) Undo(env *host.Env) error {
	l, err := env.NL.LinkByName(c.Link)
	if err != nil {
		return ignoreGone(err)
	}
	return ignoreGone(env.NL.LinkDel(l)) // deletes the peer too
}

// MTU changes the MTU of an existing NIC.
type MTU struct {
	Link string `json:"link"`
	MTU  int    `json:"mtu"`
	Old  string `json:"old,omitempty"`
}

func (*MTU) Kind() Kind            { return KindMTU }
func (c *MTU) Command() string     { return fmt.Sprintf("ip link set %s mtu %d", c.Link, c.MTU) }
func (c *MTU) UndoCommand() string { return fmt.Sprintf("ip link set %s mtu %s", c.Link, c.Old) }
func (c *MTU) Transition() string  { return fmt.Sprintf("%s → %d", c.Old, c.MTU) }

func (c *MTU) Prepare(env *host.Env) error {
	l, err := env.NL.LinkByName(c.Link)
	if err != nil {
		return fmt.Errorf("look up %s: %w", c.Link, err)
	}
	c.Old = strconv.Itoa(l.Attrs().MTU)
	return nil
}

func (c *MTU) Apply(env *host.Env) error {
	l, err := env.NL.LinkByName(c.Link)
	if err != nil {
		return err
	}
	return env.NL.LinkSetMTU(l, c.MTU)
}

func (c *MTU) Undo(env *host.Env) error {
	old, err := strconv.Atoi(c.Old)
	if err != nil {
		return fmt.Errorf("journal has no old mtu for %s: %q", c.Link, c.Old)
	}
	l, err := env.NL.LinkByName(c.Link)
	if err != nil {
		return err // an existing NIC must not vanish: report it
	}
	return env.NL.LinkSetMTU(l, old)
}

// LinkUp brings a NIC up; Old says whether it was up already.
type LinkUp struct {
	Link string `json:"link"`
	Old  string `json:"old,omitempty"` // "up" or "down"
}

func (*LinkUp) Kind() Kind         { return KindUp }
func (c *LinkUp) Command() string  { return "ip link set " + c.Link + " up" }
func (*LinkUp) Transition() string { return "" }

func (c *LinkUp) UndoCommand() string {
	if c.Old == "up" {
		return "(was already up)"
	}
	return "ip link set " + c.Link + " down"
}

func (c *LinkUp) Prepare(env *host.Env) error {
	l, err := env.NL.LinkByName(c.Link)
	if err != nil {
		return fmt.Errorf("look up %s: %w", c.Link, err)
	}
	c.Old = "down"
	if l.Attrs().Flags&net.FlagUp != 0 {
		c.Old = "up"
	}
	return nil
}

func (c *LinkUp) Apply(env *host.Env) error {
	l, err := env.NL.LinkByName(c.Link)
	if err != nil {
		return err
	}
	return env.NL.LinkSetUp(l)
}

func (c *LinkUp) Undo(env *host.Env) error {
	if c.Old == "up" {
		return nil
	}
	l, err := env.NL.LinkByName(c.Link)
	if err != nil {
		return ignoreGone(err)
	}
	return env.NL.LinkSetDown(l)
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
