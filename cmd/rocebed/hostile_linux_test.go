package main

// The hostile-input suite of the command line (issue 10): files that are not files, signals
// to read-only commands, kill -9 between two steps, names that are paths, and output that a
// shell or a terminal would take for something else. Root cases run in throwaway namespaces.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rocebed/rocebed/internal/testenv"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// rocebedLimited runs the binary under a 2 GB address-space limit and a deadline, so a
// rocebed that blocks or reads without end fails the test instead of hanging or eating the
// machine.
func rocebedLimited(t *testing.T, d time.Duration, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	quoted := make([]string, len(args))
	for i, a := range args {
		quoted[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	cmd := exec.CommandContext(ctx, "sh", "-c", "ulimit -v 2000000; exec "+rocebedBin+" "+strings.Join(quoted, " "))
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("rocebed %v did not finish within %s", args, d)
	}
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestValidateRefusesWhatIsNotAFile (case 4): `validate` on a FIFO nobody writes to and on
// /dev/zero ends at once with exit 2, reading nothing.
func TestValidateRefusesWhatIsNotAFile(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "scenario.yaml")
	require.NoError(t, syscall.Mkfifo(fifo, 0o600))
	r := rocebedLimited(t, 10*time.Second, "validate", fifo, "/dev/zero")
	assert.Equal(t, 2, r.code, r.stderr)
	assert.Contains(t, r.stdout, "is a named pipe (FIFO), not a regular file")
	assert.Contains(t, r.stdout, "is a character device, not a regular file")
}

// TestReadOnlyCommandsEndOnSignals (case 4): a command that changes nothing ends at once on
// SIGINT or SIGTERM, even blocked in a write — here `schema` into a pipe nobody reads.
func TestReadOnlyCommandsEndOnSignals(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			r, w, err := os.Pipe()
			require.NoError(t, err)
			defer r.Close()
			_, err = unix.FcntlInt(w.Fd(), unix.F_SETPIPE_SZ, 4096)
			require.NoError(t, err)
			cmd := exec.Command(rocebedBin, "schema")
			cmd.Stdout = w
			require.NoError(t, cmd.Start())
			w.Close()
			time.Sleep(300 * time.Millisecond) // it has filled the pipe and blocks in write
			require.NoError(t, cmd.Process.Signal(sig))
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				var ee *exec.ExitError
				require.ErrorAs(t, err, &ee)
				ws := ee.Sys().(syscall.WaitStatus)
				assert.True(t, ws.Signaled() && ws.Signal() == sig, "ended with %v", ee)
			case <-time.After(5 * time.Second):
				_ = cmd.Process.Kill()
				<-done
				t.Fatalf("`rocebed schema` ignored %v", sig)
			}
		})
	}
}

// TestKill9BetweenStepsThenDown (case 7): `up` killed after step K is journaled as done and
// before K+1 begins — fewer steps done than planned — is incomplete, not up; `down` then
// restores the namespace byte for byte.
func TestKill9BetweenStepsThenDown(t *testing.T) {
	ns := testenv.NewNetNS(t)
	before := ns.Dump(t)
	plan := rocebed(t, nil, "plan", "same-host", "--skip-rdma", "--netns", ns.Name, "--json")
	require.Equal(t, 0, plan.code, plan.stderr)
	n := strings.Count(plan.stdout, `"kind":`)
	require.Greater(t, n, 8)
	for k := 1; k < n; k++ {
		state := t.TempDir()
		r := rocebed(t, []string{fmt.Sprintf("ROCEBED_TEST_KILL_AT=%d:done", k)},
			"up", "same-host", "--skip-rdma", "--netns", ns.Name, "--state-dir", state)
		require.Equal(t, 128+int(syscall.SIGKILL), r.code, "up was not killed after step %d: %s", k, r.stderr)
		st := rocebed(t, nil, "status", "same-host", "--state-dir", state, "--json")
		require.Equal(t, 0, st.code, st.stderr)
		assert.Contains(t, st.stdout, `"state": "incomplete"`, "killed after step %d of %d", k, n)
		assert.Contains(t, st.stdout, fmt.Sprintf(`"done": %d`, k))
		d := rocebed(t, nil, "down", "same-host", "--state-dir", state)
		require.Equal(t, 0, d.code, d.stderr)
		if !testenv.SameState(t, before, ns.Dump(t), "not restored after kill -9 between steps %d and %d", k, k+1) {
			t.FailNow()
		}
	}
}

