package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/rocebed/rocebed/testbed/plan"
	"github.com/spf13/cobra"
)

func init() { register(newPlanCmd) }

func newPlanCmd(o *options) *cobra.Command {
	var skipRDMA bool
	c := &cobra.Command{
		Use:   "plan SCENARIO",
		Short: "Print every host change `up` would make, in order; changes nothing, needs no root",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, _, env, err := openScenario(o, args[0])
			if err != nil {
				return err
			}
			defer env.Close()
			p, err := plan.MakePlan(s, plan.View(env), plan.PlanOptions{SkipRDMA: skipRDMA})
			if err != nil {
				return err
			}
			if o.json {
				return writeJSON(os.Stdout, p)
			}
			writePlan(os.Stdout, p)
			return nil
		},
	}
	c.Flags().BoolVar(&skipRDMA, "skip-rdma", false, "leave out the rxe links")
	return readOnlyCommand(c)
}

// writePlan prints a plan as numbered commands with the fix each belongs to and old → new.
// Each command is one a shell runs as printed: names and values that need it are quoted
// (plan.Quote), and nothing printed can drive the terminal (termSafe).
func writePlan(w io.Writer, p *plan.Plan) {
	host := ""
	if p.Host != "" {
		host = ", host " + p.Host
	}
	fmt.Fprint(w, termSafe(fmt.Sprintf("lab %s (%s)%s: %d changes", p.Lab, p.File, host, len(p.Steps)))+"\n")
	for i, st := range p.Steps {
		line := fmt.Sprintf("%3d. %s", i+1, st.Command())
		if t := st.Transition(); t != "" {
			line += "   (" + t + ")"
		}
		if st.Fix != "" {
			line += "   [fix " + st.Fix + "]"
		}
		fmt.Fprint(w, termSafe(line)+"\n")
	}
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
