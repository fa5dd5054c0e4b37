package diagnose

import (
	"fmt"
	"strings"
)

// gidMissing: an endpoint has no RDMA device, its device is bound to another NIC, or its port
// has no RoCE v2 GID for the endpoint's address.
func (r ruler) gidMissing() *Finding {
	var ev, bad, cmds []string
	var yaml []string
	for _, e := range r.ev.Endpoints {
		switch {
		case !e.DevicePresent:
			bad = append(bad, fmt.Sprintf("endpoint %s has no RDMA device %s on %s", e.Side, e.Device, e.NIC))
			ev = append(ev, fmt.Sprintf("/sys/class/infiniband/%s: missing", e.Device))
			cmds = append(cmds, fmt.Sprintf("rdma link add %s type rxe netdev %s", e.Device, e.NIC))
			yaml = append(yaml, fmt.Sprintf("  %s: {nic: %s, rxe: %s}", e.Side, e.NIC, e.Device))
		case e.PortNetdev != "" && e.PortNetdev != e.NIC:
			bad = append(bad, fmt.Sprintf("%s is bound to %s, not to endpoint %s's NIC %s", e.Device, e.PortNetdev, e.Side, e.NIC))
			ev = append(ev, fmt.Sprintf("%s port 1 netdev: %s", e.Device, e.PortNetdev))
			cmds = append(cmds, fmt.Sprintf("rdma link delete %s", e.Device), fmt.Sprintf("rdma link add %s type rxe netdev %s", e.Device, e.NIC))
		case e.GID == "":
			bad = append(bad, fmt.Sprintf("%s has no RoCE v2 GID for endpoint %s's address %s", e.Device, e.Side, e.Address))
			ev = append(ev, fmt.Sprintf("%s port 1 (%s): %s", e.Device, e.PortState, e.GIDError))
			cmds = append(cmds, fmt.Sprintf("ip addr add %s/24 dev %s  # the kernel adds the GID when the address is on the NIC and it is up", e.Address, e.NIC))
		}
	}
	if len(bad) == 0 {
		return nil
	}
	ev = append(ev, r.trafficLines()...)
	scen := "# the endpoints are declared; rebuild the lab with `rocebed down LAB && rocebed up LAB`"
	if len(yaml) > 0 {
		scen = "endpoints:\n" + strings.Join(yaml, "\n")
	}
	return &Finding{Code: CodeGIDMissing, Severity: SeverityError,
		Summary:  strings.Join(bad, "; ") + ": traffic needs an RDMA device with a RoCE v2 GID for its address at both ends",
		Evidence: ev, Fix: &FindingFix{Description: "give both endpoints an RDMA device bound to their NIC, with the address on the NIC", Scenario: scen, Commands: cmds}}
}
