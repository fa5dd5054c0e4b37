package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// TestVMExecPreflightExit3 needs no QEMU boot: with an empty image cache, exec must exit 3 and
// say how to prepare one.
func TestVMExecPreflightExit3(t *testing.T) {
	r := rocebed(t, nil, "vm", "exec", "--cache-dir", t.TempDir(), "--", "true")
	if r.code != exitEnvironment || !strings.Contains(r.stderr, "rocebed vm prepare") {
		t.Fatalf("exit %d, stderr %q; want 3 and a hint to run `rocebed vm prepare`", r.code, r.stderr)
	}
}

// TestVMExecExitCodes boots the guest: the command's status and the harness's timeout code
// must come out of the rocebed process itself.
func TestVMExecExitCodes(t *testing.T) {
	if os.Getenv("ROCEBED_VM_TESTS") != "1" && os.Getenv("ROCEBED_REQUIRE_RXE") != "1" {
		t.Skip("boots QEMU guests: run `make test-vm` (or set ROCEBED_VM_TESTS=1 after `rocebed vm prepare`)")
	}
	if r := rocebed(t, nil, "vm", "prepare"); r.code != 0 {
		t.Fatalf("vm prepare: exit %d: %s", r.code, r.stderr)
	}
	r := rocebed(t, nil, "vm", "exec", "--", "sh", "-c", "echo out; echo err >&2; exit 7")
	if r.code != 7 || r.stdout != "out\n" || !strings.Contains(r.stderr, "err\n") {
		t.Errorf("exit 7: got code %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	r = rocebed(t, nil, "vm", "exec", "--timeout", "2s", "--", "sleep", "600")
	if r.code != 124 || !strings.Contains(r.stderr, "--timeout") {
		t.Errorf("hang: got code %d stderr %q, want 124", r.code, r.stderr)
	}
}

// TestGuestScenarioFallback runs the up/probe/down fallback script with a fake rocebed that
// logs its calls: down runs whatever up did, and the exit status is up's or probe's.
func TestGuestScenarioFallback(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "calls")
	exe := filepath.Join(dir, "fake-rocebed")
	fake := "#!/bin/sh\necho \"$*\" >> " + log + "\ncase $1 in up) exit ${FAIL_UP:-0};; probe) exit ${FAIL_PROBE:-0};; esac\n"
	if err := os.WriteFile(exe, []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	root := &cobra.Command{Use: "rocebed"} // no run subcommand: the fallback
	o := &options{logLevel: "info", sets: []string{"a=b c"}}
	argv := guestScenarioArgv(root, exe, "my scenario.yaml", o, "")
	for _, tc := range []struct {
		env   string
		code  int
		calls string
	}{
		{"", 0, "up --skip-rdma --log-level info --set a=b c my scenario.yaml\nprobe --log-level info --set a=b c my scenario.yaml\ndown --log-level info --set a=b c my scenario.yaml\n"},
		{"FAIL_UP=3", 3, "up --skip-rdma --log-level info --set a=b c my scenario.yaml\ndown --log-level info --set a=b c my scenario.yaml\n"},
		{"FAIL_PROBE=1", 1, "up --skip-rdma --log-level info --set a=b c my scenario.yaml\nprobe --log-level info --set a=b c my scenario.yaml\ndown --log-level info --set a=b c my scenario.yaml\n"},
	} {
		os.Remove(log)
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Env = append(os.Environ(), tc.env)
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		calls, _ := os.ReadFile(log)
		if code != tc.code || string(calls) != tc.calls {
			t.Errorf("%s: exit %d calls\n%s\nwant exit %d calls\n%s", tc.env, code, calls, tc.code, tc.calls)
		}
	}

	withRun := &cobra.Command{Use: "rocebed"}
	withRun.AddCommand(&cobra.Command{Use: "run SCENARIO"})
	got := guestScenarioArgv(withRun, "/x/rocebed", "s", &options{logLevel: "warn", json: true}, "/w/junit.xml")
	want := []string{"/x/rocebed", "run", "--log-level", "warn", "--json", "--junit", "/w/junit.xml", "s"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("with run: %q, want %q", got, want)
	}
}
