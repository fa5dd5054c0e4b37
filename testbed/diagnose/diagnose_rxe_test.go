//go:build linux

package diagnose

// Real-kernel diagnosis tests: shipped labs brought up with Up, one thing broken at a time,
// diagnosed, and taken down again. rxe works only in the initial namespace, so these run in
// the throwaway rocebed VM (`rocebed vm exec`, `make test-vm`) like the traffic tests. All
// cases are subtests of one test so the matrix fits one VM boot.
//
// ROCEBED_DIAG_RECORD=1 prints each case's evidence as one "DIAG-EVIDENCE NAME {json}" line,
// which is how testdata/*.json were captured.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rocebed/rocebed/internal/host"
	"github.com/rocebed/rocebed/internal/kernel"
	"github.com/rocebed/rocebed/internal/testenv"
	"github.com/rocebed/rocebed/internal/testlab"
	"github.com/rocebed/rocebed/rdma"
	"github.com/rocebed/rocebed/sysctl"
	"github.com/rocebed/rocebed/testbed/counters"
	"github.com/rocebed/rocebed/testbed/lab"
	"github.com/rocebed/rocebed/testbed/scenario"
	"github.com/rocebed/rocebed/testbed/traffic"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

type diagCase struct {
	name     string
	scenario string
	// edit changes the scenario before Up.
	edit func(s *scenario.Scenario)
	// breakLab breaks the lab after Up.
	breakLab func(t *testing.T, env *host.Env, s *scenario.Scenario)
	// want is the first code; "" means a healthy lab with no finding. wantFn computes it
	// from the kernel's defaults when the outcome depends on them.
	want   FindingCode
	wantFn func(t *testing.T, env *host.Env) FindingCode
	check  func(t *testing.T, d *Diagnosis)
}

func diagWithoutFix(names ...string) func(*scenario.Scenario) {
	return func(s *scenario.Scenario) {
		s.Fixes = slices.DeleteFunc(s.Fixes, func(f scenario.Fix) bool { return slices.Contains(names, f.Name) })
	}
}

func diagWithRPFilter(v string) func(*scenario.Scenario) {
	return func(s *scenario.Scenario) {
		for i, f := range s.Fixes {
			for j, kv := range f.Sysctls {
				if k, _, _ := strings.Cut(kv, "="); sysctl.Param(k) == "rp_filter" {
					s.Fixes[i].Sysctls[j] = k + "=" + v
				}
			}
		}
	}
}

// diagStrictByDefault: a lab whose fix relies on rp_filter being 0 or 2 fails by the strict
// filter when this kernel's default is 1 (new NICs take default.rp_filter; the effective value
// is max(all, NIC)), and passes otherwise.
func diagStrictByDefault(t *testing.T, env *host.Env) FindingCode {
	all, err := env.GetSysctl("net.ipv4.conf.all.rp_filter")
	require.NoError(t, err)
	def, err := env.GetSysctl("net.ipv4.conf.default.rp_filter")
	require.NoError(t, err)
	if max(kernel.ParseSysctlInt(strings.TrimSpace(all)), kernel.ParseSysctlInt(strings.TrimSpace(def))) == 1 {
		return CodeRPFilter
	}
	return ""
}

// diagOptions: ROCEBED_DIAG_TRACE=1 adds the kfree_skb layer (off by default: it soft-locked
// the 6.1 guest under TCG in about 1 of 5 diagnoses); ROCEBED_DIAG_DEBUG=1 logs each stage.
func diagOptions() Options {
	if os.Getenv("ROCEBED_DIAG_DEBUG") == "1" {
		slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})))
	}
	return Options{Trace: os.Getenv("ROCEBED_DIAG_TRACE") == "1"}
}

