//go:build linux

package runner

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rocebed/rocebed/internal/host"
	"github.com/rocebed/rocebed/internal/testenv"
	"github.com/rocebed/rocebed/testbed/lab"
	"github.com/rocebed/rocebed/testbed/scenario"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Ready checks for an outside server: rdma_cm servers show a listening cm_id (`rdma resource
// show cm_id`), perftest and the pingpong examples listen on TCP 18515 (0x4853) for their QP
// exchange — a socket in state 0A (LISTEN): the TIME_WAIT socket a previous client leaves on
// that port for a minute must not count, or the client starts before the server listens.
const (
	cmListening  = `rdma resource show cm_id 2>/dev/null | grep -q LISTEN`
	tcpListening = `grep -qE '^ *[0-9]+: [0-9A-F]{8}:4853 [0-9A-F]{8}:[0-9A-F]{4} 0A ' /proc/net/tcp`
)

// serverThenClient is a sh script that starts server, waits (bounded, with a reason) until
// ready says it listens, runs client, and exits with the client's status, or the server's when
// the client passed. Both get the lab's ROCEBED_* variables from Command.
func serverThenClient(server, ready, client string) []string {
	script := fmt.Sprintf(`%s &
srv=$!
i=0
until %s; do
	i=$((i+1))
	if [ $i -ge 400 ]; then echo "the server never listened" >&2; kill $srv; exit 97; fi
	sleep 0.05
done
%s
rc=$?
wait $srv
src=$?
[ $rc -eq 0 ] && exit $src
exit $rc`, server, ready, client)
	return []string{"/bin/sh", "-c", script}
}

// runCommandOn runs argv on a fresh lab of the named scenario and checks the host is as before.
func runCommandOn(t *testing.T, name string, argv []string, loopbackOK bool) *CommandResult {
	t.Helper()
	testenv.RequireRXE(t)
	for _, tool := range []string{"rping", "ucmatose", "ib_send_bw", "ibv_rc_pingpong", "ib_write_bw", "rdma"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not installed: apt-get install rdmacm-utils perftest ibverbs-utils iproute2", tool)
		}
	}
	ns := testenv.InitialNetNS(t)
	before := ns.Dump(t)
	env, err := host.Open("")
	require.NoError(t, err)
	defer env.Close()
	s, err := scenario.Load(name, nil)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var out strings.Builder
	res, err := Command(ctx, env, s, CommandOptions{Up: lab.UpOptions{StateDir: t.TempDir()}, Argv: argv,
		Stdout: &out, Stderr: &out, Capture: true, LoopbackOK: loopbackOK})
	require.NoError(t, err)
	t.Logf("%s on %s: exit %d; %s\n%s", strings.Join(argv, " "), name, res.ExitCode, res.Verdict, out.String())
	testenv.SameState(t, before, ns.Dump(t), "the lab was not taken down exactly")
	b, ok := s.EndpointAddr(s.Endpoints.B)
	require.True(t, ok)
	for _, v := range []string{"ROCEBED_LAB=" + s.Name, "ROCEBED_A_DEVICE=rxe0", "ROCEBED_B_NIC=vB", "ROCEBED_B_ADDR=" + b.String()} {
		assert.Contains(t, res.Env, v)
	}
	return res
}

// requireCrossed: the client passed and its traffic crossed the cable, with both devices and
// both NICs moving.
func requireCrossed(t *testing.T, res *CommandResult) {
	t.Helper()
	require.Equal(t, 0, res.ExitCode, res.Verdict)
	assert.Equal(t, PathCrossed, res.Path.Verdict, res.Path.Reason)
	assert.True(t, res.Pass, res.Verdict)
	p := res.Path
	assert.Positive(t, p.A.Sent, "rxe0 sent")
	assert.Positive(t, p.B.Rcvd, "rxe1 received")
	assert.Positive(t, p.A.NICTx, "vA tx")
	assert.Positive(t, p.B.NICRx, "vB rx")
	assert.Zero(t, p.Looped)
}

