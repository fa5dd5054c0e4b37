package testbed

import (
	"context"
	"errors"
	"os"
	"testing"

	"github.com/rocebed/rocebed/internal/host"
	"github.com/rocebed/rocebed/internal/testenv"
	"github.com/rocebed/rocebed/rdma/verbs"
	"github.com/rocebed/rocebed/testbed/lab"
	"github.com/rocebed/rocebed/testbed/probe"
	"github.com/rocebed/rocebed/testbed/scenario"
	"github.com/rocebed/rocebed/testbed/traffic"
)

// Lab is a lab brought up for a Go test by Start. It is taken down, and the host restored, in
// the test's Cleanup.
type Lab struct {
	Scenario *scenario.Scenario
	Env      *host.Env
	StateDir string
	tb       testing.TB
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
	l := &Lab{Scenario: s, Env: env, StateDir: o.StateDir, tb: tb}
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
func (l *Lab) Traffic(ctx context.Context) *traffic.Report {
	l.tb.Helper()
	r, err := traffic.Run(ctx, l.Env, l.Scenario)
	if err != nil {
		l.tb.Fatalf("traffic on lab %s: %v", l.Scenario.Name, err)
	}
	return r
}

// Send runs one batch of SEND-only messages that the scenario does not declare, e.g.
// Send(ctx, Traffic{Transport: TransportRC, Direction: DirectionAToB, Messages: 10, Size: 4096}),
// and returns its results, one per direction: completions of both sides and the verdict.
// Unset RC timers and deadline take the scenario defaults.
func (l *Lab) Send(ctx context.Context, t scenario.Traffic) []*traffic.BatchResult {
	l.tb.Helper()
	if t.Name == "" {
		t.Name = "send"
	}
	s := *l.Scenario
	s.Traffic = []scenario.Traffic{t}
	s.Expect = scenario.Expect{Result: scenario.ResultPass}
	s.SetDefaults()
	if err := s.Validate(); err != nil {
		l.tb.Fatalf("send on lab %s: %v", l.Scenario.Name, err)
	}
	r, err := traffic.Run(ctx, l.Env, &s)
	if err != nil {
		l.tb.Fatalf("send on lab %s: %v", l.Scenario.Name, err)
	}
	return r.Batches
}

// Probe runs the layered path check on the lab.
func (l *Lab) Probe(ctx context.Context) *probe.Report {
	l.tb.Helper()
	r, err := probe.Run(ctx, l.Env, l.Scenario)
	if err != nil {
		l.tb.Fatalf("probe lab %s: %v", l.Scenario.Name, err)
	}
	return r
}
