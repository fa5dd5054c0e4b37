package vm

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// TestOptions says which Go packages to test in the guest and how.
type TestOptions struct {
	Packages []string // go list patterns: "./rdma/...", "./vm/guesttest"
	Go       string   // the go tool, default "go"
	Run      string   // -test.run, if set
	// OnlyCalling, if set, narrows each package to its tests that call one of these marks
	// (TestsCalling); a package with none does not run. It excludes Run.
	OnlyCalling []string
	// Guests is how many guests run the packages at once (default 1). Each boots with
	// Exec's options and its own NICs, and takes the next package nobody has taken, in the
	// order the patterns name them: name the longest first.
	Guests int
	Exec   ExecOptions
}

// TestPackage is one compiled test binary.
type TestPackage struct {
	ImportPath string
	Dir        string // source dir: the binary runs there, as `go test` does
	Binary     string // in the work dir
	Run        string // -test.run for this package alone, if set
}

// TestShareEnv names, for the tests of a run with more than one guest, a directory that all
// of its guests can write.
const TestShareEnv = "ROCEBED_VM_TEST_SHARE"

// guestTestEnv is forced on every test binary in the guest: a skip there is a bug.
var guestTestEnv = []string{"ROCEBED_REQUIRE_RXE=1", "ROCEBED_REQUIRE_ROOT=1"}

// listTestPackages is the packages matched by patterns that have test files, in the patterns'
// order. Patterns that match nothing are reported to log and skipped.
func listTestPackages(ctx context.Context, goTool string, patterns []string, log io.Writer) ([]TestPackage, error) {
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
	return pkgs, nil
}

// compileTests sets each package's Binary, in dir, and builds them with `go test -c`. The
// packages compile in one `go test -c -o DIR/` (in parallel); two whose last path elements are
// the same would name the same binary, so the second of such a pair compiles on its own.
func compileTests(ctx context.Context, goTool string, pkgs []TestPackage, dir string, log io.Writer) error {
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
		// Stripped (-s -w): writing DWARF and the symbol table was most of each link, and go
		// test's stack traces do not need them.
		cmd := exec.CommandContext(ctx, goTool, append([]string{"test", "-c", "-ldflags=-s -w"}, args...)...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("go test -c %s: %w\n%s", strings.Join(args, " "), err, out.String())
		}
		return nil
	}
	if len(together) > 0 {
		if err := build(append([]string{"-o", dir + string(filepath.Separator)}, together...)...); err != nil {
			return err
		}
	}
	for _, i := range alone {
		if err := build("-o", pkgs[i].Binary, pkgs[i].ImportPath); err != nil {
			return err
		}
	}
	fmt.Fprintf(log, "vm test: compiled %d test packages (%.1fs)\n", len(pkgs), time.Since(t0).Seconds())
	return nil
}

// selectTests narrows each package to its tests that call one of marks, and drops the
// packages with none; it says what it chose in log.
func selectTests(pkgs []TestPackage, marks []string, log io.Writer) ([]TestPackage, error) {
	fmt.Fprintf(log, "vm test: running only the tests that call %s\n", strings.Join(marks, ", "))
	var out []TestPackage
	for _, p := range pkgs {
		tests, err := TestsCalling(p.Dir, marks)
		if err != nil {
			return nil, fmt.Errorf("package %s: %w", p.ImportPath, err)
		}
		if len(tests) == 0 {
			fmt.Fprintf(log, "vm test: %s: no such test; not run\n", p.ImportPath)
			continue
		}
		p.Run = RunExactly(tests)
		fmt.Fprintf(log, "vm test: %s: %d such tests\n", p.ImportPath, len(tests))
		out = append(out, p)
	}
	return out, nil
}

