package runner

import (
	"bytes"
	"testing"

	"github.com/rocebed/rocebed/testbed/scenario"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestWithoutFixLeavesTheOriginalAlone(t *testing.T) {
	s, err := scenario.Load("same-host-sysctl", nil)
	require.NoError(t, err)
	c := withoutFix(s, "accept-local")
	require.Len(t, c.Fixes, 1)
	assert.Equal(t, "loose-rp-filter", c.Fixes[0].Name)
	assert.Len(t, s.Fixes, 2, "the original lost a fix")
}

func TestAblationReportText(t *testing.T) {
	r := &AblationReport{Lab: "same-host-sysctl",
		Baseline: AblationResult{Pass: true, Verdict: "traffic passed"},
		Fixes: []AblationResult{
			{Removed: "accept-local", Necessary: true, Verdict: "connect failed after 1.02 s"},
			{Removed: "loose-rp-filter", Pass: true, Verdict: "traffic passed"},
		}}
	var b bytes.Buffer
	require.NoError(t, r.WriteText(&b))
	assert.Contains(t, b.String(), "necessary: accept-local; not necessary: loose-rp-filter")
	assert.Equal(t, []string{"accept-local"}, r.Necessary())

	r.Baseline.Pass = false
	b.Reset()
	require.NoError(t, r.WriteText(&b))
	assert.Contains(t, b.String(), "fails even with every fix")
}
