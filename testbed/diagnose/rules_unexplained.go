package diagnose

import (
	"fmt"
	"strings"
)

// unexplained: the traffic failed (or could not run) and no rule matched.
func (r ruler) unexplained() *Finding {
	t := r.ev.Traffic
	if t == nil || (t.Ran && t.Pass) {
		return nil
	}
	if !t.Ran && t.Error == "" {
		return nil
	}
	ev := r.trafficLines()
	if t.Error != "" {
		ev = append(ev, "traffic: "+t.Error)
	}
	if t.Delta != nil {
		ev = append(ev, strings.Split(strings.TrimSpace(t.Delta.String()), "\n")...)
	}
	for _, d := range r.ev.Directions {
		if d.Probe != nil {
			ev = append(ev, fmt.Sprintf("%s probe %s: %s", d.Name, d.Probe.Layer, d.Probe.Detail))
		}
	}
	return &Finding{Code: CodeUnexplained, Severity: SeverityError,
		Summary:  "the traffic failed and no rule explains it; the evidence is below",
		Evidence: ev, Fix: &FindingFix{Description: "no known remedy", Scenario: "# none", Commands: []string{"dmesg | tail  # with net.ipv4.conf.all.log_martians=1"}}}
}
