package main

import (
	"fmt"
	"os"

	"github.com/rocebed/rocebed/testbed/lab"
	"github.com/spf13/cobra"
)

func init() { register(newStatusCmd) }

func newStatusCmd(o *options) *cobra.Command {
	return readOnlyCommand(&cobra.Command{
		Use:   "status LAB",
		Short: "Show whether a lab is up, and the changes its journal records",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, err := labName(o, args[0])
			if err != nil {
				return err
			}
			st, err := lab.StatusOf(o.stateDir, name)
			if err != nil {
				return classifyLabErr(err)
			}
			if o.json {
				return writeJSON(os.Stdout, st)
			}
			fmt.Printf("lab %s: %s\n", st.Lab, st.State)
			if st.State == lab.StateDown {
				return nil
			}
			where := "the current network namespace"
			if st.Netns != "" {
				where = "netns " + st.Netns
			}
			fmt.Println(termSafe(fmt.Sprintf("  scenario %s, in %s, brought up by pid %d at %s", st.File, where, st.PID, st.Started.Format("2006-01-02 15:04:05Z"))))
			fmt.Printf("  %d of %d changes made, %d refused, %d undone\n", st.Done, st.Planned, st.Failed, st.Undone)
			for i, s := range st.Steps {
				fmt.Println(termSafe(fmt.Sprintf("  %3d. %s", i+1, s.Command())))
			}
			if st.State == lab.StateIncomplete {
				fmt.Printf("  an up or down was interrupted: run `rocebed down %s` to restore the host\n", st.Lab)
			}
			return nil
		},
	})
}
