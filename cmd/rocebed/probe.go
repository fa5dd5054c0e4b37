package main

import (
	"encoding/json"
	"fmt"
	"log/slog"

	"github.com/rocebed/rocebed/testbed/probe"
	"github.com/rocebed/rocebed/testbed/scenario"
	"github.com/rocebed/rocebed/testbed/traffic"
	"github.com/spf13/cobra"
)

func init() { register(newProbeCmd) }

func newProbeCmd(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "probe LAB",
		Short: "Check the IP path between a lab's NICs layer by layer, without RDMA",
		Long: `probe checks, for a->b and b->a, that plain IP traffic between the endpoints' addresses
crosses the lab's cable: link (up, carrier), neighbor (ARP resolves to the peer NIC's MAC),
route-out (unicast out of the source NIC), route-in (local delivery on the peer NIC) and udp
(datagrams to UDP 4791 arrive on the peer NIC, none on lo). A direction stops at its first
failing layer, which is explained with the kernel's counters and the fix. It needs no RDMA, so
it works on kernels without rdma_rxe; it sends a few ARP requests and datagrams and changes
nothing.

LAB is the name of a lab that is up, or its scenario (built-in name or path). The exit code is
1 when the probe fails, unless the scenario expects failure (expect.result: fail): then a
failing probe is the expected outcome (exit 0) and a passing one is not (exit 1).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			s, env, err := openLab(ctx, o, args[0])
			if err != nil {
				return err
			}
			defer env.Close()
			rep, err := probe.Run(ctx, env, s)
			if err != nil {
				return err
			}
			for _, d := range rep.Directions {
				for _, l := range d.Layers {
					slog.Debug("probe layer", "lab", rep.Lab, "direction", d.Name, "layer", l.Layer, "status", l.Status, "took", l.Duration)
				}
			}
			verdict, verr := probeVerdict(rep, s)
			out := cmd.OutOrStdout()
			if o.json {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				enc.SetEscapeHTML(false) // keep "a->b" readable
				if err := enc.Encode(probeOutput{Report: rep, Expected: expectedResult(s), Verdict: verdict}); err != nil {
					return err
				}
				return verr
			}
			if err := rep.WriteText(out); err != nil {
				return err
			}
			if s.Expect.Result == scenario.ResultFail {
				fmt.Fprintln(out, verdict)
			}
			return verr
		},
	}
}

// probeOutput is the --json document: the report, plus what the scenario expected and the
// verdict against it.
type probeOutput struct {
	*probe.Report
	Expected scenario.Result `json:"expected"`
	Verdict  string          `json:"verdict"`
}

func expectedResult(s *scenario.Scenario) scenario.Result {
	if s.Expect.Result == "" {
		return scenario.ResultPass
	}
	return s.Expect.Result
}

// probeVerdict judges the report against the scenario's expectation. A scenario that expects
// failure is probed to show its failure: then a failing probe is the expected outcome.
func probeVerdict(rep *probe.Report, s *scenario.Scenario) (string, error) {
	expectFail := s.Expect.Result == scenario.ResultFail
	d, l := rep.FirstFailure()
	switch {
	case !expectFail && rep.Passed:
		return "pass", nil
	case !expectFail:
		return "fail", withExit(exitExpectation, &traffic.ExpectationError{Lab: rep.Lab, Msg: "probe " + rep.Summary()})
	case l != nil:
		return fmt.Sprintf("expected failure: the probe fails at %s %s, as the scenario expects (expect: fail, failure: %s)", d.Label(), l.Layer, s.Expect.Failure), nil
	default:
		return "unexpected pass", withExit(exitExpectation, &traffic.ExpectationError{Lab: rep.Lab,
			Msg: fmt.Sprintf("probe passed, but the scenario expects failure (%s): the path works, so the lab does not reproduce the failure", s.Expect.Failure)})
	}
}
