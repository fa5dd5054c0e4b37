package vm

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/rocebed/rocebed/internal/preflight"
)

//go:embed init.sh
var initScript []byte

// imageFormat changes whenever the layout of a prepared image changes; it is part of every key.
const imageFormat = "rocebed-vm-image/3"

// MetaPackage is the Debian package whose dependency names the current kernel.
const MetaPackage = "linux-image-amd64"

// PrepareOptions says which kernel to prepare and where to cache it. With neither KernelPackage
// nor KernelFile, Prepare takes the linux-image-*-amd64 that MetaPackage depends on.
type PrepareOptions struct {
	KernelPackage string       // "linux-image-6.1.0-56-amd64"
	KernelFile    string       // a bzImage (or vmlinuz) instead of a package; needs ModulesDir
	ModulesDir    string       // lib/modules/KVER of KernelFile, with modules.dep
	CacheDir      string       // default DefaultCacheDir()
	Busybox       string       // default /bin/busybox (busybox-static)
	Modules       []ModuleSpec // default DefaultModules
	Log           io.Writer    // progress lines; nil discards
}

// PrepareResult says what Prepare did.
type PrepareResult struct {
	Image      *Image
	CacheHit   bool   // nothing was downloaded or built
	Downloaded string // the .deb fetched, if any
}

// DefaultCacheDir is $XDG_CACHE_HOME/rocebed, else /var/cache/rocebed for root, else
// ~/.cache/rocebed.
func DefaultCacheDir() string {
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "rocebed")
	}
	if os.Geteuid() == 0 {
		return "/var/cache/rocebed"
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".cache", "rocebed")
	}
	return filepath.Join(os.TempDir(), "rocebed-cache")
}