// TestOutsideClientsCrossTheCable runs real clients on the default lab: rdma_cm clients that
// bind a source and ones that do not (most real software), and verbs clients that name a GID.
// All of them must cross the cable.
func TestOutsideClientsCrossTheCable(t *testing.T) {
	for _, tc := range []struct {
		name string
		argv []string
	}{
		{"rping unbound", serverThenClient(`rping -s -a "$ROCEBED_B_ADDR" -C 10`, cmListening, `rping -c -a "$ROCEBED_B_ADDR" -C 10`)},
		{"rping bound", serverThenClient(`rping -s -a "$ROCEBED_B_ADDR" -C 10`, cmListening, `rping -c -I "$ROCEBED_A_ADDR" -a "$ROCEBED_B_ADDR" -C 10`)},
		{"ucmatose unbound", serverThenClient(`ucmatose -b "$ROCEBED_B_ADDR" -C 5`, cmListening, `ucmatose -s "$ROCEBED_B_ADDR" -C 5`)},
		{"ib_send_bw -R", serverThenClient(`ib_send_bw -R -d "$ROCEBED_B_DEVICE" -n 100`, cmListening, `ib_send_bw -R -d "$ROCEBED_A_DEVICE" -n 100 "$ROCEBED_B_ADDR"`)},
		{"ibv_rc_pingpong", serverThenClient(`ibv_rc_pingpong -d "$ROCEBED_B_DEVICE" -g "$ROCEBED_B_GID_INDEX" -n 20`, tcpListening,
			`ibv_rc_pingpong -d "$ROCEBED_A_DEVICE" -g "$ROCEBED_A_GID_INDEX" -n 20 "$ROCEBED_B_ADDR"`)},
		{"ib_write_bw", serverThenClient(`ib_write_bw -d "$ROCEBED_B_DEVICE" -x "$ROCEBED_B_GID_INDEX" -F -n 100`, tcpListening,
			`ib_write_bw -d "$ROCEBED_A_DEVICE" -x "$ROCEBED_A_GID_INDEX" -F -n 100 "$ROCEBED_B_ADDR"`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			requireCrossed(t, runCommandOn(t, "same-host", tc.argv, false))
		})
	}
}

// TestOutsideClientsCrossTheCableIPv6 is the same over IPv6, on same-host-v6: rdma_cm clients
// bound and unbound (its IPv6 rules), and a verbs client naming the IPv6 GID.
func TestOutsideClientsCrossTheCableIPv6(t *testing.T) {
	for _, tc := range []struct {
		name string
		argv []string
	}{
		{"rping unbound", serverThenClient(`rping -s -a "$ROCEBED_B_ADDR" -C 10`, cmListening, `rping -c -a "$ROCEBED_B_ADDR" -C 10`)},
		{"rping bound", serverThenClient(`rping -s -a "$ROCEBED_B_ADDR" -C 10`, cmListening, `rping -c -I "$ROCEBED_A_ADDR" -a "$ROCEBED_B_ADDR" -C 10`)},
		{"ucmatose bound", serverThenClient(`ucmatose -f ipv6 -b "$ROCEBED_B_ADDR" -C 5`, cmListening, `ucmatose -f ipv6 -b "$ROCEBED_A_ADDR" -s "$ROCEBED_B_ADDR" -C 5`)},
		{"ibv_rc_pingpong", serverThenClient(`ibv_rc_pingpong -d "$ROCEBED_B_DEVICE" -g "$ROCEBED_B_GID_INDEX" -n 20`, tcpListening,
			`ibv_rc_pingpong -d "$ROCEBED_A_DEVICE" -g "$ROCEBED_A_GID_INDEX" -n 20 127.0.0.1`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := runCommandOn(t, "same-host-v6", tc.argv, false)
			assert.Contains(t, res.Env, "ROCEBED_A_ADDR=fd00::1")
			requireCrossed(t, res)
		})
	}
}

