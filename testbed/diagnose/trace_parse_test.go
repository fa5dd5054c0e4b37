package diagnose

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTraceParsing(t *testing.T) {
	trace := `# tracer: nop
#
          <idle>-0       [001] ..s1.   101.000001: kfree_skb: skbaddr=000000001 protocol=2048 location=0xffffffff9a8b1c20 reason: NOT_SPECIFIED
          <idle>-0       [001] ..s1.   101.000002: kfree_skb: skbaddr=000000002 protocol=2048 location=0xffffffff9a8b1c20 reason: NOT_SPECIFIED
          <idle>-0       [000] ..s1.   101.000003: kfree_skb: skbaddr=000000003 protocol=2054 location=0xffffffff9a8b2d30 reason: NOT_SPECIFIED
`
	g := groupKfreeLines(trace, func(a string) string {
		return map[string]string{"0xffffffff9a8b1c20": "ip_rcv_finish_core+0x1a0"}[a] + "|" + a
	})
	require.Len(t, g, 2)
	assert.Equal(t, TraceDrop{Protocol: "IPv4", Location: "ip_rcv_finish_core+0x1a0|0xffffffff9a8b1c20", Reason: "NOT_SPECIFIED", Count: 2}, g[0])
	assert.Equal(t, TraceARP, g[1].Protocol)
	assert.Len(t, traceLines(trace, 2), 2)
	assert.True(t, TraceDrop{Location: "rxe_responder+0xb22"}.ByRXE(), "rxe frees what it processed with kfree_skb")
	assert.False(t, g[0].ByRXE())
	assert.Equal(t, "kfree_skb: 2 × IPv4 at x reason NOT_SPECIFIED", TraceDrop{Protocol: "IPv4", Location: "x", Reason: "NOT_SPECIFIED", Count: 2}.String())
}
