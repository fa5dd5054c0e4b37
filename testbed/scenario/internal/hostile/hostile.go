// Package hostile makes scenario files of hostile shapes, each about as large as a scenario
// may be: deep nesting of every kind, floods of keys, items, errors, aliases, tags,
// comments and parameter references, and files just over the size limit. The parser's tests,
// its fuzzer's seeds and the resource report (testbed/scenario/hostile-report.sh) use them.
package hostile

import (
	"fmt"
	"strings"
)

// Size is the size the shapes aim at: the largest scenario rocebed reads.
const Size = 1 << 20

// Shape is one hostile file.
type Shape struct {
	Name string
	Data []byte
}

// fill repeats piece until the text reaches size bytes (cut there), after head and before tail.
func fill(size int, head string, piece func(i int) string, tail string) []byte {
	var b strings.Builder
	b.WriteString(head)
	for i := 0; b.Len() < size-len(tail); i++ {
		b.WriteString(piece(i))
	}
	s := b.String()
	if len(s) > size-len(tail) {
		s = s[:size-len(tail)]
	}
	return []byte(s + tail)
}

func same(s string) func(int) string { return func(int) string { return s } }

// underTokens repeats piece n times after head and pads the text to size with one long
// comment: a shape that stays under the parser's token bound, so that the stages after the
// first pass get the whole file.
func underTokens(size int, head string, piece func(i int) string, n int) []byte {
	var b strings.Builder
	b.WriteString(head)
	for i := 0; i < n; i++ {
		b.WriteString(piece(i))
	}
	if pad := size - b.Len() - 2; pad > 0 {
		b.WriteString("\n#" + strings.Repeat("a", pad-1) + "\n")
	}
	return []byte(b.String())
}

// Tokens is the parser's bound on YAML tokens (scenario.MaxTokens) that the second group of
// shapes stays just under.
const Tokens = 20_000

