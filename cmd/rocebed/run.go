package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/rocebed/rocebed/internal/host"
	"github.com/rocebed/rocebed/testbed/diagnose"
	"github.com/rocebed/rocebed/testbed/lab"
	"github.com/rocebed/rocebed/testbed/pair"
	"github.com/rocebed/rocebed/testbed/runner"
	"github.com/rocebed/rocebed/testbed/scenario"
	"github.com/rocebed/rocebed/testbed/traffic"
	"github.com/spf13/cobra"
)

func init() { register(newRunCmd) }

// runFlags are run's own flags.
type runFlags struct {
	keep, ablate, noDiagnose, loopbackOK bool
	junit                                string
	listen, connect                      string
	peerTimeout                          time.Duration
}

func newRunCmd(o *options) *cobra.Command {
	var f runFlags
	c := &cobra.Command{
		Use:   "run SCENARIO [-- CMD [ARGS...]]",
		Short: "Bring the lab up, run its traffic (or your command), check the result, and take it down again",
		Long: `run is up → traffic → assertions → down. The lab is taken down (the host restored) also when the
traffic or the expectation fails and on Ctrl-C, unless --keep. SCENARIO is a built-in scenario
name or a file.

With -- CMD [ARGS...], run runs your command on the lab instead of the scenario's traffic. It
gets the lab in its environment — ROCEBED_LAB, and for each endpoint X (A, B) ROCEBED_X_DEVICE,
ROCEBED_X_NIC, ROCEBED_X_ADDR and ROCEBED_X_GID_INDEX — and its output passes through. The
verdict is its exit status and where its RDMA traffic went, from the counters around it:
crossed the cable (both devices and both NICs moved), local-loopback (it looped inside one
device: a failure unless --loopback-ok), martian-source (sent, then dropped as a martian by the
receiving NIC), lost, or no-rdma-traffic.

A two-host lab (its NICs say host: a or b) runs on both hosts at once, each with --side: one
listens on an address of a network other than the lab's cable (--listen ADDR:PORT), the other
connects to it (--connect ADDR:PORT), as perftest and the pingpong examples do. Each host
brings up only its own part, runs its end of every batch, and takes its part down; both get
the same report and verdict. If the other host goes away, this one gives a peer-lost verdict
within the batch's deadline and restores itself.

--json and --junit always write a report, also when the scenario is bad, the lab cannot come
up or the command fails; the failure is inside.

Exit codes: 0 the expectation held (an expected failure that happened included; with a
command: it exited 0 and its traffic crossed), 1 it did not, 2 invalid scenario or usage,
3 something the lab needs is missing (nothing was changed), 4 the kernel refused a change, or
another error.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var argv []string
			if dash := cmd.ArgsLenAtDash(); dash >= 0 {
				if dash != 1 || len(args) == 1 {
					return usageError(errors.New("want `run SCENARIO -- CMD [ARGS...]`"))
				}
				argv = args[1:]
			} else if len(args) != 1 {
				return usageError(fmt.Errorf("run takes one SCENARIO (a command goes after --), got %q", args))
			}
			if argv != nil && f.ablate {
				return usageError(errors.New("--ablate runs the scenario's own traffic: it does not take a command"))
			}
			out := &runOutput{w: cmd.OutOrStdout(), o: o, junit: f.junit, ref: args[0]}
			return out.finish(runScenario(cmd.Context(), o, f, args[0], argv, out))
		},
	}
	c.Flags().BoolVar(&f.keep, "keep", false, "leave the lab up afterwards (take it down with `rocebed down`)")
	c.Flags().StringVar(&f.junit, "junit", "", "also write the result as JUnit XML to this file")
	c.Flags().BoolVar(&f.noDiagnose, "no-diagnose", false, "do not diagnose a failed traffic run")
	c.Flags().BoolVar(&f.ablate, "ablate", false, "rerun with each declared fix removed in turn and say which fixes are necessary")
	c.Flags().BoolVar(&f.loopbackOK, "loopback-ok", false, "with a command: accept traffic that looped inside one device")
	c.Flags().StringVar(&f.listen, "listen", "", "two-host lab: wait on ADDR:PORT (this host's management address) for the other host's rocebed")
	c.Flags().StringVar(&f.connect, "connect", "", "two-host lab: connect to the other host's rocebed listening on ADDR:PORT")
	c.Flags().DurationVar(&f.peerTimeout, "peer-timeout", runner.DefaultPeerTimeout, "two-host lab: how long to wait for the other host to connect, and to come up")
	return c
}

// runScenario does the work of `run` and fills out; it returns the outcome as an error with
// its exit class (nil: the expectation held).
func runScenario(ctx context.Context, o *options, f runFlags, ref string, argv []string, out *runOutput) error {
	s, src, env, err := openScenario(o, ref)
	if err != nil {
		out.stage = "load"
		return err
	}
	defer env.Close()
	out.lab = s.Name
	opts := lab.UpOptions{StateDir: o.stateDir, Source: src, Sets: o.sets}
	if s.TwoHost() {
		return runSide(ctx, env, s, opts, argv, f, out)
	}
	if f.listen != "" || f.connect != "" {
		return usageError(fmt.Errorf("--listen and --connect are for a two-host lab; %s is on one host", s.Name))
	}
	if f.ablate {
		out.stage = "ablate"
		return runAblation(ctx, o, env, s, opts)
	}
	if argv != nil {
		return runCommand(ctx, env, s, opts, argv, f, out)
	}
	res, err := runner.Run(ctx, env, s, runner.Options{Up: opts, Keep: f.keep, Diagnose: !f.noDiagnose})
	if res.Plan == nil {
		out.stage = "up"
		// run needs the RDMA links: --skip-rdma (an up option) is no way out here.
		return classifyLabErr(withRDMAHint(err, fmt.Sprintf("for this scenario: `rocebed vm run %s`", ref))) // Up has rolled back
	}
	out.traffic, out.diagnosis, out.stage = res.Traffic, res.Diagnosis, "traffic"
	var de *runner.DownError
	if errors.As(err, &de) {
		return withExit(exitKernel, err)
	}
	if err != nil {
		return err
	}
	if !res.Traffic.ExpectationMet {
		return &traffic.ExpectationError{Lab: s.Name, Msg: res.Traffic.Verdict}
	}
	return nil
}

// runSide is `run SCENARIO --side a|b --listen|--connect ADDR:PORT`: this host's part of a
// two-host lab, with the other host's rocebed.
func runSide(ctx context.Context, env *host.Env, s *scenario.Scenario, opts lab.UpOptions, argv []string, f runFlags, out *runOutput) error {
	switch {
	case argv != nil:
		return usageError(fmt.Errorf("lab %s spans two hosts: run -- CMD is for one-host labs; bring each host's part up with `rocebed up %s --side a|b` and run your software on both", s.Name, out.ref))
	case f.ablate:
		return usageError(fmt.Errorf("lab %s spans two hosts: --ablate is for one-host labs (between two hosts no fix is needed)", s.Name))
	case (f.listen == "") == (f.connect == ""):
		return usageError(fmt.Errorf("lab %s spans two hosts: give this host --listen ADDR:PORT and the other --connect ADDR:PORT (or the other way round), on a network other than the lab's cable", s.Name))
	}
	out.side = string(s.Host)
	out.stage = "connect"
	cctx, cancel := context.WithTimeout(ctx, f.peerTimeout)
	var conn *pair.Conn
	var err error
	if f.listen != "" {
		conn, err = pair.Listen(cctx, f.listen, s, version)
	} else {
		conn, err = pair.Dial(cctx, f.connect, s, version)
	}
	cancel()
	switch {
	case errors.Is(err, pair.ErrMismatch):
		return usageError(err)
	case err != nil:
		return withExit(exitEnvironment, err) // nothing was changed
	}
	defer conn.Close()
	res, err := runner.RunSide(ctx, env, s, conn, runner.SideOptions{Up: opts, Keep: f.keep, PeerTimeout: f.peerTimeout, ExitCode: exitCode})
	out.peer = res.Peer
	var pe *runner.PeerError
	var de *runner.DownError
	switch {
	case errors.As(err, &pe):
		out.stage = "up"
		if pe.Exit == exitOK {
			return withExit(exitKernel, err)
		}
		return withExit(pe.Exit, err) // the other host's own exit code: both hosts exit alike
	case res.Plan == nil:
		out.stage = "up"
		return classifyLabErr(withRDMAHint(err, fmt.Sprintf("for this scenario in two guests: `rocebed vm run --two-hosts %s`", out.ref)))
	}
	out.traffic, out.stage = res.Traffic, "traffic"
	switch {
	case errors.As(err, &de):
		return withExit(exitKernel, err)
	case errors.Is(err, traffic.ErrPeerLost) && res.Traffic != nil:
		// The verdict of the batch in progress is peer-lost; the report says what this host saw.
		return &traffic.ExpectationError{Lab: s.Name, Msg: res.Traffic.Verdict}
	case errors.Is(err, traffic.ErrPeerLost):
		return withExit(exitExpectation, err)
	case err != nil:
		return err
	case !res.Traffic.ExpectationMet:
		return &traffic.ExpectationError{Lab: s.Name, Msg: res.Traffic.Verdict}
	}
	return nil
}

// runCommand is `run SCENARIO -- CMD`: the command's verdict is the outcome.
func runCommand(ctx context.Context, env *host.Env, s *scenario.Scenario, opts lab.UpOptions, argv []string, f runFlags, out *runOutput) error {
	copts := runner.CommandOptions{Up: opts, Argv: argv, Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr,
		Capture: out.o.json || f.junit != "", LoopbackOK: f.loopbackOK}
	if out.o.json {
		copts.Stdout = os.Stderr // stdout carries the JSON report; the command's output is in it too
	}
	res, err := runner.Command(ctx, env, s, copts)
	out.command = res
	switch {
	case res != nil && res.Endpoints[0].Device == "" && err != nil:
		out.stage = "up"
		return classifyLabErr(withRDMAHint(err, fmt.Sprintf("for this scenario: `rocebed vm run %s -- …`", out.ref)))
	case err != nil:
		out.stage = "command"
		var de *runner.DownError
		if errors.As(err, &de) {
			return withExit(exitKernel, err)
		}
		return err
	}
	out.stage = "command"
	if !res.Pass {
		return &traffic.ExpectationError{Lab: s.Name, Msg: res.Verdict}
	}
	return nil
}

// runOutput is what `run` reports, whatever happened: the traffic report and diagnosis, or the
// command's result, and the error with the stage it happened in.
type runOutput struct {
	w     io.Writer
	o     *options
	junit string
	ref   string

	lab       string
	side      string             // a two-host lab's host this is
	peer      *runner.PeerStatus // and what the other host said
	stage     string             // load, connect, up, traffic, command, ablate
	traffic   *traffic.Report
	diagnosis *diagnose.Diagnosis
	command   *runner.CommandResult
}

// runError is the failure inside a report.
type runError struct {
	Stage    string `json:"stage"`
	Message  string `json:"message"`
	ExitCode int    `json:"exit_code"`
}

// finish writes the report (text, or JSON with --json, and the JUnit file) and returns the
// outcome, joined with any error writing the report.
func (r *runOutput) finish(outcome error) error {
	if r.stage == "ablate" {
		return outcome // the ablation report is its own
	}
	var rerr *runError
	var xe *traffic.ExpectationError
	if outcome != nil && !errors.As(outcome, &xe) {
		rerr = &runError{Stage: r.stage, Message: outcome.Error(), ExitCode: exitCode(outcome)}
	}
	var errs []error
	if r.junit != "" {
		if err := r.writeJUnit(rerr); err != nil {
			errs = append(errs, err)
		}
	}
	var err error
	if r.o.json {
		err = r.writeJSON(rerr)
	} else {
		err = r.writeText()
	}
	if err != nil {
		errs = append(errs, fmt.Errorf("write report: %w", err))
	}
	if outcome != nil {
		return errors.Join(append([]error{outcome}, errs...)...)
	}
	if len(errs) > 0 {
		return withExit(exitKernel, errors.Join(errs...))
	}
	return nil
}

func (r *runOutput) labName() string {
	if r.lab != "" {
		return r.lab
	}
	return r.ref
}

func (r *runOutput) writeJSON(rerr *runError) error {
	doc := map[string]any{"lab": r.labName(), "traffic": nil}
	if r.traffic != nil {
		var buf bytes.Buffer
		if err := r.traffic.WriteJSON(&buf); err != nil {
			return err
		}
		doc["traffic"] = json.RawMessage(bytes.TrimSpace(buf.Bytes()))
	}
	if r.diagnosis != nil {
		doc["diagnosis"] = r.diagnosis
	}
	if r.command != nil {
		doc["command"] = r.command
	}
	if r.side != "" {
		doc["host"] = r.side
		doc["peer"] = r.peer
	}
	if rerr != nil {
		doc["error"] = rerr
	}
	return writeJSON(r.w, doc)
}

func (r *runOutput) writeText() error {
	if r.traffic != nil && r.side != "" {
		// Half of a two-host report came from the other host: nothing in it may drive the
		// terminal.
		var b strings.Builder
		if err := r.traffic.WriteText(&b); err != nil {
			return err
		}
		if _, err := io.WriteString(r.w, termSafe(b.String())); err != nil {
			return err
		}
	} else if r.traffic != nil {
		if err := r.traffic.WriteText(r.w); err != nil {
			return err
		}
	}
	if r.diagnosis != nil {
		fmt.Fprintln(r.w)
		if err := r.diagnosis.WriteText(r.w); err != nil {
			return err
		}
	}
	if p := r.peer; p != nil {
		if _, err := fmt.Fprint(r.w, termSafe(fmt.Sprintf("this is host %s; %s", r.side, p.Summary()))+"\n"); err != nil {
			return err
		}
	}
	if c := r.command; c != nil && c.Env != nil {
		mark := "FAIL"
		if c.Pass {
			mark = "PASS"
		}
		_, err := fmt.Fprintf(r.w, "%s lab %s: %s\n  %s\n", mark, c.Lab, strings.Join(c.Argv, " "), c.Verdict)
		return err
	}
	return nil
}

func (r *runOutput) writeJUnit(rerr *runError) error {
	f, err := os.Create(r.junit)
	if err != nil {
		return fmt.Errorf("write junit: %w", err)
	}
	switch {
	case r.traffic != nil && rerr == nil:
		err = r.traffic.WriteJUnit(f)
	case r.command != nil && r.command.Env != nil:
		c := r.command
		jc := traffic.JUnitCase{Lab: r.labName(), Name: strings.Join(c.Argv, " "), MS: c.MS, Output: c.Stdout + c.Stderr,
			Properties: map[string]string{"path": string(c.Path.Verdict), "exit_code": fmt.Sprint(c.ExitCode)}}
		if !c.Pass {
			jc.Failure, jc.Message = string(c.Path.Verdict), c.Verdict
			if c.ExitCode != 0 {
				jc.Failure = "exit-status"
			}
		}
		if rerr != nil {
			jc.Failure, jc.Message = rerr.Stage, rerr.Message
		}
		err = traffic.WriteJUnitCases(f, jc)
	default:
		msg := "no result"
		stage := r.stage
		if rerr != nil {
			msg = rerr.Message
		}
		err = traffic.WriteJUnitCases(f, traffic.JUnitCase{Lab: r.labName(), Name: stage, Failure: stage, Message: msg})
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write junit %s: %w", r.junit, err)
	}
	return nil
}

// runAblation runs the scenario with all fixes and then without each one, bringing the lab up
// and down around every run. Exit 0 when the baseline passed (the ablation is meaningful),
// 1 when the traffic fails even with every fix.
func runAblation(ctx context.Context, o *options, env *host.Env, s *scenario.Scenario, opts lab.UpOptions) error {
	if s.Expect.Result != scenario.ResultPass {
		return usageError(fmt.Errorf("--ablate needs a scenario that expects pass; %s expects %s", s.Name, s.Expect.Failure))
	}
	rep, err := runner.Ablate(ctx, env, s, opts)
	if err != nil {
		return classifyLabErr(err)
	}
	if o.json {
		err = writeJSON(os.Stdout, rep)
	} else {
		err = rep.WriteText(os.Stdout)
	}
	if err != nil {
		return err
	}
	if !rep.Baseline.Pass {
		return &traffic.ExpectationError{Lab: s.Name, Msg: "the traffic fails even with every fix: " + rep.Baseline.Verdict}
	}
	return nil
}