func TestDiagnoseRXE(t *testing.T) {
	testenv.RequireRXE(t)
	cases := []diagCase{
		{name: "healthy", scenario: "same-host", check: func(t *testing.T, d *Diagnosis) {
			assert.True(t, d.TrafficPassed)
			for _, dir := range d.Evidence.Directions {
				assert.True(t, dir.Neighbor.Usable(), "%s neighbour %s", dir.Name, dir.Neighbor.State)
				assert.Equal(t, RouteUnicast, dir.RouteOut.Type, dir.RouteOut.String())
				assert.Equal(t, dir.SrcNIC, dir.RouteOut.Dev)
				assert.Equal(t, RouteLocal, dir.RouteIn.Type, dir.RouteIn.String())
			}
		}},
		{name: "seed", scenario: "seed", want: CodeMartianSource, check: diagCheckSeed},
		{name: "nofix", scenario: "same-host-nofix", want: CodeNeighborMartian, check: diagCheckNeighborMartian},
		{name: "same-host-without-policy-routing", scenario: "same-host", edit: diagWithoutFix("policy-routing"), want: CodeNeighborMartian, check: diagCheckNeighborMartian},
		{name: "sysctl-without-accept-local", scenario: "same-host-sysctl", edit: diagWithoutFix("accept-local"), want: CodeNeighborMartian, check: diagCheckNeighborMartian},
		{name: "sysctl-without-loose-rp-filter", scenario: "same-host-sysctl", edit: diagWithoutFix("loose-rp-filter"), wantFn: diagStrictByDefault},
		{name: "sysctl-rp_filter=1", scenario: "same-host-sysctl", edit: diagWithRPFilter("1"), want: CodeRPFilter, check: diagCheckStrictARP},
		{name: "seed-fixed-without-accept-local", scenario: "seed-fixed", edit: diagWithoutFix("accept-local"), want: CodeMartianSource},
		// Not here: seed-fixed with rp_filter=1 (data packets dropped by the strict filter,
		// rp-filter with IPReversePathFilter +30). Its evidence is recorded in
		// testdata/seed-fixed-rp_filter=1.json, but in the 6.1 guest under TCG a CPU
		// soft-locked during that case, or the one after it, in 4 of about 12 runs, at varying
		// points (tracefs setup and teardown, right after the traffic), killing the whole VM run.
		{name: "mtu-1280-9000", scenario: "same-host", breakLab: diagSetMTUs(1280, 9000), want: CodeMTUMismatch, check: func(t *testing.T, d *Diagnosis) {
			f := d.Findings[0]
			assert.Equal(t, SeverityWarning, f.Severity, "the traffic uses the smaller path MTU and passes")
			assert.Contains(t, strings.Join(f.Evidence, "\n"), "active_mtu 1024")
			assert.Contains(t, strings.Join(f.Evidence, "\n"), "active_mtu 4096")
			assert.Contains(t, strings.Join(f.Fix.Commands, "\n"), "ip link set dev vB mtu 1280")
		}},
		{name: "rxe-on-one-nic", scenario: "same-host", breakLab: diagDeleteRXE("rxe1"), want: CodeGIDMissing, check: func(t *testing.T, d *Diagnosis) {
			assert.Contains(t, d.Findings[0].Summary, "rxe1")
			assert.Contains(t, strings.Join(d.Findings[0].Fix.Commands, "\n"), "rdma link add rxe1 type rxe netdev vB")
			assert.False(t, d.Evidence.Traffic.Ran, "traffic cannot run without a device")
		}},
		{name: "nic-down", scenario: "same-host", breakLab: diagSetDown("vB"), want: CodeLinkDown, check: func(t *testing.T, d *Diagnosis) {
			assert.Contains(t, d.Findings[0].Summary, "vB is administratively down")
			assert.Contains(t, d.Findings[0].Fix.Commands, "ip link set dev vB up")
		}},
		{name: "receiver-in-other-netns", scenario: "same-host", breakLab: diagMoveToNetns("vB", "rxe1", "10.10.0.2/24"), want: CodeNoListener, check: diagCheckNoListener},
		{name: "healthy-v6", scenario: "same-host-v6"},
		{name: "healthy-dual", scenario: "same-host-dual"},
		{name: "seed-v6", scenario: "seed-v6", want: CodeLocalRoute, check: diagCheckLocalRoute},
		{name: "dual-without-policy-routing", scenario: "same-host-dual", edit: diagWithoutFix("policy-routing"), want: CodeNeighborMartian, check: func(t *testing.T, d *Diagnosis) {
			// The IPv4 batches fail first (ARP), the IPv6 ones go to lo: both are named.
			assert.Contains(t, d.Codes(), CodeLocalRoute)
			cmds := strings.Join(d.Findings[0].Fix.Commands, "\n")
			assert.Contains(t, cmds, "ip rule add pref 10 iif lo from 10.10.0.1/32")
			assert.Contains(t, cmds, "ip -6 rule add pref 14 oif vA from fd00::1/128")
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env, err := host.Open("")
			require.NoError(t, err)
			t.Cleanup(env.Close)
			want := tc.want
			if tc.wantFn != nil {
				want = tc.wantFn(t, env)
			}
			d := diagnoseLab(t, tc)
			if want == "" {
				assert.Empty(t, d.Findings, "a healthy lab gets no finding; got %v", d.Codes())
				assert.True(t, d.TrafficPassed)
			} else {
				require.NotEmpty(t, d.Findings, "want %s first", want)
				assert.Equal(t, want, d.FirstCode(), "codes %v", d.Codes())
				assert.Equal(t, RoleRootCause, d.Findings[0].Role)
				assert.NotEmpty(t, d.Findings[0].Evidence)
				require.NotNil(t, d.Findings[0].Fix)
				assert.NotEmpty(t, d.Findings[0].Fix.Commands)
			}
			if tc.check != nil && (want == "" || len(d.Findings) > 0) {
				tc.check(t, d)
			}
		})
	}
}

