package plan

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/rocebed/rocebed/internal/host"
	"github.com/rocebed/rocebed/internal/kernel"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ResolveWait bounds how long Resolve waits for a neighbour to become usable. On a veth cable
// the ARP exchange finishes inside the request; a NIC across a real cable answers within
// milliseconds. A lab whose ARP cannot work (same-host-nofix) costs this once in Up.
const ResolveWait = 250 * time.Millisecond

// Resolve has the kernel resolve the neighbours of the lab's cable now, through its own path:
// `ip neigh add ADDR dev NIC nud none use` creates the entry and calls neigh_event_send on
// it, the same call ib_core makes when a connection first needs the peer's MAC. The ARP
// request out of NIC also teaches PeerNIC the sender's address, so one exchange resolves both
// directions; Addr is resolved from PeerNIC only if it did not.
//
// Why: the first modify-QP-to-RTR (and rdma_cm's address resolution) resolves the
// destination MAC in ib_core's rdma_resolve_ip (drivers/infiniband/core/addr.c). On a cold
// neighbour, dst_fetch_ha calls neigh_event_send and returns -ENODATA, and the request is
// queued to be retried at its timeout (1000 ms for modify-QP) unless a NETEVENT_NEIGH_UPDATE
// arrives while it is queued. On a veth the ARP request and reply complete inside
// neigh_event_send, before the request is queued, so that event wakes nothing and the first
// connect of a fresh lab waits the whole second. With the entry already usable, dst_fetch_ha
// answers at once.
//
// Entries that exist before the change (static ones, or ones the host already has) are left
// alone: NTF_USE on a permanent entry would turn it dynamic. Undo deletes exactly the entries
// that were absent before, so labs on existing NICs come back byte for byte.
type Resolve struct {
	// NIC and Addr are one endpoint's NIC and address, PeerNIC and PeerAddr the other's.
	// The change resolves PeerAddr on NIC, and Addr on PeerNIC.
	NIC      string `json:"nic"`
	Addr     string `json:"addr"`
	PeerNIC  string `json:"peer_nic"`
	PeerAddr string `json:"peer_addr"`
	// Had and PeerHad say an entry for PeerAddr on NIC, and for Addr on PeerNIC, was there
	// before the change (set by Prepare): not ours to touch or delete.
	Had     bool `json:"had,omitempty"`
	PeerHad bool `json:"peer_had,omitempty"`
	// Skip says why there is nothing to resolve (set by Prepare): the route from Addr to
	// PeerAddr does not go straight out of NIC, so a connection would resolve another
	// neighbour.
	Skip string `json:"skip,omitempty"`
}

func (*Resolve) Kind() Kind { return KindResolve }

// Command is the iproute2 command that does the same. When both entries are already there
// it is a read-only `ip neigh get`, so the printed plan stays runnable.
func (c *Resolve) Command() string {
	switch {
	case c.Skip != "" || c.Had && c.PeerHad:
		return fmt.Sprintf("ip neigh get %s dev %s", c.PeerAddr, c.NIC)
	case c.Had:
		return useCommand(c.Addr, c.PeerNIC)
	}
	return useCommand(c.PeerAddr, c.NIC)
}

func useCommand(addr, nic string) string {
	return fmt.Sprintf("ip neigh add %s dev %s nud none use", addr, nic)
}

func (c *Resolve) UndoCommand() string {
	var cmds []string
	if c.Skip == "" && !c.Had {
		cmds = append(cmds, fmt.Sprintf("ip neigh del %s dev %s", c.PeerAddr, c.NIC))
	}
	if c.Skip == "" && !c.PeerHad {
		cmds = append(cmds, fmt.Sprintf("ip neigh del %s dev %s", c.Addr, c.PeerNIC))
	}
	if len(cmds) == 0 {
		return "(nothing: the neighbours were there before)"
	}
	return strings.Join(cmds, "; ")
}

func (c *Resolve) Transition() string {
	return fmt.Sprintf("%s on %s and %s on %s: resolved now, not by the first connect", c.PeerAddr, c.NIC, c.Addr, c.PeerNIC)
}

