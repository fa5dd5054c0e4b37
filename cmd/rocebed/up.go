package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/rocebed/rocebed/internal/preflight"
	"github.com/rocebed/rocebed/testbed/lab"
	"github.com/rocebed/rocebed/testbed/plan"
	"github.com/spf13/cobra"
)

func init() { register(newUpCmd) }

func newUpCmd(o *options) *cobra.Command {
	var skipRDMA bool
	c := &cobra.Command{
		Use:   "up SCENARIO",
		Short: "Build the lab: every change journaled first, rolled back on failure",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, src, env, err := openScenario(o, args[0])
			if err != nil {
				return err
			}
			defer env.Close()
			opts := lab.UpOptions{StateDir: o.stateDir, SkipRDMA: skipRDMA, Source: src, Sets: o.sets}
			if err := testKillHook(&opts); err != nil {
				return usageError(err)
			}
			p, err := lab.Up(cmd.Context(), env, s, opts)
			if err != nil {
				return classifyLabErr(withRDMAHint(err, "or pass --skip-rdma to build only the network part"))
			}
			if o.json {
				return writeJSON(os.Stdout, map[string]any{"lab": s.Name, "up": true, "steps": p.Steps})
			}
			part := ""
			if s.Host != "" {
				part = fmt.Sprintf(" on host %s (its part of the two-host lab)", s.Host)
			}
			fmt.Printf("lab %s is up%s (%d changes); `rocebed down %s` restores the host\n", s.Name, part, len(p.Steps), s.Name)
			return nil
		},
	}
	c.Flags().BoolVar(&skipRDMA, "skip-rdma", false, "build everything but the RDMA links (for kernels without rxe)")
	return c
}

// classifyLabErr gives lab-state errors their exit class: a busy or already-up lab is an
// environment problem (3); a failed step is a kernel error (4).
func classifyLabErr(err error) error {
	switch {
	case errors.Is(err, lab.ErrBadName):
		return usageError(err)
	case errors.Is(err, lab.ErrBusy), errors.Is(err, lab.ErrUp), errors.Is(err, lab.ErrUntrusted):
		return withExit(exitEnvironment, err)
	}
	return err
}

// withRDMAHint adds what this command offers to a missing-RDMA preflight error (exit 3): the
// library says what the host lacks; the command knows its own ways around it.
func withRDMAHint(err error, more string) error {
	var pe *preflight.Error
	if errors.As(err, &pe) && (pe.Check == "rdma" || pe.Check == "rdma_rxe") {
		pe.Hint += ", " + more
	}
	return err
}

// testKillHook implements ROCEBED_TEST_KILL_AT=K:before|after|done, which makes `up` SIGKILL
// itself right before or after making change K (1-based), or once K is journaled as done and
// before K+1 begins. It exists only so tests can prove that `down` restores the host, and
// `status` says incomplete, after a `kill -9` at any moment.
func testKillHook(opts *lab.UpOptions) error {
	v := os.Getenv("ROCEBED_TEST_KILL_AT")
	if v == "" {
		return nil
	}
	ks, phase, _ := strings.Cut(v, ":")
	k, err := strconv.Atoi(ks)
	if err != nil || (phase != "before" && phase != "after" && phase != "done") {
		return fmt.Errorf("ROCEBED_TEST_KILL_AT=%q: want K:before, K:after or K:done", v)
	}
	kill := func(i int, _ *plan.Step) error {
		if i+1 == k {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // never returns
		}
		return nil
	}
	switch phase {
	case "before":
		opts.BeforeApply = kill
	case "after":
		opts.AfterApply = kill
	default:
		opts.AfterStep = kill
	}
	return nil
}