// diagnoseLab brings the case's lab up, breaks it, diagnoses it and takes it down, checking
// that nothing of the lab is left.
func diagnoseLab(t *testing.T, tc diagCase) *Diagnosis {
	t.Helper()
	l := testlab.UpRXE(t, tc.scenario, tc.edit)
	if tc.breakLab != nil {
		tc.breakLab(t, l.Env, l.Scenario)
	}
	start := time.Now()
	d, err := Run(context.Background(), l.Env, l.Scenario, diagOptions())
	took := time.Since(start)
	l.Down(t)
	require.NoError(t, err)
	var b strings.Builder
	require.NoError(t, d.WriteText(&b))
	t.Logf("%s (diagnosed in %s):\n%s", tc.name, took.Round(time.Millisecond), b.String())
	diagRecordEvidence(t, tc.name, d.Evidence)
	return d
}

func diagRecordEvidence(t *testing.T, name string, ev *Evidence) {
	if os.Getenv("ROCEBED_DIAG_RECORD") != "1" {
		return
	}
	data, err := json.Marshal(ev)
	require.NoError(t, err)
	fmt.Printf("DIAG-EVIDENCE %s %s\n", name, data)
}

func diagCheckSeed(t *testing.T, d *Diagnosis) {
	f := d.Findings[0]
	ev := strings.Join(f.Evidence, "\n")
	assert.Contains(t, ev, "in_martian_src")
	assert.Contains(t, ev, "crossed the cable")
	require.NotNil(t, d.Evidence.Traffic)
	require.NotEmpty(t, d.Evidence.Traffic.Batches)
	b := d.Evidence.Traffic.Batches[0]
	sent, _ := b.Counters.RDMACounter(b.Sender.Device, counters.CounterRXEHWSentPkts)
	rcvd, _ := b.Counters.RDMACounter(b.Receiver.Device, counters.CounterRXEHWRcvdPkts)
	m, _ := b.Counters.KernelCounter(counters.CounterMartianSrc)
	assert.Positive(t, sent)
	assert.Zero(t, rcvd)
	assert.GreaterOrEqual(t, m, sent, "every RoCE packet dropped as a martian source")
	assert.Contains(t, d.Codes(), CodeRetryExceeded)
	for _, x := range d.Findings[1:] {
		assert.NotEqual(t, RoleRootCause, x.Role)
	}
	require.NotNil(t, f.Fix.Apply, "martian-source has a fix --fix can add")
	assert.NotNil(t, f.Fix.Apply.PolicyRouting)
	assert.Contains(t, f.Fix.Scenario, "policy_routing")
}

