//go:build linux

package runner

import (
	"context"
	"testing"

	"github.com/rocebed/rocebed/internal/host"
	"github.com/rocebed/rocebed/internal/testenv"
	"github.com/rocebed/rocebed/testbed/lab"
	"github.com/rocebed/rocebed/testbed/scenario"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestAblateShippedFixes runs the ablation on a real rxe kernel: the policy-routing fix is
// necessary for same-host (and for the IPv6 and dual-stack labs: without it IPv6 packets go to
// lo), accept_local is necessary for same-host-sysctl and a loose rp_filter is not (the
// guest's rp_filter is 0, and accept_local works with 0 or 2).
func TestAblateShippedFixes(t *testing.T) {
	testenv.RequireRXE(t)
	ns := testenv.InitialNetNS(t)
	env, err := host.Open("")
	require.NoError(t, err)
	defer env.Close()
	before := ns.Dump(t)
	for _, tc := range []struct {
		scenario               string
		necessary, unnecessary []string
	}{
		{"same-host", []string{"policy-routing"}, nil},
		{"same-host-sysctl", []string{"accept-local"}, []string{"loose-rp-filter"}},
		{"same-host-v6", []string{"policy-routing"}, nil},
		{"same-host-dual", []string{"policy-routing"}, nil},
	} {
		t.Run(tc.scenario, func(t *testing.T) {
			s, err := scenario.Load(tc.scenario, nil)
			require.NoError(t, err)
			rep, err := Ablate(context.Background(), env, s, lab.UpOptions{StateDir: t.TempDir()})
			require.NoError(t, err)
			require.True(t, rep.Baseline.Pass, "baseline: %s", rep.Baseline.Verdict)
			assert.Equal(t, tc.necessary, rep.Necessary())
			assert.Equal(t, tc.unnecessary, rep.Unnecessary())
			for _, f := range rep.Fixes {
				t.Logf("without %s: pass=%v %s", f.Removed, f.Pass, f.Verdict)
			}
		})
	}
	testenv.SameState(t, before, ns.Dump(t), "ablation left changes behind")
}
