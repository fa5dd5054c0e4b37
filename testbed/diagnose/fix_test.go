package diagnose

import (
	"testing"

	"github.com/rocebed/rocebed/testbed/scenario"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFixedScenarioAddsFixAndParses(t *testing.T) {
	s, err := scenario.Load("seed", nil)
	require.NoError(t, err)
	d := Conclude(seedLike(healthyEvidence(), 30))
	fixed, src, err := FixedScenario(s, d.Fixes())
	require.NoError(t, err, "%s", src)
	assert.Equal(t, scenario.ResultPass, fixed.Expect.Result)
	require.Len(t, fixed.Fixes, len(s.Fixes)+1)
	assert.Equal(t, s.Fixes, fixed.Fixes[:len(s.Fixes)])
	assert.NotNil(t, fixed.Fixes[len(s.Fixes)].PolicyRouting)
	assert.Equal(t, s.NICs, fixed.NICs)
	assert.Equal(t, s.Endpoints, fixed.Endpoints)
	assert.Equal(t, s.Traffic, fixed.Traffic)
	again, err := scenario.Parse(s.File, src, nil)
	require.NoError(t, err)
	assert.Equal(t, fixed.Fixes, again.Fixes)
}
