package vm

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rocebed/rocebed/internal/preflight"
)

// Exec boots the image, runs o.Argv in the guest and returns its exit status in Result.ExitCode.
// The command's stdout and stderr are streamed to o.Stdout and o.Stderr while it runs. A guest
// that crashes, hangs or never reports a status yields a *GuestError (ExitTimeout or
// ExitGuestFailed); one whose boot hangs (BootTimeout) is first booted once more. QEMU runs in
// its own process group with a parent-death signal and is killed when ctx ends or the host
// deadline passes; Exec never returns with QEMU still running.
func Exec(ctx context.Context, o ExecOptions) (*Result, error) {
	if o.QEMU == "" {
		o.QEMU = "qemu-system-x86_64"
	}
	qemu, err := exec.LookPath(o.QEMU)
	if err != nil {
		return nil, &preflight.Error{Check: "qemu", Need: o.QEMU, Have: "not in PATH",
			Hint: "run `apt-get install qemu-system-x86`", Err: err}
	}
	if o.Image == nil {
		if o.Image, err = CurrentImage(""); err != nil {
			return nil, err
		}
	}
	if o.SMP <= 0 {
		o.SMP = 2
	}
	if o.MemMB <= 0 {
		o.MemMB = 1024
	}
	if o.HostGrace <= 0 {
		o.HostGrace = 60 * time.Second
	}
	if o.BootTimeout <= 0 {
		o.BootTimeout = 2 * time.Minute
	}
	for _, w := range []*io.Writer{&o.Stdout, &o.Stderr, &o.Log} {
		if *w == nil {
			*w = io.Discard
		}
	}

	work := o.WorkDir
	if work == "" {
		if work, err = os.MkdirTemp("", "rocebed-vm-"); err != nil {
			return nil, fmt.Errorf("create work dir: %w", err)
		}
		defer os.RemoveAll(work)
	}
	if work, err = filepath.Abs(work); err != nil {
		return nil, err
	}
	if strings.ContainsAny(work, " \t\n\"'") {
		return nil, fmt.Errorf("work dir %q: the kernel command line cannot carry spaces or quotes", work)
	}
	ctl := filepath.Join(work, ".vm")
	os.RemoveAll(ctl)
	if err := os.MkdirAll(ctl, 0o755); err != nil {
		return nil, fmt.Errorf("create control dir: %w", err)
	}
	dir := o.Dir
	if dir != "" && !GuestVisible(dir) && !within(dir, work) {
		fmt.Fprintf(o.Log, "vm: %s is not visible in the guest; the command runs in %s\n", dir, work)
		dir = ""
	}
	script, err := commandScript(o.Argv, o.Env, dir, work, o.NICs)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(ctl, "cmd.sh"), []byte(script), 0o644); err != nil {
		return nil, err
	}

	accel, why := chooseAccel(o.Accel)
	m, err := chooseMachine(o.Image, accel, qemu, o.Machine)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(o.Log, "vm: accelerator %s (%s), machine %s (%s), -smp %d -m %d, kernel %s\n", accel, why, m.name, m.why, o.SMP, o.MemMB, o.Image.KernelVersion)
	res, err := boot(ctx, &o, qemu, accel, m, work, ctl)
	var ge *GuestError
	if errors.As(err, &ge) && ge.bootHung && ctx.Err() == nil {
		fmt.Fprintf(o.Log, "vm: %s (console: %q); booting it once more\n", ge.Cause, lastLine(ge.Console))
		for _, f := range []string{"stdout", "stderr", "rc"} {
			os.Remove(filepath.Join(ctl, f))
		}
		res, err = boot(ctx, &o, qemu, accel, m, work, ctl)
	}
	return res, err
}