// TestUnboundClientOnBrokenLab: on the seed lab (no fix) an unbound rdma_cm client completes,
// but only because its traffic never leaves rxe1. rocebed must not call that working.
func TestUnboundClientOnBrokenLab(t *testing.T) {
	res := runCommandOn(t, "seed", serverThenClient(`rping -s -a "$ROCEBED_B_ADDR" -C 10`, cmListening, `rping -c -a "$ROCEBED_B_ADDR" -C 10`), false)
	assert.False(t, res.Pass, res.Verdict)
	assert.Equal(t, PathLoopback, res.Path.Verdict, res.Path.Reason)
	assert.Contains(t, res.Verdict, "local-loopback")
}

// TestSysctlFixLeavesUnboundClientsLooping records what accept_local + rp_filter=2 does for a
// client that binds no source: nothing. The route to the peer's address is still the local
// table's, through lo; only policy routing changes that.
func TestSysctlFixLeavesUnboundClientsLooping(t *testing.T) {
	unbound := runCommandOn(t, "same-host-sysctl", serverThenClient(`rping -s -a "$ROCEBED_B_ADDR" -C 10`, cmListening, `rping -c -a "$ROCEBED_B_ADDR" -C 10`), false)
	assert.Equal(t, PathLoopback, unbound.Path.Verdict, unbound.Path.Reason)
	bound := runCommandOn(t, "same-host-sysctl", serverThenClient(`rping -s -a "$ROCEBED_B_ADDR" -C 10`, cmListening, `rping -c -I "$ROCEBED_A_ADDR" -a "$ROCEBED_B_ADDR" -C 10`), false)
	requireCrossed(t, bound)
}

// TestCommandVerdicts: traffic inside one device is local-loopback (accepted only when asked),
// a command with no RDMA traffic says so, and a failing command's status is reported; every
// time the lab comes down and the host is as before (runCommandOn checks).
func TestCommandVerdicts(t *testing.T) {
	t.Run("inside one device", func(t *testing.T) {
		argv := serverThenClient(`ibv_rc_pingpong -d "$ROCEBED_B_DEVICE" -g "$ROCEBED_B_GID_INDEX" -n 10`, tcpListening,
			`ibv_rc_pingpong -d "$ROCEBED_B_DEVICE" -g "$ROCEBED_B_GID_INDEX" -n 10 127.0.0.1`)
		res := runCommandOn(t, "same-host", argv, false)
		assert.Equal(t, 0, res.ExitCode)
		assert.Equal(t, PathLoopback, res.Path.Verdict, res.Path.Reason)
		assert.False(t, res.Pass)
		res = runCommandOn(t, "same-host", argv, true)
		assert.True(t, res.Pass, "--loopback-ok: %s", res.Verdict)
	})
	t.Run("no RDMA traffic", func(t *testing.T) {
		res := runCommandOn(t, "same-host", []string{"true"}, false)
		assert.Equal(t, 0, res.ExitCode)
		assert.Equal(t, PathNone, res.Path.Verdict)
		assert.False(t, res.Pass)
		assert.Contains(t, res.Verdict, "no-rdma-traffic")
	})
	t.Run("failing command", func(t *testing.T) {
		res := runCommandOn(t, "same-host", []string{"/bin/sh", "-c", `echo "on $ROCEBED_LAB"; exit 3`}, false)
		assert.Equal(t, 3, res.ExitCode)
		assert.False(t, res.Pass)
		assert.Contains(t, res.Verdict, "command exited 3")
		assert.Equal(t, "on same-host\n", res.Stdout)
	})
	t.Run("left running in the background", func(t *testing.T) {
		// The command names its background process's PID: a pattern such as "sleep 600"
		// also matched the VM harness's watchdog (`sleep $TIMEOUT`) under --timeout 10m.
		res := runCommandOn(t, "same-host", []string{"/bin/sh", "-c", "sleep 600 & echo $!; exit 0"}, false)
		assert.Equal(t, 0, res.ExitCode)
		pid, err := strconv.Atoi(strings.TrimSpace(res.Stdout))
		require.NoError(t, err, "the command's output: %q", res.Stdout)
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err == nil {
			// Gone, or a zombie (dead, waiting for init to reap it).
			_, after, _ := strings.Cut(string(stat), ") ")
			assert.True(t, strings.HasPrefix(after, "Z"), "the command's background process %d is still running: %s", pid, stat)
		}
	})
}
