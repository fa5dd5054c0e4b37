package testlab

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/rocebed/rocebed/internal/testenv"
	"github.com/stretchr/testify/require"
)

// ToolPairResult is what a server and client of an outside tool did.
type ToolPairResult struct {
	ClientOut, ServerOut string
	ClientErr, ServerErr error
	ClientTook           time.Duration
}

// QPExchangePort is the TCP port perftest and the pingpong examples exchange QP numbers on.
const QPExchangePort = 18515

// RunToolPair starts an outside tool's server, starts its client once the server listens on
// QPExchangePort, and waits for both. A server that exits before it listens ends the test with
// its output.
func RunToolPair(tb testing.TB, ctx context.Context, tool string, serverArgs, clientArgs []string) ToolPairResult {
	tb.Helper()
	listening := func(exited <-chan struct{}) error { return testenv.WaitTCPListen(ctx, QPExchangePort, exited) }
	return runPair(tb, ctx, tool, "ibverbs-utils perftest", listening, false, serverArgs, clientArgs)
}

// RunCMPair is RunToolPair for rdma_cm tools (rping, ucmatose): the client starts once an
// rdma_cm id listens on port, as `rdma resource show cm_id` shows it. A server whose client
// failed is killed: it would wait for another.
func RunCMPair(tb testing.TB, ctx context.Context, tool string, port int, serverArgs, clientArgs []string) ToolPairResult {
	tb.Helper()
	listening := func(exited <-chan struct{}) error { return waitCMListen(ctx, port, exited) }
	return runPair(tb, ctx, tool, "rdmacm-utils", listening, true, serverArgs, clientArgs)
}

// runPair runs tool's server, waits until listening says it listens, runs the client and waits
// for both. A server that never listens is killed and ends the test with its output.
func runPair(tb testing.TB, ctx context.Context, tool, pkgs string, listening func(exited <-chan struct{}) error,
	killOnClientFailure bool, serverArgs, clientArgs []string) ToolPairResult {
	tb.Helper()
	if _, err := exec.LookPath(tool); err != nil {
		tb.Fatalf("%s not installed: apt-get install %s", tool, pkgs)
	}
	srv := exec.CommandContext(ctx, tool, serverArgs...)
	srvOut := &LockedBuffer{}
	srv.Stdout, srv.Stderr = srvOut, srvOut
	require.NoError(tb, srv.Start())
	exited := make(chan struct{})
	var r ToolPairResult
	go func() { r.ServerErr = srv.Wait(); close(exited) }()
	if err := listening(exited); err != nil {
		_ = srv.Process.Kill()
		<-exited
		tb.Fatalf("%s server: %v (exit: %v): %s", tool, err, r.ServerErr, srvOut.String())
	}
	start := time.Now()
	out, err := exec.CommandContext(ctx, tool, clientArgs...).CombinedOutput()
	r.ClientTook = time.Since(start)
	r.ClientOut, r.ClientErr = string(out), err
	if err != nil && killOnClientFailure {
		_ = srv.Process.Kill()
	}
	<-exited
	r.ServerOut = srvOut.String()
	return r
}

// waitCMListen returns once `rdma resource show cm_id` lists a LISTEN id on port, or an error
// when ctx ends or the server exited first.
func waitCMListen(ctx context.Context, port int, exited <-chan struct{}) error {
	suffix := fmt.Sprintf(":%d ", port)
	for {
		out, err := exec.CommandContext(ctx, "rdma", "resource", "show", "cm_id").Output()
		if err == nil {
			for _, line := range strings.Split(string(out), "\n") {
				if strings.Contains(line, "LISTEN") && strings.Contains(line+" ", suffix) {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no rdma_cm id listens on port %d: %w", port, ctx.Err())
		case <-exited:
			return fmt.Errorf("the server exited before it listened on rdma_cm port %d", port)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
