//go:build linux

package traffic

import (
	"context"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rocebed/rocebed/internal/host"
	"github.com/rocebed/rocebed/internal/testenv"
	"github.com/rocebed/rocebed/internal/testlab"
	"github.com/rocebed/rocebed/rdma"
	"github.com/rocebed/rocebed/rdma/verbs"
	"github.com/rocebed/rocebed/testbed/lab"
	"github.com/rocebed/rocebed/testbed/scenario"
	"github.com/stretchr/testify/require"
)

// BenchmarkVersusPerftest compares rocebed's traffic with the standard tools on the same rxe
// link, in one VM boot (`make bench-vm`): SEND message rate against ib_send_bw, latency against
// ib_send_lat, the time to a verdict on a broken data path against ibv_rc_pingpong on the same
// lab, and same-host-nofix's time to a verdict. Targets: rate ratio ≥ 1.0, latency ratio ≤ 1.1,
// broken-path verdict ≤ 0.1 s, nofix verdict ≤ 1.5 s. The figures are reported, not asserted.
func BenchmarkVersusPerftest(b *testing.B) {
	testenv.RequireRXE(b)
	env, err := host.Open("")
	require.NoError(b, err)
	b.Cleanup(env.Close)
	for b.Loop() {
		rate, lat := benchHealthy(b, env)
		b.ReportMetric(rate.rocebed, "rocebed-msg/s")
		b.ReportMetric(rate.tool, "ib_send_bw-msg/s")
		b.ReportMetric(rate.rocebed/rate.tool, "rate-ratio")
		b.ReportMetric(lat.rocebed, "rocebed-lat-us")
		b.ReportMetric(lat.tool, "ib_send_lat-us")
		b.ReportMetric(lat.rocebed/lat.tool, "lat-ratio")

		verdict, pingpong := benchBrokenPath(b, env)
		b.ReportMetric(verdict, "seed-verdict-s")
		b.ReportMetric(pingpong, "pingpong-seed-s")
		b.ReportMetric(benchNofix(b, env), "nofix-verdict-s")
	}
	b.ReportMetric(0, "ns/op")
}

type pairFigure struct{ rocebed, tool float64 }

// benchHealthy measures message rate and latency on same-host, rocebed's and perftest's.
func benchHealthy(b *testing.B, env *host.Env) (rate, lat pairFigure) {
	s, err := scenario.Load("same-host", nil)
	require.NoError(b, err)
	state := b.TempDir()
	_, err = lab.Up(context.Background(), env, s, lab.UpOptions{StateDir: state})
	require.NoError(b, err)
	defer func() { require.NoError(b, lab.Down(context.Background(), state, s.Name)) }()

	const size, n = 4096, 2000
	run := func(t scenario.Traffic) *BatchResult {
		c := *s
		t.Name, t.Transport, t.Direction = "bench", scenario.TransportRC, scenario.DirectionAToB
		c.Traffic = []scenario.Traffic{t}
		c.SetDefaults()
		rep, err := Run(context.Background(), env, &c)
		require.NoError(b, err)
		require.True(b, rep.Pass, rep.Verdict)
		return rep.Batches[0]
	}
	run(scenario.Traffic{Messages: 10, Size: size}) // resolve the neighbours (~1 s) outside the figures
	rate.rocebed = run(scenario.Traffic{Messages: n, Size: size}).MsgPerSec
	// Window 1: one message at a time; post→SEND completion is a round trip (SEND, then ACK),
	// half of it is comparable with ib_send_lat's one-way figure (half its ping-pong RTT).
	lat.rocebed = run(scenario.Traffic{Messages: 1000, Size: 64, Window: 1}).MeanLatencyUS / 2

	gid := strconv.Itoa(gidIndex(b, "rxe0", "10.10.0.1"))
	bw := toolPair(b, "ib_send_bw", 60*time.Second,
		[]string{"-d", "rxe1", "-x", gid, "-F", "-s", strconv.Itoa(size), "-n", strconv.Itoa(n)},
		[]string{"-d", "rxe0", "-x", gid, "-F", "-s", strconv.Itoa(size), "-n", strconv.Itoa(n), "10.10.0.2"})
	rate.tool = perftestColumn(b, bw, "MsgRate[Mpps]") * 1e6
	sl := toolPair(b, "ib_send_lat", 60*time.Second,
		[]string{"-d", "rxe1", "-x", gid, "-F", "-s", "64", "-n", "1000"},
		[]string{"-d", "rxe0", "-x", gid, "-F", "-s", "64", "-n", "1000", "10.10.0.2"})
	lat.tool = perftestColumn(b, sl, "t_avg[usec]")
	b.Logf("rate: rocebed %.0f msg/s, ib_send_bw %.0f msg/s (%d × %d B); latency: rocebed %.1f µs, ib_send_lat %.1f µs",
		rate.rocebed, rate.tool, n, size, lat.rocebed, lat.tool)
	return rate, lat
}

