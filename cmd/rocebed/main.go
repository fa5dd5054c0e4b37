// Command rocebed builds soft-RoCE loopback testbeds from declarative scenarios, runs SEND-only
// traffic across them, explains failures and restores the host exactly.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	os.Exit(run())
}

// run builds the command tree, executes it and turns the outcome into an exit code.
func run() int {
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	err := newRootCmd().ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintln(os.Stderr, "error:", termSafe(err.Error()))
	return exitCode(err)
}
