package rdma

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// The trees under testdata/ are recorded sysfs layouts (see testdata/gen.sh).
var (
	rxePair  = Sysfs{Root: "testdata/rxe-pair"}
	rxeDown  = Sysfs{Root: "testdata/rxe-down"}
	mlx5RoCE = Sysfs{Root: "testdata/mlx5-roce"}
)

func TestDevices(t *testing.T) {
	for _, tc := range []struct {
		fs   Sysfs
		want []string
	}{
		{rxePair, []string{"rxe0", "rxe1"}},
		{rxeDown, []string{"rxe0"}},
		{mlx5RoCE, []string{"mlx5_0"}},
	} {
		got, err := tc.fs.Devices()
		if err != nil {
			t.Fatalf("%s: %v", tc.fs.Root, err)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: Devices() = %v, want %v", tc.fs.Root, got, tc.want)
		}
	}
}

func TestDevicesNoRDMACore(t *testing.T) {
	_, err := Sysfs{Root: t.TempDir()}.Devices()
	if !errors.Is(err, ErrNoRDMA) {
		t.Fatalf("Devices() on a tree without class/infiniband: err = %v, want ErrNoRDMA", err)
	}
}

func TestDeviceRXE(t *testing.T) {
	d, err := rxePair.Device("rxe0")
	if err != nil {
		t.Fatal(err)
	}
	if d.Name != "rxe0" || len(d.Ports) != 1 {
		t.Fatalf("Device(rxe0) = %+v, want one port", d)
	}
	p := d.Ports[0]
	if p.Num != 1 || p.State != PortActive || p.PhysState != "5: LinkUp" || p.LinkLayer != "Ethernet" || p.NetDev != "vA" {
		t.Errorf("port = %+v", p)
	}
	want := []GID{
		{Index: 0, Addr: netip.MustParseAddr("fe80::a83c:b2ff:fe10:1"), Raw: "fe80:0000:0000:0000:a83c:b2ff:fe10:0001", Type: RoCEv2, NetDev: "vA"},
		{Index: 1, Addr: netip.MustParseAddr("::ffff:10.10.0.1"), Raw: "0000:0000:0000:0000:0000:ffff:0a0a:0001", Type: RoCEv2, NetDev: "vA"},
	}
	if !slices.Equal(p.GIDs, want) {
		t.Errorf("GIDs = %v, want %v (zero GIDs 2..15 must be skipped)", p.GIDs, want)
	}
	if got := p.GIDs[1].IP(); got != netip.MustParseAddr("10.10.0.1") {
		t.Errorf("IP() of the IPv4 GID = %s, want 10.10.0.1", got)
	}
}

func TestDeviceNotFound(t *testing.T) {
	_, err := rxePair.Device("rxe9")
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
	if !strings.Contains(err.Error(), "rxe0, rxe1") {
		t.Errorf("error %q should list the devices that exist", err)
	}
	if _, err := rxePair.PortState("rxe0", 2); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "[1]") {
		t.Errorf("PortState(rxe0, 2): err = %v, want ErrNotFound listing port 1", err)
	}
}

func TestPortState(t *testing.T) {
	for _, tc := range []struct {
		fs   Sysfs
		want PortState
	}{{rxePair, PortActive}, {rxeDown, PortDown}} {
		st, err := tc.fs.PortState("rxe0", 1)
		if err != nil {
			t.Fatal(err)
		}
		if st != tc.want {
			t.Errorf("%s: state %s, want %s", tc.fs.Root, st, tc.want)
		}
	}
	for raw, want := range map[string]PortState{"4: ACTIVE": PortActive, "1: DOWN": PortDown, "5: ACTIVE_DEFER": PortActiveDefer, "2:INIT": PortInit} {
		if got, err := parsePortState(raw); err != nil || got != want {
			t.Errorf("parsePortState(%q) = %v, %v; want %v", raw, got, err, want)
		}
	}
	if _, err := parsePortState("ACTIVE"); err == nil {
		t.Error("parsePortState(\"ACTIVE\") should fail")
	}
}

func TestFindGID(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fs    Sysfs
		dev   string
		addr  string
		index int
	}{
		{"rxe ipv4", rxePair, "rxe1", "10.10.0.2", 1},
		{"rxe ipv4-mapped input", rxePair, "rxe0", "::ffff:10.10.0.1", 1},
		{"rxe link-local", rxePair, "rxe0", "fe80::a83c:b2ff:fe10:1", 0},
		{"mlx5 ipv4 picks v2 not v1", mlx5RoCE, "mlx5_0", "192.168.1.10", 3},
		{"mlx5 ipv6", mlx5RoCE, "mlx5_0", "2001:db8::10", 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, err := tc.fs.FindGID(tc.dev, 1, netip.MustParseAddr(tc.addr))
			if err != nil {
				t.Fatal(err)
			}
			if g.Index != tc.index || g.Type != RoCEv2 || g.IP() != netip.MustParseAddr(tc.addr).Unmap() {
				t.Errorf("FindGID = %+v, want index %d, RoCE v2", g, tc.index)
			}
		})
	}
}

