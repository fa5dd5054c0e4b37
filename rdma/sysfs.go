package rdma

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// gidScan is how many GID table slots are read per port. rxe and most NICs have 128..1024
// slots, but the default link-local and the IP-derived GIDs sit at the start; reading all
// 1024 files per port takes seconds on a slow machine.
const gidScan = 64

// Sysfs reads RDMA devices from a sysfs tree. Root "" means "/sys"; tests point it at a
// recorded tree. It only reads; it never writes.
//
// The class/infiniband directory is netns-tagged: in the RDMA "exclusive" netns mode a process
// sees the devices of the namespace that mounted /sys, not of its thread.
type Sysfs struct {
	Root string
}

func (s Sysfs) path(elem ...string) string {
	root := s.Root
	if root == "" {
		root = "/sys"
	}
	return filepath.Join(append([]string{root}, elem...)...)
}

func (s Sysfs) portPath(dev string, port int, elem ...string) string {
	return s.path(append([]string{"class", "infiniband", dev, "ports", strconv.Itoa(port)}, elem...)...)
}

func readTrimmed(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// Devices lists the RDMA devices (`rdma dev show`, `ibv_devices`), sorted. A missing
// class/infiniband means the RDMA core (ib_core) is not in this kernel: ErrNoRDMA.
func (s Sysfs) Devices() ([]string, error) {
	dir := s.path("class", "infiniband")
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no %s: %w", dir, ErrNoRDMA)
	}
	if err != nil {
		return nil, fmt.Errorf("list rdma devices: %w", err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name()) // symlinks in real sysfs, directories in some trees
	}
	slices.Sort(names)
	return names, nil
}

// checkDevice returns a not-found error naming the devices that do exist.
func (s Sysfs) checkDevice(dev string) error {
	if _, err := os.Stat(s.path("class", "infiniband", dev)); err == nil {
		return nil
	}
	devs, err := s.Devices()
	if err != nil {
		return fmt.Errorf("rdma device %q: %w", dev, err)
	}
	if len(devs) == 0 {
		return fmt.Errorf("rdma device %q: %w (there are no rdma devices)", dev, ErrNotFound)
	}
	return fmt.Errorf("rdma device %q: %w (have %s)", dev, ErrNotFound, strings.Join(devs, ", "))
}

// checkPort returns a not-found error if dev or its port does not exist.
func (s Sysfs) checkPort(dev string, port int) error {
	if err := s.checkDevice(dev); err != nil {
		return err
	}
	if _, err := os.Stat(s.portPath(dev, port)); err != nil {
		ports, _ := s.Ports(dev)
		return fmt.Errorf("rdma device %q port %d: %w (ports: %v)", dev, port, ErrNotFound, ports)
	}
	return nil
}

// Ports lists the port numbers of dev (ports/*), sorted.
func (s Sysfs) Ports(dev string) ([]int, error) {
	entries, err := os.ReadDir(s.path("class", "infiniband", dev, "ports"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, s.checkDevice(dev)
	}
	if err != nil {
		return nil, fmt.Errorf("list ports of %q: %w", dev, err)
	}
	var ports []int
	for _, e := range entries {
		if n, err := strconv.Atoi(e.Name()); err == nil {
			ports = append(ports, n)
		}
	}
	slices.Sort(ports)
	return ports, nil
}

// Device reads dev with all its ports.
func (s Sysfs) Device(dev string) (Device, error) {
	ports, err := s.Ports(dev)
	if err != nil {
		return Device{}, err
	}
	d := Device{Name: dev}
	for _, n := range ports {
		p, err := s.Port(dev, n)
		if err != nil {
			return Device{}, err
		}
		d.Ports = append(d.Ports, p)
	}
	return d, nil
}

// Port reads one port: state, physical state, link layer, netdev and GIDs.
func (s Sysfs) Port(dev string, port int) (Port, error) {
	st, err := s.PortState(dev, port)
	if err != nil {
		return Port{}, err
	}
	p := Port{Num: port, State: st}
	p.PhysState, _ = readTrimmed(s.portPath(dev, port, "phys_state"))
	p.LinkLayer, _ = readTrimmed(s.portPath(dev, port, "link_layer"))
	if nd, err := s.PortNetdev(dev, port); err == nil {
		p.NetDev = nd
	}
	if p.GIDs, err = s.GIDs(dev, port); err != nil {
		return Port{}, err
	}
	return p, nil
}

// PortState reads ports/N/state ("4: ACTIVE"), as `rdma link show` and ibv_devinfo show it.
func (s Sysfs) PortState(dev string, port int) (PortState, error) {
	raw, err := readTrimmed(s.portPath(dev, port, "state"))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			if cerr := s.checkPort(dev, port); cerr != nil {
				return 0, cerr
			}
		}
		return 0, fmt.Errorf("read state of %s port %d: %w", dev, port, err)
	}
	st, err := parsePortState(raw)
	if err != nil {
		return 0, fmt.Errorf("state of %s port %d: %w", dev, port, err)
	}
	return st, nil
}

