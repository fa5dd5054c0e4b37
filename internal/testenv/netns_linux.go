package testenv

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/rocebed/rocebed/internal/nsutil"
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
	ip     ipSessions // Dump's iproute2 runs
}

// InitialNetNS returns the initial (current) namespace as a NetNS, for real-kernel tests that
// must build their lab where rxe works. Only call it after RequireRXE.
func InitialNetNS(t testing.TB) *NetNS {
	t.Helper()
	nl, err := netlink.NewHandle()
	if err != nil {
		t.Fatalf("netlink handle: %v", err)
	}
	ns := &NetNS{Handle: netns.None(), NL: nl}
	t.Cleanup(func() {
		if err := ns.ip.closeAll(); err != nil {
			t.Errorf("dump sessions: %v", err)
		}
		nl.Close()
	})
	return ns
}

// quickDAD are the namespace defaults NewNetNS sets so that IPv6 duplicate address detection
// on a link created in it starts at once: DAD waits a random delay of up to
// router_solicitation_delay (1 s) before its probe, then retrans_time_ms (1000). DAD itself
// still runs, on every address, through the same kernel path; a test that needs the kernel's
// default timing sets its link's own values. (The probe interval stays: a namespace other than
// the initial one has no net.ipv6.neigh.default to set it in.)
var quickDAD = [][2]string{
	{"net/ipv6/conf/default/router_solicitation_delay", "0"},
}

// NewNetNS creates a named namespace with lo up and DAD without its random delay (quickDAD),
// and removes it when the test ends.
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
		if err := ns.ip.closeAll(); err != nil {
			t.Errorf("dump sessions in %s: %v", name, err)
		}
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
	if err := nsutil.Do(r.h, func() error {
		for _, kv := range quickDAD {
			err := os.WriteFile(filepath.Join("/proc/sys", kv[0]), []byte(kv[1]), 0o644)
			if _, v6 := os.Stat("/proc/sys/net/ipv6"); err != nil && !(errors.Is(err, fs.ErrNotExist) && errors.Is(v6, fs.ErrNotExist)) {
				return err // only a kernel without IPv6 (and so without DAD) may lack the file
			}
		}
		return nil
	}); err != nil {
		t.Fatalf("quick DAD in %s: %v", name, err)
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
