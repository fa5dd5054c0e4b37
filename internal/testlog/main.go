// Command testlog checks the log of `make check`: no test failed, and every test that a tier
// skipped passed in another one. The host tier runs with ROCEBED_REQUIRE_RXE=0 and skips the
// tests that need rdma_rxe or QEMU; the guest and harness tiers run them with skips turned into
// failures. This makes CI prove that each of those skips was run elsewhere.
//
// Usage: go run ./internal/testlog LOG
package main

import (
	"bufio"
	"fmt"
	"io"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "testlog:", err)
		os.Exit(1)
	}
}

func run(args []string, out io.Writer) error {
	if len(args) != 1 {
		return fmt.Errorf("usage: testlog LOG (the output of make check)")
	}
	f, err := os.Open(args[0])
	if err != nil {
		return err
	}
	defer f.Close()
	s, err := Read(f)
	if err != nil {
		return fmt.Errorf("%s: %w", args[0], err)
	}
	fmt.Fprintln(out, s.Summary())
	return s.Err()
}

// Stats are the outcomes a log records, by test name (subtests are names too).
type Stats struct {
	Passed, Skipped, Failed map[string]int // name → lines
	PassLines               int
}

var outcome = regexp.MustCompile(`^\s*--- (PASS|SKIP|FAIL): (\S+) \(`)

// Read collects the test outcomes of a go test -v log.
func Read(r io.Reader) (*Stats, error) {
	s := &Stats{Passed: map[string]int{}, Skipped: map[string]int{}, Failed: map[string]int{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		m := outcome.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		switch m[1] {
		case "PASS":
			s.Passed[m[2]]++
			s.PassLines++
		case "SKIP":
			s.Skipped[m[2]]++
		case "FAIL":
			s.Failed[m[2]]++
		}
	}
	return s, sc.Err()
}

// SkippedNowhereElse lists the skipped tests that passed in no tier.
func (s *Stats) SkippedNowhereElse() []string {
	var out []string
	for name := range s.Skipped {
		if s.Passed[name] == 0 {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// Summary says what the log shows in one line.
func (s *Stats) Summary() string {
	nowhere := len(s.SkippedNowhereElse())
	return fmt.Sprintf("%d --- PASS lines (%d test names), %d names skipped in one tier and passed in another, %d skipped and run nowhere, %d failed",
		s.PassLines, len(s.Passed), len(s.Skipped)-nowhere, nowhere, len(s.Failed))
}

// Err is nil when nothing failed, every skip ran elsewhere, and some test passed.
func (s *Stats) Err() error {
	var problems []string
	if len(s.Passed) == 0 {
		problems = append(problems, "no test passed: is this the log of make check?")
	}
	if len(s.Failed) > 0 {
		problems = append(problems, fmt.Sprintf("failed: %s", strings.Join(slices.Sorted(maps.Keys(s.Failed)), ", ")))
	}
	if nowhere := s.SkippedNowhereElse(); len(nowhere) > 0 {
		problems = append(problems, fmt.Sprintf("skipped and passed in no tier (CI must run them: set up what their skip message asks for): %s", strings.Join(nowhere, ", ")))
	}
	if len(problems) == 0 {
		return nil
	}
	return fmt.Errorf("%s", strings.Join(problems, "; "))
}
