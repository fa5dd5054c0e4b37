package scenario

// The hostile-input suite of the scenario package (issue 10): parser bombs of every shape,
// files that are not files, sysctl key forms the validator and the writer must read alike,
// and names and values the kernel would refuse or rewrite.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rocebed/rocebed/sysctl"
	"github.com/rocebed/rocebed/testbed/scenario/internal/hostile"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// flowScenario is a valid scenario with NICs %[1]s and %[2]s and a sysctl %[3]s, in flow style.
const flowScenario = `version: 1
name: lab
nics:
  - {name: %[1]q, kind: veth, peer: %[2]q, addresses: [10.10.0.1/24]}
  - {name: %[2]q, kind: veth, peer: %[1]q, addresses: [10.10.0.2/24]}
endpoints:
  a: {nic: %[1]q, rxe: rxe0}
  b: {nic: %[2]q, rxe: rxe1}
fixes:
  - name: knobs
    sysctls: [%[3]q]
expect: {result: pass}
`

func flow(a, b, sysctlKV string) string { return fmt.Sprintf(flowScenario, a, b, sysctlKV) }

// requireFieldErrors checks that err is made of FieldErrors that point into file.
func requireFieldErrors(t *testing.T, err error, file string) {
	t.Helper()
	require.Error(t, err)
	var walk func(error)
	walk = func(e error) {
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
			return
		}
		var fe *FieldError
		require.True(t, errors.As(e, &fe), "leaf error %q (%T) is not a *FieldError", e, e)
		require.Equal(t, file, fe.File)
		require.GreaterOrEqual(t, fe.Pos.Line, 1)
		require.GreaterOrEqual(t, fe.Pos.Column, 1)
	}
	walk(err)
}

// TestParseRefusesHostileShapes (case 4): every hostile shape of 1 MiB — nesting of every
// kind, floods of keys, items, aliases, tags and parameter references, a file one byte too
// big — is refused with errors that point into the file, and at most MaxErrors+1 of them.
// (What each costs is measured by hostile-report.sh, not here: a test does not time.)
func TestParseRefusesHostileShapes(t *testing.T) {
	for _, s := range hostile.Shapes(hostile.Size) {
		t.Run(s.Name, func(t *testing.T) {
			_, err := Parse(s.Name+".yaml", s.Data, nil)
			requireFieldErrors(t, err, s.Name+".yaml")
			n := strings.Count(err.Error(), "\n") + 1
			assert.LessOrEqual(t, n, MaxErrors+1)
		})
	}
}

// TestParseNestingBomb (case 4): the issue's own bombs. 100 000 nested '[' in 200 KB (15 GB
// and 64 s before) and 1 000 000 (an out-of-memory crash) are refused for their size or depth
// before the YAML library builds anything.
func TestParseNestingBomb(t *testing.T) {
	for _, n := range []int{100_000, 1_000_000} {
		_, err := Parse("bomb.yaml", []byte(strings.Repeat("[", n)), nil)
		requireFieldErrors(t, err, "bomb.yaml")
		assert.Regexp(t, `YAML tokens|nest more than|at most`, err.Error())
	}
	// Just within the token bound, the nesting is what is refused.
	_, err := Parse("deep.yaml", []byte("a: "+strings.Repeat("[", MaxDepth+1)), nil)
	requireFieldErrors(t, err, "deep.yaml")
	assert.Contains(t, err.Error(), "nest more than")
	// 200 000 unknown keys: refused by the token bound, not reported one by one.
	var b strings.Builder
	for i := range 200_000 {
		b.WriteString("k")
		b.WriteString(strings.Repeat("x", i%7))
		b.WriteString(": 1\n")
	}
	_, err = Parse("keys.yaml", []byte(b.String()), nil)
	requireFieldErrors(t, err, "keys.yaml")
}

// readWithin runs Read(ref) and fails the test if it does not return within d: a read that
// blocks (a FIFO) or never ends (/dev/zero) is the bug.
func readWithin(t *testing.T, ref string, d time.Duration) error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, _, err := Read(ref)
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		t.Fatalf("Read(%q) did not return within %s", ref, d)
		return nil
	}
}

// TestReadOnlyRegularFiles (case 4): a scenario is read from a regular file of at most 1 MiB.
// A FIFO with no writer, /dev/zero, a directory and a file one byte too big are refused at
// once, without blocking and without reading more than the limit.
func TestReadOnlyRegularFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "scenario.yaml")
	require.NoError(t, syscall.Mkfifo(fifo, 0o600))
	big := filepath.Join(dir, "big.yaml")
	require.NoError(t, os.WriteFile(big, make([]byte, MaxSize+1), 0o644))
	for _, ref := range []string{fifo, "/dev/zero", dir + "/", big} {
		err := readWithin(t, ref, 5*time.Second)
		require.Error(t, err, ref)
		assert.Regexp(t, `not a regular file|at most`, err.Error(), ref)
	}
	ok := filepath.Join(dir, "ok.yaml")
	require.NoError(t, os.WriteFile(ok, []byte(baseScenario), 0o644))
	require.NoError(t, readWithin(t, ok, 5*time.Second))
}

