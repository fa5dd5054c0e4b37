//go:build linux

package pairtest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rocebed/rocebed/internal/testenv"
	"github.com/rocebed/rocebed/rdma/verbs"
	"github.com/rocebed/rocebed/testbed/runner"
	"github.com/rocebed/rocebed/testbed/traffic"
	"github.com/rocebed/rocebed/vm"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// report is what `rocebed run --json` prints for a two-host lab.
type report struct {
	Lab     string             `json:"lab"`
	Host    string             `json:"host"`
	Traffic *traffic.Report    `json:"traffic"`
	Peer    *runner.PeerStatus `json:"peer"`
	Error   *struct {
		Stage, Message string
	} `json:"error"`
}

// guest is this guest's view of the pair.
type guest struct {
	side, self, peer, bin string
}

// endpoint is the --listen (host a) or --connect (host b) flag for port.
func (g guest) endpoint(port int) []string {
	if g.side == "a" {
		return []string{"--listen", fmt.Sprintf("%s:%d", g.self, port)}
	}
	return []string{"--connect", fmt.Sprintf("%s:%d", g.peer, port)}
}

// run runs rocebed with args and returns its exit status, stdout and stderr.
func (g guest) run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(g.bin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, out.String(), errb.String()
	case errors.As(err, &ee):
		return ee.ExitCode(), out.String(), errb.String()
	}
	t.Fatalf("run rocebed %v: %v", args, err)
	return 0, "", ""
}

// scenarioFile writes a scenario into the test's temp dir (both guests write the same text).
func scenarioFile(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name+".yaml")
	require.NoError(t, os.WriteFile(p, []byte(text), 0o644))
	return p
}

// twoHostsWithFix is the shipped two-hosts lab with the same-host policy-routing fix, under
// strict rp_filter: between two hosts the fix is not needed, and must be harmless.
const twoHostsWithFix = `version: 1
name: two-hosts-fixed
nics:
  - {name: eth1, host: a, kind: existing, addresses: [10.20.0.1/24]}
  - {name: eth1, host: b, kind: existing, addresses: [10.20.0.2/24]}
endpoints:
  a: {nic: eth1, rxe: rxe0}
  b: {nic: eth1, rxe: rxe0}
fixes:
  - name: policy-routing
    policy_routing: {}
    sysctls: [net.ipv4.conf.all.rp_filter=1, net.ipv4.conf.eth1.rp_filter=1]
traffic:
  - {name: rc-both, transport: rc, direction: both, messages: 100, size: 1024, rc: {timeout: 14, retry_cnt: 6}}
  - {name: ud-both, transport: ud, direction: both, messages: 100, size: 1024}
expect:
  result: pass
`

// longBatch is one RC batch that runs for minutes, so that host b's rocebed can be killed in
// the middle of it; its deadline bounds how long host a may take to give its verdict.
const longBatch = `version: 1
name: two-hosts-kill
nics:
  - {name: eth1, host: a, kind: existing, addresses: [10.20.0.1/24]}
  - {name: eth1, host: b, kind: existing, addresses: [10.20.0.2/24]}
endpoints:
  a: {nic: eth1, rxe: rxe0}
  b: {nic: eth1, rxe: rxe0}
traffic:
  - {name: long, transport: rc, direction: a->b, messages: 1000000, size: 64, window: 1, deadline_ms: 120000}
expect:
  result: pass
`

