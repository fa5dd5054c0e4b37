// Package testbed is rocebed's Go test library: Start brings a soft-RoCE lab up for one test
// — from a shipped scenario name or a YAML file — and Cleanup restores the host exactly; the
// test then sends SEND-only traffic across the lab's cable and reads every completion. The
// CLI and the packages under testbed/ (scenario, plan, lab, probe, counters, traffic,
// diagnose, runner) are the same machinery in more detail.
package testbed

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/rocebed/rocebed/internal/host"
	"github.com/rocebed/rocebed/internal/preflight"
	"github.com/rocebed/rocebed/internal/testenv"
	"github.com/rocebed/rocebed/rdma/verbs"
	"github.com/rocebed/rocebed/testbed/lab"
	"github.com/rocebed/rocebed/testbed/probe"
	"github.com/rocebed/rocebed/testbed/scenario"
	"github.com/rocebed/rocebed/testbed/traffic"
)

// The types a test meets in Start's results, named here so a test imports only testbed.
type (
	// Scenario is a declared lab (testbed/scenario).
	Scenario = scenario.Scenario
	// Traffic is one batch of SEND-only messages, for Lab.Send.
	Traffic = scenario.Traffic
	// TrafficReport is what a traffic run did: every batch, the verdict, the expectation.
	TrafficReport = traffic.Report
	// BatchResult is one batch and direction: completions on both sides, counters, verdict.
	BatchResult = traffic.BatchResult
	// CompletionRecord is one completion as ibv_poll_cq returned it.
	CompletionRecord = traffic.CompletionRecord
	// ProbeReport is the layered path check of both directions.
	ProbeReport = probe.Report
	// PreflightError says what the machine lacks to host a lab, and how to get it.
	PreflightError = preflight.Error
	// Endpoint is what the lab has at one end: NIC, RDMA device, address, RoCE v2 GID.
	Endpoint = lab.Endpoint
)

// Values of Traffic's fields and of CompletionRecord.Role.
const (
	TransportRC     = scenario.TransportRC
	TransportUD     = scenario.TransportUD
	DirectionAToB   = scenario.DirectionAToB
	DirectionBToA   = scenario.DirectionBToA
	DirectionBoth   = scenario.DirectionBoth
	PatternStream   = scenario.PatternStream
	PatternPingPong = scenario.PatternPingPong
	RoleSender      = traffic.RoleSender
	RoleReceiver    = traffic.RoleReceiver
)

// Lab is a lab brought up for a Go test by Start. It is taken down, and the host restored, in
// the test's Cleanup.
type Lab struct {
	scenario *scenario.Scenario
	env      *host.Env
	stateDir string
	tb       testing.TB
}

// Scenario is the lab's scenario, defaults applied.
func (l *Lab) Scenario() *Scenario { return l.scenario }

// Endpoints are the lab's two ends, a then b: what your own RDMA software needs to use the
// lab (`-d DEVICE`, the GID index, the address to bind). It waits briefly for the ports and
// GIDs, which follow `up` by a moment.
func (l *Lab) Endpoints(ctx context.Context) [2]Endpoint {
	l.tb.Helper()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ends, err := lab.ResolveEndpoints(ctx, l.env, l.scenario)
	if err != nil {
		l.tb.Fatalf("endpoints of lab %s: %v", l.scenario.Name, err)
	}
	return ends
}

// Env is the lab as environment variables, the ones `rocebed run SCENARIO -- CMD` gives its
// command (ROCEBED_LAB, ROCEBED_A_DEVICE, ROCEBED_A_GID_INDEX, …): append it to an
// exec.Cmd's Env to run your own client on the lab.
func (l *Lab) Env(ctx context.Context) []string {
	l.tb.Helper()
	return lab.EnvVars(l.scenario.Name, l.Endpoints(ctx))
}

// StartOptions change how Start builds a lab.
type StartOptions struct {
	// Sets are scenario parameter overrides, "NAME=VALUE".
	Sets []string
	// StateDir holds the journal; a fresh temporary directory when empty, so parallel test
	// binaries do not share locks.
	StateDir string
}

