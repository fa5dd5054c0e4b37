package main

import (
	"errors"

	"github.com/rocebed/rocebed/testbed/scenario"
	"github.com/spf13/cobra"
)

func init() { register(newSchemaCmd) }

func newSchemaCmd(o *options) *cobra.Command {
	return readOnlyCommand(&cobra.Command{
		Use:   "schema",
		Short: "Print the JSON Schema of the scenario format (for editors and CI linters)",
		Long: `schema prints a JSON Schema (draft 2020-12) of the scenario format, generated from the Go
types rocebed decodes into, so it always matches this binary. It checks structure (keys,
types, enums); rocebed validate also checks meaning (ranges, references between fields).`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError(errors.New("schema takes no arguments"))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			data, err := scenario.JSONSchema()
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(append(data, '\n'))
			return err
		},
	})
}
