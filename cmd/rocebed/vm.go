package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/rocebed/rocebed/vm"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

func init() { register(newVMCmd) }

// newVMCmd groups the QEMU guest commands: the path to real rdma_rxe on hosts without RDMA.
func newVMCmd(o *options) *cobra.Command {
	c := &cobra.Command{
		Use:   "vm",
		Short: "Run commands, scenarios and Go tests in a QEMU guest whose Debian kernel has rdma_rxe",
		Long: `vm boots Debian's own kernel under QEMU (KVM when usable, else TCG), shares this host's / read-only
over 9p and a work directory read-write at the same path, and runs a command as root with rdma_rxe
loaded. Run "rocebed vm prepare" once (cached) before the other vm commands.

Exit codes of exec, run and test: the guest command's own, or
  124  the command ran past --timeout, or the guest hung and QEMU was killed
  125  the guest never reported an exit status (kernel panic, /init failure, QEMU died)
  3    something is missing on the host (QEMU, a prepared kernel)`,
	}
	for _, sub := range []func(*options) *cobra.Command{newVMPrepareCmd, newVMExecCmd, newVMRunCmd, newVMTestCmd} {
		c.AddCommand(sub(o))
	}
	return c
}

// vmFlags are the guest flags exec, run and test share.
type vmFlags struct {
	timeout  time.Duration
	verbose  bool
	smp      int
	mem      int
	accel    string
	machine  string
	cacheDir string
	nics     int
}

func (f *vmFlags) register(fs *pflag.FlagSet, timeout time.Duration) {
	fs.DurationVar(&f.timeout, "timeout", timeout, "bound for the command in the guest (the host kills QEMU 60s later)")
	fs.BoolVarP(&f.verbose, "verbose", "v", false, "show the guest's kernel console on stderr")
	fs.IntVar(&f.smp, "smp", 2, "guest vCPUs")
	fs.IntVar(&f.mem, "mem", 1024, "guest memory in MiB")
	fs.StringVar(&f.accel, "accel", "auto", "accelerator: auto (KVM when it can run the guest, else TCG), kvm or tcg")
	fs.StringVar(&f.machine, "machine", "auto", "QEMU machine: auto (microvm under TCG where it can boot, else pc), pc or microvm")
	fs.StringVar(&f.cacheDir, "cache-dir", "", "image cache (default $XDG_CACHE_HOME/rocebed, /var/cache/rocebed for root)")
	fs.IntVar(&f.nics, "nics", 0, "give the guest N virtio-net NICs (N even), eth1…ethN, cabled in pairs (eth1–eth2, …) over UDP on 127.0.0.1")
}

// execOptions turns the flags into ExecOptions for cmd: the current image, ROCEBED_* from the
// environment, and the working directory.
func (f *vmFlags) execOptions(cmd *cobra.Command) (vm.ExecOptions, error) {
	if f.accel != "auto" && f.accel != "kvm" && f.accel != "tcg" {
		return vm.ExecOptions{}, usageError(fmt.Errorf("--accel %q: want auto, kvm or tcg", f.accel))
	}
	nics, err := vm.CableNICs(f.nics, 0)
	if err != nil {
		return vm.ExecOptions{}, usageError(err)
	}
	img, err := vm.CurrentImage(f.cacheDir)
	if err != nil {
		return vm.ExecOptions{}, err
	}
	e := vm.ExecOptions{
		Image: img, Timeout: f.timeout, SMP: f.smp, MemMB: f.mem, Accel: f.accel, Machine: f.machine,
		Stdout: cmd.OutOrStdout(), Stderr: cmd.ErrOrStderr(), Log: cmd.ErrOrStderr(),
		Env: guestEnv(), NICs: nics,
	}
	if f.verbose {
		e.Console = cmd.ErrOrStderr()
	}
	if wd, err := os.Getwd(); err == nil {
		e.Dir = wd
	}
	return e, nil
}

// guestEnv passes ROCEBED_* through to the guest; PATH and HOME are the guest's own.
func guestEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "ROCEBED_") {
			env = append(env, kv)
		}
	}
	return env
}

// vmExit turns a guest outcome into rocebed's exit: the command's status, or the harness's
// 124/125 with the cause.
func vmExit(res *vm.Result, err error) error {
	var ge *vm.GuestError
	if errors.As(err, &ge) {
		return withExit(ge.Code, err)
	}
	if err != nil {
		return err
	}
	if res.ExitCode != 0 {
		return withExit(res.ExitCode, fmt.Errorf("guest command exited with status %d", res.ExitCode))
	}
	return nil
}
