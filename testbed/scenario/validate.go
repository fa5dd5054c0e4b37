package scenario

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/rocebed/rocebed/sysctl"
)

// This file holds the semantic checks of a scenario: everything that can be decided from the
// file alone. Checks that depend on the host (does the NIC exist, does it carry the default
// route, is rdma_rxe loaded) belong to the planner and preflight.

// The values each enumerated field accepts. The JSON Schema takes its enums from these lists,
// so the schema and the validator cannot disagree.
var (
	nicKinds   = []NICKind{NICVeth, NICExisting}
	transports = []Transport{TransportRC, TransportUD}
	directions = []Direction{DirectionAToB, DirectionBToA, DirectionBoth}
	results    = []Result{ResultPass, ResultFail}
	patterns   = []Pattern{PatternStream, PatternPingPong}
)

// Limits of the format.
const (
	maxRulePrio    = 32765
	maxMessages    = 1000000
	maxSize        = 1 << 30
	maxUDSize      = 4096 // largest RoCE MTU; a UD message is one packet
	maxDeadlineMS  = 3600000
	maxRCTimeout   = 31
	maxRCRetry     = 7
	maxTable       = 1<<32 - 1
	minMTU, maxMTU = 68, 65535
	minIPv6MTU     = 1280
)

var fixNameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)

// Validate checks the scenario's meaning and returns every problem at once, each a
// *FieldError located at its field (errors.Join), or nil. Fields that SetDefaults fills are
// accepted at zero. It looks only at the scenario, never at the host.
func (s *Scenario) Validate() error {
	v := &validator{s: s, sysctls: map[string]string{}, prios: map[int]string{}, nicByName: map[string]*NIC{}}
	for i := range s.NICs {
		if _, dup := v.nicByName[s.NICs[i].Name]; !dup {
			v.nicByName[s.NICs[i].Name] = &s.NICs[i]
		}
	}
	v.top()
	v.params()
	v.nics()
	v.hosts()
	v.endpoints()
	v.fixes()
	v.traffic()
	v.expect()
	return errors.Join(v.errs...)
}

type validator struct {
	s         *Scenario
	errs      []error
	sysctls   map[string]string // canonical sysctl key → path of the first setting
	prios     map[int]string    // rule priority → path of the first user
	nicByName map[string]*NIC   // the first NIC of each name, as s.NIC finds it
}

// add records a problem; after MaxErrors it records that it stopped, then nothing.
func (v *validator) add(path, format string, args ...any) {
	switch {
	case len(v.errs) < MaxErrors:
		v.errs = append(v.errs, v.s.FieldErr(path, format, args...))
	case len(v.errs) == MaxErrors:
		v.errs = append(v.errs, v.s.FieldErr(path, "more than %d problems: stopped looking", MaxErrors))
	}
}

// nic is s.NIC in constant time.
func (v *validator) nic(name string) (*NIC, bool) {
	n, ok := v.nicByName[name]
	return n, ok
}

func (v *validator) top() {
	if v.s.Version != 1 {
		v.add("version", "unsupported version %d: this rocebed reads version 1", v.s.Version)
	}
	if msg := LabNameProblem(v.s.Name); msg != "" {
		v.add("name", "%s", msg)
	}
}

func (v *validator) params() {
	seen := map[string]string{}
	for i, p := range v.s.Params {
		path := fmt.Sprintf("params[%d].name", i)
		switch first, dup := seen[p.Name]; {
		case !paramRe.MatchString(p.Name):
			v.add(path, "%q is not a parameter name: want [a-z_][a-z0-9_]*", p.Name)
		case dup:
			v.add(path, "parameter %q is already declared at %s", p.Name, first)
		default:
			seen[p.Name] = fmt.Sprintf("params[%d]", i)
		}
	}
}

