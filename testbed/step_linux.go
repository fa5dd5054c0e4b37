package testbed

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/rocebed/rocebed/rdma"
	"github.com/rocebed/rocebed/sysctl"
	"github.com/rocebed/rocebed/testbed/scenario"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// prepare reads the value a step will replace, right before it is journaled and made. That is
// the value `down` restores, whatever plan time saw.
func (e *Env) prepare(st *Step) error {
	switch st.Kind {
	case StepSysctl:
		old, err := e.GetSysctl(st.Key)
		if err != nil {
			return err
		}
		st.Old = old
	case StepMTU, StepUp:
		l, err := e.NL.LinkByName(st.Link)
		if err != nil {
			return fmt.Errorf("look up %s: %w", st.Link, err)
		}
		if st.Kind == StepMTU {
			st.Old = strconv.Itoa(l.Attrs().MTU)
		} else if l.Attrs().Flags&net.FlagUp != 0 {
			st.Old = "up"
		} else {
			st.Old = "down"
		}
	case StepNeighbor:
		l, err := e.NL.LinkByName(st.Link)
		if err != nil {
			return fmt.Errorf("look up %s: %w", st.Link, err)
		}
		if st.MAC == scenario.PeerMAC {
			mac, err := e.peerMAC(l)
			if err != nil {
				return err
			}
			st.MAC = mac
		}
		st.Old = ""
		ip := net.ParseIP(st.Addr)
		neighs, err := e.NL.NeighList(l.Attrs().Index, familyOfIP(ip))
		if err != nil {
			return fmt.Errorf("list neighbours of %s: %w", st.Link, err)
		}
		for _, n := range neighs {
			if n.IP.Equal(ip) && n.State&netlink.NUD_PERMANENT != 0 {
				st.Old = n.HardwareAddr.String()
			}
		}
	}
	return nil
}

// peerMAC returns the MAC of the other end of a veth.
func (e *Env) peerMAC(l netlink.Link) (string, error) {
	if _, ok := l.(*netlink.Veth); !ok {
		return "", fmt.Errorf("neighbour mac %q on %s: %s is not a veth", scenario.PeerMAC, l.Attrs().Name, l.Attrs().Name)
	}
	// IFLA_LINK of a veth is its peer's index (in the same namespace). VethPeerIndex would
	// use an ethtool ioctl in the caller's namespace, which is not the lab's.
	idx := l.Attrs().ParentIndex
	if idx == 0 {
		return "", fmt.Errorf("find the veth peer of %s: the kernel did not report it", l.Attrs().Name)
	}
	p, err := e.NL.LinkByIndex(idx)
	if err != nil {
		return "", fmt.Errorf("look up the veth peer of %s: %w", l.Attrs().Name, err)
	}
	return p.Attrs().HardwareAddr.String(), nil
}

// rxeActiveTimeout bounds the wait for a new rxe port to become ACTIVE.
const rxeActiveTimeout = 10 * time.Second

// apply makes one change.
func (e *Env) apply(st *Step) error {
	switch st.Kind {
	case StepVeth:
		la := netlink.NewLinkAttrs()
		la.Name = st.Link
		la.MTU = st.MTU
		// PeerTxQLen -1 leaves the peer at the kernel default, as `ip link add` does; 0 would
		// really set a zero-length queue.
		v := &netlink.Veth{LinkAttrs: la, PeerName: st.Peer, PeerMTU: uint32(st.MTU), PeerTxQLen: -1}
		if st.MAC != "" {
			mac, err := net.ParseMAC(st.MAC)
			if err != nil {
				return err
			}
			v.HardwareAddr = mac
		}
		if st.PeerMAC != "" {
			mac, err := net.ParseMAC(st.PeerMAC)
			if err != nil {
				return err
			}
			v.PeerHardwareAddr = mac
		}
		return e.NL.LinkAdd(v)
	case StepMTU:
		l, err := e.NL.LinkByName(st.Link)
		if err != nil {
			return err
		}
		return e.NL.LinkSetMTU(l, st.MTU)
	case StepAddr:
		l, err := e.NL.LinkByName(st.Link)
		if err != nil {
			return err
		}
		a, err := netlink.ParseAddr(st.Addr)
		if err != nil {
			return err
		}
		return e.NL.AddrAdd(l, a)
	case StepSysctl:
		return e.SetSysctl(st.Key, st.Value)
	case StepUp:
		l, err := e.NL.LinkByName(st.Link)
		if err != nil {
			return err
		}
		return e.NL.LinkSetUp(l)
	case StepRule:
		r, err := netlinkRule(*st.Rule)
		if err != nil {
			return err
		}
		return e.NL.RuleAdd(r)
	case StepRuleDel:
		r, err := netlinkRule(*st.Rule)
		if err != nil {
			return err
		}
		return e.NL.RuleDel(r)
	case StepRoute:
		r, err := e.netlinkRoute(*st.Route)
		if err != nil {
			return err
		}
		return e.NL.RouteAdd(r)
	case StepNeighbor:
		return e.setNeighbor(st.Link, st.Addr, st.MAC)
	case StepRXE:
		h, err := e.RDMA()
		if err != nil {
			return err
		}
		if err := rdma.AddRXE(h, st.RXE, st.Link); err != nil {
			return err
		}
		// The port turns ACTIVE once rxe sees the netdev up; traffic needs it.
		ctx, cancel := context.WithTimeout(context.Background(), rxeActiveTimeout)
		defer cancel()
		return rdma.Sysfs{Root: e.SysfsRoot}.WaitActive(ctx, st.RXE, 1)
	}
	return fmt.Errorf("unknown step kind %q", st.Kind)
}

