package main

import (
	"fmt"
	"time"

	"github.com/rocebed/rocebed/vm"
	"github.com/spf13/cobra"
)

func newVMTestCmd(o *options) *cobra.Command {
	var f vmFlags
	t := vm.TestOptions{}
	c := &cobra.Command{
		Use:   "test [flags] [--] PKG...",
		Short: "Compile Go test packages here and run them all in one guest boot (or a few at once)",
		Long: `test runs go test -c for every package (go list patterns) that has tests, boots the guest once and
runs each binary in its package directory with -test.v, ROCEBED_REQUIRE_RXE=1 and
ROCEBED_REQUIRE_ROOT=1. The output is go test's; the exit status is 1 when any test failed.

With --guests N, N guests boot at once (each with its own --nics) and each takes the next
package no other guest has taken, in the order the patterns name them (name the longest
first); each package's output is printed whole when it ends.

With --only-calling MARK,..., each package runs only its tests whose code calls one of the
marks, directly or through the package's own functions (a mark is pkg.Func or pkg.*, by the
name the tests import the package as); packages with none do not run. rocebed's own guest
tier runs this way: its other tests need no rdma_rxe and already ran on the host.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if t.Run != "" && len(t.OnlyCalling) > 0 {
				return usageError(fmt.Errorf("--run and --only-calling: choose one"))
			}
			e, err := f.execOptions(cmd)
			if err != nil {
				return err
			}
			if t.Guests < 1 || t.Guests > 8 {
				return usageError(fmt.Errorf("--guests %d: want 1 to 8", t.Guests))
			}
			t.Packages, t.Exec = args, e
			return vmExit(vm.Test(cmd.Context(), t))
		},
	}
	f.register(c.Flags(), 15*time.Minute)
	c.Flags().StringVar(&t.Go, "go", "go", "the go tool that compiles the tests")
	c.Flags().StringVar(&t.Run, "run", "", "run only tests matching this regexp (-test.run)")
	c.Flags().StringSliceVar(&t.OnlyCalling, "only-calling", nil, "run only the tests that call one of these (pkg.Func or pkg.*), directly or through their package's functions")
	c.Flags().IntVar(&t.Guests, "guests", 1, "guests that share the packages out, booted at once")
	return c
}
