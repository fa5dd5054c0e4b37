package vm

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// ModuleSpec names a kernel module the guest's /init loads.
type ModuleSpec struct {
	Name     string
	Required bool // the guest is useless without it: prepare fails when the kernel lacks it
	// Machine limits loading at boot to guests on that QEMU machine ("pc" or "microvm").
	Machine string
	// OnDemand modules are not loaded at boot: the kernel asks for them when something first
	// uses them (`ip link add ... type dummy` runs the initramfs's modprobe with their alias).
	OnDemand bool
}

// DefaultModules is what a guest needs for rocebed: rdma_rxe and its user-space interfaces, the
// link types scenarios use, virtio 9p for the shares and virtio-net for cabled NICs (`--nics`),
// over PCI on pc and over MMIO on microvm.
// crc32 comes first because rxe allocates the crc32 shash when it registers a device ("failed to
// init crc32 algorithm" otherwise). xfrm_user and nfnetlink are there because
// netlink.NewHandleAt(ns) opens NETLINK_XFRM and NETLINK_NETFILTER sockets by default and fails
// with "protocol not supported" without them. macvlan, dummy and overlay are for users'
// commands, loaded when first used.
var DefaultModules = []ModuleSpec{
	{Name: "crc32_generic"},
	{Name: "crc32_pclmul"},
	{Name: "virtio_pci", Machine: machinePC},
	{Name: "virtio_mmio", Machine: machineMicroVM},
	{Name: "virtio_net"},
	{Name: "9pnet_virtio", Required: true},
	{Name: "9p", Required: true},
	{Name: "rdma_rxe", Required: true},
	{Name: "ib_uverbs", Required: true},
	{Name: "rdma_ucm", Required: true},
	{Name: "veth", Required: true},
	{Name: "xfrm_user"},
	{Name: "nfnetlink"},
	{Name: "macvlan", OnDemand: true},
	{Name: "dummy", OnDemand: true},
	{Name: "overlay", OnDemand: true},
}

// ModuleFile is one module file of the closure, in load order.
type ModuleFile struct {
	Name     string // "rdma_rxe"
	Path     string // relative to lib/modules/KVER, as in modules.dep: "kernel/.../rdma_rxe.ko.xz"
	Required bool
	Deps     []string // the names of every module it needs, as modules.dep lists them
}

// modName turns a module path or name into the kernel's module name: basename without .ko[.xz|.zst|.gz],
// dashes as underscores.
func modName(p string) string {
	b := path.Base(p)
	if i := strings.Index(b, ".ko"); i >= 0 {
		b = b[:i]
	}
	return strings.ReplaceAll(b, "-", "_")
}

// ModuleClosure resolves specs against dir (lib/modules/KVER, with modules.dep from depmod) and
// returns every module file to load, dependencies first. Built-in modules (modules.builtin) need
// no file; a missing optional module is skipped and reported in skipped.
func ModuleClosure(dir string, specs []ModuleSpec) (files []ModuleFile, skipped []string, err error) {
	depText, err := os.ReadFile(filepath.Join(dir, "modules.dep"))
	if err != nil {
		return nil, nil, fmt.Errorf("read modules.dep: %w (run `depmod -b ROOT KVER` on the extracted kernel)", err)
	}
	deps := map[string][]string{} // name -> dep paths
	paths := map[string]string{}  // name -> path
	sc := bufio.NewScanner(bytes.NewReader(depText))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		p, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		n := modName(p)
		paths[n] = p
		deps[n] = strings.Fields(rest)
	}
	builtin := map[string]bool{}
	if b, err := os.ReadFile(filepath.Join(dir, "modules.builtin")); err == nil {
		for _, l := range strings.Fields(string(b)) {
			builtin[modName(l)] = true
		}
	}

	index := map[string]int{} // name -> position in files
	var visit func(name string, required bool)
	visit = func(name string, required bool) {
		if i, ok := index[name]; ok {
			files[i].Required = files[i].Required || required
			return
		}
		// modules.dep lists the full transitive closure; the last entry has to be loaded first.
		d := deps[name]
		for i := len(d) - 1; i >= 0; i-- {
			visit(modName(d[i]), required)
		}
		index[name] = len(files)
		var depNames []string
		for _, dp := range d {
			depNames = append(depNames, modName(dp))
		}
		files = append(files, ModuleFile{Name: name, Path: paths[name], Required: required, Deps: depNames})
	}
	var missing []string
	for _, s := range specs {
		n := modName(s.Name)
		switch {
		case paths[n] != "":
			visit(n, s.Required)
		case builtin[n]:
			skipped = append(skipped, n+" (built in)")
		case s.Required:
			missing = append(missing, n)
		default:
			skipped = append(skipped, n+" (not in this kernel)")
		}
	}
	if len(missing) > 0 {
		return nil, nil, fmt.Errorf("kernel in %s lacks required modules %s: use a kernel built with them (Debian's linux-image-*-amd64 has them)", dir, strings.Join(missing, ", "))
	}
	return files, skipped, nil
}