// nicNames lists the declared NIC names for messages.
func (v *validator) nicNames() string {
	var names []string
	seen := map[string]bool{}
	for _, n := range v.s.NICs {
		if n.Name == "" || seen[n.Name] || IfNameProblem(n.Name) != "" {
			continue
		}
		if len(names) == 16 {
			names = append(names, "…")
			break
		}
		seen[n.Name] = true
		names = append(names, n.Name)
	}
	if len(names) == 0 {
		return "none are declared"
	}
	return "declared: " + strings.Join(names, ", ")
}

// declaredNIC checks that name (at path) is a declared NIC, and returns it.
func (v *validator) declaredNIC(path, field, name string) (*NIC, bool) {
	if name == "" {
		v.add(path, "%s is required: name a declared NIC (%s)", field, v.nicNames())
		return nil, false
	}
	nic, ok := v.nic(name)
	if !ok {
		v.add(path, "%s %q is not a declared NIC (%s)", field, name, v.nicNames())
	}
	return nic, ok
}

func (v *validator) nics() {
	names := map[string]string{}
	addrs := map[netip.Addr]string{}
	for i := range v.s.NICs {
		n := &v.s.NICs[i]
		p := fmt.Sprintf("nics[%d]", i)
		if msg := IfNameProblem(n.Name); msg != "" {
			v.add(p+".name", "%s", msg)
		} else if n.Name == "lo" {
			v.add(p+".name", "lo cannot be a lab NIC: a lab's NICs are the ends of its cable, and rocebed never changes the loopback device")
		} else if first, dup := names[string(n.Host)+"/"+n.Name]; dup { // a two-host lab's names are per host
			v.add(p+".name", "NIC %q is already declared at %s", n.Name, first)
		} else {
			names[string(n.Host)+"/"+n.Name] = p
		}

		switch n.Kind {
		case NICVeth:
			v.vethPeer(p, n)
		case NICExisting:
			if n.Peer != "" {
				v.add(p+".peer", "peer is only for kind veth: an existing NIC's cable is not rocebed's")
			}
			if n.MAC != "" {
				v.add(p+".mac", "mac is only for kind veth: rocebed does not change an existing NIC's MAC")
			}
		case "":
			v.add(p+".kind", "kind is required: %s", oneOf(nicKinds))
		default:
			v.add(p+".kind", "unknown kind %q: want %s", n.Kind, oneOf(nicKinds))
		}

		if n.MAC != "" {
			if msg := macProblem(n.MAC); msg != "" {
				v.add(p+".mac", "%s", msg)
			}
		}
		if n.Netns != "" {
			if msg := NetnsNameProblem(n.Netns); msg != "" {
				v.add(p+".netns", "%s", msg)
			}
		}

		var v6 string
		for j, a := range n.Addresses {
			ap := fmt.Sprintf("%s.addresses[%d]", p, j)
			pfx, err := netip.ParsePrefix(a)
			if err != nil {
				hint := ""
				if _, ipErr := netip.ParseAddr(a); ipErr == nil {
					hint = ": add the prefix length, e.g. " + a + "/24"
				}
				v.add(ap, "%q is not an address in CIDR form like 10.10.0.1/24 or fd00::1/64%s", a, hint)
				continue
			}
			ip := pfx.Addr()
			if ip.IsUnspecified() || ip.IsMulticast() {
				v.add(ap, "%s cannot be an interface address", ip)
				continue
			}
			if first, dup := addrs[ip]; dup {
				v.add(ap, "address %s is already used at %s: each address may be on one NIC only", ip, first)
				continue
			}
			addrs[ip] = ap
			if ip.Is6() && !ip.Is4In6() && v6 == "" {
				v6 = ip.String()
			}
		}

		switch {
		case n.MTU == 0:
		case n.MTU < minMTU || n.MTU > maxMTU:
			v.add(p+".mtu", "mtu %d out of range: want 0 (leave it) or %d..%d", n.MTU, minMTU, maxMTU)
		case v6 != "" && n.MTU < minIPv6MTU:
			v.add(p+".mtu", "mtu %d is below %d, the IPv6 minimum, and this NIC has IPv6 address %s", n.MTU, minIPv6MTU, v6)
		}
	}
}