// diagCheckLocalRoute: seed-v6's output route of both directions is local via lo; rxe0 sent,
// no NIC carried the packets (rxe looped them back into rxe0), rxe1 received none.
func diagCheckLocalRoute(t *testing.T, d *Diagnosis) {
	f := d.Findings[0]
	assert.Contains(t, f.Summary, "IPv6 packets to a local address went to lo")
	ev := strings.Join(f.Evidence, "\n")
	assert.Contains(t, ev, "local dev lo")
	require.NotNil(t, d.Evidence.Traffic)
	require.NotEmpty(t, d.Evidence.Traffic.Batches)
	b := d.Evidence.Traffic.Batches[0]
	sent, _ := b.Counters.RDMACounter(b.Sender.Device, counters.CounterRXEHWSentPkts)
	rcvd, _ := b.Counters.RDMACounter(b.Receiver.Device, counters.CounterRXEHWRcvdPkts)
	lo, _ := b.Counters.Link("lo")
	tx, _ := b.Counters.Link(b.Sender.NIC)
	assert.Positive(t, sent)
	assert.Zero(t, rcvd)
	assert.Less(t, lo.TxPackets, sent)
	assert.Less(t, tx.TxPackets, sent)
	require.NotNil(t, f.Fix.Apply, "local-route has a fix --fix can add")
	assert.NotNil(t, f.Fix.Apply.PolicyRouting)
	for _, x := range d.Findings[1:] {
		assert.NotEqual(t, RoleRootCause, x.Role)
	}
}

func diagCheckNeighborMartian(t *testing.T, d *Diagnosis) {
	f := d.Findings[0]
	ev := strings.Join(f.Evidence, "\n")
	assert.Contains(t, ev, "in_martian_src +")
	assert.NotContains(t, ev, "in_martian_src +0;", "the ARP drop must move the martian counter")
	unresolved := 0
	for _, dir := range d.Evidence.Directions {
		if !dir.Neighbor.Usable() {
			unresolved++
		}
	}
	assert.Positive(t, unresolved, "a neighbour must be unresolved")
	for _, b := range d.Evidence.Traffic.Batches {
		assert.Equal(t, traffic.ClassConnectTimeout, b.Class, b.Verdict)
		sent, _ := b.Counters.RDMACounter(b.Sender.Device, counters.CounterRXEHWSentPkts)
		assert.Zero(t, sent, "no RoCE packet leaves before RTR")
	}
}

// diagCheckStrictARP: with accept_local=1 and rp_filter=1 the ARP is still dropped; the kernel
// counts it in in_martian_src (ip_route_input_slow's martian path), not in
// IPReversePathFilter (that counter is for IP packets).
func diagCheckStrictARP(t *testing.T, d *Diagnosis) {
	f := d.Findings[0]
	assert.Contains(t, f.Summary, "reverse-path filter")
	ev := strings.Join(f.Evidence, "\n")
	assert.Contains(t, ev, "rp_filter=1")
	assert.Contains(t, ev, "accept_local=1")
	for _, b := range d.Evidence.Traffic.Batches {
		assert.Equal(t, traffic.ClassConnectTimeout, b.Class, b.Verdict)
	}
	rpf, _ := d.Evidence.Traffic.Delta.KernelCounter(counters.CounterRPFilter)
	m, _ := d.Evidence.Traffic.Delta.KernelCounter(counters.CounterMartianSrc)
	t.Logf("strict rp_filter ARP drop: in_martian_src +%d, %s +%d", m, counters.CounterRPFilter, rpf)
	assert.Positive(t, m)
}

func diagCheckNoListener(t *testing.T, d *Diagnosis) {
	var moved *NICEvidence
	for i := range d.Evidence.NICs {
		if d.Evidence.NICs[i].Name == "vB" {
			moved = &d.Evidence.NICs[i]
		}
	}
	require.NotNil(t, moved)
	assert.True(t, moved.Found)
	assert.True(t, strings.HasPrefix(moved.Netns, testenv.NetNSPrefix), "vB found in %q", moved.Netns)
	np, per := d.Evidence.Traffic.Delta.KernelSum(counters.CounterUDPNoPorts)
	t.Logf("Udp.NoPorts: %d (%v)", np, per)
	assert.Positive(t, np, "UDP 4791 must arrive where nothing listens")
}

