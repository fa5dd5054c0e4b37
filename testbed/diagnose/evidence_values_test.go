package diagnose

import (
	"encoding"
	"encoding/json"
	"testing"

	"github.com/rocebed/rocebed/internal/kernel"
	"github.com/rocebed/rocebed/rdma"
	"github.com/rocebed/rocebed/rdma/verbs"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// textValue is a typed evidence value: it writes itself as text and reads that text back.
type textValue interface {
	encoding.TextMarshaler
	String() string
}

func TestEvidenceValuesSpelling(t *testing.T) {
	for _, tc := range []struct {
		v    textValue
		text string
		back func([]byte) (textValue, error)
	}{
		{RouteUnicast, "unicast", readText[RouteType]},
		{RouteLocal, "local", readText[RouteType]},
		{RouteType(unix.RTN_BLACKHOLE), "blackhole", readText[RouteType]},
		{RouteType(0), "", readText[RouteType]},
		{RouteType(42), "type 42", readText[RouteType]},
		{Errno(unix.EXDEV), "EXDEV", readText[Errno]},
		{Errno(unix.EINVAL), "EINVAL", readText[Errno]},
		{Errno(unix.ENETUNREACH), "ENETUNREACH", readText[Errno]},
		{Errno(0), "", readText[Errno]},
		{NeighborEntryState(kernel.NUDReachable), "REACHABLE", readText[NeighborState]},
		{NeighborEntryState(kernel.NUDIncomplete), "INCOMPLETE", readText[NeighborState]},
		{NeighborEntryState(kernel.NUDStale | kernel.NUDNoARP), "STALE,NOARP", readText[NeighborState]},
		{NeighborEntryState(0), "NONE", readText[NeighborState]},
		{NeighborState{Lookup: NeighborAbsent}, "absent", readText[NeighborState]},
		{NeighborState{Lookup: NeighborUnknown}, "unknown", readText[NeighborState]},
		{NeighborState{Lookup: NeighborUnreadable, Err: "operation not permitted"}, "unreadable: operation not permitted", readText[NeighborState]},
		{NeighborState{}, "", readText[NeighborState]},
		{PortStateOf(rdma.PortActive), "ACTIVE", readText[PortState]},
		{PortStateOf(rdma.PortDown), "DOWN", readText[PortState]},
		{PortStateOf(rdma.PortNop), "NOP", readText[PortState]},
		{PortStateOf(rdma.PortState(9)), "PortState(9)", readText[PortState]},
		{PortState{}, "", readText[PortState]},
		{CompletionStatus(verbs.WCRetryExcErr), "IBV_WC_RETRY_EXC_ERR", readText[CompletionStatus]},
		{CompletionStatus(verbs.WCWRFlushErr), "IBV_WC_WR_FLUSH_ERR", readText[CompletionStatus]},
		{CompletionStatus(99), "IBV_WC_STATUS_99", readText[CompletionStatus]},
		{CompletionStatus(0), "", readText[CompletionStatus]},
	} {
		b, err := tc.v.MarshalText()
		require.NoError(t, err)
		assert.Equal(t, tc.text, string(b), "%#v", tc.v)
		assert.Equal(t, tc.text, tc.v.String())
		back, err := tc.back(b)
		require.NoError(t, err, "%q", b)
		assert.Equal(t, tc.v, back, "%q", b)
	}
}

// readText reads a value of type T (whose pointer is a TextUnmarshaler) from its text.
func readText[T any, P interface {
	*T
	encoding.TextUnmarshaler
}](b []byte) (textValue, error) {
	var v T
	if err := P(&v).UnmarshalText(b); err != nil {
		return nil, err
	}
	return any(v).(textValue), nil
}

func TestEvidenceValuesRejectUnknownSpellings(t *testing.T) {
	var rt RouteType
	assert.Error(t, rt.UnmarshalText([]byte("sideways")))
	var e Errno
	assert.Error(t, e.UnmarshalText([]byte("ENOTANERRNO")))
	var ns NeighborState
	assert.Error(t, ns.UnmarshalText([]byte("HAPPY")))
	var ps PortState
	assert.Error(t, ps.UnmarshalText([]byte("SLEEPY")))
	var cs CompletionStatus
	assert.Error(t, cs.UnmarshalText([]byte("IBV_WC_OOPS")))
}

func TestNeighborUsableIsKernelNUDValid(t *testing.T) {
	for _, nud := range []int{kernel.NUDReachable, kernel.NUDStale, kernel.NUDDelay, kernel.NUDProbe, kernel.NUDPermanent, kernel.NUDNoARP} {
		assert.True(t, NeighborEntryState(nud).Usable(), kernel.NeighStateName(nud))
	}
	for _, s := range []NeighborState{NeighborEntryState(kernel.NUDIncomplete), NeighborEntryState(kernel.NUDFailed), NeighborEntryState(0),
		{Lookup: NeighborAbsent}, {Lookup: NeighborUnknown}, {Lookup: NeighborUnreadable}, {}} {
		assert.False(t, s.Usable(), s.String())
	}
}

// Fields whose value is not set are left out as before (omitempty / omitzero).
func TestEvidenceValuesLeftOutWhenUnset(t *testing.T) {
	b, err := json.Marshal(EndpointEvidence{Side: SideA})
	require.NoError(t, err)
	assert.NotContains(t, string(b), "port_state")
	b, err = json.Marshal(RouteAnswer{Query: "q"})
	require.NoError(t, err)
	assert.JSONEq(t, `{"query":"q"}`, string(b))
	b, err = json.Marshal(NeighborEvidence{})
	require.NoError(t, err)
	assert.JSONEq(t, `{"state":""}`, string(b))
}
