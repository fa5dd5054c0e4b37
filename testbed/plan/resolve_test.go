package plan

import (
	"testing"

	"github.com/rocebed/rocebed/testbed/scenario"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	_ "github.com/rocebed/rocebed/scenarios" // the shipped scenarios, by name
)

// TestResolveSteps: one resolve step per family both endpoints have, from A's side unless a
// fix makes A's entry static, none when both are static or for one host's part of a
// two-host lab.
func TestResolveSteps(t *testing.T) {
	load := func(name string) *scenario.Scenario {
		s, err := scenario.Load(name, nil)
		require.NoError(t, err)
		return s
	}
	type got struct{ NIC, Addr, PeerNIC, PeerAddr string }
	steps := func(s *scenario.Scenario) []got {
		var out []got
		for _, r := range resolveSteps(s) {
			out = append(out, got{r.NIC, r.Addr, r.PeerNIC, r.PeerAddr})
		}
		return out
	}
	assert.Equal(t, []got{{"vA", "10.10.0.1", "vB", "10.10.0.2"}}, steps(load("same-host")))
	assert.Equal(t, []got{{"vA", "10.10.0.1", "vB", "10.10.0.2"}, {"vA", "fd00::1", "vB", "fd00::2"}}, steps(load("same-host-dual")))
	assert.Empty(t, steps(load("seed-fixed")), "both neighbours are static")

	half := load("seed-fixed")
	half.Fixes[0].Neighbors = half.Fixes[0].Neighbors[:1] // vA's entry for 10.10.0.2 only
	assert.Equal(t, []got{{"vB", "10.10.0.2", "vA", "10.10.0.1"}}, steps(half))

	two := load("two-hosts")
	for _, h := range []scenario.HostName{"a", "b"} {
		part, err := two.ForHost(h)
		require.NoError(t, err)
		assert.Empty(t, steps(part), "host %s", h)
	}
}

// TestResolveCommands: IPv4 prints one `use` (the ARP request teaches the other side), IPv6
// both (a solicitation from the link-local address does not); undo flushes what was absent,
// the taught link-local entries included.
func TestResolveCommands(t *testing.T) {
	v4 := &Resolve{NIC: "vA", Addr: "10.10.0.1", PeerNIC: "vB", PeerAddr: "10.10.0.2"}
	assert.Equal(t, "ip neigh add 10.10.0.2 dev vA nud none use", v4.Command())
	assert.Equal(t, "ip neigh flush to 10.10.0.2 dev vA; ip neigh flush to 10.10.0.1 dev vB", v4.UndoCommand())
	v4.Had = true
	assert.Equal(t, "ip neigh add 10.10.0.1 dev vB nud none use", v4.Command())
	v4.PeerHad = true
	assert.Equal(t, "ip neigh get 10.10.0.2 dev vA", v4.Command())
	assert.Equal(t, "(nothing: the neighbours were there before)", v4.UndoCommand())

	v6 := &Resolve{NIC: "vA", Addr: "fd00::1", PeerNIC: "vB", PeerAddr: "fd00::2", Taught: []string{"fe80::2"}, TaughtPeer: []string{"fe80::1"}}
	assert.Equal(t, "ip neigh add fd00::2 dev vA nud none use; ip neigh add fd00::1 dev vB nud none use", v6.Command())
	assert.Equal(t, "ip neigh flush to fd00::2 dev vA; ip neigh flush to fe80::2 dev vA; ip neigh flush to fd00::1 dev vB; ip neigh flush to fe80::1 dev vB", v6.UndoCommand())
	require.NoError(t, v6.Check())
	v6.Taught = []string{"fe80::2; reboot"}
	assert.Error(t, v6.Check())
}