// Shapes returns every shape at the given size (Size for the report, less for quick tests).
func Shapes(size int) []Shape {
	// n scales a piece count written for a 50 000-token bound to Tokens.
	n := func(count int) int { return count * Tokens / 50_000 }
	valid := "version: 1\nname: hostile\nnics:\n  - {name: vA, kind: veth, peer: vB, addresses: [10.10.0.1/24]}\n  - {name: vB, kind: veth, peer: vA, addresses: [10.10.0.2/24]}\nendpoints:\n  a: {nic: vA, rxe: rxe0}\n  b: {nic: vB, rxe: rxe1}\nexpect: {result: pass}\n"
	// nicsHead is a whole scenario but for its NICs, which follow: the validator sees them all.
	nicsHead := "version: 1\nname: x\nendpoints:\n  a: {nic: n0, rxe: r0}\n  b: {nic: n1, rxe: r1}\nexpect: {result: pass}\nnics:\n"
	indent := func(i int) string { return strings.Repeat(" ", i) + "a:\n" }
	return []Shape{
		{"nested-flow-sequences", fill(size, "", same("["), "")},
		{"nested-flow-mappings", fill(size, "", same("{a: "), "")},
		{"nested-flow-quoted-brackets", fill(size, "", same(`["]", `), "")},
		{"nested-block-sequences-one-line", fill(size, "", same("- "), "x\n")},
		{"nested-complex-keys", fill(size, "", same("? "), "x\n")},
		{"nested-block-mappings-by-indent", fill(size, "", indent, "")},
		{"nested-mixed", fill(size, "", same("- [ - { a: "), "")},
		{"unknown-keys", fill(size, "", func(i int) string { return fmt.Sprintf("k%d: 1\n", i) }, "")},
		{"duplicate-keys", fill(size, "", same("name: a\n"), "")},
		{"long-unknown-key", fill(size, "", same("k"), ": 1\n")},
		{"long-plain-scalar", fill(size, "name: ", same("a"), "\n")},
		{"long-quoted-escapes", fill(size, `name: "`, same(`\x1b`), "\"\n")},
		{"long-block-scalar", fill(size, "description: |\n", same("  text text text text\n"), "")},
		{"many-nics", fill(size, "version: 1\nname: x\nnics:\n", func(i int) string { return fmt.Sprintf("  - {name: n%d, kind: veth, peer: m%d}\n", i, i) }, "")},
		{"many-bad-nics", fill(size, "nics:\n", func(i int) string { return "  - {name: \"bad/name\", kind: bogus, peer: nowhere, mtu: 1}\n" }, "")},
		{"many-fixes", fill(size, valid+"fixes:\n", func(i int) string {
			return fmt.Sprintf("  - {name: f%d, sysctls: [net.ipv4.conf.all.rp_filter=2]}\n", i)
		}, "")},
		{"many-traffic", fill(size, valid+"traffic:\n", func(i int) string {
			return fmt.Sprintf("  - {name: t%d, transport: rc, direction: both, messages: 1, size: 1}\n", i)
		}, "")},
		{"anchors-and-aliases", fill(size, "a: &a x\n", func(i int) string { return fmt.Sprintf("b%d: *a\n", i) }, "")},
		{"tags", fill(size, "name: ", same("!!str "), "x\n")},
		{"comments", fill(size, "", same("# comment\n"), "")},
		{"blank-lines", fill(size, "", same("\n"), "")},
		{"spaces", fill(size, "", same(" "), "")},
		{"documents", fill(size, "", same("---\n"), "")},
		{"flow-commas", fill(size, "nics: [", same(","), "]\n")},
		{"utf8-scalar", fill(size, "description: ", same("é"), "\n")},
		{"param-expansion", fill(size, "version: 1\nname: x\nparams:\n  - {name: p, default: \""+strings.Repeat("p", 4096)+"\"}\nnics:\n  - {name: vA, kind: veth, peer: vB, addresses: [10.10.0.1/24]}\n  - {name: vB, kind: veth, peer: vA, addresses: [10.10.0.2/24]}\nendpoints:\n  a: {nic: vA, rxe: rxe0}\n  b: {nic: vB, rxe: rxe1}\nexpect: {result: pass}\nfixes:\n  - name: f\n    sysctls:\n", same("      - \"net.ipv4.conf.all.rp_filter=${p}${p}${p}${p}${p}${p}${p}${p}\"\n"), "")},
		{"control-characters", fill(size, "name: ", same("\x1b[2J"), "\n")},
		{"one-byte-too-many", fill(size+1, "", same("#"), "")},

		// Under the token bound: these reach the YAML library and the decoder.
		{"deep-flow-under-token-bound", underTokens(size, "", same("["), n(24000))},
		{"deep-flow-quoted-under-token-bound", underTokens(size, "", same(`["", `), n(6000))},
		{"deep-block-under-token-bound", underTokens(size, "", same("- "), n(24000))},
		{"deep-indent-under-token-bound", underTokens(size, "", indent, n(1400))},
		{"unknown-keys-under-token-bound", underTokens(size, "", func(i int) string { return fmt.Sprintf("k%d: 1\n", i) }, n(12000))},
		{"duplicate-keys-under-token-bound", underTokens(size, "", same("name: a\n"), n(12000))},
		{"long-keys-under-token-bound", underTokens(size, "", func(i int) string { return fmt.Sprintf("%s%d: 1\n", strings.Repeat("k", 60), i) }, n(12000))},
		{"many-nics-under-token-bound", underTokens(size, nicsHead, func(i int) string { return fmt.Sprintf("  - {name: n%d, kind: veth, peer: m%d}\n", i, i) }, n(2000))},
		{"many-bad-nics-under-token-bound", underTokens(size, nicsHead, same("  - {name: bad/name, kind: bogus, peer: nowhere, mtu: 1}\n"), n(1300))},
		{"many-addresses-under-token-bound", underTokens(size, valid+"fixes:\n  - name: f\n    routes:\n", func(i int) string { return fmt.Sprintf("      - {to: 10.%d.%d.0/24, dev: vZ}\n", i/256, i%256) }, n(2500))},
		{"aliases-under-token-bound", underTokens(size, "a: &a [x, y, z]\n", func(i int) string { return fmt.Sprintf("b%d: *a\n", i) }, n(7500))},
		{"param-expansion-under-token-bound", underTokens(size, "version: 1\nname: x\nparams:\n  - {name: p, default: \""+strings.Repeat("p", 60000)+"\"}\nnics:\n  - {name: vA, kind: veth, peer: vB, addresses: [10.10.0.1/24]}\n  - {name: vB, kind: veth, peer: vA, addresses: [10.10.0.2/24]}\nendpoints:\n  a: {nic: vA, rxe: rxe0}\n  b: {nic: vB, rxe: rxe1}\nexpect: {result: pass}\nfixes:\n  - name: f\n    sysctls:\n", same("      - \"net.ipv4.conf.all.rp_filter=${p}${p}${p}${p}${p}${p}${p}${p}\"\n"), n(500))},
	}
}
