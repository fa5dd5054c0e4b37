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

// harnessRun are the packages with such tests that the harness tier runs itself, and the
// file that does it.
var harnessRun = map[string]string{
	"vm/pairtest": "cmd/rocebed/vm_pair_linux_test.go", // in both guests of a pair (TestVMPairSides)
}

// TestGuestTierHasEveryKernelTest: the guest tier runs, of the packages the Makefile names in
// VM_TEST_PKGS, the tests that call one of VM_TEST_MARKS. A package with such tests must be on
// that list (or run by the harness tier): the host tier runs with ROCEBED_REQUIRE_RXE=0, so its
// rxe tests skip there and would run nowhere. (CI's log check catches a test that skips on the
// host and calls no mark.)
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
		listed = append(listed, strings.TrimPrefix(p, "./"))
	}
	mm := regexp.MustCompile(`(?m)^VM_TEST_MARKS \?= (.+)$`).FindSubmatch(mk)
	if mm == nil {
		t.Fatal("Makefile: no VM_TEST_MARKS ?= line")
	}
	marks := strings.Fields(string(mm[1]))
	for pkg, file := range harnessRun {
		src, err := os.ReadFile(filepath.Join("..", file))
		if err != nil || !strings.Contains(string(src), pkg) {
			t.Errorf("%s is said to be run by %s, which does not name it (%v)", pkg, file, err)
		}
	}

	need := map[string][]string{} // package → its tests that call a mark
	err = filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		if (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && path != ".." {
			return filepath.SkipDir
		}
		tests, err := TestsCalling(path, marks)
		if err != nil {
			return err
		}
		if len(tests) > 0 {
			rel, _ := filepath.Rel("..", path)
			need[filepath.ToSlash(rel)] = tests
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(need) < 5 {
		t.Fatalf("found tests that call %v in only %d packages (%v): the marks no longer match the tests", marks, len(need), need)
	}
	for pkg, tests := range need {
		if slices.Contains(listed, pkg) || harnessRun[pkg] != "" {
			continue
		}
		t.Errorf("%s has tests that call %v (%s), but VM_TEST_PKGS does not name it: add ./%s", pkg, marks, strings.Join(tests, ", "), pkg)
	}
	for _, pkg := range listed {
		if len(need[pkg]) == 0 {
			t.Errorf("VM_TEST_PKGS names %s, but none of its tests calls %v: the guest tier would not run it", pkg, marks)
		}
	}
}
