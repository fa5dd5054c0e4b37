package testenv

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestLineDiff(t *testing.T) {
	a := "### addr\n1: lo\n2: vA\n    inet6 fe80::1/64 scope link tentative\n### route\nfe80::/64 dev vA\n"
	b := "### addr\n1: lo\n2: vA\n    inet6 fe80::1/64 scope link\n### route\nfe80::/64 dev vA\nlocal fe80::1 dev vA table local\n"
	assert.Equal(t, "### addr\n-     inet6 fe80::1/64 scope link tentative\n+     inet6 fe80::1/64 scope link\n### route\n+ local fe80::1 dev vA table local\n", LineDiff(a, b))
	assert.Empty(t, LineDiff(a, a))
}