// vethPeer checks that a veth end names a veth that names it back.
func (v *validator) vethPeer(p string, n *NIC) {
	switch {
	case n.Peer == "":
		v.add(p+".peer", "a veth needs peer: the NIC at the other end of its cable")
		return
	case n.Peer == n.Name:
		v.add(p+".peer", "a veth cannot be its own peer")
		return
	}
	peer, ok := v.nic(n.Peer)
	switch {
	case !ok:
		v.add(p+".peer", "peer %q is not a declared NIC (%s)", n.Peer, v.nicNames())
	case peer.Kind != NICVeth:
		v.add(p+".peer", "peer %q is kind %q: both ends of a cable are kind veth", n.Peer, peer.Kind)
	case peer.Peer != n.Name:
		v.add(p+".peer", "peer %q names %q as its peer, not %q: both ends must name each other", n.Peer, peer.Peer, n.Name)
	case n.MTU != 0 && peer.MTU != 0 && n.MTU != peer.MTU && n.Name > n.Peer:
		// Reported once per cable, at the end whose name sorts last.
		v.add(p+".mtu", "mtu %d differs from peer %q's mtu %d: a cable has one MTU, so set the same on both ends (or on one)", n.MTU, n.Peer, peer.MTU)
	}
}

// macProblem says what is wrong with a MAC address for a NIC or neighbour, or "".
func macProblem(s string) string {
	hw, err := net.ParseMAC(s)
	if err != nil || len(hw) != 6 {
		return fmt.Sprintf("%q is not a MAC address: want six octets like 02:00:00:00:00:01", s)
	}
	if hw[0]&1 == 1 {
		return fmt.Sprintf("%s is a multicast MAC: the first octet must be even (02:xx:xx:xx:xx:xx is a safe local one)", hw)
	}
	if string(hw) == "\x00\x00\x00\x00\x00\x00" {
		return "00:00:00:00:00:00 is not a usable MAC"
	}
	return ""
}

// nicAddr reports whether ip is one of nic's declared addresses.
func nicAddr(nic *NIC, ip netip.Addr) bool {
	for _, a := range nic.Addresses {
		if p, err := netip.ParsePrefix(a); err == nil && p.Addr() == ip {
			return true
		}
	}
	return false
}

func (v *validator) endpoints() {
	eps := []struct {
		side string
		ep   Endpoint
	}{{"a", v.s.Endpoints.A}, {"b", v.s.Endpoints.B}}
	var ips [2]netip.Addr
	for i, e := range eps {
		p := "endpoints." + e.side
		nic, ok := v.endpointNIC(e.side, p+".nic", e.ep.NIC)
		switch {
		case e.ep.RXE != "" && e.ep.Device != "":
			v.add(p+".rxe", "set exactly one of rxe (a soft-RoCE device rocebed adds) and device (an RDMA device the host has)")
		case e.ep.RXE == "" && e.ep.Device == "":
			v.add(p, "set exactly one of rxe (a soft-RoCE device rocebed adds) and device (an RDMA device the host has, or auto)")
		case e.ep.RXE != "":
			if msg := RDMANameProblem(e.ep.RXE); msg != "" {
				v.add(p+".rxe", "%s", msg)
			}
		default:
			if msg := RDMANameProblem(e.ep.Device); msg != "" {
				v.add(p+".device", "%q is not an RDMA device name: want auto, or 1 to 63 letters, digits, '_', '.' and '-'", e.ep.Device)
			}
		}
		if !ok {
			continue
		}
		addr := v.s.endpointAddress(e.side, e.ep)
		if addr == "" {
			if len(nic.Addresses) == 0 { // otherwise its addresses are all bad, reported above
				v.add(p+".nic", "nic %q has no address: the endpoint needs one for its RoCE v2 GID", e.ep.NIC)
			}
			continue
		}
		ip, err := netip.ParseAddr(addr)
		if err != nil {
			v.add(p+".address", "%q is not an IP address: want a bare address like 10.10.0.1", addr)
			continue
		}
		if !nicAddr(nic, ip) {
			v.add(p+".address", "address %s is not one of nic %q's addresses (%s)", ip, nic.Name, strings.Join(nic.Addresses, ", "))
			continue
		}
		ips[i] = ip
	}
	a, b := v.s.Endpoints.A, v.s.Endpoints.B
	two := v.s.TwoHost() // on two hosts, one NIC or device name may be on both
	if a.NIC != "" && a.NIC == b.NIC && !two {
		v.add("endpoints.b.nic", "a and b are both on nic %q: the lab needs two NICs", a.NIC)
	}
	if a.RXE != "" && a.RXE == b.RXE && !two {
		v.add("endpoints.b.rxe", "rxe %q is already endpoint a's: the two devices need distinct names", a.RXE)
	}
	if a.Device != "" && a.Device != "auto" && a.Device == b.Device && !two {
		v.add("endpoints.b.device", "device %q is already endpoint a's", a.Device)
	}
	if ips[0].IsValid() && ips[1].IsValid() && ips[0].Is4() != ips[1].Is4() {
		v.add("endpoints.b.address", "address %s and endpoint a's %s are of different families: RoCE v2 needs both IPv4 or both IPv6", ips[1], ips[0])
	}
}