// TestNamesThatArePathsAreRefused (case 9): a LAB argument or --netns that is a path — "..",
// "../../proc/PID/ns/net" — is a usage error (exit 2); nothing is read or changed where it
// points.
func TestNamesThatArePathsAreRefused(t *testing.T) {
	parent := t.TempDir()
	state := filepath.Join(parent, "state")
	require.NoError(t, os.Mkdir(state, 0o755))
	for _, args := range [][]string{
		{"status", ".."}, {"down", ".."}, {"status", "."}, {"down", "x\x1b[2J"},
		{"plan", "same-host", "--netns", ".."}, {"plan", "same-host", "--netns", "../../proc/1/ns/net"},
		{"status", "same-host", "--netns", "a/b"},
	} {
		r := rocebed(t, nil, append(args, "--state-dir", state)...)
		assert.Equal(t, 2, r.code, "%q: %s", args, r.stderr)
		assert.NotContains(t, r.stderr, "\x1b", "%q", args)
	}

	// `up` into another process's namespace through /run/netns/../../proc/PID/ns/net.
	other := testenv.NewNetNS(t)
	before := other.Dump(t)
	sleeper := exec.Command("ip", "netns", "exec", other.Name, "sleep", "600")
	require.NoError(t, sleeper.Start())
	t.Cleanup(func() { _ = sleeper.Process.Kill(); _ = sleeper.Wait() })
	r := rocebed(t, nil, "up", "same-host", "--skip-rdma", "--state-dir", state,
		"--netns", "../../proc/"+strconv.Itoa(sleeper.Process.Pid)+"/ns/net")
	assert.Equal(t, 2, r.code, r.stderr)
	testenv.SameState(t, before, other.Dump(t), "up acted in a namespace named by a path")
	entries, _ := os.ReadDir(state)
	assert.Empty(t, entries)
}

// shellArgs returns the words a shell makes of line, run where no command can be found, so a
// line that quotes badly cannot run anything.
func shellArgs(t *testing.T, line string) []string {
	t.Helper()
	cmd := exec.Command("bash", "--norc", "--noprofile", "-c", `args() { printf '%s\0' "$@"; }; args `+line)
	cmd.Env = []string{"PATH=/nonexistent"}
	cmd.Dir = t.TempDir()
	out, _ := cmd.Output()
	return strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
}

// TestPlanOutputIsQuotedAndInert (case 10): `plan` prints commands a shell takes word for
// word — names like `v;rm` and values like `$(reboot)` quoted — and nothing that drives a
// terminal, not even from the scenario's file name.
func TestPlanOutputIsQuotedAndInert(t *testing.T) {
	ns := testenv.NewNetNS(t)
	file := filepath.Join(t.TempDir(), "lab\x1b]0;owned\x07.yaml")
	require.NoError(t, os.WriteFile(file, []byte(`version: 1
name: quoting
nics:
  - {name: "v;rm", kind: veth, peer: "v$(id)", addresses: [10.10.0.1/24]}
  - {name: "v$(id)", kind: veth, peer: "v;rm", addresses: [10.10.0.2/24]}
endpoints:
  a: {nic: "v;rm", rxe: rxe0}
  b: {nic: "v$(id)", rxe: rxe1}
fixes:
  - name: quoted
    sysctls: ["net.ipv4.conf.all.rp_filter=$(reboot)"]
expect: {result: pass}
`), 0o644))
	before := ns.Dump(t)
	r := rocebed(t, nil, "plan", file, "--skip-rdma", "--netns", ns.Name)
	require.Equal(t, 0, r.code, r.stderr)
	for _, c := range r.stdout {
		require.False(t, c < 0x20 && c != '\n', "raw control character %q in:\n%s", c, r.stdout)
	}
	want := map[string][]string{
		"ip link add":  {"ip", "link", "add", "v;rm", "type", "veth", "peer", "name", "v$(id)"},
		"ip addr add":  {"ip", "addr", "add", "10.10.0.1/24", "brd", "+", "dev", "v;rm"},
		"sysctl -w":    {"sysctl", "-w", "net.ipv4.conf.all.rp_filter=$(reboot)"},
		"ip link set ": {"ip", "link", "set", "v;rm", "up"},
	}
	seen := map[string]bool{}
	for _, line := range strings.Split(r.stdout, "\n") {
		cmd, ok := strings.CutPrefix(strings.TrimLeft(line, " 0123456789"), ". ")
		if !ok {
			continue
		}
		cmd, _, _ = strings.Cut(cmd, "   ") // the (old → new) and [fix …] notes
		for prefix, words := range want {
			if strings.HasPrefix(cmd, prefix) && !seen[prefix] {
				seen[prefix] = true
				assert.Equal(t, words, shellArgs(t, cmd), "a shell reads %q otherwise", cmd)
			}
		}
	}
	assert.Len(t, seen, len(want), r.stdout)
	v := rocebed(t, nil, "validate", file)
	require.Equal(t, 0, v.code, v.stderr)
	assert.NotContains(t, v.stdout, "\x1b")
	assert.Contains(t, v.stdout, `lab\x1b]0;owned\x07.yaml`)
	testenv.SameState(t, before, ns.Dump(t), "plan changed the namespace")
}
