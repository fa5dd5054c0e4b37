package diagnose

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// recordedCase is one file of testdata: evidence captured by Run on a real
// kernel (TestDiagnoseRXE with ROCEBED_DIAG_RECORD=1 in the VM) and the root cause the
// kernel's behaviour calls for.
type recordedCase struct {
	Want  FindingCode   `json:"want"`
	Codes []FindingCode `json:"codes,omitempty"`
	// RootEvidenceContains are strings the root cause's evidence must show.
	RootEvidenceContains []string  `json:"root_evidence_contains,omitempty"`
	Comment              string    `json:"comment,omitempty"`
	Evidence             *Evidence `json:"evidence"`
}

func TestDiagnoseRecordedEvidence(t *testing.T) {
	files, err := filepath.Glob("testdata/*.json")
	require.NoError(t, err)
	require.NotEmpty(t, files, "no recorded evidence in testdata")
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".json"), func(t *testing.T) {
			data, err := os.ReadFile(f)
			require.NoError(t, err)
			var rc recordedCase
			dec := json.NewDecoder(bytes.NewReader(data))
			dec.DisallowUnknownFields()
			require.NoError(t, dec.Decode(&rc))
			require.NotNil(t, rc.Evidence)
			d := Conclude(rc.Evidence)
			var b strings.Builder
			require.NoError(t, d.WriteText(&b))
			t.Logf("%s", b.String())
			if rc.Want == "" {
				assert.Empty(t, d.Findings, "healthy lab: %v", d.Codes())
				assert.True(t, d.TrafficPassed)
				return
			}
			require.NotEmpty(t, d.Findings)
			assert.Equal(t, rc.Want, d.FirstCode(), "codes %v", d.Codes())
			if rc.Codes != nil {
				assert.Equal(t, rc.Codes, d.Codes())
			}
			root := strings.Join(d.Findings[0].Evidence, "\n")
			for _, want := range rc.RootEvidenceContains {
				assert.Contains(t, root, want)
			}
			assertWellFormed(t, d)
		})
	}
}

// assertWellFormed: every finding has a role, evidence and a fix with commands; exactly the
// first is the root cause; no code twice; codes in causal order.
func assertWellFormed(t *testing.T, d *Diagnosis) {
	t.Helper()
	seen := map[FindingCode]bool{}
	last := -1
	for i, f := range d.Findings {
		assert.False(t, seen[f.Code], "code %s twice", f.Code)
		seen[f.Code] = true
		assert.GreaterOrEqual(t, codeRank(f.Code), last, "%s out of causal order", f.Code)
		last = codeRank(f.Code)
		if i == 0 {
			assert.Equal(t, RoleRootCause, f.Role)
		} else {
			assert.Contains(t, []Role{RoleConsequence, RoleUnrelated}, f.Role)
		}
		assert.NotEmpty(t, f.Summary)
		assert.NotEmpty(t, f.Evidence, "%s has no evidence", f.Code)
		if assert.NotNil(t, f.Fix, "%s has no fix", f.Code) {
			assert.NotEmpty(t, f.Fix.Commands, "%s fix has no commands", f.Code)
			assert.NotEmpty(t, f.Fix.Scenario, "%s fix has no scenario snippet", f.Code)
		}
	}
}

// The recorded evidence loads into the typed model and writes back the same JSON: every field
// name and every value's spelling ("local", "REACHABLE", "ACTIVE", "EXDEV", "a->b") survives.
func TestRecordedEvidenceJSONRoundTrip(t *testing.T) {
	files, err := filepath.Glob("testdata/*.json")
	require.NoError(t, err)
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".json"), func(t *testing.T) {
			data, err := os.ReadFile(f)
			require.NoError(t, err)
			var raw struct {
				Evidence json.RawMessage `json:"evidence"`
			}
			require.NoError(t, json.Unmarshal(data, &raw))
			var ev Evidence
			require.NoError(t, json.Unmarshal(raw.Evidence, &ev))
			again, err := json.Marshal(&ev)
			require.NoError(t, err)
			assert.JSONEq(t, string(raw.Evidence), string(again))
		})
	}
}
