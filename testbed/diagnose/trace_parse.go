package diagnose

import (
	"regexp"
	"slices"
	"strings"
)

// Parsing what the skb:kfree_skb layer recorded; setting it up and reading it is in
// trace_linux.go.

// traceLines returns the first n event lines of a trace file (comments left out).
func traceLines(data string, n int) []string {
	var out []string
	for _, l := range strings.Split(data, "\n") {
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		out = append(out, strings.TrimSpace(l))
		if len(out) == n {
			break
		}
	}
	return out
}

// traceEntry matches one kfree_skb event: its protocol (ethertype, decimal), the freeing
// function's address or name, and the drop reason when the kernel prints one.
var traceEntry = regexp.MustCompile(`kfree_skb:.*?protocol=(\d+)\s+location=(\S+)(?:\s+reason:\s*(\S+))?`)

// protoName names an ethertype as the event prints it (host order, decimal).
func protoName(p string) TraceProtocol {
	switch p {
	case "2048":
		return TraceIPv4
	case "2054":
		return TraceARP
	}
	return TraceProtocol("ethertype " + p)
}

// groupKfreeLines groups recorded kfree_skb lines by protocol, freeing function (named by
// resolve) and reason, largest group first.
func groupKfreeLines(data string, resolve func(string) string) []TraceDrop {
	type key struct {
		proto            TraceProtocol
		location, reason string
	}
	idx := map[key]int{}
	var out []TraceDrop
	for _, l := range strings.Split(data, "\n") {
		m := traceEntry.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		k := key{protoName(m[1]), resolve(m[2]), m[3]}
		if i, ok := idx[k]; ok {
			out[i].Count++
			continue
		}
		idx[k] = len(out)
		out = append(out, TraceDrop{Protocol: k.proto, Location: k.location, Reason: k.reason, Count: 1})
	}
	slices.SortStableFunc(out, func(a, b TraceDrop) int { return b.Count - a.Count })
	return out
}
