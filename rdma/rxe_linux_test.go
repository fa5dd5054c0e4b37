package rdma

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rocebed/rocebed/internal/testenv"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// TestPreflightOnThisKernel must hold on the dev machine (no RDMA core) and in the VM (rxe).
func TestPreflightOnThisKernel(t *testing.T) {
	err := Preflight()
	_, statErr := os.Stat("/sys/module/rdma_rxe")
	switch {
	case err == nil:
		if statErr != nil {
			t.Fatalf("Preflight() = nil, but /sys/module/rdma_rxe is missing: %v", statErr)
		}
	case errors.Is(err, ErrNoRDMA), errors.Is(err, ErrNoRXE):
		var me *MissingError
		if !errors.As(err, &me) || me.Hint == "" {
			t.Errorf("Preflight() = %v: want a *MissingError with a hint", err)
		}
		if !strings.Contains(err.Error(), "rocebed vm run") {
			t.Errorf("Preflight() = %q: should point at `rocebed vm run`", err)
		}
		t.Logf("Preflight() = %v", err)
	default:
		t.Fatalf("Preflight() = %v: want nil, ErrNoRDMA or ErrNoRXE", err)
	}

	// The netlink side must agree with what Preflight found.
	h, herr := OpenHandle(netns.None())
	if errors.Is(err, ErrNoRDMA) {
		if !errors.Is(herr, ErrNoRDMA) {
			t.Errorf("Preflight says no RDMA core, but OpenHandle = %v", herr)
		}
		if _, merr := NetnsMode(nil); !errors.Is(merr, ErrNoRDMA) {
			t.Errorf("NetnsMode(nil) = %v, want ErrNoRDMA", merr)
		}
		if derr := DelRXE(nil, "rbtabsent"); derr != nil {
			t.Errorf("DelRXE on a kernel without RDMA = %v, want nil (nothing to delete)", derr)
		}
		if aerr := AddRXE(nil, "rbtabsent", "lo"); !errors.Is(aerr, ErrNoRDMA) {
			t.Errorf("AddRXE on a kernel without RDMA = %v, want ErrNoRDMA", aerr)
		}
		return
	}
	if herr != nil {
		t.Fatalf("OpenHandle: %v", herr)
	}
	h.Close()
}

func TestPreflightDecisions(t *testing.T) {
	loaded := Sysfs{Root: "testdata/rxe-pair"}    // has module/rdma_rxe
	unloaded := Sysfs{Root: "testdata/mlx5-roce"} // has not
	noProto := func() error { return fmt.Errorf("socket: %w", unix.EPROTONOSUPPORT) }
	ok := func() error { return nil }
	mustNotLoad := func() error { t.Error("load called although rdma_rxe is loaded"); return nil }
	failLoad := func() error { return errors.New("`modprobe rdma_rxe`: exit status 1: module not found") }

	if err := preflight(loaded, mustNotLoad, ok); err != nil {
		t.Errorf("all present: %v", err)
	}

	err := preflight(unloaded, failLoad, noProto)
	if !errors.Is(err, ErrNoRDMA) || !errors.Is(err, unix.EPROTONOSUPPORT) || !strings.Contains(err.Error(), "module not found") {
		t.Errorf("no RDMA core, load fails: %v", err)
	}

	err = preflight(unloaded, failLoad, ok)
	var me *MissingError
	if !errors.Is(err, ErrNoRXE) || !errors.As(err, &me) || me.Check != "rdma_rxe" {
		t.Fatalf("rdma core but no rxe: %v", err)
	}
	for _, want := range []string{"not loaded and could not be loaded", "module not found", "run `modprobe rdma_rxe`", "rocebed vm run"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}

	// A load that works: the re-check sees the module.
	root := t.TempDir()
	loadNow := func() error { return os.MkdirAll(root+"/module/rdma_rxe", 0o755) }
	if err := preflight(Sysfs{Root: root}, loadNow, ok); err != nil {
		t.Errorf("after a successful load: %v", err)
	}

	if err := preflight(unloaded, failLoad, func() error { return unix.EMFILE }); err == nil || errors.Is(err, ErrNoRDMA) {
		t.Errorf("a probe failing for another reason must not claim ErrNoRDMA: %v", err)
	}
}

func TestAddRXEValidatesName(t *testing.T) {
	for _, name := range []string{"", strings.Repeat("x", 64), "a/b", "a b"} {
		if err := AddRXE(nil, name, "lo"); err == nil || !strings.Contains(err.Error(), "invalid device name") {
			t.Errorf("AddRXE(%q) = %v, want an invalid-name error", name, err)
		}
	}
	if err := AddRXE(nil, "rbtx", ""); err == nil {
		t.Error("AddRXE with no netdev should fail")
	}
}

func TestHostDeviceForNetdevMissing(t *testing.T) {
	_, err := HostDeviceForNetdev("rbt-no-such")
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("HostDeviceForNetdev(no such netdev) = %v, want ErrNotFound", err)
	}
}