// Prepare makes sure a guest image for the chosen kernel is in the cache and returns it. A
// second call with the same inputs is a cache hit: it runs only `apt-cache` (local) and hashes,
// and neither downloads nor builds. The cache entry is also made the current one, which Exec
// uses by default.
func Prepare(ctx context.Context, o PrepareOptions) (*PrepareResult, error) {
	if o.CacheDir == "" {
		o.CacheDir = DefaultCacheDir()
	}
	if o.Busybox == "" {
		o.Busybox = "/bin/busybox"
	}
	if o.Modules == nil {
		o.Modules = DefaultModules
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if (o.KernelFile == "") != (o.ModulesDir == "") {
		return nil, errors.New("--kernel and --modules go together: give the bzImage and its lib/modules/KVER directory")
	}
	if o.KernelFile != "" && o.KernelPackage != "" {
		return nil, errors.New("give either a kernel package or a kernel file, not both")
	}
	if err := os.MkdirAll(o.CacheDir, 0o755); err != nil {
		return nil, fmt.Errorf("create cache dir: %w", err)
	}
	bb, err := os.ReadFile(o.Busybox)
	if err != nil {
		return nil, &preflight.Error{Check: "busybox", Need: "a static busybox at " + o.Busybox,
			Have: "none", Hint: "run `apt-get install busybox-static`", Err: err}
	}
	common := []string{imageFormat, "init=" + sha(initScript), "busybox=" + sha(bb), "modules=" + specString(o.Modules)}
	if o.KernelFile != "" {
		return prepareFile(ctx, o, common)
	}
	return preparePackage(ctx, o, common)
}

func sha(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

func specString(specs []ModuleSpec) string {
	var b strings.Builder
	for _, s := range specs {
		fmt.Fprintf(&b, "%s:%t:%s:%t,", s.Name, s.Required, s.Machine, s.OnDemand)
	}
	return b.String()
}

func cacheKey(parts []string) string { return sha([]byte(strings.Join(parts, "\n")))[:24] }

// debInfo is what apt knows about a package version without downloading it.
type debInfo struct{ Package, Version, SHA256 string }

func preparePackage(ctx context.Context, o PrepareOptions, common []string) (*PrepareResult, error) {
	if err := ensureAptLists(ctx, o.Log); err != nil {
		return nil, err
	}
	pkg := o.KernelPackage
	if pkg == "" {
		var err error
		if pkg, err = currentKernelPackage(ctx); err != nil {
			return nil, err
		}
		fmt.Fprintf(o.Log, "vm prepare: %s depends on %s\n", MetaPackage, pkg)
	}
	info, err := aptShow(ctx, pkg)
	if err != nil {
		return nil, err
	}
	key := cacheKey(append(common, "deb="+info.Package, "version="+info.Version, "sha256="+info.SHA256))
	if img, err := LoadImage(filepath.Join(o.CacheDir, key)); err == nil {
		fmt.Fprintf(o.Log, "vm prepare: cache hit for %s %s: %s (no download, no rebuild)\n", info.Package, info.Version, img.Dir)
		pruneCache(o.CacheDir, img, o.Log)
		return &PrepareResult{Image: img, CacheHit: true}, setCurrent(o.CacheDir, key)
	}

	tmp, err := os.MkdirTemp(o.CacheDir, ".build-")
	if err != nil {
		return nil, fmt.Errorf("create build dir: %w", err)
	}
	defer os.RemoveAll(tmp)
	t0 := time.Now()
	// apt-get download as root warns that the _apt user cannot write here; run it as root.
	if _, err := runTool(ctx, tmp, "apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", info.Package+"="+info.Version); err != nil {
		return nil, fmt.Errorf("download %s %s: %w", info.Package, info.Version, err)
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if len(debs) != 1 {
		return nil, fmt.Errorf("apt-get download %s left %d .deb files, want 1", info.Package, len(debs))
	}
	deb, err := os.ReadFile(debs[0])
	if err != nil {
		return nil, err
	}
	if got := sha(deb); info.SHA256 != "" && got != info.SHA256 {
		return nil, fmt.Errorf("%s: sha256 %s, apt says %s: run `apt-get update` and retry", filepath.Base(debs[0]), got, info.SHA256)
	}
	fmt.Fprintf(o.Log, "vm prepare: downloaded %s (%d MB) in %.1fs\n", filepath.Base(debs[0]), len(deb)>>20, time.Since(t0).Seconds())

	root := filepath.Join(tmp, "root")
	if _, err := runTool(ctx, tmp, "dpkg", "-x", debs[0], root); err != nil {
		return nil, fmt.Errorf("extract %s: %w", debs[0], err)
	}
	kvers, _ := os.ReadDir(filepath.Join(root, "lib", "modules"))
	if len(kvers) != 1 {
		return nil, fmt.Errorf("%s: want one lib/modules/KVER directory, found %d", debs[0], len(kvers))
	}
	kver := kvers[0].Name()
	if _, err := runTool(ctx, tmp, "depmod", "-b", root, kver); err != nil {
		return nil, fmt.Errorf("depmod for %s: %w", kver, err)
	}
	fmt.Fprintf(o.Log, "vm prepare: extracted kernel %s and ran depmod\n", kver)
	src := info.Package + " " + info.Version
	img, err := buildImage(ctx, o, tmp, key, src, kver,
		filepath.Join(root, "boot", "vmlinuz-"+kver), filepath.Join(root, "lib", "modules", kver))
	if err != nil {
		return nil, err
	}
	return &PrepareResult{Image: img, Downloaded: filepath.Base(debs[0])}, nil
}

func prepareFile(ctx context.Context, o PrepareOptions, common []string) (*PrepareResult, error) {
	k, err := os.ReadFile(o.KernelFile)
	if err != nil {
		return nil, fmt.Errorf("read kernel: %w", err)
	}
	kver := filepath.Base(filepath.Clean(o.ModulesDir))
	files, _, err := ModuleClosure(o.ModulesDir, o.Modules)
	if err != nil {
		return nil, err
	}
	// Key on the kernel's bytes and the identity of every module file the guest will load.
	parts := append(common, "kernel="+sha(k), "kver="+kver)
	for _, f := range files {
		st, err := os.Stat(filepath.Join(o.ModulesDir, f.Path))
		if err != nil {
			return nil, fmt.Errorf("module %s: %w", f.Name, err)
		}
		parts = append(parts, fmt.Sprintf("%s %d %d", f.Path, st.Size(), st.ModTime().UnixNano()))
	}
	key := cacheKey(parts)
	if img, err := LoadImage(filepath.Join(o.CacheDir, key)); err == nil {
		fmt.Fprintf(o.Log, "vm prepare: cache hit for %s: %s (no rebuild)\n", o.KernelFile, img.Dir)
		pruneCache(o.CacheDir, img, o.Log)
		return &PrepareResult{Image: img, CacheHit: true}, setCurrent(o.CacheDir, key)
	}
	tmp, err := os.MkdirTemp(o.CacheDir, ".build-")
	if err != nil {
		return nil, fmt.Errorf("create build dir: %w", err)
	}
	defer os.RemoveAll(tmp)
	abs, _ := filepath.Abs(o.KernelFile)
	img, err := buildImage(ctx, o, tmp, key, abs, kver, o.KernelFile, o.ModulesDir)
	if err != nil {
		return nil, err
	}
	return &PrepareResult{Image: img}, nil
}

// buildImage writes kernel, initramfs and image.json into tmp/out and moves that to the cache.
func buildImage(ctx context.Context, o PrepareOptions, tmp, key, source, kver, kernelFile, modDir string) (*Image, error) {
	out := filepath.Join(tmp, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		return nil, err
	}
	img := &Image{Key: key, Source: source, KernelVersion: kver, Initrd: "initramfs.cpio.gz", Built: time.Now().UTC().Format(time.RFC3339)}

	bz, err := os.ReadFile(kernelFile)
	if err != nil {
		return nil, fmt.Errorf("read kernel: %w", err)
	}
	vmlinux, comp, err := ExtractVmlinux(ctx, bz)
	switch {
	case err != nil:
		fmt.Fprintf(o.Log, "vm prepare: booting the bzImage (slower under TCG): %v\n", err)
	case !HasPVHNote(vmlinux):
		fmt.Fprintf(o.Log, "vm prepare: booting the bzImage: the %s-compressed vmlinux has no PVH entry note\n", comp)
		err = errors.New("no PVH note")
	default:
		img.Kernel, img.KernelFormat = "vmlinux", "elf"
		if err := os.WriteFile(filepath.Join(out, img.Kernel), vmlinux, 0o644); err != nil {
			return nil, err
		}
		fmt.Fprintf(o.Log, "vm prepare: extracted the PVH vmlinux (%d MB) from the %s-compressed bzImage\n", len(vmlinux)>>20, comp)
	}
	if err != nil {
		img.Kernel, img.KernelFormat = "bzImage", "bzimage"
		if err := os.WriteFile(filepath.Join(out, img.Kernel), bz, 0o644); err != nil {
			return nil, err
		}
	}

	mods, skipped, err := ModuleClosure(modDir, o.Modules)
	if err != nil {
		return nil, err
	}
	bbFile, links, err := busyboxFiles(ctx, o.Busybox)
	if err != nil {
		return nil, err
	}
	modFiles, err := moduleFiles(ctx, modDir, kver, mods, o.Modules)
	if err != nil {
		return nil, err
	}
	files := append([]initrdFile{bbFile, {name: "init", data: initScript, mode: 0o755}}, modFiles...)
	for _, m := range mods {
		img.Modules = append(img.Modules, m.Name)
	}
	var buf bytes.Buffer
	if err := writeInitramfs(&buf, files, links); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(out, img.Initrd), buf.Bytes(), 0o644); err != nil {
		return nil, err
	}
	fmt.Fprintf(o.Log, "vm prepare: built initramfs (%d KB): busybox, /init, %d modules", buf.Len()>>10, len(mods))
	if len(skipped) > 0 {
		fmt.Fprintf(o.Log, "; skipped %s", strings.Join(skipped, ", "))
	}
	fmt.Fprintln(o.Log)

	meta, _ := json.MarshalIndent(img, "", "  ")
	if err := os.WriteFile(filepath.Join(out, "image.json"), append(meta, '\n'), 0o644); err != nil {
		return nil, err
	}
	dst := filepath.Join(o.CacheDir, key)
	if err := os.Rename(out, dst); err != nil {
		// Another prepare may have finished the same key first; its result is as good.
		if existing, lerr := LoadImage(dst); lerr == nil {
			return existing, setCurrent(o.CacheDir, key)
		}
		return nil, fmt.Errorf("store image: %w", err)
	}
	img.Dir = dst
	fmt.Fprintf(o.Log, "vm prepare: image %s ready in %s\n", kver, dst)
	if err := setCurrent(o.CacheDir, key); err != nil {
		return nil, err
	}
	pruneCache(o.CacheDir, img, o.Log)
	return img, nil
}

// pruneCache removes older builds of the same kernel source (superseded by a new /init, module
// list or busybox) and build directories that a killed prepare left behind.
func pruneCache(cacheDir string, keep *Image, log io.Writer) {
	entries, err := os.ReadDir(cacheDir)
	if err != nil {
		return
	}
	for _, e := range entries {
		p := filepath.Join(cacheDir, e.Name())
		switch {
		case !e.IsDir() || e.Name() == keep.Key:
		case strings.HasPrefix(e.Name(), ".build-"):
			if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > time.Hour {
				os.RemoveAll(p)
			}
		default:
			if old, err := LoadImage(p); err == nil && old.Source == keep.Source {
				fmt.Fprintf(log, "vm prepare: removed the superseded build %s\n", p)
				os.RemoveAll(p)
			}
		}
	}
}

// setCurrent points cacheDir/current at key (atomically, through a rename).
func setCurrent(cacheDir, key string) error {
	tmp := filepath.Join(cacheDir, fmt.Sprintf(".current-%s-%d-%d", key, os.Getpid(), time.Now().UnixNano()))
	if err := os.Symlink(key, tmp); err != nil {
		return fmt.Errorf("mark current image: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(cacheDir, "current")); err != nil {
		return fmt.Errorf("mark current image: %w", err)
	}
	return nil
}

// LoadImage reads a prepared image from dir (a cache entry, or the cache's "current" link).
func LoadImage(dir string) (*Image, error) {
	b, err := os.ReadFile(filepath.Join(dir, "image.json"))
	if err != nil {
		return nil, err
	}
	img := &Image{}
	if err := json.Unmarshal(b, img); err != nil {
		return nil, fmt.Errorf("%s/image.json: %w", dir, err)
	}
	if d, err := filepath.EvalSymlinks(dir); err == nil {
		dir = d
	}
	img.Dir = dir
	for _, f := range []string{img.Kernel, img.Initrd} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			return nil, fmt.Errorf("image %s is incomplete: %w", dir, err)
		}
	}
	return img, nil
}

// CurrentImage returns the image the last Prepare made current in cacheDir ("" for the default),
// or a PreflightError that says to run `rocebed vm prepare`.
func CurrentImage(cacheDir string) (*Image, error) {
	if cacheDir == "" {
		cacheDir = DefaultCacheDir()
	}
	img, err := LoadImage(filepath.Join(cacheDir, "current"))
	if err != nil {
		return nil, &preflight.Error{Check: "vm image", Need: "a prepared guest kernel in " + cacheDir,
			Have: "none", Hint: "run `rocebed vm prepare` (or `make vm-prepare`)", Err: err}
	}
	return img, nil
}

// runTool runs a fixed host tool in dir and returns its stdout; the error carries its stderr.
func runTool(ctx context.Context, dir, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if errors.Is(err, exec.ErrNotFound) {
		return nil, &preflight.Error{Check: name, Need: "the " + name + " tool", Have: "not in PATH",
			Hint: "run it on Debian or Ubuntu with apt, dpkg and kmod installed", Err: err}
	}
	if err != nil {
		return out, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return out, nil
}

// ensureAptLists runs `apt-get update` when apt has no package lists (fresh containers); that
// needs root.
func ensureAptLists(ctx context.Context, log io.Writer) error {
	lists, _ := filepath.Glob("/var/lib/apt/lists/*_Packages*")
	if len(lists) > 0 {
		return nil
	}
	if os.Geteuid() != 0 {
		return &preflight.Error{Check: "apt lists", Need: "apt package lists to find the kernel package",
			Have: "none in /var/lib/apt/lists", Hint: "run `sudo apt-get update`, or run `rocebed vm prepare` as root"}
	}
	fmt.Fprintln(log, "vm prepare: apt has no package lists; running apt-get update")
	_, err := runTool(ctx, "/", "apt-get", "update", "-q")
	return err
}

// currentKernelPackage returns the linux-image-*-amd64 that linux-image-amd64 depends on
// (`apt-cache depends linux-image-amd64`).
func currentKernelPackage(ctx context.Context) (string, error) {
	out, err := runTool(ctx, "/", "apt-cache", "depends", MetaPackage)
	if err != nil {
		return "", err
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && strings.TrimPrefix(f[0], "|") == "Depends:" && strings.HasPrefix(f[1], "linux-image-") {
			return f[1], nil
		}
	}
	return "", fmt.Errorf("apt-cache depends %s names no linux-image package: run `apt-get update`", MetaPackage)
}

// aptShow reads the candidate version's Package, Version and SHA256 (`apt-cache show
// --no-all-versions PKG`).
func aptShow(ctx context.Context, pkg string) (debInfo, error) {
	out, err := runTool(ctx, "/", "apt-cache", "show", "--no-all-versions", pkg)
	if err != nil {
		return debInfo{}, fmt.Errorf("no kernel package %q known to apt: %w", pkg, err)
	}
	var d debInfo
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ": ")
		if !ok {
			continue
		}
		switch k {
		case "Package":
			if d.Package != "" {
				return d, nil // only the first stanza
			}
			d.Package = v
		case "Version":
			d.Version = v
		case "SHA256":
			d.SHA256 = v
		}
	}
	if d.Package == "" || d.Version == "" {
		return d, fmt.Errorf("apt-cache show %s: no version: run `apt-get update`", pkg)
	}
	return d, nil
}
