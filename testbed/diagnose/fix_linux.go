package diagnose

import (
	"context"
	"fmt"

	"github.com/rocebed/rocebed/internal/host"
	"github.com/rocebed/rocebed/testbed/lab"
	"github.com/rocebed/rocebed/testbed/traffic"
)

// FixLab is `diagnose --fix`: it takes the lab down (restoring the host), adds the fix groups
// the diagnosis suggests to the scenario the lab was brought up with, brings it up again from
// that scenario (journaled, so `down` restores the host exactly) and reruns the traffic. The
// lab stays up with the fix. It fails when no finding has a fix that can be added.
func FixLab(ctx context.Context, stateDir, labName string, before *Diagnosis) (*FixResult, error) {
	fixes := before.Fixes()
	if len(fixes) == 0 {
		return nil, fmt.Errorf("lab %q: no finding has a fix rocebed can add to the scenario: apply the fixes shown by hand", labName)
	}
	s, h, err := lab.OpenScenario(stateDir, labName)
	if err != nil {
		return nil, err
	}
	fixed, src, err := FixedScenario(s, fixes)
	if err != nil {
		return nil, err
	}
	if err := lab.Down(ctx, stateDir, labName); err != nil {
		return nil, fmt.Errorf("take lab %q down before fixing it: %w", labName, err)
	}
	env, err := host.Open(h.Netns)
	if err != nil {
		return nil, err
	}
	defer env.Close()
	if _, err := lab.Up(ctx, env, fixed, lab.UpOptions{StateDir: stateDir, Source: src, SkipRDMA: h.SkipRDMA}); err != nil {
		return nil, fmt.Errorf("bring lab %q up with the fix (it is down now; the host is restored): %w", labName, err)
	}
	res := &FixResult{Applied: fixes, Before: before, Source: string(src)}
	rep, err := traffic.Run(ctx, env, fixed)
	res.After = rep
	res.Passed = rep != nil && rep.Pass
	if err != nil {
		return res, fmt.Errorf("traffic after the fix: %w", err)
	}
	return res, nil
}
