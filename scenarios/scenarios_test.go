package scenarios_test

import (
	"io/fs"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rocebed/rocebed/scenarios"
	"github.com/rocebed/rocebed/testbed/scenario"
)

// TestNamesListsEveryFile: Names is exactly the embedded NAME.yaml files, sorted.
func TestNamesListsEveryFile(t *testing.T) {
	entries, err := fs.ReadDir(scenarios.FS(), ".")
	require.NoError(t, err)
	var files []string
	for _, e := range entries {
		files = append(files, e.Name())
	}
	var want []string
	for _, f := range files {
		n, ok := strings.CutSuffix(f, ".yaml")
		require.True(t, ok, "embedded file %s is not NAME.yaml", f)
		want = append(want, n)
	}
	require.NotEmpty(t, want)
	slices.Sort(want)
	assert.Equal(t, want, scenarios.Names())
	assert.True(t, slices.IsSorted(scenarios.Names()))
	assert.Contains(t, scenarios.Names(), scenarios.Default)
}

// TestEveryScenarioLoads: each embedded scenario loads by name, validates, and is named after
// its file.
func TestEveryScenarioLoads(t *testing.T) {
	for _, name := range scenarios.Names() {
		t.Run(name, func(t *testing.T) {
			s, err := scenario.Load(name, nil)
			require.NoError(t, err)
			assert.Equal(t, name, s.Name, "the lab name must equal the file name")
			assert.Equal(t, "builtin:"+name, s.File)
			require.NoError(t, s.Validate(), "a loaded scenario validates again")
		})
	}
}

func TestRead(t *testing.T) {
	data, err := scenarios.Read(scenarios.Default)
	require.NoError(t, err)
	assert.Contains(t, string(data), "name: "+scenarios.Default+"\n")
	_, err = scenarios.Read("no-such-scenario")
	assert.ErrorIs(t, err, fs.ErrNotExist)
}
