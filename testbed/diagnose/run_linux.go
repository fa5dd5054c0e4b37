package diagnose

import (
	"context"

	"github.com/rocebed/rocebed/internal/host"
	"github.com/rocebed/rocebed/testbed/scenario"
	"github.com/rocebed/rocebed/testbed/traffic"
)

// Run explains a lab that is up: it reads the lab's configuration as the kernel has it
// (links and where they live, sysctls, rules, RDMA devices, ports and GIDs), runs the
// scenario's traffic between two counter snapshots (with the skb:kfree_skb trace when
// available) unless opts carries a report, asks the kernel how it routes each direction, runs
// Probe, and applies the rules (Findings). It changes no configuration. The error is for a
// diagnosis that could not be made (cancelled ctx).
func Run(ctx context.Context, env *host.Env, s *scenario.Scenario, opts Options) (*Diagnosis, error) {
	ev, err := CollectEvidence(ctx, env, s, opts)
	if err != nil {
		return nil, err
	}
	return Conclude(ev), nil
}

// AfterRun explains a failed run from its traffic report, without running traffic
// again: `rocebed run` calls it before taking the lab down.
func AfterRun(ctx context.Context, env *host.Env, s *scenario.Scenario, report *traffic.Report) (*Diagnosis, error) {
	return Run(ctx, env, s, Options{Traffic: report})
}
