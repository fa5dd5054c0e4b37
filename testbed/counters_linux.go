package testbed

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/rocebed/rocebed/internal/host"
	"github.com/rocebed/rocebed/internal/nsutil"
	"github.com/rocebed/rocebed/rdma"
	"github.com/rocebed/rocebed/testbed/scenario"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Per-namespace /proc/net files. /proc/net is /proc/self/net, the namespace of the process's
// main thread; Env.Do switches only the calling thread, so read thread-self.
const (
	procRTCache = "/proc/thread-self/net/stat/rt_cache"
	procSNMP    = "/proc/thread-self/net/snmp"
	procNetstat = "/proc/thread-self/net/netstat"
)

// snapshotKernelCounters are the /proc/net/{snmp,netstat} counters a Snapshot keeps.
var snapshotKernelCounters = []string{
	CounterRPFilter, CounterARPFilterDrops, CounterUDPNoPorts, CounterUDPInErrors,
	CounterIPInAddrErrors, CounterIPInHdrErrors, CounterIPInDiscards, CounterIPOutNoRoutes,
}

// TakeSnapshot reads the counters of a lab that is up: both endpoints' RDMA hw_counters
// (`rdma statistic show link DEV/1`), the NICs' and lo's link statistics (`ip -s link`), and
// the namespace's drop counters (`nstat`, /proc/net/stat/rt_cache). What cannot be read is
// listed in Errors rather than failing the snapshot: a counter missing is evidence too.
// TakeSnapshotAfter takes a snapshot no sooner than the RDMA core's counter cache allows after
// before was taken: hw_counters are served from a cache for `lifespan` ms after a read, so a
// batch shorter than that would otherwise be judged from its own "before" values.
func TakeSnapshotAfter(env *host.Env, s *scenario.Scenario, before *Snapshot) (*Snapshot, error) {
	var devs []string
	for dev := range before.RDMA {
		devs = append(devs, dev)
	}
	if wait := HWCounterCache(env, devs...) - time.Since(before.Taken); wait > 0 {
		time.Sleep(wait)
	}
	return TakeSnapshot(env, s)
}

// HWCounterCache is how long the RDMA core caches the hw_counters of devs after a read
// (/sys/class/infiniband/DEV/ports/1/hw_counters/lifespan, ms; 10 by default), plus 10 ms for
// jiffy rounding.
func HWCounterCache(env *host.Env, devs ...string) time.Duration {
	ms := 10
	for _, dev := range devs {
		raw, err := os.ReadFile(filepath.Join(env.SysfsRoot, "class/infiniband", dev, "ports/1/hw_counters/lifespan"))
		if err != nil {
			continue
		}
		if v, err := strconv.Atoi(strings.TrimSpace(string(raw))); err == nil && v > ms {
			ms = v
		}
	}
	return time.Duration(ms)*time.Millisecond + 10*time.Millisecond
}

func TakeSnapshot(env *host.Env, s *scenario.Scenario) (*Snapshot, error) {
	snap := &Snapshot{Taken: time.Now(), RDMA: map[string]rdma.Counters{}, Links: map[string]LinkCounters{}, Kernel: map[string]uint64{}}
	fail := func(err error) { snap.Errors = append(snap.Errors, err.Error()) }

	sys := rdma.Sysfs{Root: env.SysfsRoot}
	for _, ep := range []scenario.Endpoint{s.Endpoints.A, s.Endpoints.B} {
		dev, err := endpointDevice(env, s, ep)
		if err != nil {
			fail(err)
			continue
		}
		c, err := sys.HWCounters(dev, 1)
		if err != nil {
			fail(fmt.Errorf("hw_counters of %s: %w", dev, err))
			c = rdma.Counters{}
		}
		// Hardware RoCE NICs count packets in the IB PMA counters (port_xmit_packets); rxe
		// has no PMA and counts in hw_counters (sent_pkts). Keep both under their own names.
		if pc, err := sys.PortCounters(dev, 1); err == nil {
			for k, v := range pc {
				if _, dup := c[k]; !dup {
					c[k] = v
				}
			}
		}
		if len(c) > 0 {
			snap.RDMA[dev] = c
		}
	}

	// Links: the lab's NICs, each in its own namespace, and lo of the lab's namespace.
	links := map[string]string{"lo": ""}
	for _, n := range s.NICs {
		links[n.Name] = n.Netns
	}
	for name, nsName := range links {
		h, closeH, err := linkHandle(env, nsName)
		if err != nil {
			fail(err)
			continue
		}
		l, err := h.LinkByName(name)
		closeH()
		if err != nil {
			fail(fmt.Errorf("link statistics of %s: %w", name, err))
			continue
		}
		st := l.Attrs().Statistics
		if st == nil {
			fail(fmt.Errorf("link statistics of %s: the kernel sent none", name))
			continue
		}
		snap.Links[name] = LinkCounters{
			RxPackets: st.RxPackets, TxPackets: st.TxPackets, RxBytes: st.RxBytes, TxBytes: st.TxBytes,
			RxDropped: st.RxDropped, TxDropped: st.TxDropped, RxErrors: st.RxErrors, TxErrors: st.TxErrors,
		}
	}

	// Kernel drop counters of the lab's namespace, and of each other namespace a NIC is in.
	spaces := map[string]bool{"": true}
	for _, n := range s.NICs {
		if n.Netns != "" && n.Netns != env.NetnsName {
			spaces[n.Netns] = true
		}
	}
	for nsName := range spaces {
		prefix := ""
		if nsName != "" {
			prefix = nsName + "/"
		}
		err := doIn(env, nsName, func() error {
			var errs []error
			if v, err := readProcStatColumn(procRTCache, "in_martian_src"); err == nil {
				snap.Kernel[prefix+CounterMartianSrc] = v
			} else {
				errs = append(errs, err)
			}
			for _, f := range []string{procSNMP, procNetstat} {
				vals, err := readProcNetCounters(f)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				for _, name := range snapshotKernelCounters {
					if v, ok := vals[name]; ok {
						snap.Kernel[prefix+name] = v
					}
				}
			}
			return errors.Join(errs...)
		})
		if err != nil {
			fail(err)
		}
	}
	return snap, nil
}