// validTable reports whether t is a routing table a scenario may fill: not 0 and not the
// kernel's default (253), main (254) and local (255) tables.
func validTable(t int) bool { return (t >= 1 && t <= 252) || (t >= 256 && t <= maxTable) }

const tableRange = "want 1..252 or 256..4294967295 (253 default, 254 main and 255 local belong to the kernel)"

// claimPrio records a rule priority used at path, reporting a clash.
func (v *validator) claimPrio(path string, prio int) {
	if first, dup := v.prios[prio]; dup {
		v.add(path, "rule priority %d is already used by %s", prio, first)
		return
	}
	v.prios[prio] = path
}

func (v *validator) fixes() {
	names := map[string]string{}
	localMover := ""
	for i := range v.s.Fixes {
		f := &v.s.Fixes[i]
		p := fmt.Sprintf("fixes[%d]", i)
		switch first, dup := names[f.Name]; {
		case f.Name == "":
			v.add(p+".name", "name is required: fixes are named so `run --ablate NAME` can leave one out")
		case !fixNameRe.MatchString(f.Name):
			v.add(p+".name", "%q is not a fix name: want lowercase letters, digits and '-', starting with a letter or digit", f.Name)
		case dup:
			v.add(p+".name", "fix %q is already declared at %s", f.Name, first)
		default:
			names[f.Name] = p
		}
		if f.PolicyRouting == nil && len(f.Sysctls) == 0 && len(f.ARP) == 0 && len(f.Neighbors) == 0 &&
			f.MoveLocalRule == 0 && len(f.Rules) == 0 && len(f.Routes) == 0 {
			v.add(p, "fix %q changes nothing: give it policy_routing, sysctls, arp, neighbors, move_local_rule, rules or routes", f.Name)
		}

		if f.PolicyRouting != nil {
			pp := p + ".policy_routing"
			if localMover != "" {
				v.add(pp, "the local rule is already moved by %s: at most one fix may use policy_routing or move_local_rule", localMover)
			} else {
				localMover = pp
			}
			v.policyRouting(pp, f.PolicyRouting.WithDefaults())
		}
		for j, kv := range f.Sysctls {
			v.sysctl(fmt.Sprintf("%s.sysctls[%d]", p, j), kv)
		}
		for j, a := range f.ARP {
			v.arp(fmt.Sprintf("%s.arp[%d]", p, j), a)
		}
		v.neighbors(p, f.Neighbors)
		if f.MoveLocalRule != 0 {
			mp := p + ".move_local_rule"
			switch {
			case f.MoveLocalRule < 1 || f.MoveLocalRule > maxRulePrio:
				v.add(mp, "move_local_rule %d out of range: want 0 (leave it) or 1..%d", f.MoveLocalRule, maxRulePrio)
			case localMover != "":
				v.add(mp, "the local rule is already moved by %s: at most one fix may use policy_routing or move_local_rule", localMover)
			default:
				localMover = mp
				v.claimPrio(mp, f.MoveLocalRule)
			}
		}
		for j, r := range f.Rules {
			v.rule(fmt.Sprintf("%s.rules[%d]", p, j), r)
		}
		for j, r := range f.Routes {
			v.route(fmt.Sprintf("%s.routes[%d]", p, j), r)
		}
	}
}

