package guesttest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// requireRXE skips (or fails under ROCEBED_REQUIRE_RXE=1) unless this kernel has rdma_rxe, and
// likewise for root under ROCEBED_REQUIRE_ROOT=1.
func requireRXE(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		msg := "needs root to create links and rxe devices; run `make test-vm`"
		if os.Getenv("ROCEBED_REQUIRE_ROOT") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	if _, err := os.Stat("/sys/module/rdma_rxe"); err != nil {
		msg := "kernel module rdma_rxe is not loaded (this kernel has no soft-RoCE): run `make test-vm` to test in a QEMU guest, or `modprobe rdma_rxe`"
		if os.Getenv("ROCEBED_REQUIRE_RXE") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
}

// TestRXEInGuest creates a veth pair and an rxe device on one end in a throwaway network
// namespace (`ip link add A type veth peer name B`, `rdma link add NAME type rxe netdev A`), checks
// that the kernel reports port 1 ACTIVE, and deletes both.
func TestRXEInGuest(t *testing.T) {
	requireRXE(t)
	suffix := fmt.Sprintf("%04x", os.Getpid()&0xffff)
	nsName := "rocebedtest-" + suffix
	// NewNamed leaves this thread in the new netns; the handles below name it explicitly, so
	// the thread goes straight back.
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	ns, err := netns.NewNamed(nsName)
	if err != nil {
		t.Fatalf("create netns: %v", err)
	}
	if err := netns.Set(orig); err != nil {
		t.Fatalf("return to the original netns: %v", err) // the thread stays locked and dies
	}
	orig.Close()
	runtime.UnlockOSThread()
	t.Cleanup(func() { ns.Close(); _ = netns.DeleteNamed(nsName) })

	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatalf("netlink handle in %s: %v", nsName, err)
	}
	defer h.Close()
	rh, err := netlink.NewHandleAt(ns, unix.NETLINK_RDMA)
	if err != nil {
		t.Fatalf("NETLINK_RDMA handle: %v (kernel without RDMA core?)", err)
	}
	defer rh.Close()

	a, b := "rbA"+suffix, "rbB"+suffix
	la := netlink.NewLinkAttrs()
	la.Name = a
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: b}); err != nil {
		t.Fatalf("add veth %s/%s: %v", a, b, err)
	}
	for _, n := range []string{a, b} {
		l, err := h.LinkByName(n)
		if err != nil {
			t.Fatal(err)
		}
		if err := h.LinkSetUp(l); err != nil {
			t.Fatalf("set %s up: %v", n, err)
		}
	}

	dev := "rxe" + suffix
	if err := rh.RdmaLinkAdd(dev, "rxe", a); err != nil {
		t.Fatalf("rdma link add %s type rxe netdev %s: %v", dev, a, err)
	}
	deleted := false
	t.Cleanup(func() {
		if !deleted {
			_ = rh.RdmaLinkDel(dev)
		}
	})
	link, err := rh.RdmaLinkByName(dev)
	if err != nil {
		t.Fatalf("rdma dev show %s: %v", dev, err)
	}
	if link.Attrs.NumPorts != 1 {
		t.Errorf("%s has %d ports, want 1", dev, link.Attrs.NumPorts)
	}

	// rxe's port follows the netdev's carrier; a veth pair with both ends up has it at once,
	// but the state file may lag the netdev event by a moment.
	stateFile := filepath.Join("/sys/class/infiniband", dev, "ports/1/state")
	var state string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		b, err := os.ReadFile(stateFile)
		if err != nil {
			t.Fatalf("read %s: %v", stateFile, err)
		}
		state = strings.TrimSpace(string(b))
		if state == "4: ACTIVE" || time.Now().After(deadline) {
			break
		}
	}
	if state != "4: ACTIVE" {
		t.Fatalf("%s = %q, want \"4: ACTIVE\"", stateFile, state)
	}

	if err := rh.RdmaLinkDel(dev); err != nil {
		t.Fatalf("rdma link delete %s: %v", dev, err)
	}
	deleted = true
	if _, err := rh.RdmaLinkByName(dev); err == nil {
		t.Errorf("%s still listed after rdma link delete", dev)
	}
	if _, err := os.Stat(filepath.Join("/sys/class/infiniband", dev)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("/sys/class/infiniband/%s still exists after delete (stat: %v)", dev, err)
	}
	l, err := h.LinkByName(a)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkDel(l); err != nil {
		t.Fatalf("delete veth %s: %v", a, err)
	}
	if _, err := h.LinkByName(b); err == nil {
		t.Errorf("veth peer %s still exists after deleting %s", b, a)
	}
}
