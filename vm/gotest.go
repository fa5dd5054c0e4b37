package vm

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"time"
)

// TestOptions says which Go packages to test in the guest and how.
type TestOptions struct {
	Packages []string // go list patterns: "./rdma/...", "./vm/guesttest"
	Go       string   // the go tool, default "go"
	Run      string   // -test.run, if set
	Exec     ExecOptions
}

// TestPackage is one compiled test binary.
type TestPackage struct {
	ImportPath string
	Dir        string // source dir: the binary runs there, as `go test` does
	Binary     string // in the work dir
}

// guestTestEnv is forced on every test binary in the guest: a skip there is a bug.
var guestTestEnv = []string{"ROCEBED_REQUIRE_RXE=1", "ROCEBED_REQUIRE_ROOT=1"}

// CompileTests runs `go test -c` for every package matched by patterns that has test files and
// puts the binaries in dir. Patterns that match nothing are reported to log and skipped. The
// packages compile in one `go test -c -o DIR/` (in parallel); two whose last path elements are
// the same would name the same binary, so the second of such a pair compiles on its own.
func CompileTests(ctx context.Context, goTool string, patterns []string, dir string, log io.Writer) ([]TestPackage, error) {
	if goTool == "" {
		goTool = "go"
	}
	var pkgs []TestPackage
	seen := map[string]bool{}
	for _, pat := range patterns {
		cmd := exec.CommandContext(ctx, goTool, "list", "-e", "-f",
			"{{.ImportPath}}\t{{.Dir}}\t{{len .TestGoFiles}}\t{{len .XTestGoFiles}}\t{{if .Error}}{{.Error}}{{end}}", "--", pat)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("go list %s: %w: %s", pat, err, bytes.TrimSpace(stderr.Bytes()))
		}
		matched := 0
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			f := strings.Split(sc.Text(), "\t")
			if len(f) != 5 {
				continue
			}
			if f[4] != "" {
				if strings.Contains(f[4], "matched no packages") || strings.Contains(f[4], "no Go files") || strings.Contains(f[4], "cannot find") || strings.Contains(f[4], "directory not found") || strings.Contains(f[4], "no such file or directory") {
					continue
				}
				return nil, fmt.Errorf("package %s: %s", f[0], f[4])
			}
			if f[2] == "0" && f[3] == "0" || seen[f[0]] {
				continue
			}
			seen[f[0]] = true
			matched++
			pkgs = append(pkgs, TestPackage{ImportPath: f[0], Dir: f[1]})
		}
		if matched == 0 {
			fmt.Fprintf(log, "vm test: %s: no packages with tests, skipped\n", pat)
		}
	}
	t0 := time.Now()
	var together []string
	var alone []int
	byBase := map[string]bool{}
	for i, p := range pkgs {
		base := path.Base(p.ImportPath)
		if byBase[base] {
			alone = append(alone, i)
			pkgs[i].Binary = filepath.Join(dir, strings.NewReplacer("/", "_", ".", "_").Replace(p.ImportPath)+".test")
			continue
		}
		byBase[base] = true
		together = append(together, p.ImportPath)
		pkgs[i].Binary = filepath.Join(dir, base+".test")
	}
	build := func(args ...string) error {
		cmd := exec.CommandContext(ctx, goTool, append([]string{"test", "-c"}, args...)...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("go test -c %s: %w\n%s", strings.Join(args, " "), err, out.String())
		}
		return nil
	}
	if len(together) > 0 {
		if err := build(append([]string{"-o", dir + string(filepath.Separator)}, together...)...); err != nil {
			return nil, err
		}
	}
	for _, i := range alone {
		if err := build("-o", pkgs[i].Binary, pkgs[i].ImportPath); err != nil {
			return nil, err
		}
	}
	fmt.Fprintf(log, "vm test: compiled %d test packages (%.1fs)\n", len(pkgs), time.Since(t0).Seconds())
	return pkgs, nil
}

