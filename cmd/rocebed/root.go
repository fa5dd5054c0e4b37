package main

import (
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

// version is set with -ldflags "-X main.version=...".
var version = "dev"

// options are the flags every command shares.
type options struct {
	logLevel string
	json     bool
	stateDir string
	netns    string
	sets     []string
	side     string
}

// newRootCmd builds the command tree: one constructor per subcommand, one file each.
func newRootCmd() *cobra.Command {
	o := &options{}
	root := &cobra.Command{
		Use:   "rocebed",
		Short: "Soft-RoCE loopback testbeds from declarative scenarios",
		Long: `rocebed builds a two-NIC RoCE loopback on one host from a YAML scenario (veth cable or
existing NICs, rxe devices, routing and sysctl fixes), runs SEND-only traffic across it,
asserts completions on both sides, explains failures, and restores the host exactly.`,
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			if cmd.Annotations[readOnly] == "true" {
				// Nothing to undo: let Ctrl-C and SIGTERM end the process at once, even in
				// the middle of a read or a write that would block.
				signal.Reset(os.Interrupt, syscall.SIGTERM)
			}
			if err := checkNetnsFlag(o); err != nil {
				return err
			}
			return setupLogging(o.logLevel)
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError(err) })
	pf := root.PersistentFlags()
	pf.StringVar(&o.logLevel, "log-level", "info", "log level on stderr: debug, info, warn, error")
	pf.BoolVar(&o.json, "json", false, "print results as JSON on stdout")
	pf.StringVar(&o.stateDir, "state-dir", "/run/rocebed", "directory for lab journals and locks")
	pf.StringVar(&o.netns, "netns", "", "work inside this existing named network namespace (/run/netns/NAME) instead of the current one")
	pf.StringArrayVar(&o.sets, "set", nil, "override a scenario parameter: --set NAME=VALUE (repeatable)")
	pf.StringVar(&o.side, "side", "", "in a two-host lab, the host this is: a or b (the host of endpoint a or b)")

	for _, c := range commands {
		root.AddCommand(c(o))
	}
	wrapArgs(root)
	return root
}

// wrapArgs makes every argument-count error a usage error (exit 2).
func wrapArgs(c *cobra.Command) {
	if validate := c.Args; validate != nil {
		c.Args = func(cmd *cobra.Command, args []string) error { return usageError(validate(cmd, args)) }
	}
	for _, sub := range c.Commands() {
		wrapArgs(sub)
	}
}

// readOnly is the annotation of a command that changes nothing on the host; SIGINT and
// SIGTERM end such a command at once instead of asking it to stop.
const readOnly = "rocebed/read-only"

// readOnlyCommand marks c as one that changes nothing.
func readOnlyCommand(c *cobra.Command) *cobra.Command {
	if c.Annotations == nil {
		c.Annotations = map[string]string{}
	}
	c.Annotations[readOnly] = "true"
	return c
}

// commands lists the subcommand constructors; each file adds its own in init.
var commands []func(*options) *cobra.Command

func register(c func(*options) *cobra.Command) { commands = append(commands, c) }

func setupLogging(level string) error {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToLower(level))); err != nil {
		return usageError(fmt.Errorf("--log-level %q: want debug, info, warn or error", level))
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})))
	return nil
}