func parsePortState(raw string) (PortState, error) {
	num, _, _ := strings.Cut(raw, ":")
	n, err := strconv.Atoi(strings.TrimSpace(num))
	if err != nil {
		return 0, fmt.Errorf("unexpected port state %q, want \"N: NAME\"", raw)
	}
	return PortState(n), nil
}

// PortNetdev is the netdev bound to the port: the first readable gid_attrs/ndevs/N. For rxe
// that is the netdev given to `rdma link add NAME type rxe netdev NETDEV`.
func (s Sysfs) PortNetdev(dev string, port int) (string, error) {
	if err := s.checkPort(dev, port); err != nil {
		return "", err
	}
	for i := range gidScan {
		nd, err := readTrimmed(s.portPath(dev, port, "gid_attrs", "ndevs", strconv.Itoa(i)))
		if err == nil && nd != "" {
			return nd, nil
		}
	}
	return "", fmt.Errorf("netdev of %s port %d: %w (no gid_attrs/ndevs entry in the first %d GIDs; is the port's netdev up with an address?)", dev, port, ErrNotFound, gidScan)
}

// GIDs reads the non-empty entries among the first 64 of the port's GID table (`ibv_devinfo
// -v`, or `rdma link show` plus /sys/.../gids). Zero GIDs and entries without a type (the
// kernel refuses to read the type of an unused slot) are left out.
func (s Sysfs) GIDs(dev string, port int) ([]GID, error) {
	if err := s.checkPort(dev, port); err != nil {
		return nil, err
	}
	linkLayer, _ := readTrimmed(s.portPath(dev, port, "link_layer"))
	var gids []GID
	for i := range gidScan {
		idx := strconv.Itoa(i)
		raw, err := readTrimmed(s.portPath(dev, port, "gids", idx))
		if err != nil {
			continue
		}
		addr, err := parseGID(raw)
		if err != nil {
			return nil, fmt.Errorf("gid %d of %s port %d: %w", i, dev, port, err)
		}
		if addr.IsUnspecified() {
			continue
		}
		typ, err := readTrimmed(s.portPath(dev, port, "gid_attrs", "types", idx))
		if err != nil {
			continue
		}
		nd, _ := readTrimmed(s.portPath(dev, port, "gid_attrs", "ndevs", idx))
		gids = append(gids, GID{Index: i, Addr: addr, Raw: raw, Type: parseGIDType(typ, linkLayer), NetDev: nd})
	}
	return gids, nil
}

// parseGID parses sysfs's "fe80:0000:0000:0000:5054:00ff:fe12:3456" (8 groups of 4 hex digits).
func parseGID(raw string) (netip.Addr, error) {
	h := strings.ReplaceAll(raw, ":", "")
	b, err := hex.DecodeString(h)
	if err != nil || len(b) != 16 {
		return netip.Addr{}, fmt.Errorf("unexpected gid %q, want 8 groups of 4 hex digits", raw)
	}
	return netip.AddrFrom16([16]byte(b)), nil
}

// FindGID returns the RoCE v2 GID of dev's port for addr: ::ffff:a.b.c.d for an IPv4 address,
// the address itself for IPv6. The kernel adds that GID when addr is assigned to the port's
// netdev and the netdev is up, so a miss usually means one of those is not true; the error
// lists the GIDs the port does have.
func (s Sysfs) FindGID(dev string, port int, addr netip.Addr) (GID, error) {
	if !addr.IsValid() {
		return GID{}, fmt.Errorf("find gid on %s port %d: no address given", dev, port)
	}
	gids, err := s.GIDs(dev, port)
	if err != nil {
		return GID{}, err
	}
	want := addr.Unmap()
	var otherType *GID
	for i, g := range gids {
		if g.IP() != want {
			continue
		}
		if g.Type == RoCEv2 {
			return g, nil
		}
		otherType = &gids[i]
	}
	var have []string
	for _, g := range gids {
		have = append(have, g.String())
	}
	listed := "none"
	if len(have) > 0 {
		listed = strings.Join(have, "; ")
	}
	nd, _ := s.PortNetdev(dev, port)
	if nd == "" {
		nd = "the port's netdev"
	}
	if otherType != nil {
		return GID{}, fmt.Errorf("no RoCE v2 gid for %s on %s port %d: %w (only a %s gid at index %d; GIDs: %s): check that the device supports RoCE v2",
			want, dev, port, ErrNotFound, otherType.Type, otherType.Index, listed)
	}
	return GID{}, fmt.Errorf("no RoCE v2 gid for %s on %s port %d: %w (GIDs: %s): check that %s is assigned to %s and that %s is up",
		want, dev, port, ErrNotFound, listed, want, nd, nd)
}

// HWCounters reads ports/N/hw_counters: the driver's own counters (rxe: sent_pkts, rcvd_pkts,
// retry_exceeded_err, ...), what `rdma statistic show link DEV/N` prints. The "lifespan"
// setting in that directory is not a counter and is left out.
func (s Sysfs) HWCounters(dev string, port int) (Counters, error) {
	return s.readCounters(dev, port, "hw_counters")
}