// testDriver is the guest script that runs every binary in its package dir with -test.v and
// prints go test's per-package "ok"/"FAIL" lines; it exits 1 when any failed.
func testDriver(pkgs []TestPackage, run string, timeout time.Duration) string {
	var b strings.Builder
	b.WriteString("# written by rocebed vm test\nfailed=0\n")
	for _, e := range guestTestEnv {
		fmt.Fprintf(&b, "export %s\n", shQuote(e))
	}
	b.WriteString(`runpkg() {
	pkg=$1 dir=$2 bin=$3
	shift 3
	t0=$(date +%s%N)
	(cd "$dir" && exec "$bin" -test.v=true "$@")
	rc=$?
	ms=$(( ($(date +%s%N) - t0) / 1000000 ))
	s=$(printf '%d.%03ds' $((ms / 1000)) $((ms % 1000)))
	if [ $rc -eq 0 ]; then
		printf 'ok  \t%s\t%s\n' "$pkg" "$s"
	else
		printf 'FAIL\t%s\t%s\n' "$pkg" "$s"
		failed=1
	fi
}
`)
	var extra []string
	if run != "" {
		extra = append(extra, shQuote("-test.run="+run))
	}
	if timeout > 0 {
		// Shorter than the guest's bound, so that a hung test ends in go test's own panic,
		// which names it and dumps its goroutines.
		extra = append(extra, shQuote("-test.timeout="+(timeout-timeout/10).String()))
	}
	for _, p := range pkgs {
		fmt.Fprintf(&b, "runpkg %s %s %s %s\n", shQuote(p.ImportPath), shQuote(p.Dir), shQuote(p.Binary), strings.Join(extra, " "))
	}
	b.WriteString("exit $failed\n")
	return b.String()
}

// Test compiles the packages' tests on the host and runs all of them in one guest boot. The
// guest's go test output streams to o.Exec.Stdout; the exit code is 0 when all passed, 1 when a
// test failed, or a harness code from the GuestError.
func Test(ctx context.Context, o TestOptions) (*Result, error) {
	work := o.Exec.WorkDir
	if work == "" {
		var err error
		if work, err = os.MkdirTemp("", "rocebed-vmtest-"); err != nil {
			return nil, err
		}
		defer os.RemoveAll(work)
	}
	log := o.Exec.Log
	if log == nil {
		log = io.Discard
	}
	pkgs, err := CompileTests(ctx, o.Go, o.Packages, work, log)
	if err != nil {
		return nil, err
	}
	if len(pkgs) == 0 {
		return nil, fmt.Errorf("no test packages among %s", strings.Join(o.Packages, " "))
	}
	// A checkout under /tmp (as CI's often is) is invisible in the guest, whose /tmp is its
	// own: copy the module into the work share and run the tests from the copy, so their
	// testdata is where they expect it.
	copied := map[string]string{} // module root → copy
	for i, p := range pkgs {
		if GuestVisible(p.Dir) {
			continue
		}
		root, err := moduleRoot(p.Dir)
		if err != nil {
			return nil, fmt.Errorf("package %s lives in %s, which the guest cannot see, and %w", p.ImportPath, p.Dir, err)
		}
		dst, ok := copied[root]
		if !ok {
			dst = filepath.Join(work, "src", fmt.Sprint(len(copied)))
			if err := copyTree(root, dst); err != nil {
				return nil, fmt.Errorf("copy %s into the guest's work share: %w", root, err)
			}
			copied[root] = dst
			fmt.Fprintf(log, "vm test: %s is not visible in the guest: testing a copy in the work share\n", root)
		}
		rel, err := filepath.Rel(root, p.Dir)
		if err != nil {
			return nil, err
		}
		pkgs[i].Dir = filepath.Join(dst, rel)
	}
	// The guest bound covers the whole run; each binary also gets go test's own -timeout.
	driver := filepath.Join(work, "run-tests.sh")
	if err := os.WriteFile(driver, []byte(testDriver(pkgs, o.Run, o.Exec.Timeout)), 0o644); err != nil {
		return nil, err
	}
	e := o.Exec
	e.WorkDir = work
	e.Argv = []string{"/bin/sh", driver}
	return Exec(ctx, e)
}

// moduleRoot is the nearest directory at or above dir that holds a go.mod.
func moduleRoot(dir string) (string, error) {
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if d == filepath.Dir(d) {
			return "", fmt.Errorf("no go.mod above %s", dir)
		}
	}
}

// copyTree copies a source tree (files, directories, symlinks as links), leaving out .git and
// build output.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		if d.IsDir() && (rel == ".git" || rel == "bin") {
			return filepath.SkipDir
		}
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case info.Mode()&os.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		case info.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(target, b, info.Mode().Perm())
		}
		return nil // sockets, devices: not part of a source tree
	})
}
