package kernel

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"golang.org/x/sys/unix"
)

func TestEffectiveSysctls(t *testing.T) {
	assert.Equal(t, 1, EffectiveAcceptLocal(0, 1))
	assert.Equal(t, 1, EffectiveAcceptLocal(1, 0))
	assert.Equal(t, 0, EffectiveAcceptLocal(0, 0))
	assert.Equal(t, -1, EffectiveAcceptLocal(-1, 1))
	assert.Equal(t, 2, EffectiveRPFilter(0, 2))
	assert.Equal(t, 1, EffectiveRPFilter(1, 0))
	assert.Equal(t, -1, EffectiveRPFilter(2, -1))
	assert.Equal(t, 7, ParseSysctlInt("7"))
	assert.Equal(t, -1, ParseSysctlInt("x"))
}

func TestPredictSource(t *testing.T) {
	local := RouteBack{Type: unix.RTN_LOCAL, Dev: "lo"}
	back := RouteBack{Type: unix.RTN_UNICAST, Dev: "vB"}
	other := RouteBack{Type: unix.RTN_UNICAST, Dev: "eth0"}
	for _, tc := range []struct {
		name       string
		accept, rp int
		back       RouteBack
		want       SourceVerdict
	}{
		{"seed: local source, no accept_local", 0, 0, local, SourceMartian},
		{"accept_local with loose rp_filter", 1, 2, local, SourceAccepted},
		{"accept_local with strict rp_filter", 1, 1, local, SourceRPFilter},
		{"policy routing: unicast back through the NIC", 0, 1, back, SourceAccepted},
		{"strict rp_filter, back through another NIC", 0, 1, other, SourceRPFilter},
		{"loose rp_filter, back through another NIC", 0, 2, other, SourceAccepted},
		{"no route back read", 0, 0, RouteBack{}, SourceUnknown},
		{"sysctl unreadable", -1, 0, back, SourceUnknown},
	} {
		assert.Equal(t, tc.want, PredictSource(tc.accept, tc.rp, tc.back, "vB"), tc.name)
	}
	assert.Equal(t, unix.RTN_LOCAL, RouteTypeOf("local"))
	assert.Equal(t, 0, RouteTypeOf("nonsense"))
}