func lastLine(s string) string {
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// boot runs QEMU once: the guest boots, runs the command in ctl/cmd.sh, reports its status and
// powers off. QEMU is gone when it returns.
func boot(ctx context.Context, o *ExecOptions, qemu, accel string, m machine, work, ctl string) (*Result, error) {
	hostCtx := ctx
	var hostDeadline time.Duration
	if o.Timeout > 0 {
		hostDeadline = o.Timeout + o.HostGrace
		var cancel context.CancelFunc
		hostCtx, cancel = context.WithTimeout(ctx, hostDeadline)
		defer cancel()
	}

	// Pdeathsig follows the thread that forked QEMU, not the process: keep this goroutine on
	// that thread until QEMU is reaped, so no other goroutine's thread exit can kill the guest.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cmd := exec.Command(qemu, qemuArgs(o.Image, o, accel, m, work)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	var qemuErr bytes.Buffer
	cmd.Stderr = &qemuErr
	console, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", qemu, err)
	}
	res := &Result{Accel: accel, QEMUPid: cmd.Process.Pid}
	pgid := cmd.Process.Pid
	var killMu sync.Mutex
	reaped := false
	killQEMU := func() {
		killMu.Lock()
		defer killMu.Unlock()
		if !reaped {
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
		}
	}
	defer killQEMU() // whatever happens below, QEMU's group does not outlive Exec

	exited := make(chan struct{})
	go func() {
		select {
		case <-hostCtx.Done():
			killQEMU()
		case <-exited:
		}
	}()

	var tail consoleTail
	var tailMu sync.Mutex
	consoleDone := make(chan struct{})
	started := make(chan struct{}) // closed when the guest starts the command
	go func() {
		defer close(consoleDone)
		r := bufio.NewReader(console)
		for {
			line, err := r.ReadString('\n')
			if line != "" {
				if o.Console != nil {
					io.WriteString(o.Console, line)
				}
				tailMu.Lock()
				was := tail.started
				tail.add(strings.TrimSuffix(line, "\n"), time.Now())
				if was.IsZero() && !tail.started.IsZero() {
					close(started)
				}
				tailMu.Unlock()
			}
			if err != nil {
				return
			}
		}
	}()

	var bootHung atomic.Bool
	go func() {
		t := time.NewTimer(o.BootTimeout)
		defer t.Stop()
		select {
		case <-t.C:
			tailMu.Lock()
			hung := tail.started.IsZero() // started in the meantime: not hung, and must not run twice
			tailMu.Unlock()
			if hung {
				bootHung.Store(true)
				killQEMU()
			}
		case <-started:
		case <-exited:
		}
	}()

	streamStop := make(chan struct{})
	streamDone := make(chan struct{})
	go func() {
		defer close(streamDone)
		streamFiles(streamStop, filepath.Join(ctl, "stdout"), o.Stdout, filepath.Join(ctl, "stderr"), o.Stderr)
	}()

	<-consoleDone // QEMU closed its stdout: it is exiting
	waitCh := make(chan error, 1)
	go func() { waitCh <- cmd.Wait() }()
	var waitErr error
	select {
	case waitErr = <-waitCh:
	case <-time.After(5 * time.Second):
		killQEMU()
		waitErr = <-waitCh
	}
	killMu.Lock()
	reaped = true
	killMu.Unlock()
	close(exited)
	res.Total = time.Since(start)
	close(streamStop)
	<-streamDone

	tailMu.Lock()
	defer tailMu.Unlock()
	if !tail.started.IsZero() {
		res.Boot = tail.started.Sub(start)
	}
	rc, rcErr := os.ReadFile(filepath.Join(ctl, "rc"))
	rcText := strings.TrimSpace(string(rc))
	if rcErr != nil && tail.rc != "" {
		rcText = tail.rc
	}
	switch {
	case rcText == "timeout":
		return res, &GuestError{Code: ExitTimeout, Cause: fmt.Sprintf("the command ran past --timeout %s in the guest and was killed", o.Timeout), Console: tail.String()}
	case rcText != "":
		n, err := strconv.Atoi(rcText)
		if err != nil {
			return res, &GuestError{Code: ExitGuestFailed, Cause: fmt.Sprintf("guest reported a bad exit status %q", rcText), Console: tail.String()}
		}
		res.ExitCode = n
		return res, nil
	case ctx.Err() != nil:
		return res, fmt.Errorf("vm: interrupted; killed QEMU: %w", ctx.Err())
	case bootHung.Load():
		return res, &GuestError{Code: ExitGuestFailed, Cause: fmt.Sprintf("the guest had not started the command %s after QEMU started (its boot hung); killed QEMU", o.BootTimeout),
			Console: tail.String(), bootHung: true}
	case hostCtx.Err() != nil:
		return res, &GuestError{Code: ExitTimeout, Cause: fmt.Sprintf("the guest did not finish within %s (--timeout plus %s to boot and shut down); killed QEMU", hostDeadline, o.HostGrace), Console: tail.String()}
	case tail.panic != "":
		return res, &GuestError{Code: ExitGuestFailed, Cause: "guest kernel panic: " + tail.panic, Console: tail.String()}
	case tail.fail != "":
		return res, &GuestError{Code: ExitGuestFailed, Cause: "guest /init failed: " + tail.fail, Console: tail.String()}
	case waitErr != nil:
		return res, &GuestError{Code: ExitGuestFailed, Cause: fmt.Sprintf("QEMU failed (%v): %s", waitErr, strings.TrimSpace(qemuErr.String())), Console: tail.String()}
	default:
		return res, &GuestError{Code: ExitGuestFailed, Cause: "the guest stopped without reporting an exit status", Console: tail.String()}
	}
}

