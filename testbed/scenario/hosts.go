package scenario

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/rocebed/rocebed/sysctl"
)

// This file holds the two-host form of a lab: two hosts cabled back to back, each with one NIC
// and one endpoint. The same file runs on both hosts. Every NIC says which host it is on
// (`host: a` or `host: b`); a host is named after the endpoint it carries, so endpoint a is on
// host a and names host a's NIC. NIC names are unique per host (both may be eth1). rocebed
// runs on each host with --side, and ForHost gives it that host's part: its NIC, its endpoint,
// its sysctls, its half of the policy-routing fix.

// HostName names one host of a two-host lab: "a" or "b", after the endpoint it carries.
type HostName string

// The two hosts of a two-host lab.
const (
	HostA HostName = "a"
	HostB HostName = "b"
)

var hostNames = []HostName{HostA, HostB}

// Other returns the other host of the lab.
func (h HostName) Other() HostName {
	if h == HostA {
		return HostB
	}
	return HostA
}

// ParseHostName reads a --side value.
func ParseHostName(s string) (HostName, error) {
	if h := HostName(s); slices.Contains(hostNames, h) {
		return h, nil
	}
	return "", fmt.Errorf("side %q: want a or b (a host is named after the endpoint it carries)", s)
}

// TwoHost reports whether the lab spans two hosts: its NICs say which host they are on.
func (s *Scenario) TwoHost() bool {
	if s.Host != "" {
		return true
	}
	for _, n := range s.NICs {
		if n.Host != "" {
			return true
		}
	}
	return false
}

// SideEndpoint is an endpoint with the side it is ("a" or "b").
type SideEndpoint struct {
	Side string
	Endpoint
}

// Endpoint returns endpoint side ("a" or "b").
func (s *Scenario) Endpoint(side string) Endpoint {
	if side == "b" {
		return s.Endpoints.B
	}
	return s.Endpoints.A
}

// LocalEndpoints lists the endpoints this host has: both of a one-host lab, or in a two-host
// lab (after ForHost) the one of this host.
func (s *Scenario) LocalEndpoints() []SideEndpoint {
	if s.Host != "" {
		return []SideEndpoint{{string(s.Host), s.Endpoint(string(s.Host))}}
	}
	return []SideEndpoint{{"a", s.Endpoints.A}, {"b", s.Endpoints.B}}
}

// nicOn finds NIC name for endpoint side: in a two-host lab the one on that side's host (also
// when ForHost left it out of NICs), else the one of that name.
func (s *Scenario) nicOn(side, name string) (*NIC, bool) {
	if !s.TwoHost() {
		return s.NIC(name)
	}
	for _, list := range [][]NIC{s.NICs, s.others} {
		for i := range list {
			if list[i].Name == name && string(list[i].Host) == side {
				return &list[i], true
			}
		}
	}
	return nil, false
}

// EndpointNIC is the declared NIC endpoint ep is on: in a two-host lab the one of its host
// (NIC names are unique per host only), else the one of its name.
func (s *Scenario) EndpointNIC(ep Endpoint) (*NIC, bool) {
	if ep.Host != "" {
		return s.nicOn(string(ep.Host), ep.NIC)
	}
	return s.NIC(ep.NIC)
}

// ForHost returns the part of the lab that host h makes: for a two-host lab a copy with only
// h's NIC, the sysctls and ARP settings that name h's NIC (or no NIC, all or default), and
// Host set, so planning, `up`, counters and traffic see one host. The other host's endpoint
// stays in Endpoints: the traffic is named after both ends, and the policy-routing fix routes
// to its address. A one-host lab comes back as it is when h is empty. Errors say which --side
// is missing or out of place.
func (s *Scenario) ForHost(h HostName) (*Scenario, error) {
	switch {
	case !s.TwoHost() && h == "":
		return s, nil
	case !s.TwoHost():
		return nil, fmt.Errorf("--side %s: lab %s is on one host (no NIC says host:): leave --side out", h, s.Name)
	case s.Host != "":
		if h != s.Host {
			return nil, fmt.Errorf("lab %s is already host %s's part, not host %s's", s.Name, s.Host, h)
		}
		return s, nil
	case h == "":
		return nil, fmt.Errorf("lab %s spans two hosts: say which one this is with --side a or --side b (host a carries endpoint a on %s, host b endpoint b on %s)",
			s.Name, s.Endpoints.A.NIC, s.Endpoints.B.NIC)
	case !slices.Contains(hostNames, h):
		_, err := ParseHostName(string(h))
		return nil, err
	}
	c := *s
	c.fingerprint = s.Fingerprint()
	c.Host = h
	c.NICs, c.others = nil, nil
	local := map[string]bool{}
	for _, n := range s.NICs {
		if n.Host == h {
			c.NICs = append(c.NICs, n)
			local[n.Name] = true
		} else {
			c.others = append(c.others, n)
		}
	}
	c.Fixes = make([]Fix, len(s.Fixes))
	for i, f := range s.Fixes {
		f.Sysctls = slices.DeleteFunc(slices.Clone(f.Sysctls), func(kv string) bool {
			k, _, _ := strings.Cut(kv, "=")
			key, err := sysctl.ParseKey(k)
			return err == nil && key.Iface != "" && key.Iface != "all" && key.Iface != "default" && key.Iface != "lo" && !local[key.Iface]
		})
		f.ARP = slices.DeleteFunc(slices.Clone(f.ARP), func(a ARPSetting) bool { return !local[a.NIC] })
		c.Fixes[i] = f
	}
	return &c, nil
}

