// Package testenv gates tests on what the machine has, and creates throwaway network
// namespaces so root tests never touch the machine's own interfaces, routes, rules or sysctls.
//
// A test that needs something the machine lacks skips with the exact reason, except when the
// environment says it must run: ROCEBED_REQUIRE_ROOT=1 turns a missing-root skip into a
// failure, ROCEBED_REQUIRE_RXE=1 does the same for a kernel without rdma_rxe. CI sets both.
package testenv

import (
	"os"
	"testing"
)

// skipOrFail skips with reason, or fails if env requires the capability.
func skipOrFail(t testing.TB, env, reason string) {
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
		skipOrFail(t, "ROCEBED_REQUIRE_ROOT", "needs root to create network namespaces and links: run `sudo go test` or `make test` as root")
	}
}

// RequireRXE skips (or fails under ROCEBED_REQUIRE_RXE=1) unless the kernel has rdma_rxe
// loaded. It implies RequireRoot.
func RequireRXE(t testing.TB) {
	t.Helper()
	RequireRoot(t)
	if _, err := os.Stat("/sys/module/rdma_rxe"); err != nil {
		skipOrFail(t, "ROCEBED_REQUIRE_RXE", "needs a kernel with rdma_rxe loaded (/sys/module/rdma_rxe missing): run `modprobe rdma_rxe`, or run the real-kernel tier in a VM with `make test-vm`")
	}
}