// Prepare notes which entries exist, and checks that the route from Addr to PeerAddr leaves
// straight out of NIC, as the lab's cable has it.
func (c *Resolve) Prepare(env *host.Env) error {
	c.Had, c.PeerHad, c.Skip = false, false, ""
	l, err := env.NL.LinkByName(c.NIC)
	if err != nil {
		return fmt.Errorf("look up %s: %w", c.NIC, err)
	}
	routes, err := env.NL.RouteGetWithOptions(net.ParseIP(c.PeerAddr), &netlink.RouteGetOptions{SrcAddr: net.ParseIP(c.Addr), OifIndex: l.Attrs().Index})
	switch {
	case err != nil:
		c.Skip = fmt.Sprintf("no route to %s from %s out of %s: %v", c.PeerAddr, c.Addr, c.NIC, err)
	case len(routes) == 0 || routes[0].LinkIndex != l.Attrs().Index || routes[0].Gw != nil:
		c.Skip = fmt.Sprintf("the route to %s from %s does not go straight out of %s", c.PeerAddr, c.Addr, c.NIC)
	}
	if c.Skip != "" {
		return nil
	}
	if _, c.Had, err = neighState(env, c.NIC, c.PeerAddr); err != nil {
		return err
	}
	_, c.PeerHad, err = neighState(env, c.PeerNIC, c.Addr)
	return err
}

// Apply resolves PeerAddr on NIC, then Addr on PeerNIC if that exchange did not. An entry
// that does not become usable within ResolveWait is deleted again (a lab whose ARP fails
// must fail its first connect as it would have), and Apply still succeeds: the lab is
// usable, only not warmed.
func (c *Resolve) Apply(env *host.Env) error {
	if c.Skip != "" {
		slog.Info("nothing to resolve", "why", c.Skip)
		return nil
	}
	if !c.Had {
		ok, err := use(env, c.NIC, c.PeerAddr)
		if err != nil || !ok {
			return err // it did not resolve: the other direction would not either
		}
	}
	if c.PeerHad {
		return nil
	}
	if _, have, err := neighState(env, c.PeerNIC, c.Addr); err != nil || have {
		return err
	}
	_, err := use(env, c.PeerNIC, c.Addr)
	return err
}

// Undo deletes the entries that were not there before.
func (c *Resolve) Undo(env *host.Env) error {
	if c.Skip != "" {
		return nil
	}
	var errs []error
	if !c.Had {
		errs = append(errs, delNeighbor(env, c.NIC, c.PeerAddr))
	}
	if !c.PeerHad {
		errs = append(errs, delNeighbor(env, c.PeerNIC, c.Addr))
	}
	return errors.Join(errs...)
}

// use creates the entry for addr on link with NTF_USE and waits until it is usable; if it is
// not within ResolveWait, it deletes it again and reports false.
func use(env *host.Env, link, addr string) (bool, error) {
	l, err := env.NL.LinkByName(link)
	if err != nil {
		return false, err
	}
	ip := net.ParseIP(addr)
	n := &netlink.Neigh{LinkIndex: l.Attrs().Index, Family: kernel.FamilyOf(ip), IP: ip, State: netlink.NUD_NONE, Flags: netlink.NTF_USE}
	start := time.Now()
	if err := env.NL.NeighAdd(n); err != nil {
		return false, fmt.Errorf("%s: %w", useCommand(addr, link), err)
	}
	for {
		st, have, err := neighState(env, link, addr)
		if err != nil {
			return false, err
		}
		if have && st&kernel.NUDUsable != 0 {
			slog.Info("neighbour resolved", "addr", addr, "dev", link, "state", kernel.NeighStateName(st), "took", time.Since(start).Round(time.Microsecond))
			return true, nil
		}
		if time.Since(start) > ResolveWait {
			slog.Info("neighbour did not resolve; the first connect will try again", "addr", addr, "dev", link,
				"state", kernel.NeighStateName(st), "waited", ResolveWait)
			return false, delNeighbor(env, link, addr)
		}
		time.Sleep(time.Millisecond)
	}
}

// neighState returns the state of the entry for addr on link, and whether there is one.
func neighState(env *host.Env, link, addr string) (int, bool, error) {
	l, err := env.NL.LinkByName(link)
	if err != nil {
		return 0, false, fmt.Errorf("look up %s: %w", link, err)
	}
	ip := net.ParseIP(addr)
	list, err := env.NL.NeighList(l.Attrs().Index, kernel.FamilyOf(ip))
	if err != nil {
		return 0, false, fmt.Errorf("list neighbours of %s: %w", link, err)
	}
	for _, n := range list {
		if n.IP.Equal(ip) {
			return n.State, true, nil
		}
	}
	return 0, false, nil
}

// delNeighbor deletes the entry for addr on link; one that is gone, or a link that is, is fine.
func delNeighbor(env *host.Env, link, addr string) error {
	l, err := env.NL.LinkByName(link)
	if err != nil {
		return ignoreGone(err)
	}
	ip := net.ParseIP(addr)
	err = env.NL.NeighDel(&netlink.Neigh{LinkIndex: l.Attrs().Index, Family: kernel.FamilyOf(ip), IP: ip})
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	return ignoreGone(err)
}
