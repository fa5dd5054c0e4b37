package scenario

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// twoHostScenario is a valid two-host lab: eth1 on both hosts, rxe0 on both, the same-host
// fix with a sysctl for the shared NIC name and one per host.
const twoHostScenario = `version: 1
name: lab
nics:
  - {name: eth1, host: a, kind: existing, addresses: [10.20.0.1/24]}
  - {name: ens2, host: b, kind: existing, addresses: [10.20.0.2/24]}
endpoints:
  a: {nic: eth1, rxe: rxe0}
  b: {nic: ens2, rxe: rxe0}
fixes:
  - name: pr
    policy_routing: {}
  - name: knobs
    sysctls: [net.ipv4.conf.all.rp_filter=2, net.ipv4.conf.eth1.accept_local=1, net.ipv4.conf.ens2.accept_local=1]
    arp: [{nic: ens2, ignore: 1}]
traffic:
  - {name: rc, transport: rc, direction: both, messages: 1, size: 1}
expect:
  result: pass
`

func parseTwoHost(t *testing.T, edit func(string) string) (*Scenario, error) {
	t.Helper()
	text := twoHostScenario
	if edit != nil {
		text = edit(text)
	}
	return Parse("two.yaml", []byte(text), nil)
}

func fieldErrs(err error) []string {
	var out []string
	for _, e := range flatten(err) {
		var fe *FieldError
		if errors.As(e, &fe) {
			out = append(out, fe.Path+": "+fe.Msg)
		}
	}
	return out
}

func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	if err == nil {
		return nil
	}
	return []error{err}
}

func TestTwoHostValid(t *testing.T) {
	s, err := parseTwoHost(t, nil)
	require.NoError(t, err)
	assert.True(t, s.TwoHost())
	assert.Equal(t, "10.20.0.1", s.Endpoints.A.Address, "endpoint a's address comes from host a's NIC")
	assert.Equal(t, "10.20.0.2", s.Endpoints.B.Address)

	// NIC names are unique per host: both hosts may call theirs eth1, and both may have rxe0.
	same, err := parseTwoHost(t, func(x string) string {
		x = strings.Replace(x, ", net.ipv4.conf.ens2.accept_local=1", "", 1) // eth1's applies on both hosts
		return strings.ReplaceAll(x, "ens2", "eth1")
	})
	require.NoError(t, err)
	assert.Equal(t, "10.20.0.2", same.Endpoints.B.Address, "endpoint b's address comes from host b's eth1, not host a's")

	one, err := Parse("one.yaml", []byte(baseScenario), nil)
	require.NoError(t, err)
	assert.False(t, one.TwoHost())
}

func TestTwoHostValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(string) string
		want []string
	}{
		{"host missing", func(x string) string {
			return strings.Replace(x, "host: b, ", "", 1)
		}, []string{
			"nics[1].host: host is required: another NIC says host, so this is a two-host lab and every NIC says which host it is on, a or b",
			"nics: host b has no NIC: a two-host lab declares one NIC with host: a and one with host: b",
			`endpoints.b.nic: nic "ens2" is not on host b: endpoint b is on host b, so it names a NIC with host: b (host b has none)`,
		}},
		{"unknown host", func(x string) string { return strings.Replace(x, "host: b", "host: c", 1) }, []string{
			`nics[1].host: unknown host "c": want a or b (a host is named after the endpoint it carries)`,
			"nics: host b has no NIC: a two-host lab declares one NIC with host: a and one with host: b",
			`endpoints.b.nic: nic "ens2" is not on host b: endpoint b is on host b, so it names a NIC with host: b (host b has none)`,
		}},
		{"two NICs on one host", func(x string) string {
			return strings.Replace(x, "endpoints:", "  - {name: eth3, host: a, kind: existing, addresses: [10.30.0.1/24]}\nendpoints:", 1)
		}, []string{"nics[2].host: host a already has a NIC (nics[0]): a two-host lab has one NIC on each host, cabled to the other host's"}},
		{"veth", func(x string) string {
			return strings.Replace(x, "{name: eth1, host: a, kind: existing,", "{name: eth1, host: a, kind: veth, peer: ens2,", 1)
		}, []string{
			`nics[0].peer: peer "ens2" is kind "existing": both ends of a cable are kind veth`,
			"nics[0].kind: a veth pair has both ends on one host: a two-host lab's NICs are kind existing, cabled to each other",
		}},
		{"no address", func(x string) string { return strings.Replace(x, ", addresses: [10.20.0.2/24]", "", 1) }, []string{
			"nics[1].addresses: a two-host lab's NIC needs an address: the other host's rocebed learns it from the scenario (give the one the NIC has, if it has one)",
			`endpoints.b.nic: nic "ens2" has no address: the endpoint needs one for its RoCE v2 GID`,
		}},
		{"endpoint on the other host's NIC", func(x string) string { return strings.Replace(x, "b: {nic: ens2", "b: {nic: eth1", 1) }, []string{
			`endpoints.b.nic: nic "eth1" is not on host b: endpoint b is on host b, so it names a NIC with host: b (host b has ens2)`,
		}},
		{"written-out routing", func(x string) string {
			return strings.Replace(x, "    policy_routing: {}", "    policy_routing: {}\n    neighbors: [{nic: eth1, ip: 10.20.0.2, mac: '02:00:00:00:00:02'}]\n    routes: [{to: 10.20.0.2, dev: eth1, table: 200}]", 1)
		}, []string{
			"fixes[0].neighbors: neighbors are for the two NICs of one host; between two hosts no fix is needed (policy_routing, sysctls and arp may still be given: each host applies its own part)",
			"fixes[0].routes: routes are for the two NICs of one host; between two hosts no fix is needed (policy_routing, sysctls and arp may still be given: each host applies its own part)",
		}},
		{"same address on both hosts", func(x string) string { return strings.Replace(x, "10.20.0.2/24", "10.20.0.1/24", 1) }, []string{
			"nics[1].addresses[0]: address 10.20.0.1 is already used at nics[0].addresses[0]: each address may be on one NIC only",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseTwoHost(t, tc.edit)
			require.Error(t, err)
			assert.Equal(t, tc.want, fieldErrs(err))
		})
	}
}

