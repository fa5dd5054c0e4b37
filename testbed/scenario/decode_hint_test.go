package scenario

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestUnquotedIPv6Hint: a mapping where a string is wanted gets the quoting hint only when it
// is an IPv6 address YAML split at its first ':'.
func TestUnquotedIPv6Hint(t *testing.T) {
	for _, c := range []struct{ item, want string }{
		{`fd00::1/64`, `nics[0].addresses[0]: want string, got mapping: the IPv6 address fd00::1/64, unquoted inside [ ] or { }, reads as a mapping; quote it: "fd00::1/64"`},
		{`fe80::1`, `nics[0].addresses[0]: want string, got mapping: the IPv6 address fe80::1, unquoted inside [ ] or { }, reads as a mapping; quote it: "fe80::1"`},
		{`{a: b}`, `nics[0].addresses[0]: want string, got mapping`},
		{`x: y`, `nics[0].addresses[0]: want string, got mapping`},
	} {
		src := "version: 1\nname: lab\nnics:\n  - {name: vA, kind: veth, peer: vB, addresses: [" + c.item + "]}\n"
		_, err := Parse("hint.yaml", []byte(src), nil)
		require.Error(t, err, c.item)
		fes := fieldErrors(t, err)
		require.NotEmpty(t, fes, c.item)
		assert.Equal(t, c.want, fes[0].Path+": "+fes[0].Msg, c.item)
	}
}
