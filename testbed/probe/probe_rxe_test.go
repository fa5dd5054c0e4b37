//go:build linux

package probe

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/rocebed/rocebed/internal/testenv"
	"github.com/rocebed/rocebed/internal/testlab"
	"github.com/rocebed/rocebed/testbed/scenario"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// taintDie is the kernel's TAINT_DIE bit ('D'): an oops happened.
const taintDie = 1 << 7

func tainted(t *testing.T) uint64 {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/kernel/tainted")
	require.NoError(t, err)
	v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	require.NoError(t, err)
	return v
}

// TestProbeRXEIPv6 probes the IPv6 labs with their rxe devices holding UDP 4791, where the old
// 8-byte probe panicked the kernel (__rxe_put on an uninitialised pkt->qp): the fixed labs pass
// in every family, seed-v6 fails at route-out, and the kernel logs no oops.
func TestProbeRXEIPv6(t *testing.T) {
	testenv.RequireRXE(t)
	before := tainted(t)
	for _, tc := range []struct {
		scenario  string
		wantLayer Layer
	}{
		{"same-host-v6", ""},
		{"same-host-dual", ""},
		{"seed-v6", LayerRouteOut},
	} {
		t.Run(tc.scenario, func(t *testing.T) {
			l := testlab.UpRXE(t, tc.scenario, nil)
			rep, err := Run(context.Background(), l.Env, l.Scenario)
			require.NoError(t, err)
			var b strings.Builder
			require.NoError(t, rep.WriteText(&b))
			t.Logf("%s", b.String())
			require.Len(t, rep.Directions, 2*len(l.Scenario.Families()))
			if tc.wantLayer == "" {
				assert.True(t, rep.Passed, rep.Summary())
				for _, d := range rep.Directions {
					u := d.Layers[len(d.Layers)-1]
					require.Equal(t, LayerUDP, u.Layer)
					if d.Family == scenario.FamilyIPv6 {
						// rxe holds port 4791: the probe counts on the NIC and rxe took the datagrams.
						assert.Contains(t, u.Evidence["listener"], "address already in use", "%s", d.Label())
					}
				}
			} else {
				_, fl := rep.FirstFailure()
				require.NotNil(t, fl, "seed-v6 must fail")
				assert.Equal(t, tc.wantLayer, fl.Layer, fl.Detail)
			}
			l.Down(t)
		})
	}
	assert.Zero(t, (tainted(t)&^before)&taintDie, "the kernel oopsed while probing (see dmesg)")
}