// linkHandle returns a route netlink handle for the namespace nsName ("" or env's own: env.NL).
func linkHandle(env *host.Env, nsName string) (*netlink.Handle, func(), error) {
	if nsName == "" || nsName == env.NetnsName {
		return env.NL, func() {}, nil
	}
	ns, err := netns.GetFromName(nsName)
	if err != nil {
		return nil, nil, fmt.Errorf("open netns %q: %w", nsName, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, nil, fmt.Errorf("open netlink in netns %q: %w", nsName, err)
	}
	return h, h.Close, nil
}

// doIn runs fn in namespace nsName, or in env's namespace for "".
func doIn(env *host.Env, nsName string, fn func() error) error {
	if nsName == "" || nsName == env.NetnsName {
		return env.Do(fn)
	}
	ns, err := netns.GetFromName(nsName)
	if err != nil {
		return fmt.Errorf("open netns %q: %w", nsName, err)
	}
	defer ns.Close()
	return nsutil.Do(ns, fn)
}

// readProcStatColumn sums one column of a /proc/net/stat file over all CPUs.
func readProcStatColumn(path, column string) (uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	v, err := sumStatColumn(f, column)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
	return v, nil
}

// sumStatColumn parses a /proc/net/stat file: a header line of names, then one row of hex
// numbers per CPU; it returns the sum of column over the rows.
func sumStatColumn(r io.Reader, column string) (uint64, error) {
	sc := bufio.NewScanner(r)
	if !sc.Scan() {
		return 0, errors.New("empty file")
	}
	col := -1
	for i, name := range strings.Fields(sc.Text()) {
		if name == column {
			col = i
		}
	}
	if col < 0 {
		return 0, fmt.Errorf("no column %q", column)
	}
	var sum uint64
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) <= col {
			return 0, fmt.Errorf("short row %q", sc.Text())
		}
		v, err := strconv.ParseUint(f[col], 16, 64)
		if err != nil {
			return 0, fmt.Errorf("column %s: %w", column, err)
		}
		sum += v
	}
	return sum, sc.Err()
}

// readProcNetCounters reads /proc/net/snmp or /proc/net/netstat: pairs of lines "Group: names"
// and "Group: values". It returns "Group.Name" → value.
func readProcNetCounters(path string) (map[string]uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	m, err := parseProcNetCounters(f)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return m, nil
}

func parseProcNetCounters(r io.Reader) (map[string]uint64, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	out := map[string]uint64{}
	for sc.Scan() {
		names := strings.Fields(sc.Text())
		if !sc.Scan() {
			return nil, fmt.Errorf("group %q has names but no values", strings.Join(firstN(names, 1), ""))
		}
		vals := strings.Fields(sc.Text())
		if len(names) == 0 || len(names) != len(vals) || names[0] != vals[0] {
			return nil, fmt.Errorf("mismatched lines %q and %q", firstN(names, 1), firstN(vals, 1))
		}
		group := strings.TrimSuffix(names[0], ":")
		for i := 1; i < len(names); i++ {
			v, err := strconv.ParseInt(vals[i], 10, 64) // some (Tcp.MaxConn) are -1
			if err != nil || v < 0 {
				continue
			}
			out[group+"."+names[i]] = uint64(v)
		}
	}
	return out, sc.Err()
}

func firstN(s []string, n int) []string { return s[:min(n, len(s))] }

// endpointDevice names the RDMA device of an endpoint: its rxe link, its named device, or for
// `device: auto` the device bound to its NIC (looked up in the NIC's namespace).
func endpointDevice(env *host.Env, s *scenario.Scenario, ep scenario.Endpoint) (string, error) {
	switch {
	case ep.RXE != "":
		return ep.RXE, nil
	case ep.Device != "" && ep.Device != "auto":
		return ep.Device, nil
	}
	nsName := ""
	if nic, ok := s.NIC(ep.NIC); ok {
		nsName = nic.Netns
	}
	var dev string
	err := doIn(env, nsName, func() error {
		var err error
		dev, err = rdma.HostDeviceForNetdev(ep.NIC)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("endpoint on %s (device: auto): %w", ep.NIC, err)
	}
	return dev, nil
}
