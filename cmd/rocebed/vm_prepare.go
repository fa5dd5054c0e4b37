package main

import (
	"fmt"
	"os"

	"github.com/rocebed/rocebed/vm"
	"github.com/spf13/cobra"
)

func newVMPrepareCmd(o *options) *cobra.Command {
	var p vm.PrepareOptions
	c := &cobra.Command{
		Use:   "prepare [--kernel-package NAME | --kernel FILE --modules DIR]",
		Short: "Download Debian's kernel (no install) and build the guest image, cached by content",
		Long: `prepare finds the linux-image-*-amd64 that linux-image-amd64 depends on (or --kernel-package),
fetches it with apt-get download, extracts it with dpkg -x, runs depmod -b, extracts the PVH vmlinux,
and builds an initramfs of busybox-static, the rdma_rxe module closure and rocebed's /init. The
result is cached by the package's checksum, the module list and the /init version: a second run
downloads and builds nothing. --kernel and --modules use a local bzImage and its lib/modules/KVER.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			p.Log = cmd.ErrOrStderr()
			r, err := vm.Prepare(cmd.Context(), p)
			if err != nil {
				return err
			}
			if o.json {
				return writeJSON(os.Stdout, map[string]any{"image": r.Image, "dir": r.Image.Dir,
					"cache_hit": r.CacheHit, "downloaded": r.Downloaded})
			}
			what := "built"
			if r.CacheHit {
				what = "cached (nothing downloaded or built)"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "vm image %s: %s\n  kernel %s (%s, %s)\n  initrd %s\n  modules %v\n",
				what, r.Image.Dir, r.Image.Kernel, r.Image.KernelFormat, r.Image.Source, r.Image.Initrd, r.Image.Modules)
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&p.KernelPackage, "kernel-package", "", "Debian kernel package (default: what linux-image-amd64 depends on)")
	f.StringVar(&p.KernelFile, "kernel", "", "use this bzImage instead of a package (with --modules)")
	f.StringVar(&p.ModulesDir, "modules", "", "lib/modules/KVER directory of --kernel, with modules.dep")
	f.StringVar(&p.CacheDir, "cache-dir", "", "image cache (default $XDG_CACHE_HOME/rocebed, /var/cache/rocebed for root)")
	return c
}
