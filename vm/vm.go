// Package vm runs commands and Go tests in a QEMU guest booted with Debian's own kernel, which has
// rdma_rxe, for hosts whose kernel has no RDMA (CI machines, containers, Firecracker VMs).
//
// Prepare downloads the kernel package (apt-get download, no install), extracts the ELF vmlinux
// (booted through its PVH note, which is ~3 s faster than the bzImage under TCG) and builds a small
// initramfs: busybox-static, the module closure of rdma_rxe and friends, and /init. The result is
// cached by content. Exec boots it: the guest mounts the host's / read-only over 9p, a fresh
// read-write work share at the same path as on the host, and runs the command as root in a chroot
// with rdma_rxe loaded. Test compiles Go test binaries and runs them all in one boot.
package vm

import (
	"fmt"
	"time"
)

// Harness exit codes, distinct from the guest command's own codes where it matters.
const (
	// ExitTimeout: the command ran past its timeout in the guest, or the guest did not finish
	// before the host deadline and QEMU was killed.
	ExitTimeout = 124
	// ExitGuestFailed: the guest never reported an exit status: the kernel panicked, /init failed
	// (a module or a mount), or QEMU died.
	ExitGuestFailed = 125
)

// Image is a prepared guest: a kernel, an initramfs and what they were built from. Prepare
// writes it as image.json in its cache directory.
type Image struct {
	Dir           string   `json:"-"`
	Kernel        string   `json:"kernel"`         // file name in Dir
	KernelFormat  string   `json:"kernel_format"`  // "elf" (PVH vmlinux) or "bzimage"
	Initrd        string   `json:"initrd"`         // file name in Dir
	KernelVersion string   `json:"kernel_version"` // "6.1.0-56-amd64"
	Source        string   `json:"source"`         // "linux-image-6.1.0-56-amd64 6.1.192-1" or a file path
	Key           string   `json:"key"`            // cache key (hex)
	Modules       []string `json:"modules"`        // module names /init loads, in order
	Built         string   `json:"built"`          // RFC 3339
}

// GuestError is a failure of the harness or the guest rather than of the command: the command's
// exit status is unknown. Code is ExitTimeout or ExitGuestFailed.
type GuestError struct {
	Code    int
	Cause   string // "kernel panic: sysrq triggered crash", "command timed out after 5s"
	Console string // the last lines of the kernel console, for the report

	bootHung bool // the guest never started the command (BootTimeout)
}

func (e *GuestError) Error() string {
	if e.Console == "" {
		return fmt.Sprintf("vm guest: %s", e.Cause)
	}
	return fmt.Sprintf("vm guest: %s\n--- last console lines ---\n%s", e.Cause, e.Console)
}

// Result is what one boot did.
type Result struct {
	ExitCode int           // the command's exit status (valid when Exec returns no error)
	Accel    string        // "tcg" or "kvm"
	Boot     time.Duration // QEMU start to the guest starting the command
	Total    time.Duration // QEMU start to QEMU exit
	QEMUPid  int           // for tests that check QEMU is gone
}
