package plan

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
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
//
// IPv6 differs in one way: a neighbour solicitation the kernel sends on its own (no packet
// waiting) has the NIC's link-local source, so it teaches the other NIC that link-local
// address, not Addr. Both directions are resolved explicitly, and Undo also deletes the
// link-local entries the exchange taught (Taught, TaughtPeer).
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
	// Index and PeerIndex are the ifindexes of NIC and PeerNIC (set by Prepare): Undo acts
	// on those links only.
	Index     int `json:"ifindex,omitempty"`
	PeerIndex int `json:"peer_ifindex,omitempty"`
	// Taught lists PeerNIC's other addresses of the family (its link-local ones) that had no
	// entry on NIC before the change, TaughtPeer NIC's that had none on PeerNIC (set by
	// Prepare): the exchange may teach them, and Undo deletes what it finds of them.
	Taught     []string `json:"taught,omitempty"`
	TaughtPeer []string `json:"taught_peer,omitempty"`
}

func (*Resolve) Kind() Kind { return KindResolve }

// v6 says the endpoints are IPv6 ones.
func (c *Resolve) v6() bool {
	a, err := netip.ParseAddr(c.Addr)
	return err == nil && a.Unmap().Is6()
}

// Command is the iproute2 command that does the same. When both entries are already there
// it is a read-only `ip neigh get`, so the printed plan stays runnable.
func (c *Resolve) Command() string {
	var cmds []string
	if c.Skip == "" && !c.Had {
		cmds = append(cmds, useCommand(c.PeerAddr, c.NIC))
	}
	// An ARP request teaches PeerNIC Addr; a solicitation does not (see Resolve).
	if c.Skip == "" && !c.PeerHad && (c.Had || c.v6()) {
		cmds = append(cmds, useCommand(c.Addr, c.PeerNIC))
	}
	if len(cmds) == 0 {
		return fmt.Sprintf("ip neigh get %s dev %s", Quote(c.PeerAddr), Quote(c.NIC))
	}
	return strings.Join(cmds, "; ")
}

func useCommand(addr, nic string) string {
	return fmt.Sprintf("ip neigh add %s dev %s nud none use", Quote(addr), Quote(nic))
}

