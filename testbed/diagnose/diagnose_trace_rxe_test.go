//go:build linux && tracetest

// The kfree_skb layer soft-locked the 6.1 guest under TCG in about 1 of 5 diagnoses, so its
// test is not part of the default VM tier (where a hang costs the whole run): `make test-vm-trace`
// builds it with -tags tracetest and runs it on its own.

package diagnose

import (
	"strings"
	"testing"

	"github.com/rocebed/rocebed/internal/testenv"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestDiagnoseRXETrace runs the opt-in kfree_skb layer on the seed lab: the drops are named
// by freeing function and are the martian drops in input routing.
func TestDiagnoseRXETrace(t *testing.T) {
	testenv.RequireRXE(t)
	d := diagnoseLab(t, diagCase{name: "seed-trace", scenario: "seed"})
	require.Equal(t, CodeMartianSource, d.FirstCode(), "%v", d.Codes())
	require.NotNil(t, d.Evidence.Trace)
	require.True(t, d.Evidence.Trace.Available, d.Evidence.Trace.Reason)
	assert.Contains(t, strings.Join(d.Findings[0].Evidence, "\n"), "kfree_skb: 30 × IPv4 at ip_rcv_finish_core")
}
