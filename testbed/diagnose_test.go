package testbed

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFixedScenarioAddsFixAndParses(t *testing.T) {
	s, err := Load("seed", nil)
	require.NoError(t, err)
	pr := PolicyRouting{}.withDefaults()
	fixed, src, err := FixedScenario(s, []Fix{{Name: DiagnoseFixName, PolicyRouting: &pr}})
	require.NoError(t, err, "%s", src)
	t.Logf("%s", src)
	assert.Equal(t, ResultPass, fixed.Expect.Result)
	require.Len(t, fixed.Fixes, len(s.Fixes)+1)
	assert.Equal(t, s.Fixes, fixed.Fixes[:len(s.Fixes)])
	assert.NotNil(t, fixed.Fixes[len(s.Fixes)].PolicyRouting)
	assert.Equal(t, s.NICs, fixed.NICs)
	assert.Equal(t, s.Endpoints, fixed.Endpoints)
	assert.Equal(t, s.Traffic, fixed.Traffic)
}
