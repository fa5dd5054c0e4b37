package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/rocebed/rocebed/testbed/scenario"
	"github.com/rocebed/rocebed/testbed/traffic"
	"github.com/spf13/cobra"
)

func init() { register(newTrafficCmd) }

func newTrafficCmd(o *options) *cobra.Command {
	var junit string
	c := &cobra.Command{
		Use:   "traffic LAB",
		Short: "Run the traffic of a lab that is up and judge it against the scenario's expectation",
		Long: `traffic runs the scenario's SEND-only RC/UD traffic between the lab's two RDMA endpoints, both
in this process, records every completion and the counters that show whether the packets crossed
the cable, and checks the scenario's expectation. LAB is a lab name or the scenario it came from.

Exit codes: 0 the expectation held (an expected failure that happened included), 1 it did not,
3 the lab is not up or RDMA is missing, 4 another error.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, env, err := openLab(cmd.Context(), o, args[0])
			if err != nil {
				return err
			}
			defer env.Close()
			rep, err := traffic.Run(cmd.Context(), env, s)
			return reportTraffic(o, cmd.OutOrStdout(), s, rep, err, junit)
		},
	}
	c.Flags().StringVar(&junit, "junit", "", "also write the result as JUnit XML to this file")
	return c
}

// reportTraffic prints a traffic report (text, or JSON with --json), writes the JUnit file,
// and turns the outcome into rocebed's exit class: nil when the expectation held, an
// ExpectationError (1) when it did not, or the engine's error.
func reportTraffic(o *options, w io.Writer, s *scenario.Scenario, rep *traffic.Report, runErr error, junit string) error {
	var errs []error
	if rep != nil {
		var err error
		if o.json {
			err = rep.WriteJSON(w)
		} else {
			err = rep.WriteText(w)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("write report: %w", err))
		}
		if junit != "" {
			if err := writeJUnitFile(junit, rep); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if runErr != nil {
		return errors.Join(append([]error{runErr}, errs...)...)
	}
	if len(errs) > 0 {
		return withExit(exitKernel, errors.Join(errs...))
	}
	if !rep.ExpectationMet {
		return &traffic.ExpectationError{Lab: s.Name, Msg: rep.Verdict}
	}
	return nil
}

func writeJUnitFile(path string, rep *traffic.Report) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("write junit: %w", err)
	}
	if err := rep.WriteJUnit(f); err != nil {
		f.Close()
		return fmt.Errorf("write junit %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write junit %s: %w", path, err)
	}
	return nil
}