func (v *validator) policyRouting(p string, pr PolicyRouting) {
	ok, n := true, v.s.PolicyRoutingRules()
	if pr.LocalRulePriority < 1 || pr.LocalRulePriority > maxRulePrio {
		v.add(p+".local_rule_priority", "local_rule_priority %d out of range: want 1..%d", pr.LocalRulePriority, maxRulePrio)
		ok = false
	}
	if pr.RulePriority < 1 || pr.RulePriority > maxRulePrio-(n-1) {
		v.add(p+".rule_priority", "rule_priority %d out of range: want 1..%d (the fix uses it and the next %d)", pr.RulePriority, maxRulePrio-(n-1), n-1)
		ok = false
	}
	if last := pr.RulePriority + n - 1; ok && last >= pr.LocalRulePriority {
		v.add(p+".rule_priority", "rules %d to %d must come before local_rule_priority %d: the per-endpoint rules must win over the local table",
			pr.RulePriority, last, pr.LocalRulePriority)
		ok = false
	}
	if ok {
		for i := range n {
			v.claimPrio(p+".rule_priority", pr.RulePriority+i)
		}
		v.claimPrio(p+".local_rule_priority", pr.LocalRulePriority)
	}
	if !validTable(pr.TableA) {
		v.add(p+".table_a", "table_a %d: %s", pr.TableA, tableRange)
	}
	if !validTable(pr.TableB) {
		v.add(p+".table_b", "table_b %d: %s", pr.TableB, tableRange)
	}
	if pr.TableA == pr.TableB {
		v.add(p+".table_b", "table_b %d equals table_a: each endpoint needs a table of its own", pr.TableB)
	}
}

// sysctl checks one "key=value" setting and claims its key.
func (v *validator) sysctl(p, kv string) {
	key, value, ok := strings.Cut(kv, "=")
	if !ok {
		v.add(p, "%q is not key=value: want e.g. net.ipv4.conf.all.rp_filter=2", kv)
		return
	}
	canon, msg := v.sysctlKey(key)
	if msg != "" {
		v.add(p, "%s", msg)
		return
	}
	switch {
	case value == "":
		v.add(p, "%s has an empty value", key)
		return
	case strings.ContainsAny(value, " \t\n\r\v\f"):
		v.add(p, "value %q of %s contains whitespace", value, key)
		return
	case !printableASCII(value):
		v.add(p, "value %q of %s: want printable ASCII", value, key)
		return
	}
	v.claimSysctl(p, canon)
}

// printableASCII reports whether s is all printable ASCII (0x21 to 0x7e).
func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

func (v *validator) claimSysctl(p, canon string) {
	if first, dup := v.sysctls[canon]; dup {
		v.add(p, "sysctl %s is already set by %s: set each key once", canon, first)
		return
	}
	v.sysctls[canon] = p
}

