package vm

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The harness tests boot QEMU guests (about 5 s each under TCG), one at a time. They run under
// `make test-vm` (ROCEBED_VM_TESTS=1) and wherever ROCEBED_REQUIRE_RXE=1, where they prepare
// the image if needed and never skip.

var (
	imageOnce sync.Once
	image     *Image
	imageErr  error
)

// requireVM returns a prepared image, or skips when VM tests were not asked for.
func requireVM(tb testing.TB) *Image {
	tb.Helper()
	if os.Getenv("ROCEBED_VM_TESTS") != "1" && os.Getenv("ROCEBED_REQUIRE_RXE") != "1" {
		tb.Skip("boots QEMU guests with Debian's kernel: run `make test-vm` (or set ROCEBED_VM_TESTS=1 after `rocebed vm prepare`)")
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		tb.Fatal("qemu-system-x86_64 not in PATH: apt-get install qemu-system-x86")
	}
	imageOnce.Do(func() {
		var log bytes.Buffer
		r, err := Prepare(context.Background(), PrepareOptions{Log: &log})
		if err != nil {
			imageErr = err
			return
		}
		image = r.Image
	})
	if imageErr != nil {
		tb.Fatalf("vm prepare: %v", imageErr)
	}
	return image
}

// requireGone checks that the QEMU process no longer exists.
func requireGone(t *testing.T, pid int) {
	t.Helper()
	if pid <= 0 {
		t.Fatal("no QEMU pid recorded")
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("QEMU pid %d still exists after Exec returned (kill 0: %v)", pid, err)
	}
}

func TestHarnessExitStatusAndStreams(t *testing.T) {
	img := requireVM(t)
	var stdout, stderr, log bytes.Buffer
	res, err := Exec(context.Background(), ExecOptions{
		Image: img, Timeout: 2 * time.Minute, Stdout: &stdout, Stderr: &stderr, Log: &log,
		Env:  []string{"ROCEBED_PROBE=x y"},
		Argv: []string{"sh", "-c", `echo "out $ROCEBED_PROBE"; echo err >&2; test -d /sys/module/rdma_rxe || exit 99; exit 7`},
	})
	if err != nil {
		t.Fatalf("Exec: %v", err)
	}
	if res.ExitCode != 7 {
		t.Errorf("exit code %d, want 7 (99: rdma_rxe not loaded in the guest)", res.ExitCode)
	}
	if stdout.String() != "out x y\n" || stderr.String() != "err\n" {
		t.Errorf("stdout %q stderr %q, want \"out x y\\n\" and \"err\\n\"", stdout.String(), stderr.String())
	}
	if res.Boot <= 0 || res.Total < res.Boot {
		t.Errorf("boot %v total %v", res.Boot, res.Total)
	}
	if !strings.Contains(log.String(), "accelerator "+res.Accel) {
		t.Errorf("log does not name the accelerator: %q", log.String())
	}
	requireGone(t, res.QEMUPid)
}