// undo reverts one change. It succeeds when the change is already gone, so it can run after a
// crash that happened before, during or after the change, and twice.
func (e *Env) undo(st *Step) error {
	switch st.Kind {
	case StepVeth:
		l, err := e.NL.LinkByName(st.Link)
		if err != nil {
			return ignoreGone(err)
		}
		return ignoreGone(e.NL.LinkDel(l)) // deletes the peer too
	case StepMTU:
		old, err := strconv.Atoi(st.Old)
		if err != nil {
			return fmt.Errorf("journal has no old mtu for %s: %q", st.Link, st.Old)
		}
		l, err := e.NL.LinkByName(st.Link)
		if err != nil {
			return err // an existing NIC must not vanish: report it
		}
		return e.NL.LinkSetMTU(l, old)
	case StepAddr:
		l, err := e.NL.LinkByName(st.Link)
		if err != nil {
			return ignoreGone(err)
		}
		a, err := netlink.ParseAddr(st.Addr)
		if err != nil {
			return err
		}
		return ignoreGone(e.NL.AddrDel(l, a))
	case StepSysctl:
		err := e.SetSysctl(st.Key, st.Old)
		if err != nil && sysctlOfGoneLink(st.Key, e) {
			return nil // the per-interface parameter went with its interface
		}
		return err
	case StepUp:
		if st.Old == "up" {
			return nil
		}
		l, err := e.NL.LinkByName(st.Link)
		if err != nil {
			return ignoreGone(err)
		}
		return e.NL.LinkSetDown(l)
	case StepRule:
		r, err := netlinkRule(*st.Rule)
		if err != nil {
			return err
		}
		return ignoreGone(e.NL.RuleDel(r))
	case StepRuleDel:
		// The kernel accepts duplicate rules that differ only in protocol, so check first.
		rules, err := e.View().Rules(st.Rule.Family)
		if err != nil {
			return err
		}
		for _, x := range rules {
			if sameRule(x, *st.Rule) {
				return nil
			}
		}
		r, err := netlinkRule(*st.Rule)
		if err != nil {
			return err
		}
		return e.NL.RuleAdd(r)
	case StepRoute:
		r, err := e.netlinkRoute(*st.Route)
		if err != nil {
			return err
		}
		if r.LinkIndex == 0 {
			return nil // the device is gone, and its routes with it
		}
		return ignoreGone(e.NL.RouteDel(r))
	case StepNeighbor:
		l, err := e.NL.LinkByName(st.Link)
		if err != nil {
			return ignoreGone(err)
		}
		if st.Old != "" {
			return e.setNeighbor(st.Link, st.Addr, st.Old)
		}
		ip := net.ParseIP(st.Addr)
		return ignoreGone(e.NL.NeighDel(&netlink.Neigh{LinkIndex: l.Attrs().Index, Family: familyOfIP(ip), IP: ip}))
	case StepRXE:
		h, err := e.RDMA()
		if err != nil {
			return err
		}
		return rdma.DelRXE(h, st.RXE) // nil when it is already gone
	}
	return fmt.Errorf("unknown step kind %q", st.Kind)
}

func (e *Env) setNeighbor(link, ip, mac string) error {
	l, err := e.NL.LinkByName(link)
	if err != nil {
		return err
	}
	hw, err := net.ParseMAC(mac)
	if err != nil {
		return fmt.Errorf("neighbour %s on %s: %w", ip, link, err)
	}
	addr := net.ParseIP(ip)
	return e.NL.NeighSet(&netlink.Neigh{LinkIndex: l.Attrs().Index, Family: familyOfIP(addr), State: netlink.NUD_PERMANENT, IP: addr, HardwareAddr: hw})
}

func familyOfIP(ip net.IP) int {
	if ip.To4() != nil {
		return netlink.FAMILY_V4
	}
	return netlink.FAMILY_V6
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

// sysctlOfGoneLink reports whether key belongs to an interface that no longer exists.
func sysctlOfGoneLink(key string, e *Env) bool {
	ifc := sysctl.Interface(key)
	if ifc == "" || ifc == "all" || ifc == "default" {
		return false
	}
	_, err := e.NL.LinkByName(ifc)
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf)
}