// testDriver is the guest script that runs every binary in its package dir with -test.v (and
// the package's own -test.run, or run for all) and prints go test's per-package "ok"/"FAIL"
// lines; it exits 1 when any failed. A binary's stderr goes with its stdout, so that a panic
// stays with its package. With claims (a
// directory every guest of the run can write), a guest runs a package only if it is the first
// to make its entry there (mkdir is atomic on the host's file system, which all the guests'
// shares are), so guests that run the same script share the packages out.
func testDriver(pkgs []TestPackage, run string, timeout time.Duration, claims string) string {
	var b strings.Builder
	b.WriteString("# written by rocebed vm test\nfailed=0\n")
	// On one vCPU Go runs one P, and its sysmon takes that P back from every system call
	// longer than 20 µs — most of them under TCG — and so wakes every 20 µs: 9% of a lab
	// test's CPU in the guest (perf). With a second P idle it leaves system calls alone and
	// sleeps up to 10 ms (testbed/lab in a one-vCPU guest: 147 → 130 s of CPU).
	b.WriteString(`[ "$(nproc)" -gt 1 ] || export GOMAXPROCS=2` + "\n")
	for _, e := range guestTestEnv {
		fmt.Fprintf(&b, "export %s\n", shQuote(e))
	}
	if claims != "" {
		fmt.Fprintf(&b, "export %s\n", shQuote(TestShareEnv+"="+filepath.Dir(claims)))
	}
	b.WriteString(`runpkg() {
	pkg=$1 dir=$2 bin=$3
	shift 3
	t0=$(date +%s%N)
	(cd "$dir" && exec "$bin" -test.v=true "$@" 2>&1)
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
	if timeout > 0 {
		// Shorter than the guest's bound, so that a hung test ends in go test's own panic,
		// which names it and dumps its goroutines.
		extra = append(extra, shQuote("-test.timeout="+(timeout-timeout/10).String()))
	}
	for i, p := range pkgs {
		if claims != "" {
			fmt.Fprintf(&b, "mkdir %s 2>/dev/null && ", shQuote(filepath.Join(claims, fmt.Sprint(i))))
		}
		args := extra
		if r := cmp.Or(p.Run, run); r != "" {
			args = append(slices.Clip(extra), shQuote("-test.run="+r))
		}
		fmt.Fprintf(&b, "runpkg %s %s %s %s\n", shQuote(p.ImportPath), shQuote(p.Dir), shQuote(p.Binary), strings.Join(args, " "))
	}
	b.WriteString("exit $failed\n")
	return b.String()
}

// Test compiles the packages' tests on the host and runs all of them in one guest boot. The
// guest's go test output streams to o.Exec.Stdout; the exit code is 0 when all passed, 1 when a
// test failed, or a harness code from the GuestError.
func Test(ctx context.Context, o TestOptions) (*Result, error) {
	if o.Run != "" && len(o.OnlyCalling) > 0 {
		return nil, fmt.Errorf("a run pattern (%q) and tests calling %s: choose one", o.Run, strings.Join(o.OnlyCalling, ", "))
	}
	if _, err := parseMarks(o.OnlyCalling); err != nil {
		return nil, err
	}
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
	// Each guest needs a work share of its own (its control files are in it), and every guest
	// must see the binaries, the sources and the claims: guest i+1's work dir is inside guest
	// i's, and what they share is in the innermost.
	guests := max(o.Guests, 1)
	dirs := []string{work}
	for i := 1; i < guests; i++ {
		d := filepath.Join(dirs[i-1], fmt.Sprintf("guest%d", i+1))
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
		dirs = append(dirs, d)
	}
	work = dirs[guests-1]
	goTool := cmp.Or(o.Go, "go")
	pkgs, err := listTestPackages(ctx, goTool, o.Packages, log)
	if err != nil {
		return nil, err
	}
	if len(o.OnlyCalling) > 0 {
		if pkgs, err = selectTests(pkgs, o.OnlyCalling, log); err != nil {
			return nil, err
		}
	}
	if len(pkgs) == 0 {
		return nil, fmt.Errorf("no tests to run among %s", strings.Join(o.Packages, " "))
	}
	if err := compileTests(ctx, goTool, pkgs, work, log); err != nil {
		return nil, err
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
	claims := ""
	if guests > 1 {
		claims = filepath.Join(work, "claims")
		if err := os.Mkdir(claims, 0o755); err != nil {
			return nil, err
		}
	}
	driver := filepath.Join(work, "run-tests.sh")
	if err := os.WriteFile(driver, []byte(testDriver(pkgs, o.Run, o.Exec.Timeout, claims)), 0o644); err != nil {
		return nil, err
	}
	e := o.Exec
	e.WorkDir = work
	e.Argv = []string{"/bin/sh", driver}
	if guests == 1 {
		return Exec(ctx, e)
	}
	return testInGuests(ctx, e, dirs)
}

// testInGuests boots one guest per work dir, all running e's command at once, and prints each
// package's output whole (go test -v's lines of one package, then its ok/FAIL line), so that
// two guests' packages do not interleave. The exit code is the first non-zero one; a guest
// that failed as a guest (crashed, hung) makes the error.
func testInGuests(ctx context.Context, e ExecOptions, dirs []string) (*Result, error) {
	stdout := e.Stdout
	if stdout == nil {
		stdout = io.Discard
	}
	log := e.Log
	if log == nil {
		log = io.Discard
	}
	var mu sync.Mutex
	results := make([]*Result, len(dirs))
	errs := make([]error, len(dirs))
	var wg sync.WaitGroup
	for i, dir := range dirs {
		g := e
		g.WorkDir = dir
		if i > 0 && len(e.NICs) > 0 {
			// The same names and MACs as the first guest's (their cables are their own): a
			// scenario may name the MACs the VM harness gives (seed-two-nics does).
			nics, err := CableNICs(len(e.NICs), e.NICs[0].MAC[4])
			if err != nil {
				return nil, err
			}
			g.NICs = nics
		}
		blocks := &packageBlocks{mu: &mu, w: stdout}
		g.Stdout = blocks
		fmt.Fprintf(log, "vm test: guest %d of %d\n", i+1, len(dirs))
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer blocks.Flush()
			results[i], errs[i] = Exec(ctx, g)
		}()
	}
	wg.Wait()
	var res *Result
	for i, r := range results {
		if errs[i] != nil {
			return r, fmt.Errorf("guest %d of %d: %w", i+1, len(dirs), errs[i])
		}
		if res == nil || res.ExitCode == 0 && r.ExitCode != 0 {
			res = r
		}
	}
	return res, nil
}

// packageBlocks holds a guest's output until a package's ok/FAIL line (testDriver's), then
// writes the package's lines at once under mu.
type packageBlocks struct {
	mu    *sync.Mutex
	w     io.Writer
	buf   []byte // after the last complete line
	block []byte // complete lines of the package running
}

func (p *packageBlocks) Write(b []byte) (int, error) {
	p.buf = append(p.buf, b...)
	for {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			return len(b), nil
		}
		line := p.buf[:i+1]
		p.block = append(p.block, line...)
		p.buf = p.buf[i+1:]
		if bytes.HasPrefix(line, []byte("ok  \t")) || bytes.HasPrefix(line, []byte("FAIL\t")) {
			p.Flush()
		}
	}
}

// Flush writes what is held, also a last line without its newline.
func (p *packageBlocks) Flush() {
	out := append(p.block, p.buf...)
	p.block, p.buf = nil, nil
	if len(out) == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.w.Write(out)
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
