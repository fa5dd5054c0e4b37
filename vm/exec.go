package vm

import (
	"fmt"
	"io"
	"math"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// GuestPATH is the PATH the guest command gets: the host's usual directories, which the guest
// sees through the read-only host-root share.
const GuestPATH = "/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// ExecOptions describes one guest boot that runs one command.
type ExecOptions struct {
	Image   *Image   // default: CurrentImage("")
	Argv    []string // the command; run as root with rdma_rxe loaded
	Env     []string // KEY=VALUE for the command; PATH defaults to GuestPATH, HOME to /root
	Dir     string   // working directory in the guest; used only when GuestVisible, else the work dir
	WorkDir string   // host directory shared read-write at the same path; "" → a fresh temp dir, removed after
	// Timeout bounds the command in the guest (0: none). The host deadline is Timeout plus
	// HostGrace (default 60s), after which QEMU is killed.
	Timeout   time.Duration
	HostGrace time.Duration
	// BootTimeout (default 2m) bounds QEMU's start to the guest starting the command. A boot
	// takes 2–3 s here; Debian's kernel under TCG with two vCPUs has been seen to hang for
	// good half a second into it. Such a guest is killed and booted once more: the command
	// had not started, so nothing ran twice.
	BootTimeout time.Duration
	SMP         int    // default 2
	MemMB       int    // default 1024
	Accel       string // "auto" (default), "kvm" or "tcg"
	Machine     string // "auto" (default: microvm under TCG where it can boot), "pc" or "microvm"
	QEMU        string // default qemu-system-x86_64
	Stdout      io.Writer
	Stderr      io.Writer
	Console     io.Writer // kernel console, live (nil: kept only for error reports)
	Log         io.Writer // harness notes: accelerator, boot time (nil: discarded)
	// NICs are virtio-net NICs the guest gets, renamed to their names before the command runs
	// (see CableNICs). None by default: the guest has no network but what the command makes.
	NICs []NIC
}

// hiddenPrefixes are host paths the guest replaces with fresh mounts.
var hiddenPrefixes = []string{"/tmp", "/run", "/var/tmp", "/proc", "/sys", "/dev"}

// GuestVisible reports whether the host path p (absolute) shows the same files in the guest:
// everything except what the guest mounts afresh (/tmp, /run, /var/tmp, /proc, /sys, /dev).
func GuestVisible(p string) bool {
	if !filepath.IsAbs(p) {
		return false
	}
	p = filepath.Clean(p)
	for _, h := range hiddenPrefixes {
		if p == h || strings.HasPrefix(p, h+"/") {
			return false
		}
	}
	return true
}

// within reports whether p is dir or below it.
func within(p, dir string) bool {
	p, dir = filepath.Clean(p), filepath.Clean(dir)
	return p == dir || strings.HasPrefix(p, dir+"/")
}

// shQuote quotes s as one word for POSIX sh: inside single quotes nothing is special, and each
// single quote becomes quote, backslash, quote, quote. The guest command's argv is passed this
// way, never parsed.
func shQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// commandScript is the guest's .vm/cmd.sh: environment, working directory, then exec of argv.
func commandScript(argv, env []string, dir, work string, nics []NIC) (string, error) {
	if len(argv) == 0 {
		return "", fmt.Errorf("no command to run in the guest")
	}
	have := map[string]bool{}
	var b strings.Builder
	b.WriteString("# written by rocebed vm: every word is quoted, nothing is expanded\n")
	b.WriteString(nicRenameScript(nics))
	for _, kv := range env {
		k, _, ok := strings.Cut(kv, "=")
		if !ok || !envName.MatchString(k) {
			return "", fmt.Errorf("guest environment entry %q: want NAME=VALUE", kv)
		}
		have[k] = true
		fmt.Fprintf(&b, "export %s\n", shQuote(kv))
	}
	if !have["PATH"] {
		fmt.Fprintf(&b, "export %s\n", shQuote("PATH="+GuestPATH))
	}
	if !have["HOME"] {
		b.WriteString("export HOME=/root\n")
	}
	if dir == "" {
		dir = work
	}
	fmt.Fprintf(&b, "cd -- %s 2>/dev/null || cd -- %s\n", shQuote(dir), shQuote(work))
	b.WriteString("exec")
	for _, a := range argv {
		b.WriteString(" " + shQuote(a))
	}
	b.WriteString("\n")
	return b.String(), nil
}

// qemuEscape doubles commas, QEMU's option separator, inside an option value.
func qemuEscape(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// timeoutSeconds rounds a guest timeout up to whole seconds (0 stays 0: none).
func timeoutSeconds(d time.Duration) int {
	if d <= 0 {
		return 0
	}
	return int(math.Ceil(d.Seconds()))
}

// tcgKernelArgs are kernel parameters for a TCG guest, where every instruction is emulated:
//   - tsc=reliable: the vCPUs read the host's TSC, so it is stable and synchronised, but the
//     boot-time sync check (disturbed by emulation) marks it unstable and the kernel falls
//     back to the HPET; then every clock_gettime is a system call and an emulated MMIO read
//     (about 30 µs here), which Go's runtime, every timestamp and every sleep pay;
//   - cryptomgr.notests: no self-test of every crypto algorithm as it registers;
//   - rodata=off: no read-only remapping of the kernel and no W+X page-table walk at boot;
//   - mitigations=off: no retpolines or RSB filling on this throwaway guest's every branch;
//   - initcall_blacklist=crypto_kdf108_init: the SP800-108 KDF runs its self-test at boot
//     whatever cryptomgr.notests says, 0.34 s of emulated HMAC-SHA256 (initcall_debug on
//     6.1.0-57); nothing in the guest derives keys.
const tcgKernelArgs = "tsc=reliable cryptomgr.notests rodata=off mitigations=off initcall_blacklist=crypto_kdf108_init"

// qemuArgs builds the QEMU command line: no devices but a serial console and two 9p shares.
func qemuArgs(img *Image, o *ExecOptions, accel string, m machine, work string) []string {
	loglevel := 4
	if o.Console != nil {
		loglevel = 6
	}
	appendLine := fmt.Sprintf("console=ttyS0 loglevel=%d panic=1 edd=off rdinit=/init rocebed.work=%s rocebed.timeout=%d rocebed.machine=%s",
		loglevel, work, timeoutSeconds(o.Timeout), m.name)
	if m.kernelArgs != "" {
		appendLine += " " + m.kernelArgs
	}
	args := []string{
		"-nographic", "-nodefaults", "-no-reboot", "-serial", "stdio",
		"-smp", fmt.Sprint(o.SMP), "-m", fmt.Sprint(o.MemMB),
	}
	if accel == "kvm" {
		args = append(args, "-accel", "kvm", "-cpu", "host")
	} else {
		args = append(args, "-accel", "tcg,thread=multi", "-cpu", "max")
	}
	args = append(args,
		"-kernel", filepath.Join(img.Dir, img.Kernel),
		"-initrd", filepath.Join(img.Dir, img.Initrd),
		"-append", appendLine,
	)
	args = append(args, qemuArgsMachine(m, work)...)
	return append(args, nicArgs(m, o.NICs)...)
}

// consoleTail keeps the last lines of the console and what the harness's markers said.
type consoleTail struct {
	lines   []string
	started time.Time // when ROCEBED-START was seen
	panic   string    // "Kernel panic - not syncing: ..."
	fail    string    // /init's ROCEBED-FAIL reason
	rc      string    // ROCEBED-RC= value
}

func (c *consoleTail) add(line string, now time.Time) {
	line = strings.TrimRight(line, "\r")
	if len(c.lines) == 60 {
		c.lines = c.lines[1:]
	}
	c.lines = append(c.lines, line)
	switch {
	case strings.HasPrefix(line, "ROCEBED-START") && c.started.IsZero():
		c.started = now
	case strings.HasPrefix(line, "ROCEBED-FAIL "):
		c.fail = strings.TrimPrefix(line, "ROCEBED-FAIL ")
	case strings.HasPrefix(line, "ROCEBED-RC="):
		c.rc = strings.TrimPrefix(line, "ROCEBED-RC=")
	}
	if i := strings.Index(line, "Kernel panic - not syncing:"); i >= 0 && c.panic == "" {
		c.panic = strings.TrimSpace(line[i:])
	}
}

func (c *consoleTail) String() string { return strings.Join(c.lines, "\n") }
