package diagnose

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	yaml "github.com/goccy/go-yaml"

	"github.com/rocebed/rocebed/testbed/plan"
	"github.com/rocebed/rocebed/testbed/scenario"
	"github.com/rocebed/rocebed/testbed/traffic"
)

// hasPolicyRouting reports whether the scenario already routes each endpoint's traffic
// through its own NIC (a generated or written-out fix that moves the local rule).
func (r ruler) hasPolicyRouting() bool {
	for _, f := range r.ev.Fixes {
		if f.PolicyRouting != nil || f.MoveLocalRule != 0 {
			return true
		}
	}
	return false
}

// policyRoutingFix is the remedy for the same-host drops: the measured policy-routing recipe
// (works with any rp_filter), for each address family the lab's directions use, with the
// sysctl alternative among the commands where it exists (IPv4).
func (r ruler) policyRoutingFix(strict bool) *FindingFix {
	a, b := r.endpoint(SideA), r.endpoint(SideB)
	if a == nil || b == nil {
		return nil
	}
	pr := scenario.PolicyRouting{}.WithDefaults()
	pairs := r.addressPairs(a, b)
	if len(pairs) == 0 {
		return nil
	}
	var cmds []string
	v4 := false
	for _, ab := range pairs {
		v4 = v4 || ab[0].Is4()
		for _, c := range plan.PolicyRoutingChanges(ab[0], ab[1], a.NIC, b.NIC, pr) {
			cmds = append(cmds, c.Command())
		}
	}
	switch {
	case !v4:
	case strict:
		cmds = append(cmds, fmt.Sprintf("# or keep accept_local and loosen the filter: sysctl -w net.ipv4.conf.all.rp_filter=2 net.ipv4.conf.%s.rp_filter=2 net.ipv4.conf.%s.rp_filter=2", a.NIC, b.NIC))
	default:
		cmds = append(cmds, fmt.Sprintf("# or: sysctl -w net.ipv4.conf.{all,%s,%s}.accept_local=1 with rp_filter 0 or 2 on all, %s and %s (only for clients that bind their address: one that binds none still loops inside one device)", a.NIC, b.NIC, a.NIC, b.NIC))
	}
	desc := "route each endpoint's traffic out of its own NIC (policy routing), so the receiving NIC's source check finds a unicast route back through itself; it works with any rp_filter"
	if !v4 {
		desc = "route each endpoint's traffic to the other's IPv6 address out of its own NIC (policy routing) instead of through lo"
	}
	fix := &FindingFix{
		Description: desc,
		Scenario:    "fixes:\n  - name: policy-routing\n    policy_routing: {}",
		Commands:    cmds,
	}
	if r.hasPolicyRouting() {
		fix.Description = "the scenario already has policy routing, so it is incomplete or overridden: compare `ip rule` (and `ip -6 rule`) and the tables with the commands below"
		return fix
	}
	fix.Apply = &scenario.Fix{Name: FixName, Description: "added by rocebed diagnose --fix", PolicyRouting: &pr}
	return fix
}

// addressPairs are the endpoints' addresses (a, b) per family, from the a->b directions
// (one per family the lab probes), else the endpoints' own addresses.
func (r ruler) addressPairs(a, b *EndpointEvidence) [][2]netip.Addr {
	var out [][2]netip.Addr
	for _, d := range r.ev.Directions {
		if d.Name != scenario.DirectionAToB {
			continue
		}
		x, errX := netip.ParseAddr(d.SrcAddr)
		y, errY := netip.ParseAddr(d.DstAddr)
		if errX == nil && errY == nil {
			out = append(out, [2]netip.Addr{x.Unmap(), y.Unmap()})
		}
	}
	if len(out) > 0 {
		return out
	}
	x, errX := netip.ParseAddr(a.Address)
	y, errY := netip.ParseAddr(b.Address)
	if errX != nil || errY != nil {
		return nil
	}
	return [][2]netip.Addr{{x.Unmap(), y.Unmap()}}
}

// FixName names the fix group `diagnose --fix` adds.
const FixName = "diagnose-policy-routing"

// FixResult is what `diagnose --fix` did: the fix groups it added, the scenario the lab now
// runs, and the traffic before (in Before) and after.
type FixResult struct {
	Applied []scenario.Fix  `json:"applied"`
	Before  *Diagnosis      `json:"before"`
	After   *traffic.Report `json:"after,omitempty"`
	// Source is the scenario text the lab was brought up again with (kept in its journal).
	Source string `json:"source"`
	// Passed is true when the traffic passed after the fix.
	Passed bool `json:"passed"`
}

// FixedScenario returns s with fixes added and its expectation set to pass, re-parsed from
// the YAML it returns, so the journal of the fixed lab holds a scenario that loads again.
func FixedScenario(s *scenario.Scenario, fixes []scenario.Fix) (*scenario.Scenario, []byte, error) {
	fx := *s
	fx.Fixes = append(slices.Clone(s.Fixes), fixes...)
	fx.Expect = scenario.Expect{Result: scenario.ResultPass}
	fx.Description = strings.TrimSpace(s.Description + " (with rocebed diagnose --fix)")
	src, err := yaml.Marshal(&fx)
	if err != nil {
		return nil, nil, fmt.Errorf("write the fixed scenario: %w", err)
	}
	out, err := scenario.Parse(s.File, src, nil)
	if err != nil {
		return nil, src, fmt.Errorf("the fixed scenario does not validate: %w", err)
	}
	return out, src, nil
}