// PortCounters reads ports/N/counters: the IB PMA counters. Drivers without a PMA (rxe has
// none; the directory may be missing or every file reads "N/A (no PMA)") give no counters.
func (s Sysfs) PortCounters(dev string, port int) (Counters, error) {
	return s.readCounters(dev, port, "counters")
}

func (s Sysfs) readCounters(dev string, port int, dir string) (Counters, error) {
	if err := s.checkPort(dev, port); err != nil {
		return nil, err
	}
	p := s.portPath(dev, port, dir)
	entries, err := os.ReadDir(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s of %s port %d: %w (the driver exposes none)", dir, dev, port, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	c := make(Counters, len(entries))
	for _, e := range entries {
		if e.IsDir() || e.Name() == "lifespan" {
			continue
		}
		raw, err := readTrimmed(filepath.Join(p, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("read counter %s of %s port %d: %w", e.Name(), dev, port, err)
		}
		v, err := strconv.ParseUint(raw, 10, 64)
		if err != nil {
			continue // "N/A (no PMA)"
		}
		c[e.Name()] = v
	}
	return c, nil
}

// DeviceForNetdev finds the RDMA device with a port bound to netdev (via gid_attrs/ndevs), e.g.
// "rxe0" for the netdev given to `rdma link add rxe0 type rxe netdev NETDEV`. Only the first
// 64 GID slots of each port are looked at.
func (s Sysfs) DeviceForNetdev(netdev string) (string, error) {
	devs, err := s.Devices()
	if err != nil {
		return "", fmt.Errorf("rdma device for %s: %w", netdev, err)
	}
	var bound []string
	for _, dev := range devs {
		ports, err := s.Ports(dev)
		if err != nil {
			return "", err
		}
		for _, port := range ports {
			seen := map[string]bool{}
			for i := range gidScan {
				nd, err := readTrimmed(s.portPath(dev, port, "gid_attrs", "ndevs", strconv.Itoa(i)))
				if err != nil || nd == "" || seen[nd] {
					continue
				}
				if nd == netdev {
					return dev, nil
				}
				seen[nd] = true
				bound = append(bound, fmt.Sprintf("%s/%d→%s", dev, port, nd))
			}
		}
	}
	have := "no device has a netdev"
	if len(bound) > 0 {
		have = "have " + strings.Join(bound, ", ")
	}
	return "", fmt.Errorf("rdma device for netdev %s: %w (%s): create one with `rdma link add NAME type rxe netdev %s`, and check that %s is up",
		netdev, ErrNotFound, have, netdev, netdev)
}

// NetdevMTU reads class/net/NETDEV/mtu (`ip link show NETDEV`).
func (s Sysfs) NetdevMTU(netdev string) (int, error) {
	raw, err := readTrimmed(s.path("class", "net", netdev, "mtu"))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return 0, fmt.Errorf("mtu of netdev %s: %w", netdev, ErrNotFound)
		}
		return 0, fmt.Errorf("mtu of netdev %s: %w", netdev, err)
	}
	n, err := strconv.Atoi(raw)
	if err != nil {
		return 0, fmt.Errorf("mtu of netdev %s: unexpected %q", netdev, raw)
	}
	return n, nil
}

// RXEActiveMTU is the active MTU of an rxe port, derived from its netdev's MTU the way rxe
// derives it (see RXEActiveMTU). It is only right for rxe devices.
func (s Sysfs) RXEActiveMTU(dev string, port int) (int, error) {
	nd, err := s.PortNetdev(dev, port)
	if err != nil {
		return 0, err
	}
	mtu, err := s.NetdevMTU(nd)
	if err != nil {
		return 0, err
	}
	return RXEActiveMTU(mtu), nil
}

// RXELoaded reports whether module/rdma_rxe exists (the module is loaded or built in).
func (s Sysfs) RXELoaded() bool {
	_, err := os.Stat(s.path("module", "rdma_rxe"))
	return err == nil
}

// WaitActive polls dev's port state until it is ACTIVE, or ctx ends. rxe ports go ACTIVE once
// their netdev is up with carrier (`rdma link show` says "state ACTIVE"); a port stuck in DOWN
// means the netdev is down or has no carrier. Give ctx a deadline.
func (s Sysfs) WaitActive(ctx context.Context, dev string, port int) error {
	const interval = 20 * time.Millisecond
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		st, err := s.PortState(dev, port)
		if err != nil && errors.Is(err, ErrNotFound) {
			return err
		}
		if err == nil && st == PortActive {
			return nil
		}
		select {
		case <-ctx.Done():
			nd, _ := s.PortNetdev(dev, port)
			if nd == "" {
				nd = "its netdev"
			}
			if err != nil {
				return fmt.Errorf("wait for %s port %d to be ACTIVE: %w (last read: %v)", dev, port, ctx.Err(), err)
			}
			return fmt.Errorf("wait for %s port %d to be ACTIVE: %w (still %s): check that %s is up and has carrier (`ip link set %s up`; a veth needs both ends up)",
				dev, port, ctx.Err(), st, nd, nd)
		case <-t.C:
		}
	}
}
