package vm

import (
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/u-root/u-root/pkg/cpio"
)

// initrdFile is one regular file of the initramfs.
type initrdFile struct {
	name string // relative: "bin/busybox"
	data []byte
	mode uint64
}

// writeInitramfs writes a gzipped newc cpio with every parent directory before its entries, the
// files, the symlinks and /dev/console (the kernel opens it for /init before devtmpfs exists).
func writeInitramfs(w io.Writer, files []initrdFile, links map[string]string) error {
	dirs := map[string]bool{"dev": true, "proc": true, "sys": true, "tmp": true, "run": true, "newroot": true}
	addParents := func(name string) {
		for d := path.Dir(name); d != "." && d != "/"; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	for _, f := range files {
		addParents(f.name)
	}
	for l := range links {
		addParents(l)
	}
	var recs []cpio.Record
	var dl []string
	for d := range dirs {
		dl = append(dl, d)
	}
	sort.Strings(dl) // a parent sorts before its children
	for _, d := range dl {
		recs = append(recs, cpio.Directory(d, 0o755))
	}
	recs = append(recs, cpio.CharDev("dev/console", 0o600, 5, 1))
	for _, f := range files {
		recs = append(recs, cpio.StaticRecord(f.data, cpio.Info{Name: f.name, Mode: cpio.S_IFREG | f.mode}))
	}
	var ll []string
	for l := range links {
		ll = append(ll, l)
	}
	sort.Strings(ll)
	for _, l := range ll {
		recs = append(recs, cpio.Symlink(l, links[l]))
	}
	for i := range recs {
		recs[i].Ino = uint64(i + 1)
		recs[i].NLink = 1
	}

	zw := gzip.NewWriter(w)
	cw := cpio.Newc.Writer(zw)
	if err := cpio.WriteRecords(cw, recs); err != nil {
		return fmt.Errorf("write cpio: %w", err)
	}
	if err := cpio.WriteTrailer(cw); err != nil {
		return fmt.Errorf("write cpio trailer: %w", err)
	}
	return zw.Close()
}

// busyboxFiles reads a static busybox and lists its applets (busybox --list-full) as symlinks.
func busyboxFiles(ctx context.Context, bin string) (initrdFile, map[string]string, error) {
	data, err := os.ReadFile(bin)
	if err != nil {
		return initrdFile{}, nil, fmt.Errorf("read busybox: %w: apt-get install busybox-static", err)
	}
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return initrdFile{}, nil, fmt.Errorf("busybox %s is not an ELF file: %w", bin, err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return initrdFile{}, nil, fmt.Errorf("busybox %s is dynamically linked: apt-get install busybox-static", bin)
		}
	}
	out, err := exec.CommandContext(ctx, bin, "--list-full").Output()
	if err != nil {
		return initrdFile{}, nil, fmt.Errorf("%s --list-full: %w", bin, err)
	}
	links := map[string]string{}
	for _, a := range strings.Fields(string(out)) {
		a = strings.TrimPrefix(a, "/")
		if a == "bin/busybox" || a == "init" || a == "linuxrc" {
			continue
		}
		links[a] = "/bin/busybox"
	}
	if links["bin/sh"] == "" || links["sbin/insmod"] == "" {
		return initrdFile{}, nil, errors.New("busybox lacks the sh or insmod applet")
	}
	return initrdFile{name: "bin/busybox", data: data, mode: 0o755}, links, nil
}

// moduleData reads a module file, decompressing .ko.xz/.ko.zst/.ko.gz, since busybox insmod
// loads only plain .ko files.
func moduleData(ctx context.Context, file string) ([]byte, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var tool []string
	switch {
	case strings.HasSuffix(file, ".ko"):
		return data, nil
	case strings.HasSuffix(file, ".ko.gz"):
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		return io.ReadAll(zr)
	case strings.HasSuffix(file, ".ko.xz"):
		tool = []string{"xz", "-dc"}
	case strings.HasSuffix(file, ".ko.zst"):
		tool = []string{"zstd", "-dc"}
	default:
		return nil, fmt.Errorf("%s: unknown module compression", file)
	}
	cmd := exec.CommandContext(ctx, tool[0], tool[1:]...)
	cmd.Stdin = bytes.NewReader(data)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("decompress %s with %s: %w: %s", file, tool[0], err, bytes.TrimSpace(stderr.Bytes()))
	}
	return out, nil
}

