package vm

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// kernelTestMark is what a test file that needs rdma_rxe contains: the helpers that skip
// without it on the host (and fail without it under ROCEBED_REQUIRE_RXE=1).
var kernelTestMark = regexp.MustCompile(`testenv\.RequireRXE\(|testlab\.|requireRXE\(|RequireCabledNICs\(|testenv\.InVM\(`)

// harnessRun are the packages with such tests that the harness tier runs itself, and the
// file that does it.
var harnessRun = map[string]string{
	"vm/pairtest": "cmd/rocebed/vm_pair_linux_test.go", // in both guests of a pair (TestVMPairSides)
}

// TestGuestTierHasEveryKernelTest: the guest tier runs the packages the Makefile names in
// VM_TEST_PKGS, not every package. A package with tests that need rdma_rxe must be on that
// list (or run by the harness tier): the host tier runs with ROCEBED_REQUIRE_RXE=0, so its
// rxe tests skip there and would run nowhere.
func TestGuestTierHasEveryKernelTest(t *testing.T) {
	mk, err := os.ReadFile("../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^VM_TEST_PKGS \?= (.+)$`).FindSubmatch(mk)
	if m == nil {
		t.Fatal("Makefile: no VM_TEST_PKGS ?= line")
	}
	var listed []string
	for _, p := range strings.Fields(string(m[1])) {
		if strings.Contains(p, "...") {
			t.Errorf("VM_TEST_PKGS: %s is a pattern: name packages, so that this test can check the list", p)
			continue
		}
		dir := strings.TrimPrefix(p, "./")
		if tests, _ := filepath.Glob(filepath.Join("..", dir, "*_test.go")); len(tests) == 0 {
			t.Errorf("VM_TEST_PKGS: %s has no tests", p)
		}
		listed = append(listed, dir)
	}
	for pkg, file := range harnessRun {
		src, err := os.ReadFile(filepath.Join("..", file))
		if err != nil || !strings.Contains(string(src), pkg) {
			t.Errorf("%s is said to be run by %s, which does not name it (%v)", pkg, file, err)
		}
	}

	need := map[string]string{}
	err = filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && path != ".." {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if kernelTestMark.Match(src) {
			rel, _ := filepath.Rel("..", filepath.Dir(path))
			need[filepath.ToSlash(rel)] = filepath.Base(path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(need) < 5 {
		t.Fatalf("found rxe tests in only %d packages (%v): the marks no longer match the tests", len(need), need)
	}
	for pkg, file := range need {
		if slices.Contains(listed, pkg) || harnessRun[pkg] != "" {
			continue
		}
		t.Errorf("%s (%s) has tests that need rdma_rxe, but VM_TEST_PKGS does not name it: add ./%s", pkg, file, pkg)
	}
}