// TestSysctlKeysReadOneWay (case 8): the validator and the writer read a key alike. The
// interface of net.ipv4.conf.vA.100.rp_filter is "vA.100" for both — so it is refused unless
// vA.100 is declared — and net.ipv4.conf.v/A.rp_filter, the spelling sysctl(8) uses for a NIC
// named v.A, is accepted and written to v.A.
func TestSysctlKeysReadOneWay(t *testing.T) {
	for _, tc := range []struct {
		nic, key string
		ok       bool
		iface    string // what the writer writes to
	}{
		{"vA", "net.ipv4.conf.vA.100.rp_filter", false, "vA.100"},
		{"vA.100", "net.ipv4.conf.vA.100.rp_filter", true, "vA.100"},
		{"vA.100", "net.ipv4.conf.vA/100.rp_filter", true, "vA.100"},
		{"v.A", "net.ipv4.conf.v/A.rp_filter", true, "v.A"},
		{"v.A", "net.ipv4.conf.v.A.rp_filter", true, "v.A"},
		{"v.A", "net.ipv6.neigh.v/A.retrans_time_ms", true, "v.A"},
		{"vA", "net.ipv4.conf.vA/100.rp_filter", false, "vA.100"},
		{"vA", "net.ipv4.conf.//.rp_filter", false, ""},
	} {
		s, err := Parse("t.yaml", []byte(flow(tc.nic, "vB", tc.key+"=2")), nil)
		if !tc.ok {
			require.Error(t, err, "%s with nic %s", tc.key, tc.nic)
			continue
		}
		require.NoError(t, err, "%s with nic %s", tc.key, tc.nic)
		// The key as planned (canonical) is the one the writer writes to the NIC's file.
		var planned string
		for _, f := range s.Fixes {
			for _, kv := range f.Sysctls {
				planned, _, _ = strings.Cut(kv, "=")
			}
		}
		assert.Equal(t, tc.iface, sysctl.Interface(planned), tc.key)
		p, err := sysctl.Sysctl{Root: "/proc/sys"}.Path(planned)
		require.NoError(t, err)
		assert.Contains(t, p, "/"+tc.iface+"/", tc.key)
	}
}

// TestNamesTheKernelWouldChangeAreRefused (case 11): the validator refuses what would fail or
// change later — veth ends with different MTUs (both would get one), interface names the
// kernel refuses or rewrites (a no-break space, NUL, "%d"), and YAML tags it would otherwise
// drop without a word.
func TestNamesTheKernelWouldChangeAreRefused(t *testing.T) {
	base := flow("vA", "vB", "net.ipv4.conf.all.rp_filter=2")
	for _, tc := range []struct {
		name, from, to, want string
	}{
		{"veth mtus differ", `{name: "vA", kind: veth, peer: "vB", addresses`, `{name: "vA", kind: veth, peer: "vB", mtu: 9000, addresses`, ""},
		{"no-break space", `{name: "vA", kind`, `{name: "v\u00a0A", kind`, "non-ASCII byte 0xc2"},
		{"nul", `{name: "vA", kind`, `{name: "v\0A", kind`, `contains '\x00'`},
		{"percent", `{name: "vA", kind`, `{name: "v%dA", kind`, `contains '%'`},
		{"tag int", "version: 1", "version: !!int 1", `tag "!!int" is not supported`},
		{"custom tag", "name: lab", "name: !custom lab", `tag "!custom" is not supported`},
		{"binary tag", "name: lab", "name: !!binary bGFi", `tag "!!binary" is not supported`},
		{"lo as a NIC", `{name: "vB", kind: veth, peer: "vA",`, `{name: "lo", kind: existing,`, "lo cannot be a lab NIC"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text := base
			if tc.name == "veth mtus differ" {
				text = strings.Replace(text, `{name: "vB", kind: veth, peer: "vA", addresses`, `{name: "vB", kind: veth, peer: "vA", mtu: 1500, addresses`, 1)
				tc.want = `mtu 1500 differs from peer "vA"'s mtu 9000`
			}
			require.Contains(t, text, tc.from)
			_, err := Parse("t.yaml", []byte(strings.Replace(text, tc.from, tc.to, 1)), nil)
			requireFieldErrors(t, err, "t.yaml")
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	// A name the kernel keeps as written still is one, odd as it may look.
	_, err := Parse("t.yaml", []byte(flow("v_A-1.x+", "v;B", "net.ipv4.conf.v_A-1.x+.rp_filter=2")), nil)
	require.NoError(t, err)
}
