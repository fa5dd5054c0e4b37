package diagnose

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/rocebed/rocebed/internal/host"
	"github.com/rocebed/rocebed/internal/kernel"
	"github.com/rocebed/rocebed/rdma"
	"github.com/rocebed/rocebed/testbed/counters"
	"github.com/rocebed/rocebed/testbed/lab"
	"github.com/rocebed/rocebed/testbed/plan"
	"github.com/rocebed/rocebed/testbed/probe"
	"github.com/rocebed/rocebed/testbed/scenario"
	"github.com/rocebed/rocebed/testbed/traffic"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// diagnoseEndpointWait bounds waiting for a port that is not ACTIVE yet, or a GID not added
// yet, on a NIC that is up with carrier: right after `up` the kernel may still be adding them.
const diagnoseEndpointWait = 3 * time.Second

// CollectEvidence gathers what Run decides on; see Run.
func CollectEvidence(ctx context.Context, env *host.Env, s *scenario.Scenario, opts Options) (*Evidence, error) {
	ev := &Evidence{Lab: s.Name, Taken: time.Now().UTC(), Netns: env.NetnsName, Fixes: s.Fixes}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		ev.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	c := &collector{env: env, s: s, ev: ev}
	c.collectNICs()
	slog.Debug("diagnose: links read", "lab", s.Name)
	if err := c.collectEndpoints(ctx); err != nil {
		return ev, err
	}
	slog.Debug("diagnose: endpoints read", "lab", s.Name)
	c.collectRules()
	if h, err := env.RDMA(); err == nil {
		if m, err := rdma.NetnsMode(h); err == nil {
			ev.RDMANetnsMode = m
		}
	}
	slog.Debug("diagnose: rules and rdma netns mode read", "lab", s.Name)
	eff := c.effective()

	switch {
	case opts.Traffic != nil:
		ev.Traffic = TrafficEvidenceOf(opts.Traffic, SourceRun)
		if opts.Trace {
			ev.Trace = &TraceEvidence{Reason: "the traffic ran before diagnose (a failed `run`): nothing to trace"}
		}
	case opts.NoTraffic:
	case len(s.Traffic) == 0:
		ev.Traffic = &TrafficEvidence{Source: SourceDiagnose, Error: "the scenario declares no traffic"}
	default:
		if why := c.unusable(); why != "" {
			ev.Traffic = &TrafficEvidence{Source: SourceDiagnose, Error: "skipped: " + why}
			if opts.Trace {
				ev.Trace = &TraceEvidence{Reason: "no traffic ran"}
			}
			break
		}
		var tr *traceSession
		if opts.Trace {
			tr, ev.Trace = startTrace()
			slog.Debug("diagnose: trace layer", "available", tr != nil)
		}
		te, err := c.runTraffic(ctx, eff)
		slog.Debug("diagnose: traffic done", "lab", s.Name)
		if tr != nil {
			ev.Trace = tr.stop()
			slog.Debug("diagnose: trace stopped", "reason", ev.Trace.Reason)
		}
		ev.Traffic = te
		if err != nil {
			return ev, err
		}
	}

	if !opts.NoProbe {
		rep, err := probe.Run(ctx, env, s)
		if err != nil && ctx.Err() != nil {
			return ev, err
		}
		if err != nil {
			ev.Notes = append(ev.Notes, "probe: "+err.Error())
		}
		c.probe = rep
		slog.Debug("diagnose: probe done", "lab", s.Name)
	}
	c.collectDirections()
	slog.Debug("diagnose: routes and neighbours read", "lab", s.Name)
	return ev, nil
}

type collector struct {
	env   *host.Env
	s     *scenario.Scenario
	ev    *Evidence
	probe *probe.Report
}

func (c *collector) note(format string, args ...any) {
	c.ev.Notes = append(c.ev.Notes, fmt.Sprintf(format, args...))
}

