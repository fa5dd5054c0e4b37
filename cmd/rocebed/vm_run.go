package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/rocebed/rocebed/vm"
	"github.com/spf13/cobra"
)

func newVMRunCmd(o *options) *cobra.Command {
	var f vmFlags
	var junit string
	var loopbackOK, twoHosts bool
	c := &cobra.Command{
		Use:   "run SCENARIO [-- CMD [ARGS...]]",
		Short: "Run a scenario (or your command on its lab) with this rocebed binary in the guest, where rdma_rxe exists",
		Long: `run boots the guest and runs the scenario there with the current rocebed binary (copied into the
work directory when the guest cannot see it): ` + "`rocebed run SCENARIO [-- CMD [ARGS...]]`" + ` in the guest.
The guest sees this machine's root read-only, so CMD can be any program installed here.
--json, --set, --log-level and --loopback-ok pass through; --junit FILE is written in the guest
and copied back to FILE.

With --two-hosts, run boots two guests cabled to each other (as ` + "`vm exec --pair`" + `) and runs a
two-host lab across them: ` + "`rocebed run SCENARIO --side a --listen 192.168.100.1:7471`" + ` in guest a,
` + "`--side b --connect 192.168.100.1:7471`" + ` in guest b. Their output is prefixed "a| " and "b| ";
--json prints {"a": REPORT, "b": REPORT}; --junit takes guest a's report (both hosts judge
the same). The exit status is guest a's when it is not 0, else b's.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var argv []string
			if dash := cmd.ArgsLenAtDash(); dash >= 0 {
				if dash != 1 || len(args) == 1 {
					return usageError(errors.New("want `vm run SCENARIO -- CMD [ARGS...]`"))
				}
				argv = args[1:]
			} else if len(args) != 1 {
				return usageError(fmt.Errorf("vm run takes one SCENARIO (a command goes after --), got %q", args))
			}
			if twoHosts {
				if argv != nil {
					return usageError(errors.New("--two-hosts runs the scenario's traffic: it does not take a command"))
				}
				return vmRunTwoHosts(cmd, &f, o, args[0], junit)
			}
			e, err := f.execOptions(cmd)
			if err != nil {
				return err
			}
			work, err := os.MkdirTemp("", "rocebed-vmrun-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(work)
			e.WorkDir = work

			exe, err := os.Executable()
			if err != nil {
				return fmt.Errorf("find the rocebed binary: %w", err)
			}
			if exe, err = guestPath(exe, work, "rocebed"); err != nil {
				return err
			}
			scenario := args[0]
			if st, err := os.Stat(scenario); err == nil && st.Mode().IsRegular() {
				if scenario, err = guestPath(scenario, work, filepath.Base(scenario)); err != nil {
					return err
				}
			}
			guestJUnit := ""
			if junit != "" {
				guestJUnit = filepath.Join(work, "junit.xml")
			}
			e.Argv = guestScenarioArgv(cmd.Root(), exe, scenario, o, guestJUnit)
			if argv != nil {
				if loopbackOK {
					e.Argv = append(e.Argv[:len(e.Argv)-1], "--loopback-ok", scenario)
				}
				e.Argv = append(append(e.Argv, "--"), argv...)
			}
			res, err := vm.Exec(cmd.Context(), e)
			if guestJUnit != "" {
				if cerr := copyFile(guestJUnit, junit); cerr != nil && err == nil && res.ExitCode == 0 {
					err = fmt.Errorf("copy the guest's JUnit report to %s: %w", junit, cerr)
				}
			}
			return vmExit(res, err)
		},
	}
	f.register(c.Flags(), 10*time.Minute)
	c.Flags().StringVar(&junit, "junit", "", "write a JUnit XML report to FILE (needs `rocebed run`)")
	c.Flags().BoolVar(&loopbackOK, "loopback-ok", false, "with a command: accept traffic that looped inside one device")
	c.Flags().BoolVar(&twoHosts, "two-hosts", false, "run a two-host lab in two guests cabled to each other, one host each")
	return c
}

// vmRunTwoHosts is `vm run --two-hosts SCENARIO`: host a of the lab in guest a, listening on its
// management address, host b in guest b, connecting to it.
func vmRunTwoHosts(cmd *cobra.Command, f *vmFlags, o *options, scenario, junit string) error {
	a, b, err := f.pairExecOptions(cmd)
	if err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find the rocebed binary: %w", err)
	}
	var outA, outB bytes.Buffer
	guests := []struct {
		e    *vm.ExecOptions
		side string
		out  *bytes.Buffer
	}{{&a, "a", &outA}, {&b, "b", &outB}}
	guestJUnit := ""
	for _, g := range guests {
		work, err := os.MkdirTemp("", "rocebed-vmrun-"+g.side+"-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(work)
		g.e.WorkDir = work
		gexe, err := guestPath(exe, work, "rocebed")
		if err != nil {
			return err
		}
		scn := scenario
		if st, err := os.Stat(scenario); err == nil && st.Mode().IsRegular() {
			if scn, err = guestPath(scenario, work, filepath.Base(scenario)); err != nil {
				return err
			}
		}
		j := ""
		if junit != "" && g.side == "a" {
			j = filepath.Join(work, "junit.xml")
			guestJUnit = j
		}
		g.e.Argv = guestPairArgv(gexe, scn, o, j, g.side)
		if o.json {
			g.e.Stdout = g.out
		}
	}
	r := vm.ExecPair(cmd.Context(), vm.PairOptions{A: a, B: b})
	flushAll(a, b)
	if o.json {
		if err := pairJSON(cmd.OutOrStdout(), outA.Bytes(), outB.Bytes()); err != nil {
			return err
		}
	}
	err = pairExit(r)
	if guestJUnit != "" {
		if cerr := copyFile(guestJUnit, junit); cerr != nil && err == nil {
			err = fmt.Errorf("copy guest a's JUnit report to %s: %w", junit, cerr)
		}
	}
	return err
}

// guestPairArgv is host side's command in a pair of guests: `rocebed run --side SIDE`, host a
// listening on its management address, host b connecting to it.
func guestPairArgv(exe, scenario string, o *options, junit, side string) []string {
	addr := fmt.Sprintf("%s:%d", vm.PairAddrA.Addr(), pairPort)
	argv := []string{exe, "run", "--side", side}
	if side == "a" {
		argv = append(argv, "--listen", addr)
	} else {
		argv = append(argv, "--connect", addr)
	}
	argv = append(argv, "--log-level", o.logLevel)
	for _, s := range o.sets {
		argv = append(argv, "--set", s)
	}
	if o.json {
		argv = append(argv, "--json")
	}
	if junit != "" {
		argv = append(argv, "--junit", junit)
	}
	return append(argv, scenario)
}

// guestScenarioArgv is the guest command for one scenario: `rocebed run` when this binary has it,
// else up (without RDMA links) and probe, then down whatever happened. Switch it here.
func guestScenarioArgv(root *cobra.Command, exe, scenario string, o *options, junit string) []string {
	common := []string{"--log-level", o.logLevel}
	for _, s := range o.sets {
		common = append(common, "--set", s)
	}
	if o.json {
		common = append(common, "--json")
	}
	if c, _, err := root.Find([]string{"run"}); err == nil && c != root && c.Name() == "run" {
		argv := append([]string{exe, "run"}, common...)
		if junit != "" {
			argv = append(argv, "--junit", junit)
		}
		return append(argv, scenario)
	}
	// sh gets the words as positional parameters; nothing the user gave is parsed as shell.
	script := `exe=$1 scn=$2; shift 2
"$exe" up --skip-rdma "$@" "$scn" && "$exe" probe "$@" "$scn"
rc=$?
"$exe" down "$@" "$scn" || { [ $rc -eq 0 ] && rc=4; }
exit $rc`
	return append([]string{"/bin/sh", "-c", script, "rocebed-vm-run", exe, scenario}, common...)
}

// guestPath returns a path the guest sees for the host file p: p itself when visible, else a
// copy in the work dir named name.
func guestPath(p, work, name string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	if vm.GuestVisible(abs) {
		return abs, nil
	}
	dst := filepath.Join(work, name)
	if err := copyFile(abs, dst); err != nil {
		return "", fmt.Errorf("copy %s into the guest's work dir: %w", abs, err)
	}
	return dst, nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, st.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
