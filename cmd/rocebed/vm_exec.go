package main

import (
	"time"

	"github.com/rocebed/rocebed/vm"
	"github.com/spf13/cobra"
)

func newVMExecCmd(o *options) *cobra.Command {
	var f vmFlags
	c := &cobra.Command{
		Use:   "exec [flags] -- CMD [ARG...]",
		Short: "Boot the guest and run CMD as root with rdma_rxe loaded; exit with its status",
		Long: `exec runs CMD in the guest in the current directory (when the guest can see it: not under /tmp,
/run or /var/tmp) with ROCEBED_* passed through. CMD's stdout and stderr stream to rocebed's
stdout and stderr; the kernel console shows only with -v.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := f.execOptions(cmd)
			if err != nil {
				return err
			}
			e.Argv = args
			return vmExit(vm.Exec(cmd.Context(), e))
		},
	}
	c.Flags().SetInterspersed(false)
	f.register(c.Flags(), 5*time.Minute)
	return c
}
