package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/rocebed/rocebed/testbed/lab"
	"github.com/spf13/cobra"
)

func init() { register(newEnvCmd) }

func newEnvCmd(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "env LAB",
		Short: "Print a lab's endpoints as shell exports, for your own RDMA software: eval \"$(rocebed env LAB)\"",
		Long: `env prints, for a lab that is up, the variables ` + "`run SCENARIO -- CMD`" + ` gives its command:
ROCEBED_LAB, and for each endpoint X (A, B) ROCEBED_X_DEVICE, ROCEBED_X_NIC, ROCEBED_X_ADDR and
ROCEBED_X_GID_INDEX, as ` + "`export NAME='VALUE'`" + ` lines (or a JSON object with --json).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, env, err := openLab(cmd.Context(), o, args[0])
			if err != nil {
				return err
			}
			defer env.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			ends, err := lab.ResolveEndpoints(ctx, env, s)
			if err != nil {
				return withExit(exitEnvironment, fmt.Errorf("lab %s: %w", s.Name, err))
			}
			vars := lab.EnvVars(s.Name, ends)
			if o.json {
				m := map[string]string{}
				for _, kv := range vars {
					k, v, _ := strings.Cut(kv, "=")
					m[k] = v
				}
				return writeJSON(cmd.OutOrStdout(), m)
			}
			for _, kv := range vars {
				k, v, _ := strings.Cut(kv, "=")
				fmt.Fprintf(cmd.OutOrStdout(), "export %s=%s\n", k, shellQuote(v))
			}
			return nil
		},
	}
}

// shellQuote quotes a value for sh: single quotes, with any single quote closed, escaped and
// reopened.
func shellQuote(v string) string {
	return "'" + strings.ReplaceAll(v, "'", `'\''`) + "'"
}