// streamFiles copies what the guest appends to two files to two writers until stop, then drains
// them once more. The guest writes through 9p, so new bytes appear in the host file at once.
func streamFiles(stop <-chan struct{}, outPath string, out io.Writer, errPath string, errW io.Writer) {
	type stream struct {
		path string
		w    io.Writer
		f    *os.File
	}
	ss := []*stream{{path: outPath, w: out}, {path: errPath, w: errW}}
	pump := func() {
		for _, s := range ss {
			if s.f == nil {
				f, err := os.Open(s.path)
				if err != nil {
					continue
				}
				s.f = f
			}
			io.Copy(s.w, s.f)
		}
	}
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			pump()
		case <-stop:
			pump()
			for _, s := range ss {
				if s.f != nil {
					s.f.Close()
				}
			}
			return
		}
	}
}

// chooseAccel picks KVM only where it can run a stock Debian kernel: /dev/kvm usable, hardware
// virtualisation (vmx/svm) present, and not kvm_pvm, which needs a PVM-built guest kernel.
func chooseAccel(want string) (accel, why string) {
	switch want {
	case "kvm":
		return "kvm", "requested"
	case "tcg":
		return "tcg", "requested"
	}
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return "tcg", "no usable /dev/kvm"
	}
	f.Close()
	if _, err := os.Stat("/sys/module/kvm_pvm"); err == nil {
		return "tcg", "/dev/kvm is kvm_pvm, which cannot run a stock Debian kernel"
	}
	cpuinfo, _ := os.ReadFile("/proc/cpuinfo")
	if !bytes.Contains(cpuinfo, []byte(" vmx")) && !bytes.Contains(cpuinfo, []byte(" svm")) {
		return "tcg", "the CPU has no vmx/svm"
	}
	return "kvm", "hardware virtualisation"
}

// ExitStatus maps an Exec outcome to a process exit code: the command's own, or the harness's
// ExitTimeout / ExitGuestFailed.
func ExitStatus(res *Result, err error) (int, bool) {
	var ge *GuestError
	if errors.As(err, &ge) {
		return ge.Code, true
	}
	if err == nil && res != nil {
		return res.ExitCode, true
	}
	return 0, false
}
