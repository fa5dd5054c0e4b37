package scenario

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTrafficWindowValidated(t *testing.T) {
	base, err := Load("same-host", nil)
	require.NoError(t, err)
	for w, want := range map[int]string{0: "", 1: "", 128: "", -1: "window -1 out of range", 129: "window 129 out of range"} {
		s := *base
		s.Traffic = []Traffic{base.Traffic[0]}
		s.Traffic[0].Window = w
		err := s.Validate()
		if want == "" {
			assert.NoError(t, err, "window %d", w)
			continue
		}
		require.Error(t, err, "window %d", w)
		assert.True(t, strings.Contains(err.Error(), "traffic[0].window: "+want), err.Error())
	}
}

// TestPingPongRefusedOnTwoHosts: a ping-pong's half round trips read one clock, so both ends
// must be in one process.
func TestPingPongRefusedOnTwoHosts(t *testing.T) {
	s, err := Load("two-hosts", nil)
	require.NoError(t, err)
	require.NoError(t, s.Validate())
	s.Traffic[0].Pattern = PatternPingPong
	err = s.Validate()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "traffic[0].pattern: pattern pingpong runs both ends in one process: a two-host lab cannot run it")
}
