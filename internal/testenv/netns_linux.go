package testenv

import (
	"crypto/rand"
	"encoding/hex"
	"runtime"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// NetNSPrefix starts the name of every namespace a test creates, so a leftover is easy to spot.
const NetNSPrefix = "rocebedtest-"

// NetNS is a throwaway named network namespace (/run/netns/NAME) with a netlink handle bound to
// it. It stands in for "the host" in root tests.
type NetNS struct {
	Name   string
	Handle netns.NsHandle
	NL     *netlink.Handle
}

// InitialNetNS returns the initial (current) namespace as a NetNS, for real-kernel tests that
// must build their lab where rxe works. Only call it after RequireRXE.
func InitialNetNS(t testing.TB) *NetNS {
	t.Helper()
	nl, err := netlink.NewHandle()
	if err != nil {
		t.Fatalf("netlink handle: %v", err)
	}
	t.Cleanup(nl.Close)
	return &NetNS{Handle: netns.None(), NL: nl}
}

// NewNetNS creates a named namespace with lo up, and removes it when the test ends.
func NewNetNS(t testing.TB) *NetNS {
	t.Helper()
	RequireRoot(t)
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := NetNSPrefix + hex.EncodeToString(b)

	// netns.NewNamed leaves the calling thread inside the new namespace: do it on a locked
	// thread that is never unlocked, so the runtime throws that thread away.
	type result struct {
		h   netns.NsHandle
		err error
	}
	done := make(chan result)
	go func() {
		runtime.LockOSThread()
		h, err := netns.NewNamed(name)
		done <- result{h, err}
	}()
	r := <-done
	if r.err != nil {
		t.Fatalf("create netns %s: %v", name, r.err)
	}
	ns := &NetNS{Name: name, Handle: r.h}
	t.Cleanup(func() {
		if ns.NL != nil {
			ns.NL.Close()
		}
		ns.Handle.Close()
		if err := netns.DeleteNamed(name); err != nil {
			t.Errorf("delete netns %s: %v", name, err)
		}
	})
	nl, err := netlink.NewHandleAt(r.h)
	if err != nil {
		t.Fatalf("netlink handle in %s: %v", name, err)
	}
	ns.NL = nl
	lo, err := nl.LinkByName("lo")
	if err != nil {
		t.Fatalf("lo in %s: %v", name, err)
	}
	if err := nl.LinkSetUp(lo); err != nil {
		t.Fatalf("set lo up in %s: %v", name, err)
	}
	return ns
}

// SetUp sets the named links up, in order, as `ip link set NAME up` does.
func (ns *NetNS) SetUp(t testing.TB, names ...string) {
	t.Helper()
	for _, name := range names {
		l, err := ns.NL.LinkByName(name)
		if err != nil {
			t.Fatalf("look up %s: %v", name, err)
		}
		if err := ns.NL.LinkSetUp(l); err != nil {
			t.Fatalf("set %s up: %v", name, err)
		}
	}
}

// UpOnce sets each named link up and down again, as a host's NIC has been: its first up
// attaches its qdisc for good, so a lab's up and down then restore it exactly.
func (ns *NetNS) UpOnce(t testing.TB, names ...string) {
	t.Helper()
	for _, name := range names {
		ns.SetUp(t, name)
		l, err := ns.NL.LinkByName(name)
		if err != nil {
			t.Fatalf("look up %s: %v", name, err)
		}
		if err := ns.NL.LinkSetDown(l); err != nil {
			t.Fatalf("set %s down: %v", name, err)
		}
	}
}
