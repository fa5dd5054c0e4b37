package vm

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"
)

// A guest boots on one of two QEMU machines. Under TCG the default is microvm: no PCI bus, no
// firmware tables to walk, virtio over MMIO; it reaches /init about 1.4 s sooner than pc here.
// microvm has no HPET or ACPI PM timer to calibrate the TSC against, and under a busy host the
// kernel's PIT calibration can fail, after which it hangs in early boot; so the guest is told
// the TSC frequency (tsc_early_khz), which a TCG guest shares with the host (its RDTSC reads
// the host's counter). Where that cannot be known, or QEMU or the image lack what microvm
// needs, the guest boots on pc as before.
const (
	machinePC      = "pc"
	machineMicroVM = "microvm"
)

// machine is how a guest boots: the QEMU machine and what it adds to the kernel command line.
type machine struct {
	name       string
	kernelArgs string // appended to the kernel command line
	why        string // for the harness log
}

// chooseMachine picks the machine for an image under accel. want "" or "auto" chooses;
// "pc" or "microvm" forces one (microvm still needs the TSC frequency).
func chooseMachine(img *Image, accel, qemu, want string) (machine, error) {
	if accel == "kvm" || want == machinePC {
		m := machine{name: machinePC, why: "requested"}
		if accel == "kvm" {
			m.why = "KVM"
		} else {
			m.kernelArgs = tcgKernelArgs
		}
		return m, nil
	}
	khz, tscWhy := hostTSCkHz()
	var why string
	switch {
	case want != "" && want != "auto" && want != machineMicroVM:
		return machine{}, fmt.Errorf("machine %q: want auto, pc or microvm", want)
	case img.KernelFormat != "elf":
		why = "the image boots a bzImage, microvm needs the PVH vmlinux"
	case !slices.Contains(img.Modules, "virtio_mmio"):
		why = "the image has no virtio_mmio module (prepare it again)"
	case khz == 0:
		why = tscWhy
	case !qemuHasMicroVM(qemu):
		why = qemu + " has no microvm machine"
	default:
		return machine{name: machineMicroVM, why: fmt.Sprintf("TSC %d kHz", khz),
			kernelArgs: fmt.Sprintf("%s tsc_early_khz=%d", tcgKernelArgs, khz)}, nil
	}
	if want == machineMicroVM {
		return machine{}, fmt.Errorf("cannot boot on microvm: %s", why)
	}
	return machine{name: machinePC, why: "not microvm: " + why, kernelArgs: tcgKernelArgs}, nil
}

// qemuArgsMachine is the machine part of the QEMU command line and its two 9p shares: the
// host's root read-only (hostroot) and the work directory read-write (work).
func qemuArgsMachine(m machine, work string) []string {
	root := "local,path=/,security_model=none,readonly=on,multidevs=remap"
	share := "local,path=" + qemuEscape(work) + ",security_model=none"
	if m.name == machineMicroVM {
		return []string{"-M", "microvm",
			"-fsdev", root + ",id=hostroot", "-device", "virtio-9p-device,fsdev=hostroot,mount_tag=hostroot",
			"-fsdev", share + ",id=work", "-device", "virtio-9p-device,fsdev=work,mount_tag=work"}
	}
	return []string{
		"-virtfs", root + ",mount_tag=hostroot,id=hostroot",
		"-virtfs", share + ",mount_tag=work,id=work",
	}
}

var microVM struct {
	mu sync.Mutex
	ok map[string]bool
}

// qemuHasMicroVM reports whether qemu lists the microvm machine (`-machine help`), once per
// QEMU binary.
func qemuHasMicroVM(qemu string) bool {
	microVM.mu.Lock()
	defer microVM.mu.Unlock()
	if ok, seen := microVM.ok[qemu]; seen {
		return ok
	}
	out, err := exec.Command(qemu, "-machine", "help").Output()
	ok := err == nil && bytes.Contains(out, []byte("\nmicrovm "))
	if microVM.ok == nil {
		microVM.ok = map[string]bool{}
	}
	microVM.ok[qemu] = ok
	return ok
}

var tsc struct {
	once sync.Once
	khz  int
	why  string
}

// hostTSCkHz is the host's TSC frequency in kHz, measured against the monotonic clock, or 0
// and why not: it must be an x86 host whose TSC runs at a constant rate, also in deep idle
// (constant_tsc and nonstop_tsc in /proc/cpuinfo).
func hostTSCkHz() (int, string) {
	tsc.once.Do(func() {
		if !haveTSC {
			tsc.why = "not an x86 host: no TSC to give the guest"
			return
		}
		info, err := os.ReadFile("/proc/cpuinfo")
		if err != nil {
			tsc.why = "cannot read /proc/cpuinfo: " + err.Error()
			return
		}
		flags := ""
		for _, l := range strings.Split(string(info), "\n") {
			if strings.HasPrefix(l, "flags") {
				if _, f, ok := strings.Cut(l, ":"); ok {
					flags = " " + f + " "
				}
				break
			}
		}
		if !strings.Contains(flags, " constant_tsc ") || !strings.Contains(flags, " nonstop_tsc ") {
			tsc.why = "the host's TSC does not run at a constant rate (no constant_tsc/nonstop_tsc)"
			return
		}
		tsc.khz = measureTSCkHz(20 * time.Millisecond)
		if tsc.khz < 100_000 {
			tsc.khz, tsc.why = 0, "the host's TSC frequency could not be measured"
		}
	})
	return tsc.khz, tsc.why
}

// measureTSCkHz counts TSC ticks over about d of monotonic time. Each end takes the tightest
// of a few brackets (TSC, clock, TSC), so a preemption between the reads does not skew it.
func measureTSCkHz(d time.Duration) int {
	sample := func() (uint64, time.Time) {
		best := uint64(1 << 63)
		var tscAt uint64
		var at time.Time
		for range 5 {
			a := rdtsc()
			t := time.Now()
			b := rdtsc()
			if b-a < best {
				best, tscAt, at = b-a, a+(b-a)/2, t
			}
		}
		return tscAt, at
	}
	c0, t0 := sample()
	time.Sleep(d)
	c1, t1 := sample()
	ns := t1.Sub(t0).Nanoseconds()
	if ns <= 0 || c1 <= c0 {
		return 0
	}
	return int((c1 - c0) * 1_000_000 / uint64(ns))
}