// TestPairSide is one guest's half of the two-host test: the shipped two-hosts lab, the same
// lab with the same-host fix, and host b's rocebed killed in the middle of a batch. Both guests
// run it at once; each subtest's rocebed runs meet over the management link.
func TestPairSide(t *testing.T) {
	g := guest{side: os.Getenv(vm.PairEnvSide), self: os.Getenv(vm.PairEnvAddr), peer: os.Getenv(vm.PairEnvPeer), bin: os.Getenv(EnvRocebed)}
	if g.side == "" {
		t.Skip("runs in both guests of a pair (vm.ExecPair), started by TestVMPair in cmd/rocebed: `make test-vm`")
	}
	require.NotEmpty(t, g.bin, EnvRocebed+" must name the rocebed binary")
	testenv.RequireCabledNICs(t, "eth1")
	ns := testenv.InitialNetNS(t)
	ns.UpOnce(t, "eth1") // like a host's NIC
	before := ns.Dump(t)
	restored := func(t *testing.T, what string) {
		t.Helper()
		testenv.SameState(t, before, ns.Dump(t), "host %s not restored after %s", g.side, what)
		_, err := os.Stat("/sys/class/infiniband/rxe0")
		assert.True(t, errors.Is(err, os.ErrNotExist), "host %s: rxe0 left behind after %s", g.side, what)
	}

	t.Run("two-hosts", func(t *testing.T) {
		code, out, errs := g.run(t, append([]string{"run", "two-hosts", "--side", g.side, "--json"}, g.endpoint(7471)...)...)
		r := decode(t, out, errs)
		checkPassed(t, g, r)
		assert.Equal(t, 0, code, "exit status; stderr:\n%s", lastLines(errs, 30))
		restored(t, "two-hosts")
	})

	t.Run("the same-host fix is harmless between two hosts", func(t *testing.T) {
		file := scenarioFile(t, "two-hosts-fixed", twoHostsWithFix)
		code, out, errs := g.run(t, "plan", file, "--side", g.side)
		require.Equal(t, 0, code, errs)
		t.Logf("host %s's plan:\n%s", g.side, out)
		assert.Contains(t, out, "ip rule del pref 0 lookup local", "the fix moves the local rule on each host")
		mine, theirs := map[string]string{"a": "lookup 100", "b": "lookup 101"}[g.side], map[string]string{"a": "lookup 101", "b": "lookup 100"}[g.side]
		assert.Contains(t, out, mine, "each host makes its own direction's rules")
		assert.NotContains(t, out, theirs, "and not the other host's")
		code, out, errs = g.run(t, append([]string{"run", file, "--side", g.side, "--json"}, g.endpoint(7472)...)...)
		r := decode(t, out, errs)
		checkPassed(t, g, r)
		assert.Equal(t, 0, code, "exit status; stderr:\n%s", lastLines(errs, 30))
		restored(t, "two-hosts-fixed")
	})

	t.Run("kill -9 of host b in the middle of a batch", func(t *testing.T) {
		file := scenarioFile(t, "two-hosts-kill", longBatch)
		args := append([]string{"run", file, "--side", g.side, "--json", "--log-level", "debug"}, g.endpoint(7473)...)
		if g.side == "b" {
			killMidBatch(t, g, args)
			code, _, errs := g.run(t, "down", "two-hosts-kill")
			require.Equal(t, 0, code, "rocebed down after kill -9: %s", errs)
			restored(t, "kill -9 and rocebed down")
			return
		}
		start := time.Now()
		code, out, errs := g.run(t, args...)
		took := time.Since(start)
		r := decode(t, out, errs)
		assert.Equal(t, 1, code, "a peer-lost verdict is a failed expectation; stderr:\n%s", lastLines(errs, 20))
		require.NotNil(t, r.Traffic, "host a gives a report")
		require.Len(t, r.Traffic.Batches, 1)
		b := r.Traffic.Batches[0]
		assert.Equal(t, traffic.ClassPeerLost, b.Class, b.Verdict)
		assert.Contains(t, b.Verdict, "host b (")
		assert.Less(t, b.ConnectMS+b.ElapsedMS, float64(b.DeadlineMS), "the verdict came before the batch's deadline")
		assert.Less(t, took, time.Duration(b.DeadlineMS)*time.Millisecond, "rocebed on host a ended before the batch's deadline")
		assert.Nil(t, r.Peer.Restored, "host b said nothing after it was killed")
		t.Logf("host a's verdict %s after the start: %s", took.Round(time.Millisecond), b.Verdict)
		restored(t, "host b's kill -9")
	})
}

// killMidBatch starts rocebed with args, waits until its log says the batch has started (a
// bound, not a timing: the lab comes up first), and SIGKILLs it.
func killMidBatch(t *testing.T, g guest, args []string) {
	t.Helper()
	cmd := exec.Command(g.bin, args...)
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	started, finished := make(chan struct{}), make(chan struct{})
	var log bytes.Buffer // written by the reader until finished
	go func() {
		defer close(finished)
		sc := bufio.NewScanner(stderr)
		seen := false
		for sc.Scan() {
			log.WriteString(sc.Text() + "\n")
			if !seen && strings.Contains(sc.Text(), `msg="batch started"`) {
				seen = true
				close(started)
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	select {
	case <-started:
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		<-finished
		_ = cmd.Wait()
		t.Fatalf("host b's batch never started:\n%s", log.String())
	}
	require.NoError(t, cmd.Process.Kill(), "kill -9 rocebed")
	<-finished // the pipe closes with the process
	err = cmd.Wait()
	var ee *exec.ExitError
	require.True(t, errors.As(err, &ee) && !ee.Exited(), "rocebed was killed, not exited: %v", err)
	t.Log("killed host b's rocebed in the middle of the batch")
}

// decode reads a `run --json` report.
func decode(t *testing.T, out, errs string) report {
	t.Helper()
	var r report
	require.NoError(t, json.Unmarshal([]byte(out), &r), "stdout is not a JSON report:\n%s\nstderr:\n%s", out, lastLines(errs, 30))
	return r
}

// checkPassed checks a passed two-host report: every batch passed with every completion of both
// hosts, and the other host said it was restored.
func checkPassed(t *testing.T, g guest, r report) {
	t.Helper()
	require.NotNil(t, r.Traffic)
	assert.Equal(t, g.side, r.Host)
	assert.True(t, r.Traffic.Pass, r.Traffic.Verdict)
	assert.True(t, r.Traffic.ExpectationMet, r.Traffic.Verdict)
	require.Len(t, r.Traffic.Batches, 4)
	for _, b := range r.Traffic.Batches {
		if !b.Pass {
			t.Errorf("%s: %s: %s", b.Name(), b.Class, b.Verdict)
		}
		send, recv := 0, 0
		for _, c := range b.Completions {
			switch {
			case c.Status != verbs.WCSuccess:
			case c.Side == b.Sender.Side && c.Opcode == verbs.WCSend:
				send++
			case c.Side == b.Receiver.Side && c.Opcode == verbs.WCRecv && c.Payload == "ok":
				recv++
			}
		}
		assert.Equal(t, b.Messages, send, "%s: completions on the sending host", b.Name())
		assert.Equal(t, b.Messages, recv, "%s: completions on the receiving host", b.Name())
		assert.NotEqual(t, b.Sender.Host, b.Receiver.Host, "%s: one end on each host", b.Name())
	}
	require.NotNil(t, r.Peer)
	assert.True(t, r.Peer.Up, r.Peer.Summary())
	require.NotNil(t, r.Peer.Restored, r.Peer.Summary())
	assert.True(t, *r.Peer.Restored, r.Peer.Summary())
	t.Logf("host %s: %s; %s", g.side, r.Traffic.Verdict, r.Peer.Summary())
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
