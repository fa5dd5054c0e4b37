package diagnose

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// WriteText prints the diagnosis for people: each finding with its evidence and fix, then
// what each layer concluded.
func (d *Diagnosis) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "diagnose lab %s: ", d.Lab)
	switch {
	case len(d.Findings) == 0 && d.TrafficPassed:
		b.WriteString("healthy: the traffic crossed the cable and passed; no finding\n")
	case len(d.Findings) == 0:
		b.WriteString("no finding\n")
	default:
		fmt.Fprintf(&b, "%d finding(s), root cause %s\n", len(d.Findings), d.Findings[0].Code)
	}
	for i, f := range d.Findings {
		fmt.Fprintf(&b, "\n%d. %s [%s, %s]\n   %s\n", i+1, f.Code, f.Severity, f.Role, f.Summary)
		if len(f.Evidence) > 0 {
			b.WriteString("   evidence:\n")
			for _, e := range f.Evidence {
				fmt.Fprintf(&b, "     %s\n", e)
			}
		}
		if f.Fix != nil && f.Role != RoleConsequence {
			fmt.Fprintf(&b, "   fix: %s\n", f.Fix.Description)
			if f.Fix.Scenario != "" {
				b.WriteString("   in the scenario:\n")
				for _, l := range strings.Split(f.Fix.Scenario, "\n") {
					fmt.Fprintf(&b, "     %s\n", l)
				}
			}
			if len(f.Fix.Commands) > 0 {
				b.WriteString("   or by hand:\n")
				for _, c := range f.Fix.Commands {
					fmt.Fprintf(&b, "     %s\n", c)
				}
			}
		}
	}
	if len(d.Layers) > 0 {
		b.WriteString("\nlayers:\n")
		for _, l := range d.Layers {
			fmt.Fprintf(&b, "  %s\n", l)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteJSON writes the diagnosis, evidence included.
func (d *Diagnosis) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(d)
}
