package diagnose

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/rocebed/rocebed/testbed/scenario"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDiagnosisJSONCarriesCodesEvidenceAndFixes(t *testing.T) {
	d := Conclude(seedLike(healthyEvidence(), 30))
	var b bytes.Buffer
	require.NoError(t, d.WriteJSON(&b))
	var doc struct {
		Findings []struct {
			Code     string   `json:"code"`
			Role     string   `json:"role"`
			Evidence []string `json:"evidence"`
			Fix      struct {
				Scenario string        `json:"scenario"`
				Commands []string      `json:"commands"`
				Apply    *scenario.Fix `json:"apply"`
			} `json:"fix"`
		} `json:"findings"`
		Evidence *Evidence `json:"evidence"`
	}
	require.NoError(t, json.Unmarshal(b.Bytes(), &doc))
	require.Len(t, doc.Findings, 2)
	assert.Equal(t, "martian-source", doc.Findings[0].Code)
	assert.Equal(t, "root-cause", doc.Findings[0].Role)
	assert.NotEmpty(t, doc.Findings[0].Evidence)
	assert.Contains(t, doc.Findings[0].Fix.Scenario, "policy_routing: {}")
	assert.NotEmpty(t, doc.Findings[0].Fix.Commands)
	require.NotNil(t, doc.Findings[0].Fix.Apply)
	// The evidence replays through the rules to the same answer.
	assert.Equal(t, d.Codes(), Conclude(doc.Evidence).Codes())
}
