package scenario

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const dualScenario = `version: 1
name: dual
nics:
  - {name: vA, kind: veth, peer: vB, addresses: ["fd00::1/64", 10.10.0.1/24]}
  - {name: vB, kind: veth, peer: vA, addresses: [10.10.0.2/24, "fd00::2/64"]}
endpoints:
  a: {nic: vA, rxe: rxe0}
  b: {nic: vB, rxe: rxe1}
fixes:
  - {name: pr, policy_routing: {}}
traffic:
  - {name: v4, transport: rc, direction: both, messages: 1, size: 1, family: ipv4}
  - {name: v6, transport: ud, direction: both, messages: 1, size: 1, family: ipv6}
  - {name: own, transport: rc, direction: both, messages: 1, size: 1}
expect:
  result: pass
`

func TestFamilies(t *testing.T) {
	s, err := Parse("dual.yaml", []byte(dualScenario), nil)
	require.NoError(t, err)
	// The endpoints' own addresses are each NIC's first IPv4 one; IPv6 comes second.
	assert.Equal(t, []Family{FamilyIPv4, FamilyIPv6}, s.Families())
	for _, c := range []struct {
		ep   Endpoint
		f    Family
		want string
	}{
		{s.Endpoints.A, "", "10.10.0.1"},
		{s.Endpoints.A, FamilyIPv4, "10.10.0.1"},
		{s.Endpoints.A, FamilyIPv6, "fd00::1"},
		{s.Endpoints.B, FamilyIPv6, "fd00::2"},
	} {
		a, ok := s.EndpointAddrIn(c.ep, c.f)
		assert.True(t, ok)
		assert.Equal(t, c.want, a.String(), "%s %q", c.ep.NIC, c.f)
	}
	assert.Equal(t, PolicyRoutingRulesIPv6, s.PolicyRoutingRules())
	assert.Equal(t, FamilyIPv6, FamilyOf(netip.MustParseAddr("fd00::1")))
	assert.Equal(t, FamilyIPv4, FamilyOf(netip.MustParseAddr("::ffff:10.0.0.1")))

	// An endpoint whose own address is IPv6 puts IPv6 first.
	s.Endpoints.A.Address, s.Endpoints.B.Address = "fd00::1", "fd00::2"
	assert.Equal(t, []Family{FamilyIPv6, FamilyIPv4}, s.Families())

	// An IPv4-only lab has one family and the IPv4 rule count.
	s.NICs[1].Addresses = []string{"10.10.0.2/24"}
	s.Endpoints.A.Address, s.Endpoints.B.Address = "", ""
	assert.Equal(t, []Family{FamilyIPv4}, s.Families())
	assert.Equal(t, PolicyRoutingRules, s.PolicyRoutingRules())
	_, ok := s.EndpointAddrIn(s.Endpoints.B, FamilyIPv6)
	assert.False(t, ok)
}