// benchBrokenPath runs the seed lab (the data path breaks after the connection is up):
// rocebed's time from the first send to the requester's error completion, and how long
// ibv_rc_pingpong (retry_cnt 7) runs on the same lab before a 10 s timeout kills it.
func benchBrokenPath(b *testing.B, env *host.Env) (verdict, pingpong float64) {
	s, err := scenario.Load("seed", nil)
	require.NoError(b, err)
	state := b.TempDir()
	_, err = lab.Up(context.Background(), env, s, lab.UpOptions{StateDir: state})
	require.NoError(b, err)
	defer func() { require.NoError(b, lab.Down(context.Background(), state, s.Name)) }()
	rep, err := Run(context.Background(), env, s)
	require.NoError(b, err)
	require.True(b, rep.ExpectationMet, rep.Verdict)
	for _, c := range rep.Batches[0].Completions {
		if c.Status != verbs.WCSuccess {
			verdict = c.AtMS / 1000
			break
		}
	}
	require.Positive(b, verdict, "no error completion: %s", rep.Verdict)

	gid := strconv.Itoa(gidIndex(b, "rxe0", "10.10.0.1"))
	const limit = 10 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	r := testlab.RunToolPair(b, ctx, "ibv_rc_pingpong", []string{"-d", "rxe1", "-g", gid, "-n", "10"},
		[]string{"-d", "rxe0", "-g", gid, "-n", "10", "127.0.0.1"})
	pingpong = r.ClientTook.Seconds()
	if ctx.Err() != nil {
		b.Logf("ibv_rc_pingpong on the broken path: no verdict, killed after %s", limit)
	}
	b.Logf("broken data path: rocebed verdict %.3f s after the first send (%s); ibv_rc_pingpong ran %.1f s", verdict, rep.Batches[0].Verdict, pingpong)
	return verdict, pingpong
}

// benchNofix is same-host-nofix's time to a verdict: the connect fails when the kernel gives
// up resolving the neighbour.
func benchNofix(b *testing.B, env *host.Env) float64 {
	s, err := scenario.Load("same-host-nofix", nil)
	require.NoError(b, err)
	state := b.TempDir()
	_, err = lab.Up(context.Background(), env, s, lab.UpOptions{StateDir: state})
	require.NoError(b, err)
	defer func() { require.NoError(b, lab.Down(context.Background(), state, s.Name)) }()
	start := time.Now()
	rep, err := Run(context.Background(), env, s)
	require.NoError(b, err)
	require.True(b, rep.ExpectationMet, rep.Verdict)
	took := time.Since(start).Seconds()
	b.Logf("same-host-nofix: %s (whole run %.2f s)", rep.Batches[0].Verdict, took)
	return rep.Batches[0].ConnectMS / 1000
}

// gidIndex is the RoCE v2 GID index of addr on dev.
func gidIndex(b *testing.B, dev, addr string) int {
	g, err := rdma.Sysfs{}.FindGID(dev, 1, netip.MustParseAddr(addr))
	require.NoError(b, err)
	return g.Index
}

// toolPair runs a perftest/pingpong server and client (fixed arguments) and returns the
// client's output.
func toolPair(b *testing.B, tool string, limit time.Duration, serverArgs, clientArgs []string) string {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	r := testlab.RunToolPair(b, ctx, tool, serverArgs, clientArgs)
	require.NoError(b, r.ClientErr, "%s: %s", tool, r.ClientOut)
	require.NoError(b, r.ServerErr, "%s server: %s", tool, r.ServerOut)
	return r.ClientOut
}

// perftestColumn reads a value from perftest's result table: the header line holding column,
// then the value line below it. Some headers have two-word names ("BW peak[MB/sec]"), so a
// column after them is found by its place from the right (last: MsgRate), one before them by
// its place from the left (t_avg of ib_send_lat).
func perftestColumn(b *testing.B, out, column string) float64 {
	lines := strings.Split(out, "\n")
	for i, l := range lines {
		cols := strings.Fields(l)
		for j, c := range cols {
			if c != column || i+1 >= len(lines) {
				continue
			}
			vals := strings.Fields(lines[i+1])
			k := j
			if j == len(cols)-1 {
				k = len(vals) - 1
			}
			require.Less(b, k, len(vals), "%s in %q", column, lines[i+1])
			v, err := strconv.ParseFloat(vals[k], 64)
			require.NoError(b, err, "%s in %q", column, lines[i+1])
			return v
		}
	}
	b.Fatalf("no %s column in:\n%s", column, out)
	return 0
}
