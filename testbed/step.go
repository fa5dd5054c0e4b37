package testbed

import (
	"fmt"
	"net/netip"
	"strings"
)

// StepKind names one kind of host change. Each kind has an Apply and an Undo (step_linux.go).
type StepKind string

const (
	StepVeth     StepKind = "veth"     // ip link add A type veth peer name B
	StepMTU      StepKind = "mtu"      // ip link set NIC mtu N (existing NIC; old value saved)
	StepAddr     StepKind = "addr"     // ip addr add CIDR dev NIC
	StepSysctl   StepKind = "sysctl"   // sysctl -w KEY=VALUE (old value saved)
	StepUp       StepKind = "up"       // ip link set NIC up (old state saved)
	StepRule     StepKind = "rule"     // ip rule add ...
	StepRuleDel  StepKind = "rule-del" // ip rule del ... (the rule is re-added on undo)
	StepRoute    StepKind = "route"    // ip route add ...
	StepNeighbor StepKind = "neighbor" // ip neigh replace IP lladdr MAC dev NIC nud permanent
	StepRXE      StepKind = "rxe"      // rdma link add NAME type rxe netdev NIC
)

// Step is one host change, serialisable so that the journal can undo it after a crash without
// re-planning. Only the fields its Kind uses are set.
type Step struct {
	Kind StepKind `json:"kind"`
	// Fix is the name of the fix group the step belongs to ("" for the topology).
	Fix string `json:"fix,omitempty"`

	Link    string `json:"link,omitempty"` // the NIC the step acts on
	Peer    string `json:"peer,omitempty"` // veth: the other end
	MAC     string `json:"mac,omitempty"`  // veth: MAC of Link; neighbor: lladdr ("peer" resolved at apply)
	PeerMAC string `json:"peer_mac,omitempty"`
	MTU     int    `json:"mtu,omitempty"`
	Addr    string `json:"addr,omitempty"` // addr: CIDR; neighbor: IP

	Key   string `json:"key,omitempty"`   // sysctl key
	Value string `json:"value,omitempty"` // sysctl new value

	Rule  *RuleSpec  `json:"rule,omitempty"`
	Route *RouteSpec `json:"route,omitempty"`
	RXE   string     `json:"rxe,omitempty"` // rxe: the RDMA link name; Link is its netdev

	// Old is the value before the change (sysctl value, MTU, "up"/"down", or a neighbour's
	// previous lladdr), read at apply time and journaled before the change is made. Plan fills
	// it with what it read when planning, so `plan` can show old → new.
	Old string `json:"old,omitempty"`
}

// RuleSpec is a policy rule as rocebed adds and deletes it.
type RuleSpec struct {
	Family   int    `json:"family"` // unix.AF_INET or AF_INET6
	Priority int    `json:"priority"`
	IIF      string `json:"iif,omitempty"`
	OIF      string `json:"oif,omitempty"`
	From     string `json:"from,omitempty"` // CIDR
	To       string `json:"to,omitempty"`   // CIDR
	Table    int    `json:"table"`
	// Protocol is who installed the rule (2 = kernel for the default rules); kept so a
	// deleted rule comes back exactly as it was.
	Protocol int `json:"protocol,omitempty"`
}

// sameRule compares rules by what they match and where they point, not by who made them.
func sameRule(a, b RuleSpec) bool {
	a.Protocol, b.Protocol = 0, 0
	return a == b
}

// RouteSpec is a route as rocebed adds and deletes it.
type RouteSpec struct {
	To    string `json:"to"` // CIDR
	Dev   string `json:"dev"`
	Src   string `json:"src,omitempty"`
	Via   string `json:"via,omitempty"`
	Table int    `json:"table,omitempty"`
}

func (r *RuleSpec) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "pref %d", r.Priority)
	if r.IIF != "" {
		fmt.Fprintf(&b, " iif %s", r.IIF)
	}
	if r.OIF != "" {
		fmt.Fprintf(&b, " oif %s", r.OIF)
	}
	if r.From != "" {
		fmt.Fprintf(&b, " from %s", r.From)
	}
	if r.To != "" {
		fmt.Fprintf(&b, " to %s", r.To)
	}
	fmt.Fprintf(&b, " lookup %s", tableName(r.Table))
	if r.Protocol != 0 {
		fmt.Fprintf(&b, " protocol %s", protocolName(r.Protocol))
	}
	return b.String()
}

func (r *RouteSpec) String() string {
	var b strings.Builder
	b.WriteString(r.To)
	if r.Via != "" {
		fmt.Fprintf(&b, " via %s", r.Via)
	}
	fmt.Fprintf(&b, " dev %s", r.Dev)
	if r.Src != "" {
		fmt.Fprintf(&b, " src %s", r.Src)
	}
	if r.Table != 0 {
		fmt.Fprintf(&b, " table %s", tableName(r.Table))
	}
	return b.String()
}