// rxeCounterNames are the hw_counters of rxe (drivers/infiniband/sw/rxe/rxe_hw_counters.c).
var rxeCounterNames = []string{"sent_pkts", "rcvd_pkts", "duplicate_request", "out_of_seq_request",
	"rcvd_rnr_err", "send_rnr_err", "rcvd_seq_err", "ack_deferred", "retry_exceeded_err",
	"retry_rnr_exceeded_err", "completer_retry_err", "send_err", "link_downed", "rdma_sends", "rdma_recvs"}

// TestAddDelRXE creates a real rxe device on a veth pair and reads it back through netlink and
// sysfs. rxe works only in the initial network namespace, so the veth is created in the
// current one: run it on a kernel with rdma_rxe, i.e. in the VM (`make test-vm`).
func TestAddDelRXE(t *testing.T) {
	testenv.RequireRXE(t)

	b := make([]byte, 3)
	_, _ = rand.Read(b)
	tag := hex.EncodeToString(b)
	vethA, vethB, dev := "rbt"+tag+"a", "rbt"+tag+"b", "rbt"+tag+"r"
	ip := netip.AddrFrom4([4]byte{10, 99, b[0], 1 + b[1]%250})

	nlh, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nlh.Close)
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: vethA}, PeerName: vethB}
	if err := nlh.LinkAdd(veth); err != nil {
		t.Fatalf("ip link add %s type veth peer name %s: %v", vethA, vethB, err)
	}
	t.Cleanup(func() {
		if l, err := nlh.LinkByName(vethA); err == nil {
			if err := nlh.LinkDel(l); err != nil {
				t.Errorf("ip link del %s: %v", vethA, err)
			}
		}
	})
	linkA, err := nlh.LinkByName(vethA)
	if err != nil {
		t.Fatal(err)
	}
	linkB, err := nlh.LinkByName(vethB)
	if err != nil {
		t.Fatal(err)
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(24, 32)}}
	if err := nlh.AddrAdd(linkA, addr); err != nil {
		t.Fatalf("ip addr add %s/24 dev %s: %v", ip, vethA, err)
	}
	for _, l := range []netlink.Link{linkA, linkB} {
		if err := nlh.LinkSetUp(l); err != nil {
			t.Fatalf("ip link set %s up: %v", l.Attrs().Name, err)
		}
	}

	h, err := OpenHandle(netns.None())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	mode, err := NetnsMode(h)
	if err != nil || (mode != "shared" && mode != "exclusive") {
		t.Errorf("NetnsMode = %q, %v", mode, err)
	}

	if err := AddRXE(h, dev, vethA); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := DelRXE(h, dev); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	if ok, err := RXEExists(h, dev); err != nil || !ok {
		t.Fatalf("RXEExists(%s) after AddRXE = %v, %v", dev, ok, err)
	}
	if err := AddRXE(h, dev+"2", vethA); err == nil {
		_ = DelRXE(h, dev+"2")
		t.Error("a second rxe on the same netdev should be refused")
	} else {
		t.Logf("second rxe on %s refused as expected: %v", vethA, err)
	}
	if err := AddRXE(h, dev+"3", "rbtnosuchdev"); err == nil {
		_ = DelRXE(h, dev+"3")
		t.Error("rxe on a missing netdev should be refused")
	} else {
		t.Logf("missing netdev: %v", err)
	}

	s := Sysfs{}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.WaitActive(ctx, dev, 1); err != nil {
		t.Fatal(err)
	}
	devs, err := s.Devices()
	if err != nil || !slices.Contains(devs, dev) {
		t.Errorf("Devices() = %v, %v; want it to contain %s", devs, err, dev)
	}
	if got, err := s.PortNetdev(dev, 1); err != nil || got != vethA {
		t.Errorf("PortNetdev = %q, %v; want %s", got, err, vethA)
	}
	if got, err := s.DeviceForNetdev(vethA); err != nil || got != dev {
		t.Errorf("DeviceForNetdev(%s) = %q, %v; want %s", vethA, got, err, dev)
	}
	if got, err := HostDeviceForNetdev(vethA); err != nil || got != dev {
		t.Errorf("HostDeviceForNetdev(%s) = %q, %v; want %s", vethA, got, err, dev)
	}
	if _, err := s.DeviceForNetdev(vethB); !errors.Is(err, ErrNotFound) {
		t.Errorf("DeviceForNetdev(%s) (no rxe) = %v, want ErrNotFound", vethB, err)
	}

	// The RoCE v2 GID for the address appears shortly after the address (a kernel work item).
	var gid GID
	for {
		gid, err = s.FindGID(dev, 1, ip)
		if err == nil || ctx.Err() != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("FindGID(%s): %v", ip, err)
	}
	wantRaw := fmt.Sprintf("0000:0000:0000:0000:0000:ffff:%02x%02x:%02x%02x", 10, 99, ip.As4()[2], ip.As4()[3])
	if gid.Type != RoCEv2 || gid.NetDev != vethA || gid.Raw != wantRaw || gid.IP() != ip {
		t.Errorf("FindGID = %+v, want RoCE v2 %s on %s", gid, wantRaw, vethA)
	}
	t.Logf("GID for %s: %s", ip, gid)
	gids, _ := s.GIDs(dev, 1)
	t.Logf("GIDs of %s: %v", dev, gids)
	if _, err := s.FindGID(dev, 1, netip.MustParseAddr("10.98.0.1")); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), vethA) {
		t.Errorf("FindGID(unassigned address) = %v, want ErrNotFound naming %s", err, vethA)
	}

	// IPv6: the GID is the address itself. NODAD so the address is usable at once.
	ip6 := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 0x99, 0, 0, 0, 0, 0, 0, 0, 0, b[1], b[2] | 1})
	addr6 := &netlink.Addr{IPNet: &net.IPNet{IP: ip6.AsSlice(), Mask: net.CIDRMask(64, 128)}, Flags: unix.IFA_F_NODAD}
	if err := nlh.AddrAdd(linkA, addr6); err != nil {
		t.Fatalf("ip addr add %s/64 dev %s nodad: %v", ip6, vethA, err)
	}
	for {
		gid, err = s.FindGID(dev, 1, ip6)
		if err == nil || ctx.Err() != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil || gid.Type != RoCEv2 || gid.Addr != ip6 {
		t.Errorf("FindGID(%s) = %+v, %v", ip6, gid, err)
	} else {
		t.Logf("GID for %s: %s", ip6, gid)
	}

	d, err := s.Device(dev)
	if err != nil || len(d.Ports) != 1 {
		t.Fatalf("Device(%s) = %+v, %v", dev, d, err)
	}
	if p := d.Ports[0]; p.State != PortActive || p.LinkLayer != "Ethernet" || p.PhysState != "5: LinkUp" || p.NetDev != vethA || len(p.GIDs) < 3 {
		t.Errorf("port 1 = %+v", p)
	}
	// rxe has no PMA, so the kernel creates no ports/N/counters (as in testdata/rxe-pair).
	if c, err := s.PortCounters(dev, 1); !errors.Is(err, ErrNotFound) {
		t.Errorf("PortCounters of an rxe port = %v, %v; want ErrNotFound", c, err)
	}

	hw, err := s.HWCounters(dev, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range rxeCounterNames {
		if _, ok := hw[name]; !ok {
			t.Errorf("hw_counters of %s lack %s (have %v)", dev, name, hw.Names())
		}
	}
	t.Logf("hw_counters: %s", hw)

	mtu, err := s.RXEActiveMTU(dev, 1)
	if err != nil || mtu != 1024 {
		t.Errorf("RXEActiveMTU on a 1500-byte veth = %d, %v; want 1024", mtu, err)
	}
	if devinfo, err := exec.LookPath("ibv_devinfo"); err == nil {
		out, err := exec.Command(devinfo, "-d", dev).CombinedOutput()
		m := regexp.MustCompile(`active_mtu:\s*(\d+)`).FindSubmatch(out)
		if err != nil || m == nil {
			t.Errorf("ibv_devinfo -d %s: %v: %s", dev, err, out)
		} else if n, _ := strconv.Atoi(string(m[1])); n != mtu {
			t.Errorf("ibv_devinfo says active_mtu %d, RXEActiveMTU says %d", n, mtu)
		} else {
			t.Logf("active_mtu %d, as ibv_devinfo -d %s says", mtu, dev)
		}
	} else {
		t.Log("no ibv_devinfo: active_mtu not cross-checked")
	}

	// The port follows its netdev: down, then ACTIVE again.
	if err := nlh.LinkSetDown(linkA); err != nil {
		t.Fatal(err)
	}
	for {
		st, err := s.PortState(dev, 1)
		if err != nil {
			t.Fatal(err)
		}
		if st == PortDown {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("port of %s still %s after %s went down", dev, st, vethA)
		}
		time.Sleep(20 * time.Millisecond)
	}
	short, cancelShort := context.WithTimeout(ctx, 200*time.Millisecond)
	err = s.WaitActive(short, dev, 1)
	cancelShort()
	if err == nil || !strings.Contains(err.Error(), "still DOWN") {
		t.Errorf("WaitActive with the netdev down = %v, want a still-DOWN timeout", err)
	}
	if err := nlh.LinkSetUp(linkA); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitActive(ctx, dev, 1); err != nil {
		t.Fatal(err)
	}
	t.Logf("port went DOWN with %s down and ACTIVE again with it up", vethA)

	if err := DelRXE(h, dev); err != nil {
		t.Fatal(err)
	}
	if ok, err := RXEExists(h, dev); err != nil || ok {
		t.Errorf("RXEExists after DelRXE = %v, %v", ok, err)
	}
	if _, err := s.PortState(dev, 1); !errors.Is(err, ErrNotFound) {
		t.Errorf("sysfs still has %s after DelRXE: %v", dev, err)
	}
	if err := DelRXE(h, dev); err != nil {
		t.Errorf("second DelRXE = %v, want nil", err)
	}
}
