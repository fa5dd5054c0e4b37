package testlab

import (
	"context"
	"os/exec"
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
	if _, err := exec.LookPath(tool); err != nil {
		tb.Fatalf("%s not installed: apt-get install ibverbs-utils perftest", tool)
	}
	srv := exec.CommandContext(ctx, tool, serverArgs...)
	srvOut := &LockedBuffer{}
	srv.Stdout, srv.Stderr = srvOut, srvOut
	require.NoError(tb, srv.Start())
	exited := make(chan struct{})
	var r ToolPairResult
	go func() { r.ServerErr = srv.Wait(); close(exited) }()
	if err := testenv.WaitTCPListen(ctx, QPExchangePort, exited); err != nil {
		<-exited
		tb.Fatalf("%s server: %v (exit: %v): %s", tool, err, r.ServerErr, srvOut.String())
	}
	start := time.Now()
	out, err := exec.CommandContext(ctx, tool, clientArgs...).CombinedOutput()
	r.ClientTook = time.Since(start)
	r.ClientOut, r.ClientErr = string(out), err
	<-exited
	r.ServerOut = srvOut.String()
	return r
}
