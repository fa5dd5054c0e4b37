package probe

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/rocebed/rocebed/testbed/scenario"
)

// The probe checks the path between the lab's two NICs layer by layer with plain IP traffic,
// so a broken lab can be explained without RDMA (and on kernels without rdma_rxe). Each
// direction stops at its first failing layer: a later layer cannot pass meaningfully when an
// earlier one fails, and the first failure is the one to fix.

// Layer names one layer of the probe, in the order they run.
type Layer string

const (
	// LayerLink: both NICs exist, are up and have carrier, and the source address is on S.
	LayerLink Layer = "link"
	// LayerNeighbor: the peer's address resolves on S to D's MAC, i.e. ARP crossed the cable
	// both ways. This is the layer the same-host martian-source ARP drop breaks.
	LayerNeighbor Layer = "neighbor"
	// LayerRouteOut: the kernel sends sA -> dB out of S (as rxe does, with oif = S).
	LayerRouteOut Layer = "route-out"
	// LayerRouteIn: a packet sA -> dB arriving on D is delivered locally, not dropped as a
	// martian source or by the reverse-path filter.
	LayerRouteIn Layer = "route-in"
	// LayerUDP: datagrams to UDP 4791 (RoCE v2) from sA bound to S arrive on D, not on lo.
	LayerUDP Layer = "udp"
)

// Layers lists the layers in the order they run.
var Layers = []Layer{LayerLink, LayerNeighbor, LayerRouteOut, LayerRouteIn, LayerUDP}

// Status is the outcome of one layer.
type Status string

const (
	Pass    Status = "pass"
	Fail    Status = "fail"
	Skipped Status = "skipped" // an earlier layer of the direction failed
)

// Report is the result of Probe: one entry per direction.
type Report struct {
	Lab        string            `json:"lab"`
	Directions []DirectionReport `json:"directions"`
	// Passed is true when every layer of every direction passed.
	Passed bool `json:"passed"`
}

// DirectionReport is the probe of one direction, from endpoint From to endpoint To.
type DirectionReport struct {
	// Name is "a->b" or "b->a".
	Name string `json:"name"`
	// Family is the address family probed: a dual-stack lab has two directions of each.
	Family scenario.Family `json:"family,omitempty"`
	// From and To describe the endpoints: "a (vA 10.10.0.1)".
	From   string        `json:"from"`
	To     string        `json:"to"`
	Layers []LayerResult `json:"layers"`
}

// LayerResult is one layer of one direction.
type LayerResult struct {
	Layer  Layer  `json:"layer"`
	Status Status `json:"status"`
	// Detail says what was seen (pass) or what went wrong (fail).
	Detail string `json:"detail"`
	// Fix says what to change, when the failure has a known remedy.
	Fix string `json:"fix,omitempty"`
	// Evidence holds the raw observations the verdict rests on (counter deltas, neighbour
	// state, route, sysctls), so a reader can check the reasoning.
	Evidence map[string]string `json:"evidence,omitempty"`
	// Duration is how long the layer took.
	Duration time.Duration `json:"duration_ns"`
}

// FirstFailure returns the first failing layer in direction order, or nil when the probe
// passed.
func (r *Report) FirstFailure() (*DirectionReport, *LayerResult) {
	for i := range r.Directions {
		d := &r.Directions[i]
		if l := d.FirstFailure(); l != nil {
			return d, l
		}
	}
	return nil, nil
}

// Label names the direction for people: its Name, with "(ipv6)" for an IPv6 one.
func (d *DirectionReport) Label() string {
	if d.Family == scenario.FamilyIPv6 {
		return d.Name + " (ipv6)"
	}
	return d.Name
}

// FirstFailure returns the direction's failing layer, or nil.
func (d *DirectionReport) FirstFailure() *LayerResult {
	for i := range d.Layers {
		if d.Layers[i].Status == Fail {
			return &d.Layers[i]
		}
	}
	return nil
}

// Passed reports whether every layer of the direction passed.
func (d *DirectionReport) Passed() bool {
	if len(d.Layers) == 0 {
		return false
	}
	for _, l := range d.Layers {
		if l.Status != Pass {
			return false
		}
	}
	return true
}

// Summary is a one-line verdict: "pass" or "fail at a->b neighbor: ...".
func (r *Report) Summary() string {
	d, l := r.FirstFailure()
	if l == nil {
		if r.Passed {
			return "pass"
		}
		return "fail: incomplete probe"
	}
	return fmt.Sprintf("fail at %s %s: %s", d.Label(), l.Layer, l.Detail)
}

// WriteText prints the report for people: one line per layer, then the verdict and, for a
// failure, its fix.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "probe lab %s\n", r.Lab)
	for _, d := range r.Directions {
		fmt.Fprintf(&b, "%s: %s -> %s\n", d.Label(), d.From, d.To)
		for _, l := range d.Layers {
			fmt.Fprintf(&b, "  %s %-9s %s\n", statusMark(l.Status), l.Layer, l.Detail)
			if l.Status == Fail {
				for _, k := range sortedKeys(l.Evidence) {
					fmt.Fprintf(&b, "      %s: %s\n", k, l.Evidence[k])
				}
			}
		}
	}
	d, l := r.FirstFailure()
	switch {
	case l != nil:
		fmt.Fprintf(&b, "FAIL at %s %s: %s\n", d.Label(), l.Layer, l.Detail)
		if l.Fix != "" {
			fmt.Fprintf(&b, "fix: %s\n", l.Fix)
		}
	case r.Passed:
		b.WriteString("PASS: both directions cross the cable\n")
	default:
		b.WriteString("FAIL: incomplete probe\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func statusMark(s Status) string {
	switch s {
	case Pass:
		return "✓"
	case Fail:
		return "✗"
	default:
		return "-"
	}
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