// Fingerprint is a digest of what the lab declares — not where the file came from, nor which
// host's part this is — so the two hosts of a two-host lab can check that they run the same
// lab: the same scenario with the same --set values.
func (s *Scenario) Fingerprint() string {
	if s.fingerprint != "" {
		return s.fingerprint
	}
	c := *s
	c.File, c.Host = "", ""
	b, err := json.Marshal(&c)
	if err != nil {
		return "unencodable: " + err.Error() // a Scenario always encodes; never equal to a digest
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// hosts checks the two-host form: every NIC on host a or b, one NIC on each, kind existing
// with an address, and fixes that make sense on one host's half.
func (v *validator) hosts() {
	if !v.s.TwoHost() {
		return
	}
	perHost := map[HostName]string{}
	for i, n := range v.s.NICs {
		p := fmt.Sprintf("nics[%d]", i)
		switch {
		case n.Host == "":
			v.add(p+".host", "host is required: another NIC says host, so this is a two-host lab and every NIC says which host it is on, a or b")
			continue
		case !slices.Contains(hostNames, n.Host):
			v.add(p+".host", "unknown host %q: want a or b (a host is named after the endpoint it carries)", n.Host)
			continue
		}
		if first, dup := perHost[n.Host]; dup {
			v.add(p+".host", "host %s already has a NIC (%s): a two-host lab has one NIC on each host, cabled to the other host's", n.Host, first)
		} else {
			perHost[n.Host] = p
		}
		if n.Kind == NICVeth {
			v.add(p+".kind", "a veth pair has both ends on one host: a two-host lab's NICs are kind existing, cabled to each other")
		}
		if n.Netns != "" {
			v.add(p+".netns", "netns is not supported in a two-host lab: each host's NIC is in its initial namespace, where rxe works")
		}
		if len(n.Addresses) == 0 {
			v.add(p+".addresses", "a two-host lab's NIC needs an address: the other host's rocebed learns it from the scenario (give the one the NIC has, if it has one)")
		}
	}
	for _, h := range hostNames {
		if _, ok := perHost[h]; !ok {
			v.add("nics", "host %s has no NIC: a two-host lab declares one NIC with host: a and one with host: b", h)
		}
	}
	for i, f := range v.s.Fixes {
		p := fmt.Sprintf("fixes[%d]", i)
		for _, x := range []struct {
			field string
			used  bool
		}{{"neighbors", len(f.Neighbors) > 0}, {"move_local_rule", f.MoveLocalRule != 0}, {"rules", len(f.Rules) > 0}, {"routes", len(f.Routes) > 0}} {
			if x.used {
				v.add(p+"."+x.field, "%s are for the two NICs of one host; between two hosts no fix is needed (policy_routing, sysctls and arp may still be given: each host applies its own part)", x.field)
			}
		}
	}
}

// endpointNIC checks that endpoint side's nic is declared — in a two-host lab, on the
// endpoint's own host — and returns it.
func (v *validator) endpointNIC(side, path, name string) (*NIC, bool) {
	if !v.s.TwoHost() {
		return v.declaredNIC(path, "nic", name)
	}
	var here []string
	for _, n := range v.s.NICs {
		if string(n.Host) == side {
			here = append(here, n.Name)
		}
	}
	have := "host " + side + " has none"
	if len(here) > 0 {
		have = "host " + side + " has " + strings.Join(here, ", ")
	}
	if name == "" {
		v.add(path, "nic is required: name host %s's NIC (%s)", side, have)
		return nil, false
	}
	nic, ok := v.s.nicOn(side, name)
	if !ok {
		v.add(path, "nic %q is not on host %s: endpoint %s is on host %s, so it names a NIC with host: %s (%s)", name, side, side, side, side, have)
	}
	return nic, ok
}
