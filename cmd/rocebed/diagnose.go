package main

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/rocebed/rocebed/testbed/diagnose"
	"github.com/rocebed/rocebed/testbed/traffic"
	"github.com/spf13/cobra"
)

func init() { register(newDiagnoseCmd) }

func newDiagnoseCmd(o *options) *cobra.Command {
	var fix, trace, noTraffic bool
	c := &cobra.Command{
		Use:   "diagnose LAB",
		Short: "Say where a lab's packets die, why, and the fix",
		Long: `diagnose runs the lab's traffic between two snapshots of its counters (RDMA hw_counters, the
NICs' and lo's statistics, rt_cache in_martian_src, Udp.NoPorts, IPReversePathFilter), and
reads what the kernel decides: neighbour states, the output route with oif and the input route
with iif, the route back, effective rp_filter and accept_local, ip rules, MTUs, RDMA devices,
port states and GIDs, and where each NIC lives. It
prints findings with stable codes (link-down, gid-missing, no-listener, neighbor-martian,
rp-filter, martian-source, local-route, not-on-wire, mtu-mismatch, neighbor-unresolved,
retry-exceeded, unexplained), the first one the root cause, each with its evidence and a fix as a scenario
snippet and as commands. A healthy lab gets no finding.

--trace adds the skb:kfree_skb drops (IPv4 and ARP, by freeing function) seen while the traffic
ran, from a private tracefs instance that is removed afterwards (tracefs is mounted for it and
unmounted if it was not mounted). It is off by default: on the Debian 6.1 test kernel under
QEMU TCG, setting up or removing the instance soft-locked a CPU in about 1 of 5 diagnoses.

--fix adds the suggested fix groups to the scenario, takes the lab down, brings it up again
with the fix (journaled: ` + "`rocebed down`" + ` restores the host exactly), reruns the traffic and
reports before and after. The lab stays up with the fix.

LAB is the name of a lab that is up, or its scenario. Exit codes: 0 a diagnosis was made
(whatever it found); 1 --fix did not turn the failure into a pass; 3 the lab is not up.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			name, err := labName(o, args[0])
			if err != nil {
				return err
			}
			s, env, err := openLab(ctx, o, args[0])
			if err != nil {
				return err
			}
			d, err := diagnose.Run(ctx, env, s, diagnose.Options{Trace: trace, NoTraffic: noTraffic})
			env.Close()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if !fix {
				if o.json {
					return d.WriteJSON(out)
				}
				return d.WriteText(out)
			}
			if len(d.Findings) == 0 && d.TrafficPassed {
				if o.json {
					return d.WriteJSON(out)
				}
				if err := d.WriteText(out); err != nil {
					return err
				}
				fmt.Fprintln(out, "\nnothing to fix: the lab is healthy")
				return nil
			}
			res, ferr := diagnose.FixLab(ctx, o.stateDir, name, d)
			if res == nil {
				res = &diagnose.FixResult{Before: d}
			}
			if err := writeFixResult(out, o.json, res, ferr); err != nil {
				return err
			}
			switch {
			case ferr != nil:
				return withExit(exitExpectation, ferr)
			case !res.Passed:
				return withExit(exitExpectation, &traffic.ExpectationError{Lab: name,
					Msg: "diagnose --fix: the traffic still fails with the fix (the lab stays up with it; `rocebed down " + name + "` restores the host)"})
			}
			return nil
		},
	}
	c.Flags().BoolVar(&fix, "fix", false, "apply the suggested fixes (down, add them to the scenario, up, rerun the traffic)")
	c.Flags().BoolVar(&trace, "trace", false, "add the skb:kfree_skb trace layer (mounts tracefs if needed; see below why it is off by default)")
	c.Flags().BoolVar(&noTraffic, "no-traffic", false, "do not run traffic: diagnose from configuration, routes and the probe")
	return c
}

// fixOutput is the --json document of --fix.
type fixOutput struct {
	*diagnose.FixResult
	Error string `json:"error,omitempty"`
}

func writeFixResult(w io.Writer, asJSON bool, res *diagnose.FixResult, ferr error) error {
	if asJSON {
		doc := fixOutput{FixResult: res}
		if ferr != nil {
			doc.Error = ferr.Error()
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		return enc.Encode(doc)
	}
	fmt.Fprintln(w, "before:")
	if err := res.Before.WriteText(w); err != nil {
		return err
	}
	if len(res.Applied) > 0 {
		fmt.Fprintln(w, "\napplied:")
		for _, f := range res.Applied {
			fmt.Fprintf(w, "  fix group %q added to the scenario; the lab was brought up again with it\n", f.Name)
		}
	}
	if res.After != nil {
		fmt.Fprintln(w, "\nafter:")
		if err := res.After.WriteText(w); err != nil {
			return err
		}
	}
	switch {
	case ferr != nil:
		fmt.Fprintf(w, "\nFIX FAILED: %v\n", ferr)
	case res.Passed:
		fmt.Fprintln(w, "\nFIXED: the traffic passes with the fix; the lab stays up with it (`rocebed down` restores the host)")
	default:
		fmt.Fprintln(w, "\nNOT FIXED: the traffic still fails with the fix")
	}
	return nil
}
