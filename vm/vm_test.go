package vm

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rocebed/rocebed/internal/preflight"
	"github.com/u-root/u-root/pkg/cpio"
)

func TestShQuoteRoundTrip(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh on this host")
	}
	args := []string{"plain", "", "two words", "it's", `"dq"`, "$HOME", "`id`", "a\nb", `\`, "'", "''", "*", "-n", "$(echo x)"}
	var script strings.Builder
	script.WriteString(`printf '%s\0'`)
	for _, a := range args {
		script.WriteString(" " + shQuote(a))
	}
	out, err := exec.Command(sh, "-c", script.String()).Output()
	if err != nil {
		t.Fatalf("sh: %v", err)
	}
	got := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
	if !reflect.DeepEqual(got, args) {
		t.Fatalf("round trip through sh:\n got %q\nwant %q", got, args)
	}
}

func TestCommandScript(t *testing.T) {
	s, err := commandScript([]string{"echo", "a b"}, []string{"ROCEBED_X=1 2"}, "/work/main", "/tmp/w", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"export 'ROCEBED_X=1 2'\n",
		"export 'PATH=" + GuestPATH + "'\n",
		"export HOME=/root\n",
		"cd -- '/work/main' 2>/dev/null || cd -- '/tmp/w'\n",
		"exec 'echo' 'a b'\n",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("script lacks %q:\n%s", want, s)
		}
	}
	if _, err := commandScript([]string{"true"}, []string{"BAD NAME=1"}, "", "/w", nil); err == nil {
		t.Error("an environment entry with a space in its name was accepted")
	}
	if _, err := commandScript(nil, nil, "", "/w", nil); err == nil {
		t.Error("an empty command was accepted")
	}
}

func TestGuestVisible(t *testing.T) {
	for p, want := range map[string]bool{
		"/work/main": true, "/usr/bin/rdma": true, "/tmp": false, "/tmp/x": false, "/run/netns": false,
		"/var/tmp/y": false, "/var/cache/rocebed": true, "/tmpfoo": true, "relative": false, "/proc/self": false,
	} {
		if got := GuestVisible(p); got != want {
			t.Errorf("GuestVisible(%q) = %v, want %v", p, got, want)
		}
	}
}

func TestConsoleTail(t *testing.T) {
	var c consoleTail
	now := time.Now()
	for i := 0; i < 70; i++ {
		c.add("line", now)
	}
	c.add("ROCEBED-START uptime=2.1\r", now)
	c.add("[    2.98] Kernel panic - not syncing: sysrq triggered crash", now)
	c.add("ROCEBED-FAIL insmod 9p.ko: bad", now)
	c.add("ROCEBED-RC=7", now)
	if len(c.lines) != 60 {
		t.Errorf("kept %d lines, want 60", len(c.lines))
	}
	if c.started != now || c.panic != "Kernel panic - not syncing: sysrq triggered crash" || c.fail != "insmod 9p.ko: bad" || c.rc != "7" {
		t.Errorf("markers: %+v", c)
	}
}

// writeModTree makes a fake lib/modules/KVER with modules.dep and empty .ko files.
func writeModTree(t *testing.T, dep, builtin string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "6.1.0-test")
	for _, line := range strings.Split(dep, "\n") {
		p, _, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, p), []byte("module "+p), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "modules.dep"), []byte(dep), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "modules.builtin"), []byte(builtin), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "modules.alias"), []byte(fakeAlias), 0o644); err != nil {
		t.Fatal(err)
	}
	// veth carries an appended signature, as Debian's modules do.
	veth := filepath.Join(dir, "kernel/drivers/net/veth.ko")
	if b, err := os.ReadFile(veth); err == nil {
		sig := []byte("PKCS7-SIGNATURE")
		info := []byte{0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, byte(len(sig))}
		b = append(append(append(b, sig...), info...), moduleSigMagic...)
		if err := os.WriteFile(veth, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const fakeDep = `kernel/drivers/infiniband/sw/rxe/rdma_rxe.ko: kernel/net/ipv6/ip6_udp_tunnel.ko kernel/net/ipv4/udp_tunnel.ko kernel/drivers/infiniband/core/ib_uverbs.ko kernel/drivers/infiniband/core/ib_core.ko
kernel/drivers/infiniband/core/ib_uverbs.ko: kernel/drivers/infiniband/core/ib_core.ko
kernel/drivers/infiniband/core/ib_core.ko:
kernel/net/ipv4/udp_tunnel.ko:
kernel/net/ipv6/ip6_udp_tunnel.ko:
kernel/drivers/net/veth.ko:
kernel/drivers/net/dummy.ko:
kernel/crypto/crc32-generic.ko:
`

const fakeAlias = `# Aliases extracted from modules themselves.
alias rtnl-link-veth veth
alias rtnl-link-macvlan macvlan
alias fs-overlay overlay
`

func TestModuleClosure(t *testing.T) {
	dir := writeModTree(t, fakeDep, "kernel/drivers/virtio/virtio_pci.ko\n")
	files, skipped, err := ModuleClosure(dir, []ModuleSpec{
		{Name: "crc32-generic"}, {Name: "virtio_pci"}, {Name: "macvlan"},
		{Name: "rdma_rxe", Required: true}, {Name: "ib_uverbs", Required: true}, {Name: "veth", Required: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		names = append(names, f.Name)
	}
	want := []string{"crc32_generic", "ib_core", "ib_uverbs", "udp_tunnel", "ip6_udp_tunnel", "rdma_rxe", "veth"}
	if !reflect.DeepEqual(names, want) {
		t.Errorf("load order %v, want %v", names, want)
	}
	for _, f := range files {
		if f.Required == (f.Name == "crc32_generic") {
			t.Errorf("%s required=%v", f.Name, f.Required)
		}
	}
	if !reflect.DeepEqual(skipped, []string{"virtio_pci (built in)", "macvlan (not in this kernel)"}) {
		t.Errorf("skipped %q", skipped)
	}
	if _, _, err := ModuleClosure(dir, []ModuleSpec{{Name: "9p", Required: true}}); err == nil || !strings.Contains(err.Error(), "lacks required modules 9p") {
		t.Errorf("missing required module: err = %v", err)
	}
	if _, _, err := ModuleClosure(t.TempDir(), DefaultModules); err == nil || !strings.Contains(err.Error(), "depmod") {
		t.Errorf("no modules.dep: err = %v", err)
	}
}

// fakeELF builds a minimal ELF64 file with one PT_NOTE segment holding a note (name, type).
func fakeELF(noteName string, noteType uint32) []byte {
	var note bytes.Buffer
	name := append([]byte(noteName), 0)
	binary.Write(&note, binary.LittleEndian, []uint32{uint32(len(name)), 4, noteType})
	note.Write(name)
	note.Write(make([]byte, align4(len(name))-len(name)))
	note.Write([]byte{1, 2, 3, 4})

	var b bytes.Buffer
	b.Write([]byte{0x7f, 'E', 'L', 'F', 2, 1, 1, 0})
	b.Write(make([]byte, 8))
	binary.Write(&b, binary.LittleEndian, struct {
		Type, Machine                              uint16
		Version                                    uint32
		Entry, Phoff, Shoff                        uint64
		Flags                                      uint32
		Ehsize, Phentsize, Phnum, Shentsize, Shnum uint16
		Shstrndx                                   uint16
	}{Type: 2, Machine: 62, Version: 1, Phoff: 64, Ehsize: 64, Phentsize: 56, Phnum: 1, Shentsize: 64})
	binary.Write(&b, binary.LittleEndian, struct {
		Type, Flags                             uint32
		Off, Vaddr, Paddr, Filesz, Memsz, Align uint64
	}{Type: 4, Off: 120, Filesz: uint64(note.Len()), Memsz: uint64(note.Len()), Align: 4})
	b.Write(note.Bytes())
	return b.Bytes()
}

// fakeBzImage wraps payload in a boot header (protocol 2.15, one setup sector) the way the
// kernel build does.
func fakeBzImage(payload []byte) []byte {
	bz := make([]byte, 2*512)
	bz[0x1f1] = 1
	copy(bz[0x202:], "HdrS")
	binary.LittleEndian.PutUint16(bz[0x206:], 0x20f)
	binary.LittleEndian.PutUint32(bz[0x248:], 0x40)
	binary.LittleEndian.PutUint32(bz[0x24c:], uint32(len(payload)))
	bz = append(bz, make([]byte, 0x40)...)
	bz = append(bz, payload...)
	return append(bz, []byte("trailing setup data")...)
}

func gz(t *testing.T, b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

func TestExtractVmlinux(t *testing.T) {
	ctx := context.Background()
	pvh := fakeELF("Xen", 18)
	if !HasPVHNote(pvh) {
		t.Fatal("HasPVHNote misses the Xen note type 18")
	}
	if HasPVHNote(fakeELF("GNU", 3)) || HasPVHNote(fakeELF("Xen", 5)) || HasPVHNote([]byte("not elf")) {
		t.Fatal("HasPVHNote accepts a kernel without the PVH note")
	}

	got, comp, err := ExtractVmlinux(ctx, fakeBzImage(gz(t, pvh)))
	if err != nil || comp != "gzip" || !bytes.Equal(got, pvh) {
		t.Fatalf("gzip payload from the header: comp %q err %v, equal %v", comp, err, bytes.Equal(got, pvh))
	}
	// No boot header: found by scanning for the magic, after a false gzip magic.
	blob := append([]byte("junk\x1f\x8b\x08junk"), gz(t, pvh)...)
	if got, _, err := ExtractVmlinux(ctx, blob); err != nil || !bytes.Equal(got, pvh) {
		t.Fatalf("scan: err %v", err)
	}
	// A payload that is not an ELF file is refused.
	if _, _, err := ExtractVmlinux(ctx, fakeBzImage(gz(t, []byte("not an elf")))); err == nil {
		t.Fatal("a non-ELF payload was accepted")
	}
	if _, err := exec.LookPath("xz"); err == nil {
		cmd := exec.Command("xz", "-c", "--check=crc32")
		cmd.Stdin = bytes.NewReader(pvh)
		xzed, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		// The kernel build appends the uncompressed size; xz --single-stream must ignore it.
		xzed = binary.LittleEndian.AppendUint32(xzed, uint32(len(pvh)))
		if got, comp, err := ExtractVmlinux(ctx, fakeBzImage(xzed)); err != nil || comp != "xz" || !bytes.Equal(got, pvh) {
			t.Fatalf("xz payload: comp %q err %v", comp, err)
		}
	}
}

// TestPrepareFileIsCached prepares a fake kernel twice: the second run must be a cache hit that
// rewrites nothing, and the initramfs must hold /init, busybox, the modules in order and the
// console device.
func TestPrepareFileIsCached(t *testing.T) {
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("needs busybox-static at /bin/busybox: apt-get install busybox-static")
	}
	modDir := writeModTree(t, fakeDep, "")
	kernel := filepath.Join(t.TempDir(), "vmlinuz")
	if err := os.WriteFile(kernel, fakeBzImage(gz(t, fakeELF("Xen", 18))), 0o644); err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	opts := PrepareOptions{KernelFile: kernel, ModulesDir: modDir, CacheDir: cache,
		Modules: []ModuleSpec{{Name: "rdma_rxe", Required: true}, {Name: "veth", Machine: machineMicroVM}, {Name: "dummy", OnDemand: true}}}
	r1, err := Prepare(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if r1.CacheHit || r1.Image.KernelFormat != "elf" || r1.Image.KernelVersion != "6.1.0-test" {
		t.Fatalf("first prepare: %+v %+v", r1, r1.Image)
	}
	st1, err := os.Stat(filepath.Join(r1.Image.Dir, r1.Image.Initrd))
	if err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	opts.Log = &log
	r2, err := Prepare(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	st2, _ := os.Stat(filepath.Join(r2.Image.Dir, r2.Image.Initrd))
	if !r2.CacheHit || r2.Image.Dir != r1.Image.Dir || !st2.ModTime().Equal(st1.ModTime()) {
		t.Fatalf("second prepare rebuilt: hit %v dir %s vs %s", r2.CacheHit, r2.Image.Dir, r1.Image.Dir)
	}
	if !strings.Contains(log.String(), "cache hit") {
		t.Errorf("second prepare did not say it was a cache hit: %q", log.String())
	}
	cur, err := CurrentImage(cache)
	if err != nil || cur.Dir != r1.Image.Dir {
		t.Fatalf("CurrentImage: %v %v", cur, err)
	}
	f, err := os.Open(filepath.Join(r1.Image.Dir, r1.Image.Initrd))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(raw)))
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]cpio.Record{}
	for _, r := range recs {
		byName[r.Name] = r
	}
	for _, n := range []string{"init", "bin/busybox", "bin/sh", "sbin/modprobe", "dev/console", "proc",
		"lib/modules/6.1.0-test/rdma_rxe.ko", "lib/modules/6.1.0-test/ib_core.ko", "lib/modules/6.1.0-test/modules.dep",
		"etc/modprobe.d/rocebed-aliases.conf"} {
		if _, ok := byName[n]; !ok {
			t.Errorf("initramfs lacks %s", n)
		}
	}
	file := func(name string) string {
		b, _ := io.ReadAll(io.NewSectionReader(byName[name], 0, int64(byName[name].FileSize)))
		return string(b)
	}
	// busybox modprobe loads a module's dependencies from modules.dep, named as in the initramfs.
	if dep := file("lib/modules/6.1.0-test/modules.dep"); !strings.Contains(dep, "rdma_rxe.ko: ip6_udp_tunnel.ko udp_tunnel.ko ib_uverbs.ko ib_core.ko\n") ||
		!strings.Contains(dep, "ib_core.ko:\n") {
		t.Errorf("modules.dep:\n%s", dep)
	}
	if al := file("etc/modprobe.d/rocebed-aliases.conf"); al != "alias rtnl-link-veth veth\n" {
		t.Errorf("aliases: %q, want only those of the modules in the image", al)
	}
	if ko := file("lib/modules/6.1.0-test/veth.ko"); ko != "module kernel/drivers/net/veth.ko" {
		t.Errorf("veth.ko = %q: the appended signature should be gone", ko)
	}
	if r, ok := byName["dev/console"]; ok && (r.Mode&cpio.S_IFMT != cpio.S_IFCHR || r.Rmajor != 5 || r.Rminor != 1) {
		t.Errorf("dev/console is %+v, want char 5:1", r.Info)
	}
	// /init loads what the options name, with their machine; modprobe brings the dependencies.
	if list, want := file("etc/rocebed/modules"), "rdma_rxe required\nveth optional microvm\ndummy ondemand\n"; list != want {
		t.Errorf("etc/rocebed/modules:\n%s\nwant:\n%s", list, want)
	}
	init, _ := io.ReadAll(io.NewSectionReader(byName["init"], 0, int64(byName["init"].FileSize)))
	if !bytes.Equal(init, initScript) {
		t.Error("initramfs /init differs from init.sh")
	}

	// A different module list is a different image, and it replaces the old build of the same
	// kernel in the cache.
	opts.Modules = append(opts.Modules, ModuleSpec{Name: "ib_uverbs"})
	r3, err := Prepare(context.Background(), opts)
	if err != nil || r3.CacheHit || r3.Image.Dir == r1.Image.Dir {
		t.Fatalf("changed module list reused the cache: %v", err)
	}
	if _, err := os.Stat(r1.Image.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("superseded build %s was kept (stat: %v)", r1.Image.Dir, err)
	}
}

func TestPrepareOptionErrors(t *testing.T) {
	if _, err := Prepare(context.Background(), PrepareOptions{KernelFile: "/x", CacheDir: t.TempDir()}); err == nil {
		t.Error("--kernel without --modules was accepted")
	}
	if _, err := CurrentImage(t.TempDir()); err == nil || !strings.Contains(err.Error(), "rocebed vm prepare") {
		t.Errorf("CurrentImage on an empty cache: %v", err)
	}
}

func TestExecPreflight(t *testing.T) {
	_, err := Exec(context.Background(), ExecOptions{QEMU: "/nonexistent/qemu-system-x86_64", Argv: []string{"true"}})
	var pe *preflight.Error
	if !errors.As(err, &pe) || !strings.Contains(err.Error(), "apt-get install qemu-system-x86") {
		t.Fatalf("missing QEMU: %v, want a PreflightError saying what to install", err)
	}
}

func TestCopyTreeKeepsLayoutAndLinks(t *testing.T) {
	src, dst := t.TempDir(), filepath.Join(t.TempDir(), "copy")
	for _, d := range []string{".git/objects", "bin", "pkg/testdata"} {
		if err := os.MkdirAll(filepath.Join(src, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for f, body := range map[string]string{"go.mod": "module x\n", "pkg/a_test.go": "package pkg\n", "pkg/testdata/t.yaml": "k: v\n", ".git/HEAD": "x", "bin/tool": "x"} {
		if err := os.WriteFile(filepath.Join(src, f), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("../t.yaml", filepath.Join(src, "pkg/testdata/link")); err != nil {
		t.Fatal(err)
	}
	if err := copyTree(src, dst); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dst, "pkg/testdata/t.yaml")); err != nil || string(b) != "k: v\n" {
		t.Errorf("testdata not copied: %q %v", b, err)
	}
	if l, err := os.Readlink(filepath.Join(dst, "pkg/testdata/link")); err != nil || l != "../t.yaml" {
		t.Errorf("symlink not kept: %q %v", l, err)
	}
	for _, skipped := range []string{".git", "bin"} {
		if _, err := os.Stat(filepath.Join(dst, skipped)); !os.IsNotExist(err) {
			t.Errorf("%s was copied", skipped)
		}
	}
	root, err := moduleRoot(filepath.Join(src, "pkg/testdata"))
	if err != nil || root != src {
		t.Errorf("moduleRoot = %q, %v; want %q", root, err, src)
	}
}

func TestCableNICs(t *testing.T) {
	nics, err := CableNICs(4, 7)
	if err != nil {
		t.Fatal(err)
	}
	if len(nics) != 4 || nics[0].Name != "eth1" || nics[3].Name != "eth4" || nics[1].MAC.String() != "52:54:00:ab:07:02" {
		t.Fatalf("nics = %+v", nics)
	}
	for i := 0; i < 4; i += 2 {
		a, b := nics[i], nics[i+1]
		if a.LocalPort == 0 || a.LocalPort != b.RemotePort || b.LocalPort != a.RemotePort {
			t.Errorf("%s and %s are not cabled to each other: %+v %+v", a.Name, b.Name, a, b)
		}
	}
	for m, dev := range map[string]string{machinePC: "virtio-net-pci,netdev=nic0,mac=52:54:00:ab:07:01,romfile=", machineMicroVM: "virtio-net-device,netdev=nic0,mac=52:54:00:ab:07:01"} {
		args := strings.Join(nicArgs(machine{name: m}, nics[:1]), " ")
		for _, want := range []string{"dgram,id=nic0,local.type=inet,local.host=127.0.0.1", "remote.host=127.0.0.1", dev} {
			if !strings.Contains(args, want) {
				t.Errorf("%s: QEMU args %q lack %q", m, args, want)
			}
		}
	}
	script := nicRenameScript(nics[:2])
	if !strings.Contains(script, "52:54:00:ab:07:01) ip link set dev \"${d##*/}\" name rocebednic0") || !strings.Contains(script, "ip link set dev rocebednic1 name 'eth2'") {
		t.Errorf("rename script:\n%s", script)
	}
	for _, n := range []int{3, -2, 18} {
		if _, err := CableNICs(n, 0); err == nil {
			t.Errorf("CableNICs(%d) accepted", n)
		}
	}
}
