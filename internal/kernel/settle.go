package kernel

import (
	"fmt"
	"net/netip"
	"sort"
)

// SettleLink is what Unsettled needs to know of one interface.
type SettleLink struct {
	Name  string
	Index int
	// Up is IFF_UP; LowerUp is IFF_LOWER_UP (carrier now); Running is IFF_RUNNING (the
	// operational state, which linkwatch may report up to a second after the carrier).
	Up, LowerUp, Running bool
	// AutoLinkLocal: addrconf gives this interface an fe80:: address once it is running —
	// an Ethernet-like link with IPv6 enabled, addr_gen_mode not "none" and an MTU of at
	// least 1280.
	AutoLinkLocal bool
}

// SettleAddr is one address as RTM_GETADDR reports it.
type SettleAddr struct {
	LinkIndex int
	Addr      netip.Addr
	// Tentative is IFA_F_TENTATIVE (DAD running or not yet started); DADFailed is
	// IFA_F_DADFAILED (final: the address stays tentative for good).
	Tentative, DADFailed bool
}

// SettleState is a namespace's addressing at one moment: its links, addresses, and the
// local-table routes of type local keyed by (interface index, address).
type SettleState struct {
	Links       []SettleLink
	Addrs       []SettleAddr
	LocalRoutes map[LocalRoute]bool
}

// LocalRoute names a `local ADDR dev IF table local` route.
type LocalRoute struct {
	LinkIndex int
	Addr      netip.Addr
}

// Unsettled lists what the kernel is still about to change on its own, one line per item
// naming the interface and what is pending; empty means settled. Pending is:
//   - a link with carrier whose operational state has not caught up (linkwatch pending);
//   - a running link that will get an IPv6 link-local address but has none (addrconf pending);
//   - a tentative IPv6 address on a running link (DAD running; its local route comes after);
//   - an address that should have a local route but has none (IPv4: always; IPv6: once
//     DAD is over, on a running link).
//
// A tentative address on a link that is down or without carrier is settled: DAD waits for the
// link, and nothing changes until it comes up. So is an address whose DAD failed.
func (s SettleState) Unsettled() []string {
	var out []string
	running := map[int]bool{}
	hasLinkLocal := map[int]bool{}
	for _, a := range s.Addrs {
		if a.Addr.Is6() && a.Addr.IsLinkLocalUnicast() {
			hasLinkLocal[a.LinkIndex] = true
		}
	}
	names := map[int]string{}
	for _, l := range s.Links {
		names[l.Index] = l.Name
		if !l.Up {
			continue
		}
		if l.LowerUp && !l.Running {
			out = append(out, fmt.Sprintf("%s: carrier is up but the operational state is not yet (linkwatch pending)", l.Name))
			continue
		}
		if !l.Running {
			continue
		}
		running[l.Index] = true
		if l.AutoLinkLocal && !hasLinkLocal[l.Index] {
			out = append(out, fmt.Sprintf("%s: running, but addrconf has not yet added its IPv6 link-local address", l.Name))
		}
	}
	for _, a := range s.Addrs {
		name := names[a.LinkIndex]
		if name == "" {
			name = fmt.Sprintf("ifindex %d", a.LinkIndex)
		}
		switch {
		case a.Addr.Is4():
			if !s.LocalRoutes[LocalRoute{a.LinkIndex, a.Addr}] {
				out = append(out, fmt.Sprintf("%s: no `local %s` route in table local yet", name, a.Addr))
			}
		case !running[a.LinkIndex] || a.DADFailed:
		case a.Tentative:
			out = append(out, fmt.Sprintf("%s: %s is tentative (duplicate address detection running)", name, a.Addr))
		case !s.LocalRoutes[LocalRoute{a.LinkIndex, a.Addr}]:
			out = append(out, fmt.Sprintf("%s: no `local %s` route in table local yet", name, a.Addr))
		}
	}
	sort.Strings(out)
	return out
}
