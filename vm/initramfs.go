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