// Start loads a scenario (a shipped name or a path), brings the lab up with its RDMA devices
// and registers its teardown with tb.Cleanup. It skips the test, saying what is missing and
// how to get it, when the machine cannot host the lab — not root, no rdma_rxe, no libibverbs
// in this build — unless ROCEBED_REQUIRE_ROOT=1 or ROCEBED_REQUIRE_RXE=1 asks for a failure
// instead. Labs with RDMA live in the current network namespace (rxe works only in the
// initial one), so Start changes this host until the test ends.
func Start(tb testing.TB, ref string, opts ...StartOptions) *Lab {
	tb.Helper()
	var o StartOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	if os.Geteuid() != 0 {
		testenv.SkipOrFail(tb, "ROCEBED_REQUIRE_ROOT", "testbed.Start needs root to build a lab: run the test as root (`sudo go test`, or `make test-vm`)")
	}
	env, err := host.Open("")
	if err != nil {
		tb.Fatalf("testbed.Start: %v", err)
	}
	if err := lab.CheckRDMA(env); err != nil {
		env.Close()
		testenv.SkipOrFail(tb, "ROCEBED_REQUIRE_RXE", "testbed.Start: "+err.Error())
	}
	if _, err := verbs.ListDevices(); errors.Is(err, verbs.ErrNoVerbs) {
		env.Close()
		testenv.SkipOrFail(tb, "ROCEBED_REQUIRE_RXE", "testbed.Start: "+err.Error())
	}
	s, err := scenario.Load(ref, o.Sets)
	if err != nil {
		env.Close()
		tb.Fatalf("testbed.Start: %v", err)
	}
	if o.StateDir == "" {
		o.StateDir = tb.TempDir()
	}
	if _, err := lab.Up(context.Background(), env, s, lab.UpOptions{StateDir: o.StateDir}); err != nil {
		env.Close()
		tb.Fatalf("testbed.Start: up %s: %v", s.Name, err)
	}
	l := &Lab{scenario: s, env: env, stateDir: o.StateDir, tb: tb}
	tb.Cleanup(func() {
		if err := lab.Down(context.Background(), o.StateDir, s.Name); err != nil {
			tb.Errorf("testbed.Start: down %s: %v", s.Name, err)
		}
		env.Close()
	})
	return l
}

// Traffic runs the scenario's traffic and returns the report: every completion on both
// sides, counter deltas and the verdict. A failure to run at all fails the test.
func (l *Lab) Traffic(ctx context.Context) *TrafficReport {
	l.tb.Helper()
	r, err := traffic.Run(ctx, l.env, l.scenario)
	if err != nil {
		l.tb.Fatalf("traffic on lab %s: %v", l.scenario.Name, err)
	}
	return r
}

// Send runs one batch of SEND-only messages that the scenario does not declare, e.g.
// Send(ctx, Traffic{Transport: TransportRC, Direction: DirectionAToB, Messages: 10, Size: 4096}),
// and returns its results, one per direction: completions of both sides and the verdict.
// Unset RC timers and deadline take the scenario defaults.
func (l *Lab) Send(ctx context.Context, t Traffic) []*BatchResult {
	l.tb.Helper()
	if t.Name == "" {
		t.Name = "send"
	}
	s := *l.scenario
	s.Traffic = []scenario.Traffic{t}
	s.Expect = scenario.Expect{Result: scenario.ResultPass}
	s.SetDefaults()
	if err := s.Validate(); err != nil {
		l.tb.Fatalf("send on lab %s: %v", l.scenario.Name, err)
	}
	r, err := traffic.Run(ctx, l.env, &s)
	if err != nil {
		l.tb.Fatalf("send on lab %s: %v", l.scenario.Name, err)
	}
	return r.Batches
}

// Probe runs the layered path check on the lab.
func (l *Lab) Probe(ctx context.Context) *ProbeReport {
	l.tb.Helper()
	r, err := probe.Run(ctx, l.env, l.scenario)
	if err != nil {
		l.tb.Fatalf("probe lab %s: %v", l.scenario.Name, err)
	}
	return r
}
