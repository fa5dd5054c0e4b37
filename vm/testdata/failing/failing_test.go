// Package failing is a fixture for the VM harness's own tests: one test passes, one fails on
// purpose, so the harness must report a failure with "--- FAIL" and a non-zero exit.
package failing

import (
	"os"
	"testing"
)

func TestPasses(t *testing.T) {
	if _, err := os.Stat("/sys/module/rdma_rxe"); err != nil {
		t.Fatalf("rdma_rxe not loaded in the guest: %v", err)
	}
}

func TestFailsOnPurpose(t *testing.T) {
	t.Fatal("deliberate failure: the harness must report this")
}