// protocolName names a route/rule protocol as iproute2 does (rt_protos).
func protocolName(p int) string {
	switch p {
	case 2:
		return "kernel"
	case 3:
		return "boot"
	case 4:
		return "static"
	}
	return fmt.Sprint(p)
}

func tableName(t int) string {
	switch t {
	case 255:
		return "local"
	case 254:
		return "main"
	case 253:
		return "default"
	}
	return fmt.Sprint(t)
}

// ipFamilyFlag is the iproute2 flag for a rule family.
func ipFamilyFlag(family int) string {
	if family == afInet6 {
		return "-6 "
	}
	return ""
}

// Address families, as in <sys/socket.h>; kept here so this file builds everywhere.
const (
	afInet  = 2
	afInet6 = 10
)

// Command returns the iproute2/sysctl command line that makes the same change, for `plan`
// output and for users who want to do it by hand.
func (s *Step) Command() string {
	switch s.Kind {
	case StepVeth:
		cmd := fmt.Sprintf("ip link add %s", s.Link)
		if s.MAC != "" {
			cmd += " address " + s.MAC
		}
		if s.MTU != 0 {
			cmd += fmt.Sprintf(" mtu %d", s.MTU)
		}
		cmd += fmt.Sprintf(" type veth peer name %s", s.Peer)
		if s.PeerMAC != "" {
			cmd += " address " + s.PeerMAC
		}
		if s.MTU != 0 {
			cmd += fmt.Sprintf(" mtu %d", s.MTU)
		}
		return cmd
	case StepMTU:
		return fmt.Sprintf("ip link set %s mtu %d", s.Link, s.MTU)
	case StepAddr:
		// netlink's AddrAdd sets the IPv4 broadcast address below /31; `brd +` does the same.
		if p, err := netip.ParsePrefix(s.Addr); err == nil && p.Addr().Is4() && p.Bits() < 31 {
			return fmt.Sprintf("ip addr add %s brd + dev %s", s.Addr, s.Link)
		}
		return fmt.Sprintf("ip addr add %s dev %s", s.Addr, s.Link)
	case StepSysctl:
		return fmt.Sprintf("sysctl -w %s=%s", s.Key, s.Value)
	case StepUp:
		return fmt.Sprintf("ip link set %s up", s.Link)
	case StepRule:
		return fmt.Sprintf("ip %srule add %s", ipFamilyFlag(s.Rule.Family), s.Rule)
	case StepRuleDel:
		return fmt.Sprintf("ip %srule del %s", ipFamilyFlag(s.Rule.Family), s.Rule)
	case StepRoute:
		return fmt.Sprintf("ip route add %s", s.Route)
	case StepNeighbor:
		return fmt.Sprintf("ip neigh replace %s lladdr %s dev %s nud permanent", s.Addr, s.MAC, s.Link)
	case StepRXE:
		return fmt.Sprintf("rdma link add %s type rxe netdev %s", s.RXE, s.Link)
	}
	return string(s.Kind)
}

// UndoCommand returns the command that reverts the step.
func (s *Step) UndoCommand() string {
	switch s.Kind {
	case StepVeth:
		return fmt.Sprintf("ip link del %s", s.Link)
	case StepMTU:
		return fmt.Sprintf("ip link set %s mtu %s", s.Link, s.Old)
	case StepAddr:
		return fmt.Sprintf("ip addr del %s dev %s", s.Addr, s.Link)
	case StepSysctl:
		return fmt.Sprintf("sysctl -w %s=%s", s.Key, s.Old)
	case StepUp:
		if s.Old == "up" {
			return "(was already up)"
		}
		return fmt.Sprintf("ip link set %s down", s.Link)
	case StepRule:
		return fmt.Sprintf("ip %srule del %s", ipFamilyFlag(s.Rule.Family), s.Rule)
	case StepRuleDel:
		return fmt.Sprintf("ip %srule add %s", ipFamilyFlag(s.Rule.Family), s.Rule)
	case StepRoute:
		return fmt.Sprintf("ip route del %s", s.Route)
	case StepNeighbor:
		if s.Old != "" {
			return fmt.Sprintf("ip neigh replace %s lladdr %s dev %s nud permanent", s.Addr, s.Old, s.Link)
		}
		return fmt.Sprintf("ip neigh del %s dev %s", s.Addr, s.Link)
	case StepRXE:
		return fmt.Sprintf("rdma link del %s", s.RXE)
	}
	return ""
}
