package plan

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestQuoteIsWhatAShellReads (case 10): every string, quoted, is one word a shell reads back
// exactly, and the quoted form holds no control character for a terminal to act on.
func TestQuoteIsWhatAShellReads(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("needs bash (for $'...')")
	}
	for _, s := range []string{"", "vA", "eth0.100", "v;rm", "$(reboot)", "a'b", "a b", "`id`", "~root", "x*", "-n",
		"a\\b", "\x1b]0;owned\x07", "é", "\x9b31m", "v%dA", "\"q\"", "a\nb"} {
		q := Quote(s)
		for i := 0; i < len(q); i++ {
			require.False(t, q[i] < 0x20 || q[i] >= 0x7f, "Quote(%q) = %q holds byte %#x", s, q, q[i])
		}
		cmd := exec.Command("bash", "--norc", "--noprofile", "-c", `printf '%s\0' `+q)
		cmd.Env = []string{"PATH=/nonexistent"}
		cmd.Dir = t.TempDir()
		out, err := cmd.Output()
		require.NoError(t, err, "Quote(%q) = %s", s, q)
		assert.Equal(t, s+"\x00", string(out), "Quote(%q) = %s", s, q)
	}
	assert.Equal(t, "vA", Quote("vA"), "a plain name stays as it is")
}

// TestSameStepIgnoresOnlyWhatPrepareFills (case 1): a begun step matches its planned step
// whatever old values and ifindexes Prepare read, and nothing else.
func TestSameStepIgnoresOnlyWhatPrepareFills(t *testing.T) {
	planned := Step{Fix: "f", Change: &Sysctl{Key: "net.ipv4.conf.all.rp_filter", Value: "2", Old: "0"}}
	assert.True(t, SameStep(planned, Step{Fix: "f", Change: &Sysctl{Key: "net.ipv4.conf.all.rp_filter", Value: "2", Old: "1", Index: 3}}))
	assert.False(t, SameStep(planned, Step{Fix: "f", Change: &Sysctl{Key: "net.ipv4.conf.all.rp_filter", Value: "0", Old: "1"}}))
	assert.False(t, SameStep(planned, Step{Fix: "g", Change: &Sysctl{Key: "net.ipv4.conf.all.rp_filter", Value: "2"}}))
	assert.False(t, SameStep(planned, Step{Fix: "f", Change: &Sysctl{Key: "kernel.hostname", Value: "2"}}))
	veth := Step{Change: &Veth{Link: "vA", Peer: "vB"}}
	assert.True(t, SameStep(veth, Step{Change: &Veth{Link: "vA", Peer: "vB", Index: 4242}}))
	assert.False(t, SameStep(veth, Step{Change: &Veth{Link: "victim0", Peer: "vB", Index: 4242}}))
	assert.False(t, SameStep(veth, Step{Change: &LinkUp{Link: "vA"}}))
	neigh := Step{Change: &Neighbor{Link: "vA", Addr: "10.10.0.2", MAC: "peer"}}
	assert.True(t, SameStep(neigh, Step{Change: &Neighbor{Link: "vA", Addr: "10.10.0.2", MAC: "02:00:00:00:00:02", Old: "02:00:00:00:00:09", OldState: "stale"}}))
	assert.False(t, SameStep(neigh, Step{Change: &Neighbor{Link: "vA", Addr: "10.10.0.3", MAC: "02:00:00:00:00:02"}}))
}

// TestCheckRefusesWhatUpNeverWrites (case 1): steps a journal could be made to say but up never
// writes are refused by their own Check.
func TestCheckRefusesWhatUpNeverWrites(t *testing.T) {
	for _, c := range []Change{
		&Sysctl{Key: "kernel.hostname", Value: "x"},
		&Sysctl{Key: "net.ipv4.conf.all.rp_filter", Value: "1\n2"},
		&Sysctl{Key: "net.ipv4.conf.../../rp_filter", Value: "1"},
		&Veth{Link: "v%dA", Peer: "vB"},
		&Veth{Link: "a/b", Peer: "vB"},
		&Addr{Link: "vA", Addr: "not an address"},
		&MTU{Link: "vA", MTU: 1, Old: "1500"},
		&RuleAdd{Rule: &RuleSpec{Family: 99, Priority: 1, Table: 1}},
		&RuleAdd{},
		&Route{Route: &RouteSpec{To: "10.0.0.0/8", Dev: "x y"}},
		&Neighbor{Link: "vA", Addr: "10.0.0.1", MAC: "zz"},
		&Neighbor{Link: "vA", Addr: "10.0.0.1", MAC: "peer", Old: "peer"},
		&RXE{Link: "vA", RXE: "../rxe"},
	} {
		assert.Error(t, c.Check(), "%s %+v", c.Kind(), c)
	}
	assert.NoError(t, (&Sysctl{Key: "net.ipv4.tcp_rmem", Value: "4096 87380 6291456", Old: "4096\t131072\t6291456"}).Check())
	assert.True(t, strings.HasPrefix((&Sysctl{Key: "net.ipv4.conf.all.rp_filter", Value: "$(reboot)"}).Command(), "sysctl -w '"))
}
