// Package testenv gates tests on what the machine has, and creates throwaway network
// namespaces so root tests never touch the machine's own interfaces, routes, rules or sysctls.
//
// A test that needs something the machine lacks skips with the exact reason, except when the
// environment says it must run: ROCEBED_REQUIRE_ROOT=1 turns a missing-root skip into a
// failure, ROCEBED_REQUIRE_RXE=1 does the same for a kernel without rdma_rxe. CI sets both.
package testenv

import (
	"os"
	"strings"
	"testing"
)

// SkipOrFail skips with reason, or fails if the environment variable env is "1" (CI's way of
// saying the capability must be there).
func SkipOrFail(t testing.TB, env, reason string) {
	t.Helper()
	if os.Getenv(env) == "1" {
		t.Fatalf("%s (and %s=1 forbids skipping)", reason, env)
	}
	t.Skip(reason)
}

// RequireRoot skips (or fails under ROCEBED_REQUIRE_ROOT=1) unless the test runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		SkipOrFail(t, "ROCEBED_REQUIRE_ROOT", "needs root to create network namespaces and links: run `sudo go test` or `make test` as root")
	}
}

// RequireRXE skips (or fails under ROCEBED_REQUIRE_RXE=1) unless the kernel has rdma_rxe
// loaded and the test may change the initial network namespace. rxe works only there (its UDP
// 4791 socket lives in init_net), so real-kernel tests build their labs in it: that is allowed
// inside rocebed's VM, whose kernel command line carries rocebed.work=, or anywhere with
// ROCEBED_ALLOW_HOST_CHANGES=1. It implies RequireRoot.
func RequireRXE(t testing.TB) {
	t.Helper()
	RequireRoot(t)
	if _, err := os.Stat("/sys/module/rdma_rxe"); err != nil {
		SkipOrFail(t, "ROCEBED_REQUIRE_RXE", "needs a kernel with rdma_rxe loaded (/sys/module/rdma_rxe missing): run `modprobe rdma_rxe`, or run the real-kernel tier in a VM with `make test-vm`")
		return
	}
	if !InVM() && os.Getenv("ROCEBED_ALLOW_HOST_CHANGES") != "1" {
		SkipOrFail(t, "ROCEBED_REQUIRE_RXE", "builds rxe labs in the initial network namespace, which is this host's own: run it in the VM with `make test-vm`, or set ROCEBED_ALLOW_HOST_CHANGES=1 on a throwaway machine")
	}
}

// KernelDependent marks a test whose outcome rests on how the running kernel behaves (when
// addrconf and DAD finish, what a netlink dump or notification says), not on rocebed's code
// alone. It logs the kernel's release, so that a failure names it; and it is one of the marks
// by which the guest tier picks its tests (the Makefile's VM_TEST_MARKS), so that such a test
// runs on Debian's kernel in the guest as well as on the host.
func KernelDependent(t testing.TB) {
	t.Helper()
	release, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		t.Logf("kernel release unknown: %v", err)
		return
	}
	t.Logf("kernel %s", strings.TrimSpace(string(release)))
}

// InVM reports whether this is rocebed's test VM (its kernel command line names the work dir).
func InVM() bool {
	b, err := os.ReadFile("/proc/cmdline")
	return err == nil && strings.Contains(string(b), "rocebed.work=")
}

// RequireCabledNICs skips (or fails under ROCEBED_REQUIRE_RXE=1) unless the machine has the
// named existing NICs, which the test takes to be cabled to each other: rocebed's VM gives
// the guest such a pair with --nics 2 (eth1–eth2; `make test-vm` does). It implies RequireRXE.
func RequireCabledNICs(t testing.TB, names ...string) {
	t.Helper()
	RequireRXE(t)
	for _, n := range names {
		if _, err := os.Stat("/sys/class/net/" + n); err != nil {
			SkipOrFail(t, "ROCEBED_REQUIRE_RXE", "needs NICs "+strings.Join(names, " and ")+" cabled together (no "+n+"): run it in the VM with `rocebed vm test --nics 2` (`make test-vm` does)")
			return
		}
	}
}
