package probe

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/rocebed/rocebed/internal/testenv"
	"github.com/rocebed/rocebed/internal/testlab"
	"github.com/rocebed/rocebed/sysctl"
	"github.com/rocebed/rocebed/testbed/lab"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestProbeShippedLabs brings each shipped network-only lab up with Up, probes it, and takes it
// down again. Expected outcomes are what this kernel does (measured, and matching the VM
// notes): the fixes pass both ways (in each family of a dual-stack lab), no fix fails at the
// neighbour layer with in_martian_src moving (IPv4) or at the output route, to lo (IPv6), and
// the sysctl fix with a strict rp_filter fails.
func TestProbeShippedLabs(t *testing.T) {
	for _, tc := range []struct {
		scenario  string
		rpFilter  string // override of the scenario's rp_filter=2 (same-host-sysctl only)
		wantLayer Layer
	}{
		{scenario: "same-host"},
		{scenario: "same-host-ud"},
		{scenario: "same-host-sysctl"},
		{scenario: "same-host-sysctl", rpFilter: "1", wantLayer: LayerNeighbor},
		{scenario: "same-host-nofix", wantLayer: LayerNeighbor},
		{scenario: "seed-fixed"},
		{scenario: "same-host-v6"},
		{scenario: "same-host-dual"},
		{scenario: "seed-v6", wantLayer: LayerRouteOut},
	} {
		name := tc.scenario
		if tc.rpFilter != "" {
			name += "-rp_filter=" + tc.rpFilter
		}
		t.Run(name, func(t *testing.T) {
			ns, env, s := testlab.InNetNS(t, tc.scenario)
			if tc.rpFilter != "" {
				for i, f := range s.Fixes {
					for j, kv := range f.Sysctls {
						if k, _, _ := strings.Cut(kv, "="); sysctl.Param(k) == "rp_filter" {
							s.Fixes[i].Sysctls[j] = k + "=" + tc.rpFilter
						}
					}
				}
			}
			before := ns.Dump(t)
			state := t.TempDir()
			_, err := lab.Up(context.Background(), env, s, lab.UpOptions{StateDir: state, SkipRDMA: true})
			require.NoError(t, err)
			rep, err := Run(context.Background(), env, s)
			require.NoError(t, err)
			require.Len(t, rep.Directions, 2*len(s.Families()))
			for i, f := range s.Families() {
				assert.Equal(t, f, rep.Directions[2*i].Family)
				assert.Equal(t, f, rep.Directions[2*i+1].Family)
			}
			if tc.wantLayer == "" {
				assert.True(t, rep.Passed, "probe failed: %s", rep.Summary())
				for _, d := range rep.Directions {
					assert.Len(t, d.Layers, len(Layers))
				}
			} else {
				require.False(t, rep.Passed, "probe passed on a lab that must fail")
				_, l := rep.FirstFailure()
				require.NotNil(t, l)
				assert.Equal(t, tc.wantLayer, l.Layer, "first failure: %s", l.Detail)
				if tc.scenario == "seed-v6" {
					// The IPv6 face of the seed: neighbour discovery works, the packets go to lo.
					assert.Contains(t, l.Detail, "goes to lo as local")
					assert.Contains(t, l.Fix, "policy-routing")
					assert.Equal(t, Pass, rep.Directions[0].Layers[1].Status, "neighbour discovery must work without a fix")
				}
				if tc.scenario == "same-host-nofix" {
					n, err := strconv.Atoi(l.Evidence["in_martian_src_delta"])
					require.NoError(t, err, "evidence: %v", l.Evidence)
					assert.Positive(t, n, "in_martian_src did not move")
					assert.Contains(t, l.Detail, "martian")
				}
			}
			require.NoError(t, lab.Down(context.Background(), state, s.Name))
			testenv.SameState(t, before, ns.Dump(t))
		})
	}
}
