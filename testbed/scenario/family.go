package scenario

import (
	"net/netip"
	"slices"
)

// Family is an IP address family. An endpoint's RoCE v2 GID is one of its NIC's addresses,
// so a lab whose NICs have addresses of both families can carry RoCE over each; a traffic item
// says which (Traffic.Family).
type Family string

const (
	FamilyIPv4 Family = "ipv4"
	FamilyIPv6 Family = "ipv6"
)

// families lists every Family, in the order labs use them.
var families = []Family{FamilyIPv4, FamilyIPv6}

// FamilyOf is the family of an address; an IPv4-mapped IPv6 address is IPv4, as its GID is.
func FamilyOf(a netip.Addr) Family {
	if a.Unmap().Is4() {
		return FamilyIPv4
	}
	return FamilyIPv6
}

// EndpointAddrIn is the address endpoint ep uses in family f: its own address (EndpointAddr)
// when it is of that family, else the first declared address of f on its NIC. ok is false
// when it has none. f "" is the endpoint's own family: EndpointAddrIn(ep, "") is EndpointAddr(ep).
func (s *Scenario) EndpointAddrIn(ep Endpoint, f Family) (netip.Addr, bool) {
	own, ok := s.EndpointAddr(ep)
	if f == "" || (ok && FamilyOf(own) == f) || (!ok && ep.Address != "") {
		return own, ok // an address that does not parse is not replaced by another
	}
	nic, found := s.EndpointNIC(ep)
	if !found {
		return netip.Addr{}, false
	}
	for _, a := range nic.Addresses {
		if p, err := netip.ParsePrefix(a); err == nil && FamilyOf(p.Addr()) == f {
			return p.Addr(), true
		}
	}
	return netip.Addr{}, false
}

// Families lists the families in which both endpoints have an address, the endpoints' own
// (EndpointAddr) first: the families the policy-routing fix, the probe and diagnosis cover.
// It is empty when an endpoint's address is not declared (an existing NIC with none).
func (s *Scenario) Families() []Family {
	a, okA := s.EndpointAddr(s.Endpoints.A)
	if !okA {
		return nil
	}
	out := []Family{FamilyOf(a)}
	for _, f := range families {
		if f == out[0] {
			continue
		}
		_, okA := s.EndpointAddrIn(s.Endpoints.A, f)
		_, okB := s.EndpointAddrIn(s.Endpoints.B, f)
		if okA && okB {
			out = append(out, f)
		}
	}
	return out
}

// PolicyRoutingRules is how many rule priorities the lab's policy-routing fix takes:
// PolicyRoutingRulesIPv6 when it covers IPv6, else PolicyRoutingRules.
func (s *Scenario) PolicyRoutingRules() int {
	if slices.Contains(s.Families(), FamilyIPv6) {
		return PolicyRoutingRulesIPv6
	}
	return PolicyRoutingRules
}