func diagSetMTUs(a, b int) func(*testing.T, *host.Env, *scenario.Scenario) {
	return func(t *testing.T, env *host.Env, s *scenario.Scenario) {
		for nic, mtu := range map[string]int{s.Endpoints.A.NIC: a, s.Endpoints.B.NIC: b} {
			l, err := env.NL.LinkByName(nic)
			require.NoError(t, err)
			require.NoError(t, env.NL.LinkSetMTU(l, mtu), "ip link set dev %s mtu %d", nic, mtu)
		}
	}
}

func diagDeleteRXE(name string) func(*testing.T, *host.Env, *scenario.Scenario) {
	return func(t *testing.T, env *host.Env, s *scenario.Scenario) {
		h, err := env.RDMA()
		require.NoError(t, err)
		require.NoError(t, rdma.DelRXE(h, name))
	}
}

func diagSetDown(nic string) func(*testing.T, *host.Env, *scenario.Scenario) {
	return func(t *testing.T, env *host.Env, s *scenario.Scenario) {
		l, err := env.NL.LinkByName(nic)
		require.NoError(t, err)
		require.NoError(t, env.NL.LinkSetDown(l))
	}
}

// diagMoveToNetns moves nic into a throwaway namespace, which deletes its rxe device (netdev
// unregister), then gives it its address back, brings it up and adds the rxe device again
// from inside that namespace, as `ip netns exec NS rdma link add` would.
func diagMoveToNetns(nic, rxe, addr string) func(*testing.T, *host.Env, *scenario.Scenario) {
	return func(t *testing.T, env *host.Env, s *scenario.Scenario) {
		ns := testenv.NewNetNS(t)
		l, err := env.NL.LinkByName(nic)
		require.NoError(t, err)
		require.NoError(t, env.NL.LinkSetNsFd(l, int(ns.Handle)))
		l, err = ns.NL.LinkByName(nic)
		require.NoError(t, err)
		a, err := netlink.ParseAddr(addr)
		require.NoError(t, err)
		require.NoError(t, ns.NL.AddrAdd(l, a))
		require.NoError(t, ns.NL.LinkSetUp(l))
		h, err := rdma.OpenHandle(ns.Handle)
		require.NoError(t, err)
		t.Cleanup(func() {
			_ = rdma.DelRXE(h, rxe)
			h.Close()
		})
		// The rxe device goes with its netdev on the move, asynchronously: until its
		// unregistration finishes the name is taken, and the RDMA core refuses it with ENFILE.
		var aerr error
		for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if aerr = rdma.AddRXE(h, rxe, nic); !errors.Is(aerr, unix.ENFILE) {
				break
			}
		}
		require.NoError(t, aerr, "rdma link add %s type rxe netdev %s in %s", rxe, nic, ns.Name)
		t.Logf("moved %s to netns %s and re-added %s there (rdma netns mode %s)", nic, ns.Name, rxe, diagRDMAMode(env))
	}
}

func diagRDMAMode(env *host.Env) string {
	h, err := env.RDMA()
	if err != nil {
		return err.Error()
	}
	m, err := rdma.NetnsMode(h)
	if err != nil {
		return err.Error()
	}
	return m
}