// moduleFiles lays the module closure out as the initramfs's lib/modules/KVER, with a
// modules.dep for busybox modprobe, the aliases of those modules (so the kernel can load one
// on demand through the initramfs's /sbin/modprobe), and etc/rocebed/modules: the modules
// /init loads, one "NAME required|optional|ondemand [MACHINE]" per line.
func moduleFiles(ctx context.Context, modDir, kver string, mods []ModuleFile, specs []ModuleSpec) ([]initrdFile, error) {
	var files []initrdFile
	var dep strings.Builder
	have := map[string]bool{}
	for _, m := range mods {
		if have[m.Name] {
			return nil, fmt.Errorf("two modules named %s", m.Name)
		}
		have[m.Name] = true
		data, err := moduleData(ctx, filepath.Join(modDir, m.Path))
		if err != nil {
			return nil, fmt.Errorf("module %s: %w", m.Name, err)
		}
		data = stripSignature(data)
		files = append(files, initrdFile{name: "lib/modules/" + kver + "/" + m.Name + ".ko", data: data, mode: 0o644})
		dep.WriteString(m.Name + ".ko:")
		for _, d := range m.Deps {
			dep.WriteString(" " + d + ".ko")
		}
		dep.WriteString("\n")
	}
	files = append(files, initrdFile{name: "lib/modules/" + kver + "/modules.dep", data: []byte(dep.String()), mode: 0o644})

	var aliases strings.Builder
	if all, err := os.ReadFile(filepath.Join(modDir, "modules.alias")); err == nil {
		for _, line := range strings.Split(string(all), "\n") {
			if f := strings.Fields(line); len(f) == 3 && f[0] == "alias" && have[modName(f[2])] {
				fmt.Fprintf(&aliases, "alias %s %s\n", f[1], modName(f[2]))
			}
		}
	}
	files = append(files, initrdFile{name: "etc/modprobe.d/rocebed-aliases.conf", data: []byte(aliases.String()), mode: 0o644})

	var list strings.Builder
	for _, s := range specs {
		n := modName(s.Name)
		if !have[n] {
			continue // built in, or an optional module this kernel lacks
		}
		need := "optional"
		switch {
		case s.OnDemand:
			need = "ondemand"
		case s.Required:
			need = "required"
		}
		list.WriteString(strings.TrimSpace(n+" "+need+" "+s.Machine) + "\n")
	}
	files = append(files, initrdFile{name: "etc/rocebed/modules", data: []byte(list.String()), mode: 0o644})
	return files, nil
}

// moduleSigMagic ends a module with an appended signature (scripts/sign-file).
const moduleSigMagic = "~Module signature appended~\n"

// stripSignature removes a module's appended signature: the signature block and the 12-byte
// struct module_signature before the magic, whose last four bytes are the block's length (big
// endian). The guest kernel then skips the SHA-256 pass over every module and its RSA check,
// which are slow under emulation (the kernel does not enforce signatures; it notes the
// unsigned module as a taint).
func stripSignature(ko []byte) []byte {
	const infoLen = 12
	if !bytes.HasSuffix(ko, []byte(moduleSigMagic)) || len(ko) < len(moduleSigMagic)+infoLen {
		return ko
	}
	info := ko[len(ko)-len(moduleSigMagic)-infoLen : len(ko)-len(moduleSigMagic)]
	sigLen := int(info[8])<<24 | int(info[9])<<16 | int(info[10])<<8 | int(info[11])
	end := len(ko) - len(moduleSigMagic) - infoLen - sigLen
	if sigLen <= 0 || end <= 0 {
		return ko
	}
	return ko[:end]
}
