package diagnose

import (
	"fmt"
	"slices"
	"strings"
)

// linkProblem is what is wrong with one NIC.
type linkProblem int

const (
	linkAdminDown linkProblem = iota // administratively down
	linkMissing                      // not found anywhere
	linkNoCarrier                    // up, but no carrier
)

// linkDown: a NIC is missing, administratively down or without carrier.
func (r ruler) linkDown() *Finding {
	type problem struct {
		kind linkProblem
		text string
	}
	var ev, cmds []string
	var bad []problem
	down := map[string]bool{}
	for _, n := range r.ev.NICs {
		if n.Found && !n.Up {
			down[n.Name] = true
		}
	}
	for _, n := range r.ev.NICs {
		switch {
		case !n.Found:
			bad = append(bad, problem{linkMissing, n.Name + " does not exist"})
			ev = append(ev, fmt.Sprintf("%s: not found in the lab's namespace or any named namespace", n.Name))
			cmds = append(cmds, "rocebed down "+r.ev.Lab, "rocebed up "+r.ev.Lab)
		case !n.Up:
			bad = append(bad, problem{linkAdminDown, n.Name + " is administratively down"})
			ev = append(ev, fmt.Sprintf("%s: flags without UP, oper state %s", n.Name, n.OperState))
			cmds = append(cmds, nsCmd(n.Netns, "ip link set dev "+n.Name+" up"))
		case !n.Carrier && down[n.Peer]:
			bad = append(bad, problem{linkNoCarrier, fmt.Sprintf("%s has no carrier (its peer %s is down)", n.Name, n.Peer)})
			ev = append(ev, fmt.Sprintf("%s: up but no carrier (LOWER_UP missing), oper state %s", n.Name, n.OperState))
		case !n.Carrier:
			bad = append(bad, problem{linkNoCarrier, n.Name + " has no carrier"})
			ev = append(ev, fmt.Sprintf("%s: up but no carrier (LOWER_UP missing), oper state %s", n.Name, n.OperState))
			cmds = append(cmds, "# check the cable of "+n.Name+"; a veth needs both ends up")
		}
	}
	if len(bad) == 0 {
		return nil
	}
	// NICs that are down first (one that is down explains its peer's missing carrier); the
	// others keep their order.
	slices.SortStableFunc(bad, func(a, b problem) int {
		return boolRank(a.kind == linkAdminDown) - boolRank(b.kind == linkAdminDown)
	})
	var summary []string
	for _, p := range bad {
		summary = append(summary, p.text)
	}
	for _, e := range r.ev.Endpoints {
		if e.DevicePresent && e.PortState.Read && !e.PortState.Active() {
			ev = append(ev, fmt.Sprintf("%s port 1 is %s (an rxe port follows its netdev)", e.Device, e.PortState))
		}
	}
	ev = append(ev, r.trafficLines()...)
	fix := &FindingFix{
		Description: "bring the NIC up (a lab brought up by rocebed has every NIC up: take it down and up again)",
		Scenario:    "# nothing to add: `rocebed up` brings every declared NIC up;\n# run `rocebed down LAB && rocebed up LAB` to rebuild the lab",
		Commands:    slices.Compact(cmds),
	}
	return &Finding{Code: CodeLinkDown, Severity: SeverityError,
		Summary:  strings.Join(summary, "; ") + ": no packet can cross the cable and the rxe port is not ACTIVE",
		Evidence: ev, Fix: fix}
}

// boolRank sorts true before false.
func boolRank(b bool) int {
	if b {
		return 0
	}
	return 1
}
