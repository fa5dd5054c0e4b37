package traffic

import (
	"testing"

	"github.com/rocebed/rocebed/testbed/scenario"
	"github.com/stretchr/testify/assert"
)

// TestStreamsOnlyWhereItCan: a batch's SENDs go from the C send stream only when it is an RC
// stream with both ends here, every message filled before the first send, more than one
// outstanding, and two workers.
func TestStreamsOnlyWhereItCan(t *testing.T) {
	rc := scenario.Traffic{Transport: scenario.TransportRC}
	ud := scenario.Traffic{Transport: scenario.TransportUD}
	both := func() *batch { return &batch{snd: &verbsSide{}, rcv: &verbsSide{}, prefilled: true, sendWin: 128} }
	t.Cleanup(func() { workers = 0 })
	workers = 2
	assert.True(t, both().streams(rc), "RC, both ends, prefilled, two workers")
	for name, b := range map[string]*batch{
		"receiver on the other host": {snd: &verbsSide{}, prefilled: true, sendWin: 128},
		"ring refilled from Go":      {snd: &verbsSide{}, rcv: &verbsSide{}, sendWin: 128},
		"one at a time":              {snd: &verbsSide{}, rcv: &verbsSide{}, prefilled: true, sendWin: 1},
		"ping-pong":                  {snd: &verbsSide{}, rcv: &verbsSide{}, prefilled: true, sendWin: 128, pingpong: true},
	} {
		assert.False(t, b.streams(rc), name)
	}
	assert.False(t, both().streams(ud), "UD")
	workers = 1
	assert.False(t, both().streams(rc), "one worker")
}