func TestFindGIDMissing(t *testing.T) {
	_, err := rxeDown.FindGID("rxe0", 1, netip.MustParseAddr("10.10.0.3"))
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
	for _, want := range []string{"fe80::a83c:b2ff:fe10:3", "10.10.0.3 is assigned to vC", "vC is up"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	// Only a RoCE v1 GID for this address: say so instead of blaming the address.
	_, err = mlx5RoCE.FindGID("mlx5_0", 1, netip.MustParseAddr("192.168.2.10"))
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "only a RoCE v1 gid at index 6") {
		t.Errorf("v1-only: err = %v", err)
	}
	if _, err := rxePair.FindGID("rxe0", 1, netip.Addr{}); err == nil {
		t.Error("FindGID with no address should fail")
	}
}

func TestGIDTypes(t *testing.T) {
	gids, err := mlx5RoCE.GIDs("mlx5_0", 1)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, g := range gids {
		got = append(got, g.Type.String())
	}
	want := []string{"RoCE v1", "RoCE v2", "RoCE v1", "RoCE v2", "RoCE v1", "RoCE v2", "RoCE v1"}
	if !slices.Equal(got, want) {
		t.Errorf("types = %v, want %v", got, want)
	}
	if parseGIDType("IB/RoCE v1", "InfiniBand") != IB {
		t.Error("IB/RoCE v1 on an InfiniBand port should be IB")
	}
}

func TestGIDsSkipsUntypedAndStopsAt64(t *testing.T) {
	root := t.TempDir()
	port := filepath.Join(root, "devices/virtual/infiniband/rxe0/ports/1")
	write(t, filepath.Join(port, "state"), "4: ACTIVE")
	write(t, filepath.Join(port, "gids/0"), "fe80:0000:0000:0000:0000:0000:0000:0001")
	// No types/0: the kernel refuses to read the type of a slot that is not valid.
	write(t, filepath.Join(port, "gids/1"), "0000:0000:0000:0000:0000:ffff:0a00:0001")
	write(t, filepath.Join(port, "gid_attrs/types/1"), "RoCE v2")
	write(t, filepath.Join(port, "gids/64"), "0000:0000:0000:0000:0000:ffff:0a00:0002")
	write(t, filepath.Join(port, "gid_attrs/types/64"), "RoCE v2")
	symlinkDev(t, root, "rxe0")

	gids, err := Sysfs{Root: root}.GIDs("rxe0", 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(gids) != 1 || gids[0].Index != 1 || gids[0].NetDev != "" {
		t.Errorf("GIDs = %v, want only index 1 (untyped 0 and out-of-scan 64 skipped)", gids)
	}
	write(t, filepath.Join(port, "gids/2"), "not-a-gid")
	if _, err := (Sysfs{Root: root}).GIDs("rxe0", 1); err == nil || !strings.Contains(err.Error(), "not-a-gid") {
		t.Errorf("malformed gid: err = %v", err)
	}
}

func TestHWCounters(t *testing.T) {
	c, err := rxePair.HWCounters("rxe0", 1)
	if err != nil {
		t.Fatal(err)
	}
	// Every counter rxe (Linux 6.1) exposes, and no "lifespan".
	want := []string{"ack_deferred", "completer_retry_err", "duplicate_request", "link_downed",
		"out_of_seq_request", "rcvd_pkts", "rcvd_rnr_err", "rcvd_seq_err", "rdma_recvs", "rdma_sends",
		"retry_exceeded_err", "retry_rnr_exceeded_err", "send_err", "send_rnr_err", "sent_pkts"}
	if !slices.Equal(c.Names(), want) {
		t.Errorf("names = %v, want %v", c.Names(), want)
	}
	if c["sent_pkts"] != 3001 || c["rdma_sends"] != 1000 {
		t.Errorf("counters = %v", c)
	}
	if got := c.NonZero().String(); got != "ack_deferred=12 rcvd_pkts=3001 rdma_sends=1000 sent_pkts=3001" {
		t.Errorf("NonZero().String() = %q", got)
	}
}

func TestPortCounters(t *testing.T) {
	c, err := mlx5RoCE.PortCounters("mlx5_0", 1)
	if err != nil {
		t.Fatal(err)
	}
	if c["port_xmit_data"] != 123456 || c["port_rcv_data"] != 654321 {
		t.Errorf("counters = %v", c)
	}
	if _, ok := c["VL15_dropped"]; ok {
		t.Error(`"N/A (no PMA)" should not become a counter`)
	}
	if _, err := rxePair.PortCounters("rxe0", 1); !errors.Is(err, ErrNotFound) {
		t.Errorf("rxe has no counters/: err = %v, want ErrNotFound", err)
	}
}

func TestCountersDelta(t *testing.T) {
	before := Counters{"sent_pkts": 10, "rcvd_pkts": 5, "gone": 1, "reset": 100}
	after := Counters{"sent_pkts": 25, "rcvd_pkts": 5, "new": 7, "reset": 3}
	got := after.Delta(before)
	want := Counters{"sent_pkts": 15, "rcvd_pkts": 0, "new": 7, "reset": 3}
	if got.String() != want.String() {
		t.Errorf("Delta = %v, want %v", got, want)
	}
}

func TestDeviceForNetdev(t *testing.T) {
	for netdev, want := range map[string]string{"vA": "rxe0", "vB": "rxe1"} {
		got, err := rxePair.DeviceForNetdev(netdev)
		if err != nil || got != want {
			t.Errorf("DeviceForNetdev(%s) = %q, %v; want %s", netdev, got, err, want)
		}
	}
	got, err := mlx5RoCE.DeviceForNetdev("enp1s0f0np0")
	if err != nil || got != "mlx5_0" {
		t.Errorf("DeviceForNetdev(enp1s0f0np0) = %q, %v", got, err)
	}
	_, err = rxePair.DeviceForNetdev("eth0")
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "rxe0/1→vA") || !strings.Contains(err.Error(), "rdma link add NAME type rxe netdev eth0") {
		t.Errorf("err = %v", err)
	}
}

