package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/rocebed/rocebed/internal/host"
	"github.com/rocebed/rocebed/testbed/counters"
	"github.com/rocebed/rocebed/testbed/lab"
	"github.com/rocebed/rocebed/testbed/scenario"
)

// CommandOptions control Command.
type CommandOptions struct {
	Up lab.UpOptions
	// Argv is the command and its arguments; it is executed directly, never through a shell.
	Argv []string
	// Stdin, Stdout and Stderr are the command's; nil means none (Stdin) or discard.
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Capture keeps up to CaptureLimit bytes of each stream in the result (for reports).
	Capture bool
	// LoopbackOK makes traffic that looped inside one device acceptable.
	LoopbackOK bool
}

// CaptureLimit bounds how much of each of the command's streams a result keeps.
const CaptureLimit = 1 << 20

// CommandResult is what a user's command did on a lab.
type CommandResult struct {
	Lab       string          `json:"lab"`
	Argv      []string        `json:"argv"`
	Env       []string        `json:"env"`
	Endpoints [2]lab.Endpoint `json:"endpoints"`
	// ExitCode is the command's exit status (-1 when it did not start or died by a signal).
	ExitCode int     `json:"exit_code"`
	Error    string  `json:"error,omitempty"` // why it did not start, or the signal
	MS       float64 `json:"ms"`
	Path     Path    `json:"path"`
	// Pass: the command exited 0 and its RDMA traffic crossed the cable (or looped inside a
	// device, with LoopbackOK).
	Pass    bool   `json:"pass"`
	Verdict string `json:"verdict"`
	Stdout  string `json:"stdout,omitempty"`
	Stderr  string `json:"stderr,omitempty"`
}

// endpointWait bounds waiting for the endpoints' ports and GIDs after `up`.
const endpointWait = 10 * time.Second

// killGrace is how long the command's leftover processes get between SIGTERM and SIGKILL.
const killGrace = 3 * time.Second

// Command brings the lab up, runs the user's command with the lab described in its
// environment (lab.EnvVars), reads the lab's counters before and after it, and always takes
// the lab down again (processes the command left behind are stopped first, so none holds the
// lab's devices). The result says the command's exit status and where its RDMA traffic went.
// An error means the lab could not be used at all (res says how far it got).
func Command(ctx context.Context, env *host.Env, s *scenario.Scenario, opts CommandOptions) (res *CommandResult, err error) {
	if len(opts.Argv) == 0 {
		return nil, errors.New("no command to run")
	}
	res = &CommandResult{Lab: s.Name, Argv: opts.Argv, ExitCode: -1}
	if _, err := lab.Up(ctx, env, s, opts.Up); err != nil {
		return res, err
	}
	defer func() {
		if derr := lab.Down(context.WithoutCancel(ctx), opts.Up.StateDir, s.Name); derr != nil {
			err = errors.Join(err, &DownError{Lab: s.Name, Err: derr})
			return
		}
		slog.Info("lab is down; the host is restored", "lab", s.Name)
	}()
	wctx, cancel := context.WithTimeout(ctx, endpointWait)
	res.Endpoints, err = lab.ResolveEndpoints(wctx, env, s)
	cancel()
	if err != nil {
		return res, err
	}
	res.Env = lab.EnvVars(s.Name, res.Endpoints)
	before, err := counters.TakeSnapshot(env, s)
	if err != nil {
		return res, fmt.Errorf("read the lab's counters: %w", err)
	}

	start := time.Now()
	runCommand(ctx, res, opts)
	res.MS = float64(time.Since(start).Microseconds()) / 1000

	after, err := counters.TakeSnapshotAfter(env, s, before)
	if err != nil {
		return res, fmt.Errorf("read the lab's counters: %w", err)
	}
	a, b := res.Endpoints[0], res.Endpoints[1]
	res.Path = JudgePath(after.Delta(before), PathDevice{Device: a.Device, NIC: a.NIC}, PathDevice{Device: b.Device, NIC: b.NIC})
	res.judge(opts.LoopbackOK)
	return res, nil
}

// judge combines the exit status and the path into the verdict.
func (r *CommandResult) judge(loopbackOK bool) {
	status := fmt.Sprintf("exited %d", r.ExitCode)
	if r.Error != "" {
		status = r.Error
	}
	pathOK := r.Path.Verdict == PathCrossed || loopbackOK && r.Path.Verdict == PathLoopback
	r.Pass = r.ExitCode == 0 && pathOK
	switch {
	case r.Pass:
		r.Verdict = fmt.Sprintf("command %s; %s: %s", status, r.Path.Verdict, r.Path.Reason)
	case r.ExitCode == 0:
		r.Verdict = fmt.Sprintf("command %s, but its traffic did not cross the cable: %s: %s", status, r.Path.Verdict, r.Path.Reason)
	default:
		r.Verdict = fmt.Sprintf("command %s; %s: %s", status, r.Path.Verdict, r.Path.Reason)
	}
}

// runCommand runs the command in its own process group, so that when it ends (or ctx is
// cancelled) whatever it started in the background can be stopped too.
func runCommand(ctx context.Context, res *CommandResult, opts CommandOptions) {
	cmd := exec.Command(opts.Argv[0], opts.Argv[1:]...)
	cmd.Env = append(os.Environ(), res.Env...)
	cmd.Stdin = opts.Stdin
	var out, errOut capture
	cmd.Stdout, cmd.Stderr = sink(opts.Stdout, &out, opts.Capture), sink(opts.Stderr, &errOut, opts.Capture)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// A process the command left in the background keeps its output pipes open: once the
	// command itself has exited, Wait gives up on them after this and the group is stopped.
	cmd.WaitDelay = time.Second
	slog.Info("running command on the lab", "lab", res.Lab, "argv", opts.Argv)
	if err := cmd.Start(); err != nil {
		res.Error = err.Error()
		return
	}
	pgid := cmd.Process.Pid
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		stopGroup(pgid)
		err = <-done
	}
	stopGroup(pgid) // what it left running in the background
	res.Stdout, res.Stderr = out.String(), errOut.String()
	var ee *exec.ExitError
	switch {
	case err == nil, errors.Is(err, exec.ErrWaitDelay):
		res.ExitCode = cmd.ProcessState.ExitCode()
	case errors.As(err, &ee):
		res.ExitCode = ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			res.Error = "killed by " + ws.Signal().String()
		}
	default:
		res.Error = err.Error()
	}
}

// stopGroup sends SIGTERM to a process group, and SIGKILL if it has not gone after
// killGrace.
func stopGroup(pgid int) {
	if syscall.Kill(-pgid, syscall.SIGTERM) != nil {
		return // no such group left
	}
	for deadline := time.Now().Add(killGrace); time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		if syscall.Kill(-pgid, 0) != nil {
			return
		}
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
}

// capture keeps the first CaptureLimit bytes written to it.
type capture struct {
	mu  sync.Mutex
	buf []byte
}

func (c *capture) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if room := CaptureLimit - len(c.buf); room > 0 {
		c.buf = append(c.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (c *capture) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return string(c.buf)
}

// sink is where one of the command's streams goes: the caller's writer, the capture, or both.
func sink(w io.Writer, c *capture, keep bool) io.Writer {
	switch {
	case w == nil && !keep:
		return nil
	case w == nil:
		return c
	case !keep:
		return w
	}
	return io.MultiWriter(w, c)
}
