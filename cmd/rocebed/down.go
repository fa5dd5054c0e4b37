package main

import (
	"fmt"
	"os"

	"github.com/rocebed/rocebed/testbed/lab"
	"github.com/spf13/cobra"
)

func init() { register(newDownCmd) }

func newDownCmd(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "down LAB",
		Short: "Undo everything the lab's journal records; idempotent",
		Long:  "LAB is a lab name or the scenario (name or path) it was brought up from.",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, err := labName(o, args[0])
			if err != nil {
				return err
			}
			wasUp := lab.JournalExists(o.stateDir, name)
			if err := lab.Down(cmd.Context(), o.stateDir, name); err != nil {
				return classifyLabErr(err)
			}
			if o.json {
				return writeJSON(os.Stdout, map[string]any{"lab": name, "was_up": wasUp, "down": true})
			}
			if wasUp {
				fmt.Printf("lab %s is down; the host is restored\n", name)
			} else {
				fmt.Printf("lab %s was not up; nothing to do\n", name)
			}
			return nil
		},
	}
}
