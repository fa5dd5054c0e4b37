package counters

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/rocebed/rocebed/internal/host"
	"github.com/rocebed/rocebed/internal/kernel"
	"github.com/rocebed/rocebed/rdma"
	"github.com/rocebed/rocebed/testbed/lab"
	"github.com/rocebed/rocebed/testbed/scenario"
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
	for _, ep := range s.LocalEndpoints() {
		dev, err := lab.EndpointDevice(env, s, ep.Endpoint)
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
		h, closeH, err := env.NetlinkIn(nsName)
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
		lc := LinkCounters{
			RxPackets: st.RxPackets, TxPackets: st.TxPackets, RxBytes: st.RxBytes, TxBytes: st.TxBytes,
			RxDropped: st.RxDropped, TxDropped: st.TxDropped, RxErrors: st.RxErrors, TxErrors: st.TxErrors,
		}
		// IPv6 counters: an interface without IPv6 (disabled, or an MTU below 1280) has none.
		_ = env.DoIn(nsName, func() error {
			if v6, err := kernel.ReadDevSNMP6(name); err == nil {
				lc.IP6InReceives = v6["Ip6InReceives"]
			}
			return nil
		})
		snap.Links[name] = lc
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
		err := env.DoIn(nsName, func() error {
			var errs []error
			if v, err := kernel.ReadStatColumn(kernel.ProcRTCache, "in_martian_src"); err == nil {
				snap.Kernel[prefix+CounterMartianSrc] = v
			} else {
				errs = append(errs, err)
			}
			for _, f := range []string{kernel.ProcSNMP, kernel.ProcNetstat} {
				vals, err := kernel.ReadProcNetCounters(f)
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
