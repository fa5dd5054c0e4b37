package scenario

import (
	"fmt"
	"net/netip"

	"github.com/goccy/go-yaml/ast"
)

// unquotedIPv6Hint explains a mapping found where a string is wanted when it is an unquoted
// IPv6 address: inside a flow collection ({ } or [ ]) YAML ends a key at the first ':' and
// reads `fd00::1/64` as the mapping {fd00: ":1/64"}. When the mapping's one key and value join
// back into an IPv6 address or prefix, the hint says to quote it; otherwise it is "".
func unquotedIPv6Hint(n ast.Node) string {
	if m, ok := n.(*ast.MappingNode); ok && len(m.Values) == 1 {
		n = m.Values[0]
	}
	kv, ok := n.(*ast.MappingValueNode)
	if !ok || kv.Key == nil || kv.Value == nil || kv.Key.GetToken() == nil || kv.Value.GetToken() == nil {
		return ""
	}
	text := kv.Key.GetToken().Value + ":" + kv.Value.GetToken().Value
	if p, err := netip.ParsePrefix(text); err != nil || !p.Addr().Is6() {
		if a, err := netip.ParseAddr(text); err != nil || !a.Is6() {
			return ""
		}
	}
	return fmt.Sprintf(": the IPv6 address %s, unquoted inside [ ] or { }, reads as a mapping; quote it: \"%s\"", text, text)
}