// UndoCommand flushes the entries Undo deletes: `ip neigh flush` succeeds when there is none,
// and like Undo it leaves permanent entries alone.
func (c *Resolve) UndoCommand() string {
	if c.Skip != "" {
		return "(nothing: nothing was resolved)"
	}
	var cmds []string
	flush := func(addr, nic string) {
		cmds = append(cmds, fmt.Sprintf("ip neigh flush to %s dev %s", Quote(addr), Quote(nic)))
	}
	if !c.Had {
		flush(c.PeerAddr, c.NIC)
	}
	for _, a := range c.Taught {
		flush(a, c.NIC)
	}
	if !c.PeerHad {
		flush(c.Addr, c.PeerNIC)
	}
	for _, a := range c.TaughtPeer {
		flush(a, c.PeerNIC)
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
	c.Had, c.PeerHad, c.Skip, c.Taught, c.TaughtPeer = false, false, "", nil, nil
	l, err := prepareLink(env, c.NIC, &c.Index)
	if err != nil {
		return err
	}
	peer, err := prepareLink(env, c.PeerNIC, &c.PeerIndex)
	if err != nil {
		return err
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
	if _, c.Had, err = neighState(env, c.Index, c.PeerAddr); err != nil {
		return err
	}
	if _, c.PeerHad, err = neighState(env, c.PeerIndex, c.Addr); err != nil {
		return err
	}
	if !c.v6() {
		return nil
	}
	if c.Taught, err = untaught(env, l, peer); err != nil {
		return err
	}
	c.TaughtPeer, err = untaught(env, peer, l)
	return err
}

// untaught lists the IPv6 link-local addresses of from that have no entry on on.
func untaught(env *host.Env, on, from netlink.Link) ([]string, error) {
	addrs, err := kernel.Dump(func() ([]netlink.Addr, error) { return env.NL.AddrList(from, netlink.FAMILY_V6) })
	if err != nil {
		return nil, fmt.Errorf("list addresses of %s: %w", from.Attrs().Name, err)
	}
	var out []string
	for _, a := range addrs {
		if !a.IP.IsLinkLocalUnicast() {
			continue
		}
		_, have, err := neighState(env, on.Attrs().Index, a.IP.String())
		if err != nil {
			return nil, err
		}
		if !have {
			out = append(out, a.IP.String())
		}
	}
	return out, nil
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
	l, err := appliedLink(env, c.NIC, c.Index)
	if err != nil {
		return notMade(err)
	}
	peer, err := appliedLink(env, c.PeerNIC, c.PeerIndex)
	if err != nil {
		return notMade(err)
	}
	if !c.Had {
		ok, err := use(env, l, c.PeerAddr)
		if err != nil || !ok {
			return err // it did not resolve: the other direction would not either
		}
	}
	if c.PeerHad {
		return nil
	}
	if _, have, err := neighState(env, c.PeerIndex, c.Addr); err != nil || have {
		return err
	}
	_, err = use(env, peer, c.Addr)
	return err
}

// Undo deletes the entries that were not there before, on the links Prepare recorded.
func (c *Resolve) Undo(env *host.Env) error {
	if c.Skip != "" {
		return nil
	}
	var errs []error
	if !c.Had {
		errs = append(errs, delNeighbor(env, c.NIC, c.Index, c.PeerAddr))
	}
	for _, a := range c.Taught {
		errs = append(errs, delNeighbor(env, c.NIC, c.Index, a))
	}
	if !c.PeerHad {
		errs = append(errs, delNeighbor(env, c.PeerNIC, c.PeerIndex, c.Addr))
	}
	for _, a := range c.TaughtPeer {
		errs = append(errs, delNeighbor(env, c.PeerNIC, c.PeerIndex, a))
	}
	return errors.Join(errs...)
}

func (c *Resolve) Check() error {
	for _, n := range []string{c.NIC, c.PeerNIC} {
		if err := checkIfName(n); err != nil {
			return err
		}
	}
	for _, a := range append([]string{c.Addr, c.PeerAddr}, append(c.Taught, c.TaughtPeer...)...) {
		if _, err := netip.ParseAddr(a); err != nil {
			return fmt.Errorf("resolve address %q: %w", a, err)
		}
	}
	if c.Index < 0 || c.PeerIndex < 0 {
		return fmt.Errorf("resolve: negative ifindex")
	}
	return checkValue("resolve skip reason", c.Skip)
}

// resolveRetry is how long use waits for an answer before asking again. On links that came
// up a moment before, the first request can go unanswered: seen in the tests under load, an
// IPv6 entry stayed INCOMPLETE for the whole ResolveWait while the kernel's own next
// solicitation waits RetransTimer (1 s). A fresh entry sends a fresh request at once.
const resolveRetry = 50 * time.Millisecond

// use creates the entry for addr on l with NTF_USE and waits until it is usable, asking again
// every resolveRetry; if it is not within ResolveWait, it deletes it again and reports false.
func use(env *host.Env, l netlink.Link, addr string) (bool, error) {
	link, index := l.Attrs().Name, l.Attrs().Index
	ip := net.ParseIP(addr)
	n := &netlink.Neigh{LinkIndex: index, Family: kernel.FamilyOf(ip), IP: ip, State: netlink.NUD_NONE, Flags: netlink.NTF_USE}
	start := time.Now()
	var asked time.Time
	asks := 0
	ask := func() error {
		if err := env.NL.NeighAdd(n); err != nil {
			return fmt.Errorf("%s: %w", useCommand(addr, link), err)
		}
		asked, asks = time.Now(), asks+1
		return nil
	}
	if err := ask(); err != nil {
		return false, err
	}
	for {
		st, have, err := neighState(env, index, addr)
		if err != nil {
			return false, err
		}
		if have && st&kernel.NUDUsable != 0 {
			slog.Info("neighbour resolved", "addr", addr, "dev", link, "state", kernel.NeighStateName(st),
				"took", time.Since(start).Round(time.Microsecond), "requests", asks)
			return true, nil
		}
		if time.Since(asked) > resolveRetry && time.Since(start) < ResolveWait-resolveRetry {
			if err := delNeighbor(env, link, index, addr); err != nil {
				return false, err
			}
			if err := ask(); err != nil {
				return false, err
			}
		}
		if time.Since(start) > ResolveWait {
			slog.Info("neighbour did not resolve; the first connect will try again", "addr", addr, "dev", link,
				"state", kernel.NeighStateName(st), "waited", ResolveWait)
			return false, delNeighbor(env, link, index, addr)
		}
		time.Sleep(time.Millisecond)
	}
}

// neighState returns the state of the entry for addr on the link with that ifindex, and
// whether there is one.
func neighState(env *host.Env, index int, addr string) (int, bool, error) {
	ip := net.ParseIP(addr)
	list, err := kernel.Dump(func() ([]netlink.Neigh, error) { return env.NL.NeighList(index, kernel.FamilyOf(ip)) })
	if err != nil {
		return 0, false, fmt.Errorf("list neighbours of ifindex %d: %w", index, err)
	}
	for _, n := range list {
		if n.IP.Equal(ip) {
			return n.State, true, nil
		}
	}
	return 0, false, nil
}

// delNeighbor deletes the learnt entry for addr on the link Prepare recorded, as `ip neigh
// flush` does; one that is gone, or a link that is, is fine.
func delNeighbor(env *host.Env, name string, index int, addr string) error {
	l, err := linkAt(env, name, index)
	if err != nil || l == nil {
		return err
	}
	st, have, err := neighState(env, index, addr)
	if err != nil || !have || st&(netlink.NUD_PERMANENT|netlink.NUD_NOARP) != 0 {
		return err // gone, or made permanent by someone else since: not ours
	}
	ip := net.ParseIP(addr)
	err = env.NL.NeighDel(&netlink.Neigh{LinkIndex: index, Family: kernel.FamilyOf(ip), IP: ip})
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	return ignoreGone(err)
}