func TestRXEActiveMTU(t *testing.T) {
	for netdev, want := range map[int]int{1500: 1024, 9000: 4096, 1104: 1024, 1103: 512, 4176: 4096, 4175: 2048, 68: 256, 65535: 4096} {
		if got := RXEActiveMTU(netdev); got != want {
			t.Errorf("RXEActiveMTU(%d) = %d, want %d", netdev, got, want)
		}
	}
	if got, err := rxePair.RXEActiveMTU("rxe0", 1); err != nil || got != 1024 {
		t.Errorf("rxe0 on vA (1500) = %d, %v; want 1024", got, err)
	}
	if got, err := rxeDown.RXEActiveMTU("rxe0", 1); err != nil || got != 4096 {
		t.Errorf("rxe0 on vC (9000) = %d, %v; want 4096", got, err)
	}
}

func TestRXELoaded(t *testing.T) {
	if !rxePair.RXELoaded() || mlx5RoCE.RXELoaded() {
		t.Errorf("RXELoaded: rxe-pair %v (want true), mlx5-roce %v (want false)", rxePair.RXELoaded(), mlx5RoCE.RXELoaded())
	}
}

func TestWaitActive(t *testing.T) {
	root := t.TempDir()
	state := filepath.Join(root, "devices/virtual/infiniband/rxe0/ports/1/state")
	write(t, state, "1: DOWN")
	write(t, filepath.Join(root, "devices/virtual/infiniband/rxe0/ports/1/gid_attrs/ndevs/0"), "vX")
	symlinkDev(t, root, "rxe0")
	fs := Sysfs{Root: root}

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := fs.WaitActive(ctx, "rxe0", 1)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "still DOWN") || !strings.Contains(err.Error(), "vX is up") {
		t.Fatalf("stuck DOWN: err = %v", err)
	}

	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- fs.WaitActive(ctx, "rxe0", 1) }()
	time.Sleep(50 * time.Millisecond)
	write(t, state, "4: ACTIVE")
	if err := <-done; err != nil {
		t.Fatalf("after the port went ACTIVE: %v", err)
	}

	if err := fs.WaitActive(ctx, "rxe7", 1); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing device: err = %v, want ErrNotFound at once", err)
	}
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+".tmp", []byte(content+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil { // atomic, like a sysfs read
		t.Fatal(err)
	}
}

// symlinkDev adds class/infiniband/DEV -> ../../devices/virtual/infiniband/DEV, as sysfs has it.
func symlinkDev(t *testing.T, root, dev string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(root, "class/infiniband"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../devices/virtual/infiniband/"+dev, filepath.Join(root, "class/infiniband", dev)); err != nil {
		t.Fatal(err)
	}
}