// sysctlKeys are the per-interface parameters that decide whether the other NIC's ARP and
// RoCE packets are accepted.
var sysctlKeys = []string{"rp_filter", "accept_local", "arp_ignore", "arp_announce", "arp_filter", "log_martians"}

// collectNICs finds each NIC (in the lab's namespace, else in any named one), its state,
// MTU, addresses and sysctls (`ip -d addr show`, `sysctl net.ipv4.conf.{all,NIC}`), and the
// rp_filter and accept_local the kernel applies on it.
func (c *collector) collectNICs() {
	allByNS := map[string]map[string]string{}
	all := func(ns string) map[string]string {
		if m, ok := allByNS[ns]; ok {
			return m
		}
		m := map[string]string{}
		for _, k := range sysctlKeys {
			if v, err := c.getSysctl(ns, "net.ipv4.conf.all."+k); err == nil {
				m[k] = v
			}
		}
		allByNS[ns] = m
		return m
	}
	c.ev.Sysctls = map[string]string{}
	for k, v := range all("") {
		c.ev.Sysctls["net.ipv4.conf.all."+k] = v
	}
	for _, n := range c.s.NICs {
		ne := NICEvidence{Name: n.Name, Peer: n.Peer, DeclaredNetns: n.Netns, RPFilter: -1, AcceptLocal: -1}
		ns, l, err := c.locate(n.Name, n.Netns)
		if err != nil {
			c.note("%s: %v", n.Name, err)
		}
		if l != nil {
			a := l.Attrs()
			ne.Found, ne.Netns = true, ns
			ne.Up = a.RawFlags&unix.IFF_UP != 0
			ne.Carrier = a.RawFlags&unix.IFF_LOWER_UP != 0
			ne.OperState = a.OperState.String()
			ne.MTU = a.MTU
			ne.MAC = a.HardwareAddr.String()
			if h, closeH, err := c.env.NetlinkIn(ns); err == nil {
				if addrs, err := kernel.Dump(func() ([]netlink.Addr, error) { return h.AddrList(l, unix.AF_UNSPEC) }); err == nil {
					for _, ad := range addrs {
						if ad.IP.IsLinkLocalUnicast() {
							continue
						}
						ne.Addresses = append(ne.Addresses, ad.IPNet.String())
					}
				}
				closeH()
			}
			ne.Sysctls = map[string]string{}
			for _, k := range sysctlKeys {
				if v, err := c.getSysctl(ns, "net.ipv4.conf."+n.Name+"."+k); err == nil {
					ne.Sysctls[k] = v
				}
			}
			al := all(ns)
			ne.RPFilter = kernel.EffectiveRPFilter(sysctlInt(al, "rp_filter"), sysctlInt(ne.Sysctls, "rp_filter"))
			ne.AcceptLocal = kernel.EffectiveAcceptLocal(sysctlInt(al, "accept_local"), sysctlInt(ne.Sysctls, "accept_local"))
		}
		c.ev.NICs = append(c.ev.NICs, ne)
	}
}

// sysctlInt is sysctl k of m as a number, -1 when it was not read or is not one.
func sysctlInt(m map[string]string, k string) int {
	v, ok := m[k]
	if !ok {
		return -1
	}
	return kernel.ParseSysctlInt(v)
}

func (c *collector) getSysctl(ns, key string) (string, error) {
	var v string
	err := c.env.DoIn(ns, func() error {
		var err error
		v, err = c.env.Sysctl.Get(key)
		return err
	})
	return strings.TrimSpace(v), err
}