// sysctlKey checks a dotted sysctl name and returns its canonical form, or a message. It
// reads the key exactly as the writer does (sysctl.ParseKey): an interface name is
// everything between net.ipv4.conf (or .neigh, or ipv6) and the last dot, and may be spelt
// with '/' for its dots, as sysctl(8) does.
func (v *validator) sysctlKey(key string) (string, string) {
	parts := strings.Split(key, ".")
	if len(parts) < 3 || parts[0] != "net" || (parts[1] != "ipv4" && parts[1] != "ipv6" && parts[1] != "core") {
		return "", fmt.Sprintf("sysctl %q is outside net.ipv4, net.ipv6 and net.core: rocebed sets only network sysctls", key)
	}
	k, err := sysctl.ParseKey(key)
	if err != nil {
		return "", err.Error()
	}
	switch name := k.Iface; {
	case k.Section == "":
	case name == "all" || name == "default":
	case name == "lo" && strings.HasSuffix(k.Section, ".conf"):
	default:
		if _, ok := v.nic(name); !ok {
			also := "all, default"
			if strings.HasSuffix(k.Section, ".conf") {
				also += ", lo"
			}
			return "", fmt.Sprintf("sysctl %s names interface %q, which is not a declared NIC: rocebed touches only the lab's NICs (%s; or %s)",
				key, name, v.nicNames(), also)
		}
	}
	return k.String(), ""
}

func (v *validator) arp(p string, a ARPSetting) {
	_, ok := v.declaredNIC(p+".nic", "nic", a.NIC)
	if a.Ignore == nil && a.Announce == nil && a.Filter == nil {
		v.add(p, "set at least one of ignore, announce and filter")
	}
	knobs := []struct {
		field string
		val   *int
		max   int
	}{{"ignore", a.Ignore, 8}, {"announce", a.Announce, 2}, {"filter", a.Filter, 1}}
	for _, k := range knobs {
		if k.val == nil {
			continue
		}
		if *k.val < 0 || *k.val > k.max {
			v.add(p+"."+k.field, "%s %d out of range: arp_%s is 0..%d", k.field, *k.val, k.field, k.max)
			continue
		}
		if ok {
			v.claimSysctl(p+"."+k.field, sysctl.IfaceKey("net.ipv4.conf", a.NIC, "arp_"+k.field))
		}
	}
}

func (v *validator) neighbors(p string, ns []Neighbor) {
	seen := map[string]string{}
	for j, n := range ns {
		np := fmt.Sprintf("%s.neighbors[%d]", p, j)
		nic, ok := v.declaredNIC(np+".nic", "nic", n.NIC)
		ip, err := netip.ParseAddr(n.IP)
		if err != nil {
			v.add(np+".ip", "%q is not an IP address: want a bare address like 10.10.0.2", n.IP)
		} else if ok {
			k := n.NIC + " " + ip.String()
			if first, dup := seen[k]; dup {
				v.add(np+".ip", "neighbour %s on %q is already set by %s", ip, n.NIC, first)
			}
			seen[k] = np
		}
		switch {
		case n.MAC == PeerMAC:
			if ok && nic.Kind != NICVeth {
				v.add(np+".mac", "mac: peer needs a veth NIC (its cable's other end); %q is kind %q", n.NIC, nic.Kind)
			}
		case n.MAC == "":
			v.add(np+".mac", "mac is required: a MAC address, or peer for the other end of a veth cable")
		default:
			if msg := macProblem(n.MAC); msg != "" {
				v.add(np+".mac", "%s", msg)
			}
		}
	}
}

// ifaceOrLo checks a rule's iif/oif: a declared NIC or lo.
func (v *validator) ifaceOrLo(p, field, name string) {
	if name == "" || name == "lo" {
		return
	}
	if _, ok := v.nic(name); !ok {
		v.add(p, "%s %q is not a declared NIC or lo (%s)", field, name, v.nicNames())
	}
}

// ipOrPrefix parses "10.0.0.1" or "10.0.0.0/24".
func ipOrPrefix(s string) (netip.Prefix, bool) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p, true
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.PrefixFrom(a, a.BitLen()), true
	}
	return netip.Prefix{}, false
}

