package runner

import (
	"fmt"
	"io"
	"strings"

	"github.com/rocebed/rocebed/testbed/scenario"
	"github.com/rocebed/rocebed/testbed/traffic"
)

// AblationResult is the outcome of running a scenario with one fix removed.
type AblationResult struct {
	// Removed is the fix left out; empty for the baseline run with every fix.
	Removed string `json:"removed,omitempty"`
	// Pass says whether the traffic worked without it.
	Pass bool `json:"pass"`
	// Necessary is true when the traffic worked with every fix and fails without this one.
	Necessary bool   `json:"necessary"`
	Verdict   string `json:"verdict"`
	// Failure is the failure class seen without the fix.
	Failure traffic.FailureClass `json:"failure,omitempty"`
	Report  *traffic.Report      `json:"report,omitempty"`
}

// AblationReport says which of a scenario's fixes its traffic needs.
type AblationReport struct {
	Lab      string           `json:"lab"`
	Baseline AblationResult   `json:"baseline"`
	Fixes    []AblationResult `json:"fixes"`
}

// Necessary lists the fixes the traffic fails without.
func (r *AblationReport) Necessary() []string {
	var out []string
	for _, f := range r.Fixes {
		if f.Necessary {
			out = append(out, f.Removed)
		}
	}
	return out
}

// Unnecessary lists the fixes the traffic works without.
func (r *AblationReport) Unnecessary() []string {
	var out []string
	for _, f := range r.Fixes {
		if !f.Necessary {
			out = append(out, f.Removed)
		}
	}
	return out
}

// WriteText prints one line per run and the conclusion.
func (r *AblationReport) WriteText(w io.Writer) error {
	fmt.Fprintf(w, "ablation of lab %s\n", r.Lab)
	fmt.Fprintf(w, "  all fixes:                %s — %s\n", passWord(r.Baseline.Pass), r.Baseline.Verdict)
	for _, f := range r.Fixes {
		what := "not necessary"
		if f.Necessary {
			what = "NECESSARY"
		}
		fmt.Fprintf(w, "  without %-17s %s (%s) — %s\n", f.Removed+":", passWord(f.Pass), what, f.Verdict)
	}
	if !r.Baseline.Pass {
		_, err := fmt.Fprintln(w, "the traffic fails even with every fix, so no fix can be called necessary")
		return err
	}
	_, err := fmt.Fprintf(w, "necessary: %s; not necessary: %s\n", listOrNone(r.Necessary()), listOrNone(r.Unnecessary()))
	return err
}

func passWord(ok bool) string {
	if ok {
		return "pass"
	}
	return "FAIL"
}

func listOrNone(l []string) string {
	if len(l) == 0 {
		return "none"
	}
	return strings.Join(l, ", ")
}

// withoutFix returns a copy of s with the named fix removed; the copy shares nothing mutable
// with s that later code changes.
func withoutFix(s *scenario.Scenario, name string) *scenario.Scenario {
	c := *s
	c.Fixes = nil
	for _, f := range s.Fixes {
		if f.Name != name {
			c.Fixes = append(c.Fixes, f)
		}
	}
	return &c
}
