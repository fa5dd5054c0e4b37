package testenv

import (
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// section returns the lines of the dump section whose head ends with ": command", for opts.
func section(t *testing.T, dump, opts, command string) string {
	t.Helper()
	m := regexp.MustCompile(`(?s)### ip [^\n]*` + regexp.QuoteMeta(opts+": "+command) + "\n(.*?)(\n###|$)").FindStringSubmatch(dump)
	require.NotNil(t, m, "no %q section in\n%s", command, dump)
	return m[1]
}

// TestDumpSeesRenames: dumps reuse one ip process per namespace, and iproute2 never forgets the
// name it first printed for an ifindex; after a rename the next dump must still print the
// link's new name everywhere, as a fresh `ip` would.
func TestDumpSeesRenames(t *testing.T) {
	KernelDependent(t)
	ns := NewNetNS(t)
	upVethPair(t, ns, nil)
	before := ns.Dump(t)
	assert.Contains(t, section(t, before, "-d", "route show table all"), "dev vA ")

	a, err := ns.NL.LinkByName("vA")
	require.NoError(t, err)
	require.NoError(t, ns.NL.LinkSetDown(a))
	require.NoError(t, ns.NL.LinkSetName(a, "vX"))
	require.NoError(t, ns.NL.LinkSetUp(a))
	after := ns.Dump(t)
	for _, cmd := range []string{"link show", "addr show", "route show table all"} {
		s := section(t, after, "-d", cmd)
		assert.Contains(t, s, "vX", "%s after the rename", cmd)
		assert.NotContains(t, s, "vA", "%s after the rename", cmd)
	}
}

// TestDumpSections: every command of a dump has its section, the two families' routes are in
// one, IPv6 rules have their own, and a command iproute2 refuses fails the dump's session
// call instead of passing for empty output, and the next command still runs.
func TestDumpSections(t *testing.T) {
	KernelDependent(t)
	ns := NewNetNS(t)
	upVethPair(t, ns, nil)
	d := ns.Dump(t)
	routes := section(t, d, "-d", "route show table all")
	assert.Contains(t, routes, "10.10.0.0/24 dev vA")
	assert.Contains(t, routes, "fe80::/64 dev vA")
	assert.Contains(t, section(t, d, "-d", "rule show"), "from all lookup local")
	v6rules := section(t, d, "-d -6", "rule show")
	assert.Contains(t, v6rules, "from all lookup main")
	assert.True(t, strings.Contains(d, "### sysctl\n"), "sysctl section")

	args := []string{"-n", ns.Name, "-d"}
	_, err := ns.ip.run(args, "addr show dev vNOSUCH") // ip says so and goes on
	require.Error(t, err)
	assert.Contains(t, err.Error(), `Device "vNOSUCH" does not exist`)
	_, err = ns.ip.run(args, "route show table nosuchtable") // ip says so and exits
	require.Error(t, err)
	assert.Contains(t, err.Error(), "nosuchtable")
	out, err := ns.ip.run(args, "link show dev lo")
	require.NoError(t, err, "a later command runs (in a new session when ip exited)")
	assert.Contains(t, out, "1: lo: ")
}
