package vm

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestTestsCalling: every way a test can reach the mark counts (its own call, a helper in a
// test or non-test file, a method, a function value, a package variable, the external test
// package); tests that do not reach it, and files the build leaves out, do not.
func TestTestsCalling(t *testing.T) {
	got, err := TestsCalling("testdata/selection", []string{"selection.NeedsKernel"})
	require.NoError(t, err)
	assert.Equal(t, []string{"TestDirect", "TestExternal", "TestFuncValue", "TestThroughHelper", "TestThroughMethod", "TestThroughVar"}, got)

	got, err = TestsCalling("testdata/selection", []string{"strings.*"})
	require.NoError(t, err)
	assert.Equal(t, []string{"TestPlain"}, got)

	got, err = TestsCalling("testdata/selection", []string{"selection.Other"})
	require.NoError(t, err)
	assert.Empty(t, got)

	for _, bad := range []string{"NeedsKernel", "a.b.c", ".x", "x.", "1x.y"} {
		_, err := TestsCalling("testdata/selection", []string{bad})
		assert.ErrorContains(t, err, "want pkg.Func or pkg.*", "mark %q", bad)
	}
	_, err = TestsCalling("testdata/no-such-package", []string{"selection.NeedsKernel"})
	assert.Error(t, err)
}

func TestIsTopLevelTest(t *testing.T) {
	for name, want := range map[string]bool{
		"Test": true, "TestX": true, "Test_x": true, "FuzzParse": true, "ExampleUp": true, "Example": true,
		"TestMain": false, "Testx": false, "Fuzzer": false, "helper": false, "BenchmarkX": false,
	} {
		assert.Equal(t, want, isTopLevelTest(name), name)
	}
}

// TestDriverRunsOnlyTheSelectedTests runs the guest's test driver here, on a real test binary:
// a package narrowed by TestsCalling runs exactly its selected tests.
func TestDriverRunsOnlyTheSelectedTests(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "selection.test")
	out, err := exec.Command("go", "test", "-c", "-o", bin, "./testdata/selection").CombinedOutput()
	require.NoError(t, err, "%s", out)
	src, err := filepath.Abs("testdata/selection")
	require.NoError(t, err)
	pkgs, err := selectTests([]TestPackage{{ImportPath: "example/selection", Dir: src, Binary: bin}}, []string{"selection.NeedsKernel"}, &bytes.Buffer{})
	require.NoError(t, err)
	require.Len(t, pkgs, 1)
	driver := filepath.Join(dir, "run-tests.sh")
	require.NoError(t, os.WriteFile(driver, []byte(testDriver(pkgs, "", 0, "")), 0o644))

	cmd := exec.CommandContext(context.Background(), "/bin/sh", driver)
	got, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", got)
	text := string(got)
	for _, name := range []string{"TestDirect", "TestExternal", "TestFuncValue", "TestFuncValue/sub", "TestThroughHelper", "TestThroughMethod", "TestThroughVar"} {
		assert.Contains(t, text, "--- PASS: "+name+" ", "selected test did not run")
	}
	for _, name := range []string{"TestPlain", "TestDirectly", "TestExternalPlain"} {
		assert.NotContains(t, text, name, "a test calling no mark ran")
	}
	assert.True(t, strings.Contains(text, "ok  \texample/selection\t"), "no ok line:\n%s", text)

	none, err := selectTests([]TestPackage{{ImportPath: "example/selection", Dir: src}}, []string{"selection.Other"}, &bytes.Buffer{})
	require.NoError(t, err)
	assert.Empty(t, none, "a package with no selected test still runs")
}