// locate finds a link in the lab's namespace, then in the declared one, then in every named
// namespace (/run/netns): a NIC moved elsewhere is evidence, not an error.
func (c *collector) locate(name, declared string) (string, netlink.Link, error) {
	tried := map[string]bool{}
	try := func(ns string) (netlink.Link, error) {
		if tried[ns] {
			return nil, nil
		}
		tried[ns] = true
		h, closeH, err := c.env.NetlinkIn(ns)
		if err != nil {
			return nil, err
		}
		defer closeH()
		l, err := h.LinkByName(name)
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) || errors.Is(err, unix.ENODEV) {
			return nil, nil
		}
		return l, err
	}
	order := []string{"", declared}
	if ents, err := os.ReadDir("/run/netns"); err == nil {
		for _, e := range ents {
			if e.Name() != c.env.NetnsName {
				order = append(order, e.Name())
			}
		}
	}
	var errs []error
	for _, ns := range order {
		if ns == c.env.NetnsName {
			ns = ""
		}
		l, err := try(ns)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if l != nil {
			return ns, l, nil
		}
	}
	return "", nil, errors.Join(errs...)
}

// collectEndpoints reads each endpoint's device, port state, active MTU and RoCE v2 GID
// (`rdma link show`, `ibv_devinfo -v`, /sys/class/infiniband/DEV/ports/1/gids).
func (c *collector) collectEndpoints(ctx context.Context) error {
	sys := rdma.Sysfs{Root: c.env.SysfsRoot}
	for i, ep := range []scenario.Endpoint{c.s.Endpoints.A, c.s.Endpoints.B} {
		side := [2]Side{SideA, SideB}[i]
		ee := EndpointEvidence{Side: side, NIC: ep.NIC, Address: ep.Address, Device: ep.RXE, RXE: ep.RXE != ""}
		if ee.Device == "" {
			ee.Device = ep.Device
		}
		nic := c.nicEvidence(ep.NIC)
		if dev, err := lab.EndpointDevice(c.env, c.s, ep); err == nil {
			ee.Device = dev
		} else if ep.Device == "auto" {
			ee.GIDError = err.Error()
			c.ev.Endpoints = append(c.ev.Endpoints, ee)
			continue
		}
		deadline := time.Now().Add(diagnoseEndpointWait)
		for {
			c.readEndpoint(sys, &ee)
			ready := !ee.DevicePresent || (ee.PortState.Active() && ee.GID != "")
			linkOK := nic != nil && nic.Found && nic.Up && nic.Carrier
			if ready || !linkOK || time.Now().After(deadline) {
				break
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
		}
		c.ev.Endpoints = append(c.ev.Endpoints, ee)
	}
	return nil
}

func (c *collector) readEndpoint(sys rdma.Sysfs, ee *EndpointEvidence) {
	// RXE is kept; the rest is read again.
	ee.DevicePresent, ee.PortNetdev, ee.PortState, ee.ActiveMTU, ee.GID, ee.GIDError = false, "", PortState{}, 0, "", ""
	st, err := sys.PortState(ee.Device, lab.RDMAPort)
	if err != nil {
		if !errors.Is(err, rdma.ErrNotFound) {
			c.note("%s: %v", ee.Device, err)
		}
		ee.GIDError = err.Error()
		return
	}
	ee.DevicePresent = true
	ee.PortState = PortStateOf(st)
	if nd, err := sys.PortNetdev(ee.Device, lab.RDMAPort); err == nil {
		ee.PortNetdev = nd
	}
	// sysfs has no active_mtu; an rxe port derives it from its netdev's MTU, as rxe does.
	// For other devices it stays unknown (ibv_query_port would tell).
	if nic := c.nicEvidence(ee.NIC); ee.RXE && nic != nil && nic.MTU > 0 {
		ee.ActiveMTU = rdma.RXEActiveMTU(nic.MTU)
	}
	addr, err := netip.ParseAddr(ee.Address)
	if err != nil {
		ee.GIDError = fmt.Sprintf("endpoint address %q: %v", ee.Address, err)
		return
	}
	g, err := sys.FindGID(ee.Device, lab.RDMAPort, addr)
	if err != nil {
		ee.GIDError = err.Error()
		return
	}
	ee.GID = g.String()
}

func (c *collector) nicEvidence(name string) *NICEvidence {
	for i := range c.ev.NICs {
		if c.ev.NICs[i].Name == name {
			return &c.ev.NICs[i]
		}
	}
	return nil
}

// collectRules reads `ip rule`, and `ip -6 rule` (as "-6 …") when the lab has IPv6 endpoints.
func (c *collector) collectRules() {
	fams := []int{unix.AF_INET}
	if slices.Contains(c.s.Families(), scenario.FamilyIPv6) {
		fams = append(fams, unix.AF_INET6)
	}
	for _, fam := range fams {
		rules, err := kernel.Dump(func() ([]netlink.Rule, error) { return c.env.NL.RuleList(fam) })
		if err != nil {
			c.note("ip rule: %v", err)
			return
		}
		for _, r := range rules {
			rs := plan.RuleSpecOf(fam, r)
			line := rs.String()
			if fam == unix.AF_INET6 {
				line = "-6 " + line
			}
			c.ev.Rules = append(c.ev.Rules, line)
		}
	}
}

// effective is the scenario with each NIC where it was found, so snapshots and traffic read
// the counters of the namespace the packets actually reach.
func (c *collector) effective() *scenario.Scenario {
	eff := *c.s
	eff.NICs = slices.Clone(c.s.NICs)
	for i := range eff.NICs {
		if n := c.nicEvidence(eff.NICs[i].Name); n != nil && n.Found {
			eff.NICs[i].Netns = n.Netns
		}
	}
	return &eff
}

// unusable says why traffic cannot run at all (it would only wait for a port or fail to
// find a device), or "".
func (c *collector) unusable() string {
	for _, n := range c.ev.NICs {
		switch {
		case !n.Found:
			return n.Name + " does not exist"
		case !n.Up:
			return n.Name + " is down"
		case !n.Carrier:
			return n.Name + " has no carrier"
		}
	}
	for _, e := range c.ev.Endpoints {
		switch {
		case !e.DevicePresent:
			return fmt.Sprintf("endpoint %s has no RDMA device %s", e.Side, e.Device)
		case !e.PortState.Active():
			return fmt.Sprintf("%s port 1 is %s", e.Device, e.PortState)
		case e.GID == "":
			return fmt.Sprintf("%s has no RoCE v2 GID for %s", e.Device, e.Address)
		}
	}
	return ""
}

// runTraffic runs the scenario's traffic between two snapshots of the lab's counters.
func (c *collector) runTraffic(ctx context.Context, eff *scenario.Scenario) (*TrafficEvidence, error) {
	before, err := counters.TakeSnapshot(c.env, eff)
	if err != nil {
		return &TrafficEvidence{Source: SourceDiagnose, Error: "counters: " + err.Error()}, nil
	}
	rep, rerr := traffic.Run(ctx, c.env, eff)
	// The last batch read the hw_counters just now; the kernel serves reads within the
	// counters' lifespan from a cache, so wait it out for a fresh read.
	select {
	case <-ctx.Done():
		return TrafficEvidenceOf(rep, SourceDiagnose), ctx.Err()
	case <-time.After(c.counterLifespan()):
	}
	after, err := counters.TakeSnapshot(c.env, eff)
	te := TrafficEvidenceOf(rep, SourceDiagnose)
	if err == nil {
		te.Delta = after.Delta(before)
	}
	if rerr != nil {
		te.Error = rerr.Error()
		if ctx.Err() != nil {
			return te, rerr
		}
		slog.Warn("diagnose: traffic did not complete", "lab", c.s.Name, "error", rerr)
	}
	return te, nil
}

// counterLifespan is how long the RDMA core caches the endpoints' hw_counters after a read.
func (c *collector) counterLifespan() time.Duration {
	var devs []string
	for _, e := range c.ev.Endpoints {
		devs = append(devs, e.Device)
	}
	return counters.HWCounterCache(c.env, devs...)
}
