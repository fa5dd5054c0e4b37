package runner

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/rocebed/rocebed/internal/host"
	"github.com/rocebed/rocebed/testbed/lab"
	"github.com/rocebed/rocebed/testbed/scenario"
)

// Ablate runs the scenario's traffic with every fix, then once with each fix removed in turn,
// bringing the lab up and down around every run, and says which fixes are necessary: the
// traffic works with all of them and fails without that one. The host is restored after each
// run.
func Ablate(ctx context.Context, env *host.Env, s *scenario.Scenario, opts lab.UpOptions) (*AblationReport, error) {
	rep := &AblationReport{Lab: s.Name}
	base, err := runOnce(ctx, env, s, opts)
	if err != nil {
		return nil, err
	}
	rep.Baseline = *base
	for _, f := range s.Fixes {
		slog.Info("ablation: running without fix", "fix", f.Name)
		r, err := runOnce(ctx, env, withoutFix(s, f.Name), opts)
		if err != nil {
			return rep, fmt.Errorf("without fix %s: %w", f.Name, err)
		}
		r.Removed = f.Name
		r.Necessary = base.Pass && !r.Pass
		rep.Fixes = append(rep.Fixes, *r)
	}
	return rep, nil
}

// runOnce brings the lab up, runs its traffic and takes it down again.
func runOnce(ctx context.Context, env *host.Env, s *scenario.Scenario, opts lab.UpOptions) (*AblationResult, error) {
	r, err := Run(ctx, env, s, Options{Up: opts})
	if err != nil {
		return nil, err
	}
	res := &AblationResult{Pass: r.Traffic.Pass, Report: r.Traffic, Verdict: r.Traffic.Verdict}
	for _, b := range r.Traffic.Batches {
		if !b.Pass {
			res.Failure = b.Class
			res.Verdict = b.Verdict
			break
		}
	}
	if r.Traffic.Pass {
		res.Verdict = "traffic passed with CQEs on both sides"
	}
	return res, nil
}
