package plan

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/rocebed/rocebed/internal/kernel"
	"github.com/rocebed/rocebed/internal/preflight"

	"github.com/rocebed/rocebed/sysctl"
	"github.com/rocebed/rocebed/testbed/scenario"
)

// HostView is what planning reads from the host. Planning never changes anything, so `plan`
// needs no root; tests pass a fake.
type HostView interface {
	// Link returns the state of an interface, or ok=false if there is none by that name.
	Link(name string) (l LinkState, ok bool, err error)
	// DefaultRouteLinks names the interfaces that carry a default route (IPv4 or IPv6).
	DefaultRouteLinks() ([]string, error)
	// Sysctl returns a parameter's value; an error wrapping os.ErrNotExist if there is none.
	Sysctl(key string) (string, error)
	// Rules lists the policy rules of a family.
	Rules(family int) ([]RuleSpec, error)
	// RouteExists reports whether the route is already in its table.
	RouteExists(r RouteSpec) (bool, error)
	// RDMADevice reports whether an RDMA device of that name exists.
	RDMADevice(name string) (bool, error)
}

// LinkState is what planning needs to know of an existing interface.
type LinkState struct {
	MTU   int
	Up    bool
	Addrs []netip.Prefix
}

// PlanOptions change what Plan produces.
type PlanOptions struct {
	// SkipRDMA leaves out the rxe links, so the network part can be built on a kernel without
	// RDMA.
	SkipRDMA bool
}

// Plan is the ordered list of host changes `up` makes.
type Plan struct {
	Lab  string `json:"lab"`
	File string `json:"file"`
	// Host is the host of a two-host lab this plan is for; its changes are that host's only.
	Host  string `json:"host,omitempty"`
	Steps []Step `json:"steps"`
}

