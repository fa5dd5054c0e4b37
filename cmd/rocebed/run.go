package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/rocebed/rocebed/internal/host"
	"github.com/rocebed/rocebed/testbed/diagnose"
	"github.com/rocebed/rocebed/testbed/lab"
	"github.com/rocebed/rocebed/testbed/runner"
	"github.com/rocebed/rocebed/testbed/scenario"
	"github.com/rocebed/rocebed/testbed/traffic"
	"github.com/spf13/cobra"
)

func init() { register(newRunCmd) }

func newRunCmd(o *options) *cobra.Command {
	var keep, ablate, noDiagnose bool
	var junit string
	c := &cobra.Command{
		Use:   "run SCENARIO",
		Short: "Bring the lab up, run its traffic, check the expectation, and take it down again",
		Long: `run is up → traffic → assertions → down. The lab is taken down (the host restored) also when the
traffic or the expectation fails and on Ctrl-C, unless --keep. SCENARIO is a built-in scenario
name or a file.

Exit codes: 0 the expectation held (an expected failure that happened included), 1 it did not,
2 invalid scenario or usage, 3 something the lab needs is missing (nothing was changed),
4 the kernel refused a change, or another error.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			s, src, env, err := openScenario(o, args[0])
			if err != nil {
				return err
			}
			defer env.Close()
			opts := lab.UpOptions{StateDir: o.stateDir, Source: src, Sets: o.sets}
			if ablate {
				return runAblation(ctx, o, env, s, opts)
			}
			res, err := runner.Run(ctx, env, s, runner.Options{Up: opts, Keep: keep, Diagnose: !noDiagnose})
			if res.Plan == nil {
				// run needs the RDMA links: --skip-rdma (an up option) is no way out here.
				return classifyLabErr(withRDMAHint(err, fmt.Sprintf("here: `rocebed vm run %s`", args[0]))) // Up has rolled back
			}
			var de *runner.DownError
			if errors.As(err, &de) {
				err = withExit(exitKernel, err)
			}
			return reportRun(o, cmd.OutOrStdout(), s, res.Traffic, res.Diagnosis, err, junit)
		},
	}
	c.Flags().BoolVar(&keep, "keep", false, "leave the lab up afterwards (take it down with `rocebed down`)")
	c.Flags().StringVar(&junit, "junit", "", "also write the result as JUnit XML to this file")
	c.Flags().BoolVar(&noDiagnose, "no-diagnose", false, "do not diagnose a failed traffic run")
	c.Flags().BoolVar(&ablate, "ablate", false, "rerun with each declared fix removed in turn and say which fixes are necessary")
	return c
}

// reportRun prints the traffic report and, after a failed run, the diagnosis. With --json the
// output is one object: {"traffic": ..., "diagnosis": ...}.
func reportRun(o *options, w io.Writer, s *scenario.Scenario, rep *traffic.Report, diag *diagnose.Diagnosis, runErr error, junit string) error {
	if !o.json {
		err := reportTraffic(o, w, s, rep, runErr, junit)
		if diag != nil {
			fmt.Fprintln(w)
			if werr := diag.WriteText(w); werr != nil {
				err = errors.Join(err, werr)
			}
		}
		return err
	}
	var buf bytes.Buffer
	err := reportTraffic(o, &buf, s, rep, runErr, junit)
	out := map[string]any{"traffic": json.RawMessage(bytes.TrimSpace(buf.Bytes()))}
	if buf.Len() == 0 {
		out["traffic"] = nil
	}
	if diag != nil {
		out["diagnosis"] = diag
	}
	if werr := writeJSON(w, out); werr != nil {
		err = errors.Join(err, werr)
	}
	return err
}

// runAblation runs the scenario with all fixes and then without each one, bringing the lab up
// and down around every run. Exit 0 when the baseline passed (the ablation is meaningful),
// 1 when the traffic fails even with every fix.
func runAblation(ctx context.Context, o *options, env *host.Env, s *scenario.Scenario, opts lab.UpOptions) error {
	if s.Expect.Result != scenario.ResultPass {
		return usageError(fmt.Errorf("--ablate needs a scenario that expects pass; %s expects %s", s.Name, s.Expect.Failure))
	}
	rep, err := runner.Ablate(ctx, env, s, opts)
	if err != nil {
		return classifyLabErr(err)
	}
	if o.json {
		err = writeJSON(os.Stdout, rep)
	} else {
		err = rep.WriteText(os.Stdout)
	}
	if err != nil {
		return err
	}
	if !rep.Baseline.Pass {
		return &traffic.ExpectationError{Lab: s.Name, Msg: "the traffic fails even with every fix: " + rep.Baseline.Verdict}
	}
	return nil
}