func (v *validator) rule(p string, r Rule) {
	if r.Priority < 1 || r.Priority > maxRulePrio {
		v.add(p+".priority", "priority %d out of range: want 1..%d (0 is the local rule's, 32766 main's, 32767 default's)", r.Priority, maxRulePrio)
	} else {
		v.claimPrio(p+".priority", r.Priority)
	}
	if !validTable(r.Table) {
		v.add(p+".table", "table %d: %s", r.Table, tableRange)
	}
	v.ifaceOrLo(p+".iif", "iif", r.IIF)
	v.ifaceOrLo(p+".oif", "oif", r.OIF)
	for _, x := range []struct{ field, val string }{{"from", r.From}, {"to", r.To}} {
		if x.val == "" {
			continue
		}
		if _, ok := ipOrPrefix(x.val); !ok {
			v.add(p+"."+x.field, "%q is not an IP address or CIDR prefix", x.val)
		}
	}
}

func (v *validator) route(p string, r Route) {
	if r.To == "" {
		v.add(p+".to", "to is required: a CIDR prefix or an IP address")
	} else if _, ok := ipOrPrefix(r.To); !ok {
		v.add(p+".to", "%q is not an IP address or CIDR prefix", r.To)
	}
	v.declaredNIC(p+".dev", "dev", r.Dev)
	if r.Src != "" {
		ip, err := netip.ParseAddr(r.Src)
		switch {
		case err != nil:
			v.add(p+".src", "%q is not an IP address: want a bare address like 10.10.0.1", r.Src)
		case !v.declaredAddr(ip):
			v.add(p+".src", "src %s is not an address of a declared NIC", ip)
		}
	}
	if r.Via != "" {
		if _, err := netip.ParseAddr(r.Via); err != nil {
			v.add(p+".via", "%q is not an IP address", r.Via)
		}
	}
	if r.Table != 0 && !validTable(r.Table) {
		v.add(p+".table", "table %d: want 0 (main) or 1..252 or 256..4294967295 (253 default, 254 main and 255 local belong to the kernel)", r.Table)
	}
}

func (v *validator) declaredAddr(ip netip.Addr) bool {
	for i := range v.s.NICs {
		if nicAddr(&v.s.NICs[i], ip) {
			return true
		}
	}
	return false
}

func (v *validator) traffic() {
	names := map[string]string{}
	for i := range v.s.Traffic {
		t := &v.s.Traffic[i]
		p := fmt.Sprintf("traffic[%d]", i)
		switch first, dup := names[t.Name]; {
		case t.Name == "":
			v.add(p+".name", "name is required")
		case dup:
			v.add(p+".name", "traffic %q is already declared at %s", t.Name, first)
		default:
			names[t.Name] = p
		}
		switch {
		case slices.Contains(transports, t.Transport):
		case t.Transport == "":
			v.add(p+".transport", "transport is required: %s", oneOf(transports))
		default:
			v.add(p+".transport", "unknown transport %q: want %s", t.Transport, oneOf(transports))
		}
		switch {
		case slices.Contains(directions, t.Direction):
		case t.Direction == "":
			v.add(p+".direction", "direction is required: %s", oneOf(directions))
		default:
			v.add(p+".direction", "unknown direction %q: want %s", t.Direction, oneOf(directions))
		}
		v.trafficFamily(p+".family", t.Family)
		if t.Messages < 1 || t.Messages > maxMessages {
			v.add(p+".messages", "messages %d out of range: want 1..%d", t.Messages, maxMessages)
		}
		switch {
		case t.Size < 1 || t.Size > maxSize:
			v.add(p+".size", "size %d out of range: want 1..%d bytes", t.Size, maxSize)
		case t.Transport == TransportUD && t.Size > maxUDSize:
			v.add(p+".size", "size %d is too big for UD: a UD message is one packet and must fit the path MTU (at most %d bytes)", t.Size, maxUDSize)
		}
		if t.RC != nil {
			if t.Transport == TransportUD {
				v.add(p+".rc", "rc timers are only for transport rc")
			} else {
				v.rcParams(p+".rc", t.RC)
			}
		}
		if t.Window < 0 || t.Window > MaxWindow {
			v.add(p+".window", "window %d out of range: want 0 (up to %d in flight) or 1..%d", t.Window, MaxWindow, MaxWindow)
		}
		v.pattern(p, t)
		if t.DeadlineMS < 0 || t.DeadlineMS > maxDeadlineMS {
			v.add(p+".deadline_ms", "deadline_ms %d out of range: want 0 (default %d) or up to %d", t.DeadlineMS, DefaultDeadlineMS, maxDeadlineMS)
		}
	}
}

