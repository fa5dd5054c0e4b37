// Package rendezvous lets two fixture packages check that they ran at the same time in two
// guests: each leaves its guest's boot ID in the directory all guests of a `vm test` share and
// waits for the other's.
package rendezvous

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Meet writes this guest's boot ID as me and waits up to a minute for other's, which must be
// another guest's.
func Meet(t *testing.T, me, other string) {
	share := os.Getenv("ROCEBED_VM_TEST_SHARE")
	if share == "" {
		t.Fatal("ROCEBED_VM_TEST_SHARE is not set: not run by vm test")
	}
	boot, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(share, me), boot, 0o644); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		theirs, err := os.ReadFile(filepath.Join(share, other))
		if err != nil || len(theirs) == 0 {
			continue
		}
		if bytes.Equal(theirs, boot) {
			t.Fatalf("%s and %s ran in the same guest (boot ID %s)", me, other, bytes.TrimSpace(boot))
		}
		t.Logf("%s in guest %s met %s in guest %s", me, bytes.TrimSpace(boot), other, bytes.TrimSpace(theirs))
		return
	}
	t.Fatalf("%s never showed up within a minute: the two packages did not run at once", other)
}