func TestForHost(t *testing.T) {
	s, err := parseTwoHost(t, nil)
	require.NoError(t, err)
	a, err := s.ForHost(HostA)
	require.NoError(t, err)
	b, err := s.ForHost(HostB)
	require.NoError(t, err)

	assert.Equal(t, HostA, a.Host)
	require.Len(t, a.NICs, 1)
	assert.Equal(t, "eth1", a.NICs[0].Name)
	require.Len(t, b.NICs, 1)
	assert.Equal(t, "ens2", b.NICs[0].Name)
	assert.Equal(t, []SideEndpoint{{"a", s.Endpoints.A}}, a.LocalEndpoints())
	assert.Equal(t, []SideEndpoint{{"b", s.Endpoints.B}}, b.LocalEndpoints())
	assert.Len(t, s.LocalEndpoints(), 2, "the whole lab has both")

	// Each host keeps the settings that name its own NIC or no NIC.
	assert.Equal(t, []string{"net.ipv4.conf.all.rp_filter=2", "net.ipv4.conf.eth1.accept_local=1"}, a.Fixes[1].Sysctls)
	assert.Empty(t, a.Fixes[1].ARP)
	assert.Equal(t, []string{"net.ipv4.conf.all.rp_filter=2", "net.ipv4.conf.ens2.accept_local=1"}, b.Fixes[1].Sysctls)
	assert.Len(t, b.Fixes[1].ARP, 1)
	assert.NotNil(t, a.Fixes[0].PolicyRouting, "planning makes host a's half of the policy routing")
	assert.Len(t, s.Fixes[1].Sysctls, 3, "ForHost does not change the whole lab")
	assert.Len(t, s.NICs, 2)

	// Both hosts' parts, and the whole, say they are the same lab.
	assert.Equal(t, s.Fingerprint(), a.Fingerprint())
	assert.Equal(t, s.Fingerprint(), b.Fingerprint())
	other, err := parseTwoHost(t, func(x string) string { return strings.Replace(x, "messages: 1,", "messages: 2,", 1) })
	require.NoError(t, err)
	assert.NotEqual(t, s.Fingerprint(), other.Fingerprint(), "a different lab has another fingerprint")

	again, err := a.ForHost(HostA)
	require.NoError(t, err)
	assert.Same(t, a, again)
	_, err = a.ForHost(HostB)
	assert.ErrorContains(t, err, "already host a's part")
	_, err = s.ForHost("")
	assert.ErrorContains(t, err, "spans two hosts: say which one this is with --side a or --side b")
	_, err = s.ForHost("c")
	assert.ErrorContains(t, err, `side "c": want a or b`)

	one, err := Parse("one.yaml", []byte(baseScenario), nil)
	require.NoError(t, err)
	same, err := one.ForHost("")
	require.NoError(t, err)
	assert.Same(t, one, same)
	_, err = one.ForHost(HostA)
	assert.ErrorContains(t, err, "is on one host (no NIC says host:): leave --side out")
}

// TestTwoHostDualStackAddresses: with both hosts' NICs called eth1, each endpoint's address of
// either family is its own host's — in the whole lab and in either host's part.
func TestTwoHostDualStackAddresses(t *testing.T) {
	s, err := Parse("dual.yaml", []byte(`version: 1
name: lab
nics:
  - {name: eth1, host: a, kind: existing, addresses: [10.20.0.1/24, "fd20::1/64"]}
  - {name: eth1, host: b, kind: existing, addresses: [10.20.0.2/24, "fd20::2/64"]}
endpoints:
  a: {nic: eth1, rxe: rxe0}
  b: {nic: eth1, rxe: rxe0}
traffic:
  - {name: rc, transport: rc, direction: both, messages: 1, size: 1}
expect:
  result: pass
`), nil)
	require.NoError(t, err)
	parts := []*Scenario{s}
	for _, h := range []HostName{HostA, HostB} {
		p, err := s.ForHost(h)
		require.NoError(t, err)
		parts = append(parts, p)
	}
	for _, p := range parts {
		for _, tc := range []struct {
			ep   Endpoint
			f    Family
			want string
		}{{p.Endpoints.A, FamilyIPv4, "10.20.0.1"}, {p.Endpoints.B, FamilyIPv4, "10.20.0.2"}, {p.Endpoints.A, FamilyIPv6, "fd20::1"}, {p.Endpoints.B, FamilyIPv6, "fd20::2"}} {
			a, ok := p.EndpointAddrIn(tc.ep, tc.f)
			require.True(t, ok, "host %q: endpoint on %s has no %s address", p.Host, tc.ep.Host, tc.f)
			assert.Equal(t, tc.want, a.String(), "host %q's view of endpoint %s in %s", p.Host, tc.ep.Host, tc.f)
		}
		assert.Equal(t, []Family{FamilyIPv4, FamilyIPv6}, p.Families(), "host %q", p.Host)
	}
}