// pattern checks a traffic item's pattern. A ping-pong is RC (a lost UD message would stop
// it for good), one message at a time, and both ends in this process: its half round trips
// read one clock.
func (v *validator) pattern(p string, t *Traffic) {
	switch {
	case t.Pattern == "" || t.Pattern == PatternStream:
		return
	case !slices.Contains(patterns, t.Pattern):
		v.add(p+".pattern", "unknown pattern %q: want %s", t.Pattern, oneOf(patterns))
		return
	}
	if t.Transport == TransportUD {
		v.add(p+".pattern", "pattern pingpong needs transport rc: a UD message that is lost would stop the ping-pong")
	}
	if t.Window > 1 {
		v.add(p+".window", "window %d with pattern pingpong: a ping-pong has one message in flight; leave window out or set 1", t.Window)
	}
	if v.s.TwoHost() {
		v.add(p+".pattern", "pattern pingpong runs both ends in one process: a two-host lab cannot run it")
	}
}

// trafficFamily checks a traffic item's family: a known one, in which both endpoints have an
// address (when their NICs declare any: an existing NIC's addresses are the host's).
func (v *validator) trafficFamily(p string, f Family) {
	if f == "" {
		return
	}
	if !slices.Contains(families, f) {
		v.add(p, "unknown family %q: want %s", f, oneOf(families))
		return
	}
	for _, side := range []struct {
		name string
		ep   Endpoint
	}{{"a", v.s.Endpoints.A}, {"b", v.s.Endpoints.B}} {
		nic, ok := v.s.NIC(side.ep.NIC)
		if !ok || len(nic.Addresses) == 0 {
			continue
		}
		if _, ok := v.s.EndpointAddrIn(side.ep, f); !ok {
			v.add(p, "family %s: endpoint %s's nic %q has no %s address (%s): add one to its addresses, or leave family out", f, side.name, nic.Name, f, strings.Join(nic.Addresses, ", "))
		}
	}
}

func (v *validator) rcParams(p string, rc *RCParams) {
	knobs := []struct {
		field string
		val   *int
		max   int
	}{{"timeout", rc.Timeout, maxRCTimeout}, {"retry_cnt", rc.RetryCount, maxRCRetry}, {"rnr_retry", rc.RNRRetry, maxRCRetry}}
	for _, k := range knobs {
		if k.val != nil && (*k.val < 0 || *k.val > k.max) {
			v.add(p+"."+k.field, "%s %d out of range: want 0..%d", k.field, *k.val, k.max)
		}
	}
}

// oneOf lists enum values for messages: "a->b, b->a or both".
func oneOf[T ~string](vs []T) string {
	s := strs(vs)
	if len(s) < 2 {
		return strings.Join(s, "")
	}
	return strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1]
}

// failureList names the known failures for messages.
func failureList() string {
	names := make([]string, len(KnownFailures))
	for i, f := range KnownFailures {
		names[i] = string(f)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

func (v *validator) expect() {
	e := v.s.Expect
	switch e.Result {
	case ResultPass:
		if e.Failure != "" {
			v.add("expect.failure", "failure is only for result fail")
		}
		return
	case ResultFail:
	case "":
		v.add("expect.result", "result is required: %s", oneOf(results))
		return
	default:
		v.add("expect.result", "unknown result %q: want %s", e.Result, oneOf(results))
		return
	}
	if e.Failure == "" {
		v.add("expect", "result fail needs failure: the failure that must happen, one of %s", failureList())
		return
	}
	if slices.Contains(KnownFailures, e.Failure) {
		return
	}
	v.add("expect.failure", "unknown failure %q: want one of %s", e.Failure, failureList())
}