func TestHarnessGoTestFailureIsReported(t *testing.T) {
	img := requireVM(t)
	var stdout bytes.Buffer
	res, err := Test(context.Background(), TestOptions{
		Packages: []string{"./testdata/failing"},
		Exec:     ExecOptions{Image: img, Timeout: 3 * time.Minute, Stdout: &stdout, Stderr: &stdout},
	})
	if err != nil {
		t.Fatalf("Test: %v\n%s", err, stdout.String())
	}
	out := stdout.String()
	if res.ExitCode == 0 {
		t.Errorf("a failing guest test gave exit code 0:\n%s", out)
	}
	for _, want := range []string{"--- PASS: TestPasses", "--- FAIL: TestFailsOnPurpose", "deliberate failure", "FAIL\tgithub.com/rocebed/rocebed/vm/testdata/failing\t"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// TestHarnessTestGuestsShareThePackages: with two guests each package runs once, the two
// rendezvous packages at the same time in different guests (they fail otherwise), and each
// package's output comes out whole, ending with its ok/FAIL line.
func TestHarnessTestGuestsShareThePackages(t *testing.T) {
	img := requireVM(t)
	var stdout, log bytes.Buffer
	pkgs := []string{"./testdata/rendezvous/left", "./testdata/rendezvous/right", "./testdata/failing"}
	nics, err := CableNICs(2, 0) // each guest gets its own pair
	if err != nil {
		t.Fatal(err)
	}
	res, err := Test(context.Background(), TestOptions{
		Packages: pkgs,
		Guests:   2,
		Exec:     ExecOptions{Image: img, Timeout: 3 * time.Minute, SMP: 1, NICs: nics, Stdout: &stdout, Stderr: &stdout, Log: &log},
	})
	if err != nil {
		t.Fatalf("Test: %v\n%s\n%s", err, log.String(), stdout.String())
	}
	out := stdout.String()
	if res.ExitCode != 1 {
		t.Errorf("exit code %d, want 1 (testdata/failing fails on purpose):\n%s", res.ExitCode, out)
	}
	for _, pkg := range []string{"left", "right"} {
		if n := strings.Count(out, "ok  \tgithub.com/rocebed/rocebed/vm/testdata/rendezvous/"+pkg+"\t"); n != 1 {
			t.Errorf("rendezvous/%s passed %d times, want once:\n%s", pkg, n, out)
		}
	}
	if n := strings.Count(out, "FAIL\tgithub.com/rocebed/rocebed/vm/testdata/failing\t"); n != 1 {
		t.Errorf("testdata/failing reported %d times, want once:\n%s", n, out)
	}
	// Whole blocks: the lines before each package's ok/FAIL line are that package's alone.
	own := map[string][]string{
		"rendezvous/left":  {": left in guest"},
		"rendezvous/right": {": right in guest"},
		"failing":          {"--- PASS: TestPasses", "--- FAIL: TestFailsOnPurpose"},
	}
	var block []string
	for _, line := range strings.Split(out, "\n") {
		if !strings.HasPrefix(line, "ok  \t") && !strings.HasPrefix(line, "FAIL\t") {
			block = append(block, line)
			continue
		}
		text := strings.Join(block, "\n")
		block = nil
		for pkg, marks := range own {
			mine := strings.Contains(line, "/vm/testdata/"+pkg+"\t")
			for _, m := range marks {
				if strings.Contains(text, m) != mine {
					t.Errorf("the block ending %q has %q: %v, want %v (interleaved output):\n%s", line, m, !mine, mine, out)
				}
			}
		}
	}
	if !strings.Contains(log.String(), "guest 2 of 2") {
		t.Errorf("no second guest in the log:\n%s", log.String())
	}
}

func TestHarnessGuestTimeout(t *testing.T) {
	img := requireVM(t)
	res, err := Exec(context.Background(), ExecOptions{Image: img, Timeout: 3 * time.Second, Argv: []string{"sleep", "600"}})
	var ge *GuestError
	if !errors.As(err, &ge) || ge.Code != ExitTimeout || !strings.Contains(ge.Cause, "--timeout") {
		t.Fatalf("want a guest timeout (%d), got %v", ExitTimeout, err)
	}
	if code, ok := ExitStatus(res, err); !ok || code != ExitTimeout {
		t.Errorf("ExitStatus = %d, %v", code, ok)
	}
	requireGone(t, res.QEMUPid)
}

func TestHarnessHostDeadlineKillsQEMU(t *testing.T) {
	img := requireVM(t)
	// A host deadline shorter than the boot: the host must kill QEMU itself.
	res, err := Exec(context.Background(), ExecOptions{Image: img, Timeout: time.Second, HostGrace: time.Millisecond, Argv: []string{"sleep", "600"}})
	var ge *GuestError
	if !errors.As(err, &ge) || ge.Code != ExitTimeout || !strings.Contains(ge.Cause, "killed QEMU") {
		t.Fatalf("want a host-deadline timeout, got %v", err)
	}
	requireGone(t, res.QEMUPid)
}

// TestHarnessBootDeadline: a guest that has not started the command by BootTimeout (here
// shorter than any boot) is killed and booted once more, and then reported as a hung boot.
func TestHarnessBootDeadline(t *testing.T) {
	img := requireVM(t)
	var log bytes.Buffer
	res, err := Exec(context.Background(), ExecOptions{Image: img, Timeout: time.Minute, BootTimeout: 200 * time.Millisecond,
		Log: &log, Argv: []string{"true"}})
	var ge *GuestError
	if !errors.As(err, &ge) || ge.Code != ExitGuestFailed || !ge.bootHung || !strings.Contains(ge.Cause, "its boot hung") {
		t.Fatalf("want a hung boot (%d), got %v", ExitGuestFailed, err)
	}
	if n := strings.Count(log.String(), "booting it once more"); n != 1 {
		t.Errorf("booted again %d times, want once:\n%s", n, log.String())
	}
	requireGone(t, res.QEMUPid)
}

func TestHarnessInterruptKillsQEMU(t *testing.T) {
	img := requireVM(t)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(time.Second, cancel)
	res, err := Exec(ctx, ExecOptions{Image: img, Timeout: time.Minute, Argv: []string{"sleep", "600"}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("want context.Canceled, got %v", err)
	}
	requireGone(t, res.QEMUPid)
}

func TestHarnessGuestPanic(t *testing.T) {
	img := requireVM(t)
	res, err := Exec(context.Background(), ExecOptions{Image: img, Timeout: 2 * time.Minute,
		Argv: []string{"sh", "-c", "echo c > /proc/sysrq-trigger; sleep 600"}})
	var ge *GuestError
	if !errors.As(err, &ge) || ge.Code != ExitGuestFailed || !strings.Contains(ge.Cause, "Kernel panic") {
		t.Fatalf("want a guest panic (%d), got %v", ExitGuestFailed, err)
	}
	requireGone(t, res.QEMUPid)
}

// BenchmarkExecTrue boots the guest to run `true`: boot-s is QEMU start to the guest starting
// the command (target ≤ 5 s), total-s the whole Exec.
func BenchmarkExecTrue(b *testing.B) {
	img := requireVM(b)
	var boot, total []float64
	machine := ""
	for b.Loop() {
		var log bytes.Buffer
		res, err := Exec(context.Background(), ExecOptions{Image: img, Timeout: time.Minute, Argv: []string{"true"}, Log: &log})
		if err != nil || res.ExitCode != 0 {
			b.Fatalf("vm exec true: %v %+v", err, res)
		}
		boot, total = append(boot, res.Boot.Seconds()), append(total, res.Total.Seconds())
		machine = strings.TrimSpace(log.String())
	}
	b.Logf("%s; boot %v s, whole %v s", machine, boot, total)
	reportSpread(b, "boot-s", boot)
	reportSpread(b, "total-s", total)
	b.ReportMetric(0, "ns/op")
}

// reportSpread reports the median of vals as name, and their min and max as name-min and
// name-max.
func reportSpread(b *testing.B, name string, vals []float64) {
	s := slices.Clone(vals)
	slices.Sort(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	b.ReportMetric(med, name)
	b.ReportMetric(s[0], name+"-min")
	b.ReportMetric(s[len(s)-1], name+"-max")
}