// TestDiagnoseRXEFixSeed: on the seed lab, diagnose finds martian-source; FixLab adds the
// suggested policy routing, the traffic then passes, and Down restores the host. A failed run's
// report diagnosed with AfterRun gives the same root cause.
func TestDiagnoseRXEFixSeed(t *testing.T) {
	testenv.RequireRXE(t)
	l := testlab.UpRXE(t, "seed", nil)
	env, s, state := l.Env, l.Scenario, l.StateDir
	ctx := context.Background()

	rep, err := traffic.Run(ctx, env, s)
	require.NoError(t, err)
	require.False(t, rep.Pass)
	after, err := AfterRun(ctx, env, s, rep)
	require.NoError(t, err)
	assert.Equal(t, CodeMartianSource, after.FirstCode(), "after run: %v", after.Codes())
	assert.Equal(t, SourceRun, after.Evidence.Traffic.Source)

	d, err := Run(ctx, env, s, Options{})
	require.NoError(t, err)
	require.Equal(t, CodeMartianSource, d.FirstCode(), "%v", d.Codes())
	res, err := FixLab(ctx, state, s.Name, d)
	require.NoError(t, err)
	require.NotNil(t, res.After)
	var b strings.Builder
	require.NoError(t, res.After.WriteText(&b))
	t.Logf("after --fix:\n%s", b.String())
	assert.True(t, res.Passed, res.After.Verdict)
	require.Len(t, res.Applied, 1)
	assert.NotNil(t, res.Applied[0].PolicyRouting)

	// The journal now holds the fixed scenario: it loads again and has the fix.
	j, err := lab.OpenJournal(state, s.Name)
	require.NoError(t, err)
	fixed, err := scenario.Parse(j.Header.File, j.Header.Source, j.Header.Sets)
	j.Close()
	require.NoError(t, err)
	assert.Len(t, fixed.Fixes, len(s.Fixes)+1)

	// The fixed lab diagnoses healthy.
	d2, err := Run(ctx, env, fixed, Options{})
	require.NoError(t, err)
	assert.Empty(t, d2.Findings, "fixed lab: %v", d2.Codes())

	l.Down(t)
	m, _ := rep.Batches[0].Counters.KernelCounter(counters.CounterMartianSrc)
	t.Logf("before: %s (in_martian_src +%s); after: %s", d.FirstCode(), strconv.FormatUint(m, 10), res.After.Verdict)
}

// TestKallsymsNamesAddresses: the trace layer names freeing functions from /proc/kallsyms.
func TestKallsymsNamesAddresses(t *testing.T) {
	testenv.RequireRoot(t)
	ks, err := loadKallsyms()
	if err != nil {
		t.Skipf("no kernel addresses here: %v", err)
	}
	i := slices.Index(ks.names, "ip_rcv")
	require.GreaterOrEqual(t, i, 0, "ip_rcv is a text symbol")
	a := ks.addrs[i]
	assert.Equal(t, "ip_rcv+0x10", ks.name(strconv.FormatUint(a+0x10, 16)))
	assert.Equal(t, "ip_rcv+0x0", ks.name("0x"+strconv.FormatUint(a, 16)))
	assert.Equal(t, "not-hex", ks.name("not-hex"))
}

// TestDiagnoseRXEFixSeedV6: on seed-v6, diagnose finds local-route; FixLab adds the IPv6
// policy routing, the traffic then passes across the cable, and Down restores the host.
func TestDiagnoseRXEFixSeedV6(t *testing.T) {
	testenv.RequireRXE(t)
	ns := testenv.InitialNetNS(t)
	before := ns.Dump(t)
	l := testlab.UpRXE(t, "seed-v6", nil)
	ctx := context.Background()
	d, err := Run(ctx, l.Env, l.Scenario, Options{})
	require.NoError(t, err)
	require.Equal(t, CodeLocalRoute, d.FirstCode(), "%v", d.Codes())
	res, err := FixLab(ctx, l.StateDir, l.Scenario.Name, d)
	require.NoError(t, err)
	require.NotNil(t, res.After)
	var b strings.Builder
	require.NoError(t, res.After.WriteText(&b))
	t.Logf("after --fix:\n%s", b.String())
	assert.True(t, res.Passed, res.After.Verdict)
	for _, x := range res.After.Batches {
		rx, _ := x.Counters.Link(x.Receiver.NIC)
		lo, _ := x.Counters.Link("lo")
		assert.GreaterOrEqual(t, rx.IP6InReceives, uint64(x.Messages), "%s: IPv6 packets on %s", x.Name(), x.Receiver.NIC)
		assert.Zero(t, lo.TxPackets, "%s: lo", x.Name())
	}
	l.Down(t)
	testenv.SameState(t, before, ns.Dump(t))
}
