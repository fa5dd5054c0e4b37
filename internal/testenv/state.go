package testenv

import (
	"fmt"
	"strings"
	"testing"
)

// SameState fails the test (without stopping it) when two dumps differ, printing only the lines
// that differ: a dump is hundreds of lines, and the difference is what matters.
func SameState(t testing.TB, want, got string, msgAndArgs ...any) bool {
	t.Helper()
	if want == got {
		return true
	}
	msg := "network state differs"
	if len(msgAndArgs) > 0 {
		if f, ok := msgAndArgs[0].(string); ok {
			msg = fmt.Sprintf(f, msgAndArgs[1:]...)
		}
	}
	t.Errorf("%s (- before, + now):\n%s", msg, LineDiff(want, got))
	return false
}

// LineDiff returns the lines only in a ("- ") and only in b ("+ "), in order, each with the
// nearest "### " section header above it, from a longest-common-subsequence alignment.
func LineDiff(a, b string) string {
	x, y := strings.Split(a, "\n"), strings.Split(b, "\n")
	// lcs[i][j] is the LCS length of x[i:] and y[j:].
	lcs := make([][]int32, len(x)+1)
	for i := range lcs {
		lcs[i] = make([]int32, len(y)+1)
	}
	for i := len(x) - 1; i >= 0; i-- {
		for j := len(y) - 1; j >= 0; j-- {
			if x[i] == y[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var out strings.Builder
	section, shown := "", ""
	emit := func(sign, line string) {
		if section != shown {
			out.WriteString(section + "\n")
			shown = section
		}
		out.WriteString(sign + line + "\n")
	}
	i, j := 0, 0
	for i < len(x) || j < len(y) {
		switch {
		case i < len(x) && j < len(y) && x[i] == y[j]:
			if strings.HasPrefix(x[i], "### ") {
				section = x[i]
			}
			i, j = i+1, j+1
		case j == len(y) || (i < len(x) && lcs[i+1][j] >= lcs[i][j+1]):
			emit("- ", x[i])
			i++
		default:
			emit("+ ", y[j])
			j++
		}
	}
	return out.String()
}
