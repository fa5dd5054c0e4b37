package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rocebed/rocebed/testbed/runner"
	"github.com/rocebed/rocebed/testbed/traffic"
	"github.com/rocebed/rocebed/vm"
	"github.com/rocebed/rocebed/vm/pairtest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The two-host tests boot two QEMU guests cabled to each other, one host each, from this host
// (a pair cannot run inside the one guest of `vm test`). `make test-vm` runs them with
// ROCEBED_VM_TESTS=1; under ROCEBED_REQUIRE_RXE=1 they never skip.

func requirePair(t *testing.T) {
	t.Helper()
	if os.Getenv("ROCEBED_VM_TESTS") != "1" && os.Getenv("ROCEBED_REQUIRE_RXE") != "1" {
		t.Skip("boots two QEMU guests: run `make test-vm` (or set ROCEBED_VM_TESTS=1 after `rocebed vm prepare`)")
	}
	if r := rocebed(t, nil, "vm", "prepare"); r.code != 0 {
		t.Fatalf("vm prepare: exit %d: %s", r.code, r.stderr)
	}
}

// requireQEMUGone checks that a guest's QEMU no longer exists.
func requireQEMUGone(t *testing.T, res *vm.Result) {
	t.Helper()
	if res == nil || res.QEMUPid <= 0 {
		t.Error("no QEMU pid recorded")
		return
	}
	if err := syscall.Kill(res.QEMUPid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("QEMU pid %d still exists (kill 0: %v)", res.QEMUPid, err)
	}
}

// TestVMPairRunTwoHosts: `rocebed vm run --two-hosts two-hosts` runs the shipped two-host lab in
// two guests, one host each: both hosts pass with every completion of both, give the same
// verdict on the same completions, and each says the other restored itself.
func TestVMPairRunTwoHosts(t *testing.T) {
	requirePair(t)
	r := rocebed(t, nil, "vm", "run", "--two-hosts", "two-hosts", "--timeout", "5m", "--json")
	require.Equal(t, 0, r.code, "stderr:\n%s", r.stderr)
	var doc map[string]struct {
		Host    string             `json:"host"`
		Traffic *traffic.Report    `json:"traffic"`
		Peer    *runner.PeerStatus `json:"peer"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &doc), r.stdout)
	a, b := doc["a"], doc["b"]
	require.NotNil(t, a.Traffic, r.stdout)
	require.NotNil(t, b.Traffic, r.stdout)
	assert.Equal(t, "a", a.Host)
	assert.Equal(t, "b", b.Host)
	assert.True(t, a.Traffic.Pass, a.Traffic.Verdict)
	assert.Equal(t, a.Traffic.Verdict, b.Traffic.Verdict, "one verdict on both hosts")
	require.Len(t, a.Traffic.Batches, 4)
	require.Len(t, b.Traffic.Batches, 4)
	for i, ba := range a.Traffic.Batches {
		bb := b.Traffic.Batches[i]
		assert.Equal(t, ba.Verdict, bb.Verdict, "%s: the same verdict on both hosts", ba.Name())
		assert.Equal(t, ba.Completions, bb.Completions, "%s: the same completions on both hosts", ba.Name())
		assert.Len(t, ba.Completions, 2*ba.Messages, "%s: a completion per message on each host", ba.Name())
		t.Logf("%s: %s", ba.Name(), ba.Verdict)
	}
	for _, h := range []struct {
		name string
		p    *runner.PeerStatus
	}{{"a", a.Peer}, {"b", b.Peer}} {
		require.NotNil(t, h.p)
		require.NotNil(t, h.p.Restored, h.p.Summary())
		assert.True(t, *h.p.Restored, "host %s hears: %s", h.name, h.p.Summary())
	}
}

// TestVMPairSides runs vm/pairtest's TestPairSide in both guests of a pair: the shipped
// two-hosts lab, the same lab with the same-host policy-routing fix (harmless between two
// hosts), and host b's rocebed killed -9 in the middle of a batch, after which host a gives a
// peer-lost verdict within the batch's deadline and `rocebed down` restores host b. Each guest
// checks its host is byte-for-byte as before every lab.
func TestVMPairSides(t *testing.T) {
	requirePair(t)
	ctx := context.Background()
	var works []string
	for range 2 {
		w, err := os.MkdirTemp("", "rocebed-vmpair-")
		require.NoError(t, err)
		t.Cleanup(func() { os.RemoveAll(w) })
		works = append(works, w)
	}
	// The guest test and rocebed, in each guest's work share (the guests cannot see /tmp).
	testBin := filepath.Join(works[0], "pairtest.test")
	build := exec.Command("go", "test", "-c", "-o", testBin, "../../vm/pairtest")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "go test -c vm/pairtest: %s", out)
	for _, w := range works {
		for _, f := range [][2]string{{testBin, "pairtest.test"}, {rocebedBin, "rocebed"}} {
			if dst := filepath.Join(w, f[1]); dst != f[0] {
				require.NoError(t, copyFile(f[0], dst))
			}
		}
	}
	var logMu sync.Mutex
	var outA, outB bytes.Buffer
	opts := func(work string, out io.Writer) vm.ExecOptions {
		return vm.ExecOptions{
			WorkDir: work, Timeout: 10 * time.Minute, Stdout: out, Stderr: out,
			Env:  []string{pairtest.EnvRocebed + "=" + filepath.Join(work, "rocebed"), "ROCEBED_REQUIRE_RXE=1", "ROCEBED_REQUIRE_ROOT=1"},
			Argv: []string{filepath.Join(work, "pairtest.test"), "-test.v", "-test.run", "^TestPairSide$", "-test.timeout", "9m"},
		}
	}
	r := vm.ExecPair(ctx, vm.PairOptions{
		A: opts(works[0], &lockedWriter{mu: &logMu, w: &outA}),
		B: opts(works[1], &lockedWriter{mu: &logMu, w: &outB}),
	})
	t.Logf("guest a:\n%s", outA.String())
	t.Logf("guest b:\n%s", outB.String())
	requireQEMUGone(t, r.A)
	requireQEMUGone(t, r.B)
	for _, g := range []struct {
		name string
		res  *vm.Result
		err  error
		out  string
	}{{"a", r.A, r.ErrA, outA.String()}, {"b", r.B, r.ErrB, outB.String()}} {
		require.NoError(t, g.err, "guest %s", g.name)
		assert.Equal(t, 0, g.res.ExitCode, "guest %s's TestPairSide failed", g.name)
		assert.Contains(t, g.out, "--- PASS: TestPairSide ", "guest %s", g.name)
		assert.NotContains(t, g.out, "--- SKIP", "guest %s skipped a test", g.name)
		for _, sub := range []string{"two-hosts", "the_same-host_fix_is_harmless_between_two_hosts", "kill_-9_of_host_b_in_the_middle_of_a_batch"} {
			assert.True(t, strings.Contains(g.out, "--- PASS: TestPairSide/"+sub+" "), "guest %s: %s did not pass", g.name, sub)
		}
	}
}

// lockedWriter serialises writes to w.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
