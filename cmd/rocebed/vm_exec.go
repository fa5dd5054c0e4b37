package main

import (
	"time"

	"github.com/rocebed/rocebed/vm"
	"github.com/spf13/cobra"
)

func newVMExecCmd(o *options) *cobra.Command {
	var f vmFlags
	var pair bool
	c := &cobra.Command{
		Use:   "exec [flags] -- CMD [ARG...]",
		Short: "Boot the guest and run CMD as root with rdma_rxe loaded; exit with its status",
		Long: `exec runs CMD in the guest in the current directory (when the guest can see it: not under /tmp,
/run or /var/tmp) with ROCEBED_* passed through. CMD's stdout and stderr stream to rocebed's
stdout and stderr; the kernel console shows only with -v.

With --pair, exec boots two guests at once, cabled to each other as two hosts: eth1 of guest a
to eth1 of guest b (left down, for a lab), and eth0 to eth0 as a management link, 192.168.100.1/24
on a and 192.168.100.2/24 on b. CMD runs in both, with ROCEBED_PAIR_SIDE (a or b),
ROCEBED_PAIR_ADDR (its own management address) and ROCEBED_PAIR_PEER (the other's); their
output is prefixed "a| " and "b| ". The exit status is guest a's when it is not 0, else b's.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := f.execOptions(cmd)
			if err != nil {
				return err
			}
			e.Argv = args
			if pair {
				a, b, err := f.pairExecOptions(cmd)
				if err != nil {
					return err
				}
				a.Argv, b.Argv = args, args
				r := vm.ExecPair(cmd.Context(), vm.PairOptions{A: a, B: b})
				flushAll(a, b)
				return pairExit(r)
			}
			return vmExit(vm.Exec(cmd.Context(), e))
		},
	}
	c.Flags().SetInterspersed(false)
	f.register(c.Flags(), 5*time.Minute)
	c.Flags().BoolVar(&pair, "pair", false, "boot two guests cabled to each other (eth1–eth1, and eth0–eth0 for management) and run CMD in both")
	return c
}