// MakePlan turns a validated scenario into the ordered host changes that build it, reading the
// host only to fill in old values and to refuse conflicts. Errors are all collected: scenario
// problems that depend on the host (a NIC carrying the default route) are *FieldError, missing
// or conflicting host objects are *preflight.Error.
func MakePlan(s *scenario.Scenario, h HostView, opts PlanOptions) (*Plan, error) {
	if s.TwoHost() && s.Host == "" {
		return nil, fmt.Errorf("lab %s spans two hosts: plan one host's part (scenario.ForHost; `--side a` or `--side b`)", s.Name)
	}
	p := &Plan{Lab: s.Name, File: s.File, Host: string(s.Host)}
	var errs []error
	add := func(st Step) { p.Steps = append(p.Steps, st) }

	defaultLinks, err := h.DefaultRouteLinks()
	if err != nil {
		return nil, fmt.Errorf("read default routes: %w", err)
	}

	// Topology: veth cables, MTU of existing NICs, addresses.
	created := map[string]bool{}
	existing := map[string]LinkState{}
	for i, n := range s.NICs {
		path := fmt.Sprintf("nics[%d]", i)
		if n.Netns != "" {
			errs = append(errs, s.FieldErr(path+".netns", "NICs in other namespaces are not supported by this version of rocebed; remove netns"))
			continue
		}
		l, ok, err := h.Link(n.Name)
		if err != nil {
			return nil, fmt.Errorf("look up interface %s: %w", n.Name, err)
		}
		switch n.Kind {
		case scenario.NICVeth:
			if ok {
				errs = append(errs, &preflight.Error{Check: "interface " + n.Name, Need: "no interface named " + n.Name + " (rocebed creates this veth)",
					Have: "one already exists", Hint: "rename the NIC in the scenario, or remove the interface if it is a leftover"})
				continue
			}
			if created[n.Name] {
				continue // created with its peer
			}
			peer, _ := s.NIC(n.Peer)
			created[n.Name], created[n.Peer] = true, true
			add(Step{Change: &Veth{Link: n.Name, Peer: n.Peer, MAC: n.MAC, PeerMAC: peer.MAC, MTU: vethMTU(&s.NICs[i], peer)}})
		case scenario.NICExisting:
			if !ok {
				errs = append(errs, &preflight.Error{Check: "interface " + n.Name, Need: "an existing interface " + n.Name,
					Have: "none by that name", Hint: "name the right interface in the scenario (or with --set if it is a parameter)"})
				continue
			}
			if slices.Contains(defaultLinks, n.Name) && !n.AllowDefaultRoute {
				errs = append(errs, s.FieldErr(path+".name", "interface %s carries this host's default route; using it may cut the host off the network: set allow_default_route: true if you mean it", n.Name))
			}
			existing[n.Name] = l
			if n.MTU != 0 && n.MTU != l.MTU {
				add(Step{Change: &MTU{Link: n.Name, MTU: n.MTU, Old: fmt.Sprint(l.MTU)}})
			}
		}
	}
	for _, n := range s.NICs {
		for _, a := range n.Addresses {
			pfx, err := netip.ParsePrefix(a)
			if err != nil {
				continue // validation reported it
			}
			if l, ok := existing[n.Name]; ok && slices.Contains(l.Addrs, pfx) {
				continue // already there: not ours to add or remove
			}
			// An address on a veth rocebed creates skips DAD: nothing else is on that cable,
			// and a tentative address would hold up the routes and the first connection.
			add(Step{Change: &Addr{Link: n.Name, Addr: pfx.String(), NoDAD: created[n.Name] && pfx.Addr().Is6()}})
		}
	}

	// The veths rocebed creates for an IPv6 lab skip DAD, also for the link-local address the
	// kernel gives them when they come up: until that one is usable, the RDMA core's neighbour
	// discovery sends no solicitation and the first RC connection times out (see DADWait).
	for _, n := range s.NICs {
		if !created[n.Name] || !hasIPv6(n) {
			continue
		}
		key := "net.ipv6.conf." + strings.ReplaceAll(n.Name, ".", "/") + ".accept_dad"
		old, err := plannedOld(h, key, created)
		if err != nil {
			errs = append(errs, &preflight.Error{Check: "sysctl " + key, Need: "IPv6 (net.ipv6.conf.default.accept_dad)", Have: "none on this kernel", Err: err,
				Hint: "enable IPv6 (ipv6.disable=0 on the kernel command line), or give the lab IPv4 addresses only"})
			continue
		}
		add(Step{Change: &Sysctl{Key: key, Value: "0", Old: old}})
	}

	// Sysctls of every fix, before the links come up, so ARP starts under the fixed settings.
	seenKey := map[string]bool{}
	for _, f := range s.Fixes {
		for _, kv := range fixSysctls(f) {
			if seenKey[kv.Key] {
				continue
			}
			seenKey[kv.Key] = true
			old, err := plannedOld(h, kv.Key, created)
			if err != nil {
				errs = append(errs, &preflight.Error{Check: "sysctl " + kv.Key, Need: "the parameter " + kv.Key, Have: "none on this kernel", Err: err,
					Hint: "check the name (`sysctl -a | grep " + sysctl.Param(kv.Key) + "`)"})
				continue
			}
			add(Step{Fix: f.Name, Change: &Sysctl{Key: kv.Key, Value: kv.Value, Old: old}})
		}
	}

	for _, n := range s.NICs {
		if l, ok := existing[n.Name]; ok && l.Up {
			continue
		}
		if n.Netns != "" {
			continue
		}
		add(Step{Change: &LinkUp{Link: n.Name, Old: "down"}})
	}
	// IPv6 addresses of existing NICs go through DAD once their link is up, and so does the
	// link-local address the kernel adds then: wait for it (DADWait says why).
	for _, n := range s.NICs {
		if _, ok := existing[n.Name]; ok && hasIPv6(n) {
			add(Step{Change: &DADWait{Link: n.Name, TimeoutMS: int(DADTimeout(h, n.Name).Milliseconds())}})
		}
	}

	// Routing fixes: neighbours, rules and routes.
	rules := map[int][]RuleSpec{}
	for _, fam := range []int{kernel.AFInet, kernel.AFInet6} {
		rs, err := h.Rules(fam)
		if err != nil {
			return nil, fmt.Errorf("list rules: %w", err)
		}
		rules[fam] = rs
	}
	addRule := func(fix string, r RuleSpec) {
		for _, e := range rules[r.Family] {
			if SameRule(e, r) {
				return // already there: not ours
			}
			if e.Priority == r.Priority {
				errs = append(errs, &preflight.Error{Check: "rule priority " + fmt.Sprint(r.Priority),
					Need: "a free rule priority " + fmt.Sprint(r.Priority), Have: "rule " + e.String(),
					Hint: "choose other priorities in the scenario's fix " + fix})
				return
			}
		}
		rules[r.Family] = append(rules[r.Family], r)
		add(Step{Fix: fix, Change: &RuleAdd{Rule: &r}})
	}
	// moveLocal deletes the kernel's `0: from all lookup local` rule, as it is.
	moveLocal := func(fix string, family int) {
		local0 := RuleSpec{Family: family, Priority: 0, Table: kernel.TableLocal}
		for _, e := range rules[family] {
			if SameRule(e, local0) {
				add(Step{Fix: fix, Change: &RuleDel{Rule: &e}}) // e keeps the kernel's protocol
				rules[family] = removeRule(rules[family], e)
				return
			}
		}
	}
	addRoute := func(fix string, r RouteSpec) {
		ok, err := h.RouteExists(r)
		if err != nil {
			errs = append(errs, fmt.Errorf("look up route %s: %w", r.String(), err))
			return
		}
		if ok {
			errs = append(errs, &preflight.Error{Check: "route " + r.String(), Need: "no such route yet", Have: "it exists",
				Hint: "choose another table in the scenario's fix " + fix + ", or remove the route"})
			return
		}
		add(Step{Fix: fix, Change: &Route{Route: &r}})
	}
	for _, f := range s.Fixes {
		for _, n := range f.Neighbors {
			add(Step{Fix: f.Name, Change: &Neighbor{Link: n.NIC, Addr: n.IP, MAC: n.MAC}})
		}
		if f.MoveLocalRule != 0 {
			fams := familiesOf(s)
			for _, fam := range fams {
				addRule(f.Name, RuleSpec{Family: fam, Priority: f.MoveLocalRule, Table: kernel.TableLocal})
				moveLocal(f.Name, fam)
			}
		}
		for _, r := range f.Routes {
			to := hostPrefix(r.To)
			addRoute(f.Name, RouteSpec{To: to, Dev: r.Dev, Src: r.Src, Via: r.Via, Table: r.Table})
		}
		for _, r := range f.Rules {
			rs := RuleSpec{Priority: r.Priority, IIF: r.IIF, OIF: r.OIF, Table: r.Table, Family: kernel.AFInet}
			if r.From != "" {
				rs.From = hostPrefix(r.From)
			}
			if r.To != "" {
				rs.To = hostPrefix(r.To)
			}
			if strings.Contains(rs.From+rs.To, ":") {
				rs.Family = kernel.AFInet6
			}
			addRule(f.Name, rs)
		}
		if pr := f.PolicyRouting; pr != nil {
			pairs := EndpointPairs(s)
			if len(pairs) == 0 {
				errs = append(errs, s.FieldErr("fixes", "policy_routing needs an address on both endpoint NICs"))
				continue
			}
			for _, ab := range pairs {
				changes := PolicyRoutingChanges(ab[0], ab[1], s.Endpoints.A.NIC, s.Endpoints.B.NIC, *pr)
				if s.Host != "" {
					changes = PolicyRoutingHalf(changes, s.Host, *pr)
				}
				for _, c := range changes {
					switch c := c.(type) {
					case *RuleAdd:
						addRule(f.Name, *c.Rule)
					case *RuleDel:
						moveLocal(f.Name, c.Rule.Family) // the kernel's own rule, protocol included
					case *Route:
						addRoute(f.Name, *c.Route)
					}
				}
			}
		}
	}

	// RDMA links last: rxe binds to a NIC that is up and addressed, so its GIDs appear at once.
	if !opts.SkipRDMA {
		for _, ep := range s.LocalEndpoints() {
			if ep.RXE == "" {
				continue
			}
			ok, err := h.RDMADevice(ep.RXE)
			if err != nil {
				return nil, fmt.Errorf("look up RDMA device %s: %w", ep.RXE, err)
			}
			if ok {
				errs = append(errs, &preflight.Error{Check: "rdma device " + ep.RXE, Need: "no RDMA device named " + ep.RXE,
					Have: "one already exists", Hint: "rename the endpoint's rxe in the scenario, or `rdma link del " + ep.RXE + "` if it is a leftover"})
				continue
			}
			add(Step{Change: &RXE{Link: ep.NIC, RXE: ep.RXE}})
		}
	}
	// Last, with every fix in place: resolve the cable's neighbours, so the lab's first
	// connection does not wait for them (see Resolve).
	for _, r := range resolveSteps(s) {
		add(Step{Change: r})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return p, nil
}

// EndpointPairs lists the endpoints' addresses (a, b) in each family both have one in
// (scenario.Families): what the policy-routing fix covers. It is empty when an endpoint's
// address is not declared.
func EndpointPairs(s *scenario.Scenario) [][2]netip.Addr {
	var out [][2]netip.Addr
	for _, f := range s.Families() {
		a, okA := s.EndpointAddrIn(s.Endpoints.A, f)
		b, okB := s.EndpointAddrIn(s.Endpoints.B, f)
		if okA && okB {
			out = append(out, [2]netip.Addr{a.Unmap(), b.Unmap()})
		}
	}
	return out
}

// resolveSteps resolve the endpoints' addresses across the cable, one step per family both
// endpoints have an address in (EndpointPairs), each from A's side unless a fix makes that
// entry static. None for endpoints that share a NIC, for a NIC in another namespace (the
// step acts in the lab's), and for one host's part of a two-host lab: there the other end's
// reply comes back over a real wire, after ib_core has queued its request, and the
// neighbour update wakes it (see Resolve).
func resolveSteps(s *scenario.Scenario) []*Resolve {
	nicA, nicB := s.Endpoints.A.NIC, s.Endpoints.B.NIC
	if s.Host != "" || nicA == nicB {
		return nil
	}
	for _, name := range []string{nicA, nicB} {
		if n, ok := s.NIC(name); !ok || n.Netns != "" {
			return nil
		}
	}
	static := func(nic string, addr netip.Addr) bool {
		for _, f := range s.Fixes {
			for _, n := range f.Neighbors {
				if ip, err := netip.ParseAddr(n.IP); err == nil && n.NIC == nic && ip.Unmap() == addr {
					return true
				}
			}
		}
		return false
	}
	var out []*Resolve
	for _, ab := range EndpointPairs(s) {
		r := &Resolve{NIC: nicA, Addr: ab[0].String(), PeerNIC: nicB, PeerAddr: ab[1].String()}
		switch sa, sb := static(nicA, ab[1]), static(nicB, ab[0]); {
		case sa && sb:
			continue
		case sa:
			r = &Resolve{NIC: nicB, Addr: r.PeerAddr, PeerNIC: nicA, PeerAddr: r.Addr}
		}
		out = append(out, r)
	}
	return out
}

// PolicyRoutingChanges is the policy-routing fix for endpoints with addresses a (on nicA) and b
// (on nicB) of one family, in the order it is made: the local table's rule moved from
// priority 0 to pr.LocalRulePriority, then per direction a route out of the sender's NIC in its
// own table and the rules that send the host's traffic to the other endpoint through it —
// traffic from the endpoint's address, and traffic with no source yet; for IPv6 also the
// lookups that name the NIC as output interface (see scenario.PolicyRoutingRulesIPv6). It is
// what `up` makes (MakePlan fits it to the host's rules) and what diagnose prints.
func PolicyRoutingChanges(a, b netip.Addr, nicA, nicB string, pr scenario.PolicyRouting) []Change {
	pr = pr.WithDefaults()
	host := func(x netip.Addr) string { return hostPrefix(x.String()) }
	if a.Is6() && !a.Is4In6() {
		return policyRoutingChanges6(a, b, nicA, nicB, pr)
	}
	fam, unspec := kernel.AFInet, netip.IPv4Unspecified()
	return []Change{
		&RuleAdd{Rule: &RuleSpec{Family: fam, Priority: pr.LocalRulePriority, Table: kernel.TableLocal}},
		&RuleDel{Rule: &RuleSpec{Family: fam, Priority: 0, Table: kernel.TableLocal}},
		&Route{Route: &RouteSpec{To: host(b), Dev: nicA, Src: a.String(), Table: pr.TableA}},
		&RuleAdd{Rule: &RuleSpec{Family: fam, Priority: pr.RulePriority, IIF: "lo", From: host(a), To: host(b), Table: pr.TableA}},
		&Route{Route: &RouteSpec{To: host(a), Dev: nicB, Src: b.String(), Table: pr.TableB}},
		&RuleAdd{Rule: &RuleSpec{Family: fam, Priority: pr.RulePriority + 1, IIF: "lo", From: host(b), To: host(a), Table: pr.TableB}},
		// A client that binds no source (most rdma_cm software) looks the route up with
		// source 0.0.0.0: without these it gets the local table's route through lo, and
		// rdma_cm picks the device that owns the destination, so the traffic loops inside
		// one device instead of crossing the cable. The unspecified source as a /32 matches
		// only such lookups, so traffic bound to a local address still goes through lo.
		&RuleAdd{Rule: &RuleSpec{Family: fam, Priority: pr.RulePriority + 2, IIF: "lo", From: host(unspec), To: host(b), Table: pr.TableA}},
		&RuleAdd{Rule: &RuleSpec{Family: fam, Priority: pr.RulePriority + 3, IIF: "lo", From: host(unspec), To: host(a), Table: pr.TableB}},
	}
}

// policyRoutingChanges6 is PolicyRoutingChanges for IPv6, where two lookups differ from IPv4's
// (measured on Debian's 6.1 and 6.12, read in net/ipv6/fib6_rules.c and drivers/infiniband/
// core/cma.c):
//   - A rule with a source never matches a lookup that has no source yet (fib6_rule_match
//     skips it without RT6_LOOKUP_F_HAS_SADDR), so `from ::/128` would never catch the
//     unbound client it is for. Its IPv6 rule has no source: every lookup from this host to
//     the endpoint that the bound rule did not take — unbound, or from another of the host's
//     addresses — leaves through the other endpoint's NIC. IPv6 has no martian-source drop,
//     so such packets are delivered as before, through the cable.
//   - rdma_cm accepts a connection only if the route from its own address back to the client,
//     looked up with its NIC as output interface and no input interface
//     (validate_ipv6_net_dev), leaves through that NIC. IPv6 output routing takes the local
//     table's route for an address of this host whatever the output interface, so without a
//     rule for that lookup the answer is the client's own NIC and the connection is rejected
//     (RDMA_CM_EVENT_REJECTED, status 28: IB_CM_REJ_CONSUMER_DEFINED). The `oif` rules give
//     it the route out of its own NIC. (IPv4's lookup skips routes of other devices when an
//     output interface is given, so IPv4 needs no such rule.)
func policyRoutingChanges6(a, b netip.Addr, nicA, nicB string, pr scenario.PolicyRouting) []Change {
	fam := kernel.AFInet6
	host := func(x netip.Addr) string { return hostPrefix(x.String()) }
	return []Change{
		&RuleAdd{Rule: &RuleSpec{Family: fam, Priority: pr.LocalRulePriority, Table: kernel.TableLocal}},
		&RuleDel{Rule: &RuleSpec{Family: fam, Priority: 0, Table: kernel.TableLocal}},
		&Route{Route: &RouteSpec{To: host(b), Dev: nicA, Src: a.String(), Table: pr.TableA}},
		&RuleAdd{Rule: &RuleSpec{Family: fam, Priority: pr.RulePriority, IIF: "lo", From: host(a), To: host(b), Table: pr.TableA}},
		&Route{Route: &RouteSpec{To: host(a), Dev: nicB, Src: b.String(), Table: pr.TableB}},
		&RuleAdd{Rule: &RuleSpec{Family: fam, Priority: pr.RulePriority + 1, IIF: "lo", From: host(b), To: host(a), Table: pr.TableB}},
		&RuleAdd{Rule: &RuleSpec{Family: fam, Priority: pr.RulePriority + 2, IIF: "lo", To: host(b), Table: pr.TableA}},
		&RuleAdd{Rule: &RuleSpec{Family: fam, Priority: pr.RulePriority + 3, IIF: "lo", To: host(a), Table: pr.TableB}},
		&RuleAdd{Rule: &RuleSpec{Family: fam, Priority: pr.RulePriority + 4, OIF: nicA, From: host(a), To: host(b), Table: pr.TableA}},
		&RuleAdd{Rule: &RuleSpec{Family: fam, Priority: pr.RulePriority + 5, OIF: nicB, From: host(b), To: host(a), Table: pr.TableB}},
	}
}

// PolicyRoutingHalf is host h's part of the policy-routing fix in a two-host lab: the local
// rule moved, and the route and rules of the direction that leaves h (table_a on host a,
// table_b on host b). The other half names the other host's NIC and address, and is the other
// host's to make. Between two hosts the fix is not needed, and harmless: the rules match only
// this host's own traffic to the other endpoint (iif lo) and send it out of the NIC the main
// table would use anyway.
func PolicyRoutingHalf(changes []Change, h scenario.HostName, pr scenario.PolicyRouting) []Change {
	pr = pr.WithDefaults()
	theirs := pr.TableB
	if h == scenario.HostB {
		theirs = pr.TableA
	}
	var out []Change
	for _, c := range changes {
		switch c := c.(type) {
		case *RuleAdd:
			if c.Rule.Table == theirs {
				continue
			}
		case *Route:
			if c.Route.Table == theirs {
				continue
			}
		}
		out = append(out, c)
	}
	return out
}

// vethMTU is the MTU of a veth pair: a cable has one MTU, so both ends must agree; validation
// checks that, and 0 leaves the kernel default.
func vethMTU(a, b *scenario.NIC) int {
	if a.MTU != 0 {
		return a.MTU
	}
	return b.MTU
}

// fixSysctls lists a fix's sysctls, ARP settings included, in order.
func fixSysctls(f scenario.Fix) []sysctl.Setting {
	var out []sysctl.Setting
	for _, kv := range f.Sysctls {
		k, v, _ := strings.Cut(kv, "=")
		out = append(out, sysctl.Setting{Key: strings.TrimSpace(k), Value: strings.TrimSpace(v)})
	}
	for _, a := range f.ARP {
		for _, p := range []struct {
			name string
			v    *int
		}{{"arp_ignore", a.Ignore}, {"arp_announce", a.Announce}, {"arp_filter", a.Filter}} {
			if p.v != nil {
				out = append(out, sysctl.Setting{Key: "net.ipv4.conf." + a.NIC + "." + p.name, Value: fmt.Sprint(*p.v)})
			}
		}
	}
	return out
}

// plannedOld reads a parameter's current value. For a NIC rocebed has yet to create, the value
// it will start with is the `default` one, which the new interface inherits.
func plannedOld(h HostView, key string, created map[string]bool) (string, error) {
	if ifc := sysctl.Interface(key); created[ifc] {
		key = strings.Replace(key, "."+ifc+".", ".default.", 1)
	}
	return h.Sysctl(key)
}

// hasIPv6 reports whether a NIC declares an IPv6 address.
func hasIPv6(n scenario.NIC) bool {
	for _, a := range n.Addresses {
		if p, err := netip.ParsePrefix(a); err == nil && p.Addr().Is6() && !p.Addr().Is4In6() {
			return true
		}
	}
	return false
}

// familiesOf lists the address families the lab's NICs use.
func familiesOf(s *scenario.Scenario) []int {
	var v4, v6 bool
	for _, n := range s.NICs {
		for _, a := range n.Addresses {
			if p, err := netip.ParsePrefix(a); err == nil {
				if p.Addr().Is4() {
					v4 = true
				} else {
					v6 = true
				}
			}
		}
	}
	var out []int
	if v4 || !v6 {
		out = append(out, kernel.AFInet)
	}
	if v6 {
		out = append(out, kernel.AFInet6)
	}
	return out
}

// hostPrefix turns "10.0.0.1" into "10.0.0.1/32" and normalises a CIDR.
func hostPrefix(s string) string {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked().String()
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.PrefixFrom(a, a.BitLen()).String()
	}
	return s
}

func removeRule(list []RuleSpec, r RuleSpec) []RuleSpec {
	out := list[:0:0]
	for _, x := range list {
		if x != r {
			out = append(out, x)
		}
	}
	return out
}
