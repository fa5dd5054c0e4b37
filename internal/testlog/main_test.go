package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const logOK = `=== RUN   TestUnit
--- PASS: TestUnit (0.00s)
=== RUN   TestRXE
    x_test.go:10: needs a kernel with rdma_rxe loaded
--- SKIP: TestRXE (0.00s)
=== RUN   TestTable
=== RUN   TestTable/a
    --- SKIP: TestTable/a (0.00s)
--- PASS: TestTable (0.00s)
ok  	example/host	0.1s
=== RUN   TestRXE
--- PASS: TestRXE (1.20s)
=== RUN   TestTable/a
    --- PASS: TestTable/a (0.50s)
ok  	example/guest	2.0s
`

func TestEverySkipRanElsewhere(t *testing.T) {
	s, err := Read(strings.NewReader(logOK))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	if got, want := s.Summary(), "4 --- PASS lines (4 test names), 2 names skipped in one tier and passed in another, 0 skipped and run nowhere, 0 failed"; got != want {
		t.Errorf("summary %q, want %q", got, want)
	}
}

func TestRefusals(t *testing.T) {
	for name, c := range map[string]struct{ log, want string }{
		"skipped nowhere else": {strings.Replace(logOK, "--- PASS: TestRXE (1.20s)", "--- SKIP: TestRXE (0.00s)", 1), "skipped and passed in no tier (CI must run them: set up what their skip message asks for): TestRXE"},
		"failed":               {logOK + "--- FAIL: TestOther (0.01s)\nFAIL\texample/x\t0.1s\n", "failed: TestOther"},
		"empty":                {"make: nothing to be done\n", "no test passed"},
	} {
		t.Run(name, func(t *testing.T) {
			s, err := Read(strings.NewReader(c.log))
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Err(); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err %v, want it to contain %q", err, c.want)
			}
		})
	}
}

func TestRunReadsTheFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "check.log")
	if err := os.WriteFile(p, []byte(logOK), 0o644); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := run([]string{p}, &out); err != nil || !strings.Contains(out.String(), "0 failed") {
		t.Errorf("run: %v, %q", err, out.String())
	}
	if err := run([]string{filepath.Join(t.TempDir(), "missing")}, &out); err == nil {
		t.Error("a missing log was accepted")
	}
}
