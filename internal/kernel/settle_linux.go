package kernel

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/rocebed/rocebed/internal/nsutil"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// settleFallback is how long WaitSettled waits for a notification before it looks again
// anyway; it looks at once on every link, address or route notification (ChangeWatch).
const settleFallback = 250 * time.Millisecond

// ReadSettleState reads the namespace's links, addresses and local routes through nl (a handle
// bound to ns), and the IPv6 sysctls that decide whether a link gets a link-local address. A
// dump the kernel interrupted because the state changed while it ran (netlink's
// ErrDumpInterrupted: exactly what happens while the kernel is still settling) is read again
// (see Dump).
func ReadSettleState(nl *netlink.Handle, ns netns.NsHandle) (SettleState, error) {
	var s SettleState
	links, err := Dump(func() ([]netlink.Link, error) { return nl.LinkList() })
	if err != nil {
		return s, fmt.Errorf("list links: %w", err)
	}
	ipv6 := map[string]bool{}
	if err := nsutil.Do(ns, func() error {
		for _, l := range links {
			ipv6[l.Attrs().Name] = linkLocalConfigured(l.Attrs().Name)
		}
		return nil
	}); err != nil {
		return s, err
	}
	for _, l := range links {
		a := l.Attrs()
		s.Links = append(s.Links, SettleLink{
			Name:    a.Name,
			Index:   a.Index,
			Up:      a.RawFlags&unix.IFF_UP != 0,
			LowerUp: a.RawFlags&unix.IFF_LOWER_UP != 0,
			Running: a.RawFlags&unix.IFF_RUNNING != 0,
			// addrconf gives Ethernet-like links an EUI-64 or stable-privacy fe80::; it
			// disables IPv6 on a link whose MTU is below the IPv6 minimum.
			AutoLinkLocal: a.EncapType == "ether" && a.MTU >= 1280 && ipv6[a.Name],
		})
	}
	addrs, err := Dump(func() ([]netlink.Addr, error) { return nl.AddrList(nil, netlink.FAMILY_ALL) })
	if err != nil {
		return s, fmt.Errorf("list addresses: %w", err)
	}
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		s.Addrs = append(s.Addrs, SettleAddr{
			LinkIndex: a.LinkIndex,
			Addr:      ip.Unmap(),
			Tentative: a.Flags&unix.IFA_F_TENTATIVE != 0,
			DADFailed: a.Flags&unix.IFA_F_DADFAILED != 0,
		})
	}
	s.LocalRoutes = map[LocalRoute]bool{}
	routes, err := Dump(func() ([]netlink.Route, error) {
		return nl.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_LOCAL}, netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return s, fmt.Errorf("list table local: %w", err)
	}
	for _, r := range routes {
		if r.Type != unix.RTN_LOCAL || r.Dst == nil {
			continue
		}
		if ip, ok := netip.AddrFromSlice(r.Dst.IP); ok {
			s.LocalRoutes[LocalRoute{r.LinkIndex, ip.Unmap()}] = true
		}
	}
	return s, nil
}

// linkLocalConfigured reports whether IPv6 is enabled on the interface and its addr_gen_mode
// is not "none" (1), read from /proc/sys of the calling thread's namespace. A missing file
// (IPv6 off in the kernel) means no.
func linkLocalConfigured(name string) bool {
	read := func(key string) string {
		b, err := os.ReadFile(filepath.Join("/proc/sys/net/ipv6/conf", name, key))
		if err != nil {
			return ""
		}
		return strings.TrimSpace(string(b))
	}
	return read("disable_ipv6") == "0" && read("addr_gen_mode") != "1"
}

// WaitSettled returns once the namespace has nothing pending (see SettleState.Unsettled), or
// an error naming what never settled when ctx ends first.
func WaitSettled(ctx context.Context, nl *netlink.Handle, ns netns.NsHandle) error {
	watch, _ := WatchChanges(ns) // nil when the subscription fails: Wait then sleeps unwatchedPoll
	defer watch.Close()
	var last []string
	for {
		s, err := ReadSettleState(nl, ns)
		switch {
		case errors.Is(err, netlink.ErrDumpInterrupted):
			// The kernel changed a table during the dump: it is not settled; look again.
			last = []string{"a netlink dump was interrupted by a change (" + err.Error() + ")"}
		case err != nil:
			return err
		default:
			if last = s.Unsettled(); len(last) == 0 {
				return nil
			}
		}
		if ctx.Err() != nil {
			return fmt.Errorf("network state never settled: %s: %w", strings.Join(last, "; "), errors.Join(ctx.Err(), ErrNotSettled))
		}
		watch.Wait(ctx, settleFallback)
	}
}

// ErrNotSettled marks WaitSettled's timeout.
var ErrNotSettled = errors.New("kernel state not settled")
