package scenario

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// baseScenario is valid; each validation case breaks one thing in it.
const baseScenario = `version: 1
name: lab
params:
  - {name: p, default: x}
nics:
  - name: vA
    kind: veth
    peer: vB
    addresses: [10.10.0.1/24]
  - name: vB
    kind: veth
    peer: vA
    addresses: [10.10.0.2/24]
  - name: eth9
    kind: existing
    addresses: [10.20.0.1/24, "fd00::9/64"]
endpoints:
  a: {nic: vA, rxe: rxe0}
  b: {nic: vB, rxe: rxe1}
fixes:
  - name: pr
    policy_routing: {}
  - name: knobs
    sysctls: [net.ipv4.conf.all.rp_filter=2]
    arp: [{nic: vA, ignore: 1}]
    neighbors: [{nic: vA, ip: 10.10.0.2, mac: peer}]
  - name: written
    rules: [{priority: 50, iif: lo, from: 10.10.0.1, table: 200}]
    routes: [{to: 10.10.0.2, dev: vA, src: 10.10.0.1, table: 200}]
traffic:
  - {name: rc, transport: rc, direction: a->b, messages: 1, size: 1}
  - {name: ud, transport: ud, direction: both, messages: 1, size: 4096}
expect:
  result: pass
`

func loadBase(t *testing.T) *Scenario {
	t.Helper()
	s, err := Parse("base.yaml", []byte(baseScenario), nil)
	require.NoError(t, err)
	return s
}

func intp(v int) *int { return &v }

// TestValidate breaks one rule per case and checks the exact messages and paths; the errors
// must be exactly those listed, so a rule that fires twice or drags others along fails too.
func TestValidate(t *testing.T) {
	type tc struct {
		name   string
		mutate func(s *Scenario)
		want   []string // "path: message"
	}
	nic := func(i int, f func(n *NIC)) func(*Scenario) { return func(s *Scenario) { f(&s.NICs[i]) } }
	fix := func(i int, f func(f *Fix)) func(*Scenario) { return func(s *Scenario) { f(&s.Fixes[i]) } }
	trf := func(i int, f func(t *Traffic)) func(*Scenario) { return func(s *Scenario) { f(&s.Traffic[i]) } }
	cases := []tc{
		// The document.
		{"version", func(s *Scenario) { s.Version = 2 }, []string{"version: unsupported version 2: this rocebed reads version 1"}},
		{"name upper", func(s *Scenario) { s.Name = "Lab" }, []string{`name: "Lab" is not a lab name: want 1 to 32 lowercase letters, digits and '-', starting with a letter or digit`}},
		{"name long", func(s *Scenario) { s.Name = "a23456789012345678901234567890123" }, []string{`name: "a23456789012345678901234567890123" is not a lab name: want 1 to 32 lowercase letters, digits and '-', starting with a letter or digit`}},
		{"name dash", func(s *Scenario) { s.Name = "-lab" }, []string{`name: "-lab" is not a lab name: want 1 to 32 lowercase letters, digits and '-', starting with a letter or digit`}},
		{"name 32 ok", func(s *Scenario) { s.Name = "a2345678901234567890123456789012" }, nil},
		{"param name", func(s *Scenario) { s.Params[0].Name = "P-1" }, []string{`params[0].name: "P-1" is not a parameter name: want [a-z_][a-z0-9_]*`}},
		{"param dup", func(s *Scenario) { s.Params = append(s.Params, Param{Name: "p"}) }, []string{`params[1].name: parameter "p" is already declared at params[0]`}},

		// NICs.
		{"nic name empty", nic(2, func(n *NIC) { n.Name = "" }), []string{"nics[2].name: name is required"}},
		{"nic name 16", nic(2, func(n *NIC) { n.Name = "a234567890123456" }), []string{`nics[2].name: "a234567890123456" is 16 bytes: interface names are at most 15`}},
		{"nic name 15 ok", nic(2, func(n *NIC) { n.Name = "a23456789012345" }), nil},
		{"nic name slash", nic(2, func(n *NIC) { n.Name = "a/b" }), []string{`nics[2].name: "a/b" contains '/': interface names are printable ASCII without '/', ':', '%' or whitespace (the kernel refuses or rewrites them)`}},
		{"nic name colon", nic(2, func(n *NIC) { n.Name = "eth0:1" }), []string{`nics[2].name: "eth0:1" contains ':': interface names are printable ASCII without '/', ':', '%' or whitespace (the kernel refuses or rewrites them)`}},
		{"nic name space", nic(2, func(n *NIC) { n.Name = "a b" }), []string{`nics[2].name: "a b" contains ' ': interface names are printable ASCII without '/', ':', '%' or whitespace (the kernel refuses or rewrites them)`}},
		{"nic name tab", nic(2, func(n *NIC) { n.Name = "a\tb" }), []string{`nics[2].name: "a\tb" contains '\t': interface names are printable ASCII without '/', ':', '%' or whitespace (the kernel refuses or rewrites them)`}},
		{"nic name dot", nic(2, func(n *NIC) { n.Name = "." }), []string{`nics[2].name: "." is not a usable interface name`}},
		{"nic name dotdot", nic(2, func(n *NIC) { n.Name = ".." }), []string{`nics[2].name: ".." is not a usable interface name`}},
		{"nic name dup", nic(2, func(n *NIC) { n.Name = "vA" }), []string{`nics[2].name: NIC "vA" is already declared at nics[0]`}},
		{"kind empty", nic(2, func(n *NIC) { n.Kind = "" }), []string{"nics[2].kind: kind is required: veth or existing"}},
		{"kind unknown", nic(2, func(n *NIC) { n.Kind = "macvlan" }), []string{`nics[2].kind: unknown kind "macvlan": want veth or existing`}},
		{"veth no peer", nic(1, func(n *NIC) { n.Peer = "" }), []string{
			`nics[0].peer: peer "vB" names "" as its peer, not "vA": both ends must name each other`,
			"nics[1].peer: a veth needs peer: the NIC at the other end of its cable"}},
		{"veth self peer", nic(1, func(n *NIC) { n.Peer = "vB" }), []string{
			`nics[0].peer: peer "vB" names "vB" as its peer, not "vA": both ends must name each other`,
			"nics[1].peer: a veth cannot be its own peer"}},
		{"veth peer undeclared", nic(1, func(n *NIC) { n.Peer = "vC" }), []string{
			`nics[0].peer: peer "vB" names "vC" as its peer, not "vA": both ends must name each other`,
			`nics[1].peer: peer "vC" is not a declared NIC (declared: vA, vB, eth9)`}},
		{"veth peer existing", nic(0, func(n *NIC) { n.Peer = "eth9" }), []string{
			`nics[0].peer: peer "eth9" is kind "existing": both ends of a cable are kind veth`,
			`nics[1].peer: peer "vA" names "eth9" as its peer, not "vB": both ends must name each other`}},
		{"existing peer", nic(2, func(n *NIC) { n.Peer = "vA" }), []string{"nics[2].peer: peer is only for kind veth: an existing NIC's cable is not rocebed's"}},
		{"existing mac", nic(2, func(n *NIC) { n.MAC = "02:00:00:00:00:01" }), []string{"nics[2].mac: mac is only for kind veth: rocebed does not change an existing NIC's MAC"}},
		{"mtu low", nic(0, func(n *NIC) { n.MTU = 67 }), []string{"nics[0].mtu: mtu 67 out of range: want 0 (leave it) or 68..65535"}},
		{"mtu high", nic(0, func(n *NIC) { n.MTU = 65536 }), []string{"nics[0].mtu: mtu 65536 out of range: want 0 (leave it) or 68..65535"}},
		{"mtu negative", nic(0, func(n *NIC) { n.MTU = -1 }), []string{"nics[0].mtu: mtu -1 out of range: want 0 (leave it) or 68..65535"}},
		{"mtu 68 ok", nic(0, func(n *NIC) { n.MTU = 68 }), nil},
		{"mtu ipv6", nic(2, func(n *NIC) { n.MTU = 1279 }), []string{"nics[2].mtu: mtu 1279 is below 1280, the IPv6 minimum, and this NIC has IPv6 address fd00::9"}},
		{"mtu ipv6 ok", nic(2, func(n *NIC) { n.MTU = 1280 }), nil},
		{"mac bad", nic(0, func(n *NIC) { n.MAC = "02:00:00:00:00" }), []string{`nics[0].mac: "02:00:00:00:00" is not a MAC address: want six octets like 02:00:00:00:00:01`}},
		{"mac eui64", nic(0, func(n *NIC) { n.MAC = "02:00:00:00:00:00:00:01" }), []string{`nics[0].mac: "02:00:00:00:00:00:00:01" is not a MAC address: want six octets like 02:00:00:00:00:01`}},
		{"mac multicast", nic(0, func(n *NIC) { n.MAC = "01:00:5e:00:00:01" }), []string{"nics[0].mac: 01:00:5e:00:00:01 is a multicast MAC: the first octet must be even (02:xx:xx:xx:xx:xx is a safe local one)"}},
		{"mac broadcast", nic(0, func(n *NIC) { n.MAC = "ff:ff:ff:ff:ff:ff" }), []string{"nics[0].mac: ff:ff:ff:ff:ff:ff is a multicast MAC: the first octet must be even (02:xx:xx:xx:xx:xx is a safe local one)"}},
		{"mac zero", nic(0, func(n *NIC) { n.MAC = "00:00:00:00:00:00" }), []string{"nics[0].mac: 00:00:00:00:00:00 is not a usable MAC"}},
		{"address bad", nic(2, func(n *NIC) { n.Addresses[0] = "10.20.0.1/33" }), []string{`nics[2].addresses[0]: "10.20.0.1/33" is not an address in CIDR form like 10.10.0.1/24 or fd00::1/64`}},
		{"address bare", nic(2, func(n *NIC) { n.Addresses[0] = "10.20.0.1" }), []string{`nics[2].addresses[0]: "10.20.0.1" is not an address in CIDR form like 10.10.0.1/24 or fd00::1/64: add the prefix length, e.g. 10.20.0.1/24`}},
		{"address unspecified", nic(2, func(n *NIC) { n.Addresses[0] = "0.0.0.0/8" }), []string{"nics[2].addresses[0]: 0.0.0.0 cannot be an interface address"}},
		{"address multicast", nic(2, func(n *NIC) { n.Addresses[1] = "ff02::1/64" }), []string{"nics[2].addresses[1]: ff02::1 cannot be an interface address"}},
		{"address collision", nic(2, func(n *NIC) { n.Addresses[1] = "10.10.0.2/32" }), []string{"nics[2].addresses[1]: address 10.10.0.2 is already used at nics[1].addresses[0]: each address may be on one NIC only"}},
		{"address collision same nic", nic(2, func(n *NIC) { n.Addresses[1] = "10.20.0.1/16" }), []string{"nics[2].addresses[1]: address 10.20.0.1 is already used at nics[2].addresses[0]: each address may be on one NIC only"}},
		{"netns bad", nic(2, func(n *NIC) { n.Netns = "../etc" }), []string{`nics[2].netns: "../etc" is not a namespace name: want 1 to 64 letters, digits, '_', '.' and '-'`}},
		{"netns dotdot", nic(2, func(n *NIC) { n.Netns = ".." }), []string{`nics[2].netns: ".." is not a namespace name: want 1 to 64 letters, digits, '_', '.' and '-'`}},
		{"netns ok", nic(2, func(n *NIC) { n.Netns = "lab-ns_1.x" }), nil},

		// Endpoints.
		{"endpoint nic missing", func(s *Scenario) { s.Endpoints.A.NIC = "" }, []string{"endpoints.a.nic: nic is required: name a declared NIC (declared: vA, vB, eth9)"}},
		{"endpoint nic undeclared", func(s *Scenario) { s.Endpoints.B.NIC = "eth0" }, []string{`endpoints.b.nic: nic "eth0" is not a declared NIC (declared: vA, vB, eth9)`}},
		{"endpoint both", func(s *Scenario) { s.Endpoints.A.Device = "mlx5_0" }, []string{"endpoints.a.rxe: set exactly one of rxe (a soft-RoCE device rocebed adds) and device (an RDMA device the host has)"}},
		{"endpoint neither", func(s *Scenario) { s.Endpoints.A.RXE = "" }, []string{"endpoints.a: set exactly one of rxe (a soft-RoCE device rocebed adds) and device (an RDMA device the host has, or auto)"}},
		{"rxe name", func(s *Scenario) { s.Endpoints.A.RXE = "rxe/0" }, []string{`endpoints.a.rxe: "rxe/0" is not an RDMA device name: want 1 to 63 letters, digits, '_', '.' and '-'`}},
		{"rxe name long", func(s *Scenario) { s.Endpoints.A.RXE = fmt.Sprintf("%064d", 0) }, []string{fmt.Sprintf(`endpoints.a.rxe: "%064d" is not an RDMA device name: want 1 to 63 letters, digits, '_', '.' and '-'`, 0)}},
		{"rxe name dotdot", func(s *Scenario) { s.Endpoints.A.RXE = ".." }, []string{`endpoints.a.rxe: ".." is not an RDMA device name: want 1 to 63 letters, digits, '_', '.' and '-'`}},
		{"device name", func(s *Scenario) { s.Endpoints.A.RXE, s.Endpoints.A.Device = "", "a b" }, []string{`endpoints.a.device: "a b" is not an RDMA device name: want auto, or 1 to 63 letters, digits, '_', '.' and '-'`}},
		{"device auto ok", func(s *Scenario) { s.Endpoints.A.RXE, s.Endpoints.A.Device = "", "auto" }, nil},
		{"rxe same", func(s *Scenario) { s.Endpoints.B.RXE = "rxe0" }, []string{`endpoints.b.rxe: rxe "rxe0" is already endpoint a's: the two devices need distinct names`}},
		{"device same", func(s *Scenario) {
			s.Endpoints.A.RXE, s.Endpoints.A.Device = "", "mlx5_0"
			s.Endpoints.B.RXE, s.Endpoints.B.Device = "", "mlx5_0"
		}, []string{`endpoints.b.device: device "mlx5_0" is already endpoint a's`}},
		{"same nic", func(s *Scenario) { s.Endpoints.B.NIC, s.Endpoints.B.Address = "vA", "" }, []string{`endpoints.b.nic: a and b are both on nic "vA": the lab needs two NICs`}},
		{"address not on nic", func(s *Scenario) { s.Endpoints.A.Address = "10.10.0.2" }, []string{`endpoints.a.address: address 10.10.0.2 is not one of nic "vA"'s addresses (10.10.0.1/24)`}},
		{"address with prefix", func(s *Scenario) { s.Endpoints.A.Address = "10.10.0.1/24" }, []string{`endpoints.a.address: "10.10.0.1/24" is not an IP address: want a bare address like 10.10.0.1`}},
		{"address families", func(s *Scenario) { s.Endpoints.B.NIC, s.Endpoints.B.Address = "eth9", "fd00::9" }, []string{"endpoints.b.address: address fd00::9 and endpoint a's 10.10.0.1 are of different families: RoCE v2 needs both IPv4 or both IPv6"}},
		{"address default ipv4 first", func(s *Scenario) {
			s.NICs[2].Addresses = []string{"fd00::9/64", "10.20.0.1/24"}
			s.Endpoints.B.NIC, s.Endpoints.B.Address = "eth9", ""
		}, nil},
		{"nic without address", func(s *Scenario) { s.NICs[1].Addresses = nil; s.Endpoints.B.Address = "" }, []string{
			`endpoints.b.nic: nic "vB" has no address: the endpoint needs one for its RoCE v2 GID`}},

		// Fixes.
		{"fix name empty", fix(0, func(f *Fix) { f.Name = "" }), []string{"fixes[0].name: name is required: fixes are named so `run --ablate NAME` can leave one out"}},
		{"fix name bad", fix(0, func(f *Fix) { f.Name = "Policy" }), []string{`fixes[0].name: "Policy" is not a fix name: want lowercase letters, digits and '-', starting with a letter or digit`}},
		{"fix name dup", fix(1, func(f *Fix) { f.Name = "pr" }), []string{`fixes[1].name: fix "pr" is already declared at fixes[0]`}},
		{"fix empty", fix(0, func(f *Fix) { f.PolicyRouting = nil }), []string{`fixes[0]: fix "pr" changes nothing: give it policy_routing, sysctls, arp, neighbors, move_local_rule, rules or routes`}},
		{"policy routing twice", fix(1, func(f *Fix) {
			f.PolicyRouting = &PolicyRouting{RulePriority: 20, TableA: 300, TableB: 301, LocalRulePriority: 200}
		}), []string{
			"fixes[1].policy_routing: the local rule is already moved by fixes[0].policy_routing: at most one fix may use policy_routing or move_local_rule"}},
		{"move local rule and policy routing", fix(2, func(f *Fix) { f.MoveLocalRule = 1000 }), []string{
			"fixes[2].move_local_rule: the local rule is already moved by fixes[0].policy_routing: at most one fix may use policy_routing or move_local_rule"}},
		{"move local rule range", func(s *Scenario) { s.Fixes[0].PolicyRouting = nil; s.Fixes[0].MoveLocalRule = 32766 }, []string{
			"fixes[0].move_local_rule: move_local_rule 32766 out of range: want 0 (leave it) or 1..32765"}},
		{"move local rule clash", func(s *Scenario) { s.Fixes[0].PolicyRouting = nil; s.Fixes[0].MoveLocalRule = 50 }, []string{
			"fixes[2].rules[0].priority: rule priority 50 is already used by fixes[0].move_local_rule"}},
		{"pr local range", fix(0, func(f *Fix) { f.PolicyRouting.LocalRulePriority = 32766 }), []string{"fixes[0].policy_routing.local_rule_priority: local_rule_priority 32766 out of range: want 1..32765"}},
		{"pr rule range", fix(0, func(f *Fix) { f.PolicyRouting.RulePriority = -5 }), []string{"fixes[0].policy_routing.rule_priority: rule_priority -5 out of range: want 1..32762 (the fix uses it and the next 3)"}},
		{"pr order", fix(0, func(f *Fix) { f.PolicyRouting.RulePriority = 99 }), []string{"fixes[0].policy_routing.rule_priority: rules 99 to 102 must come before local_rule_priority 100: the per-endpoint rules must win over the local table"}},
		{"pr rule clash", fix(0, func(f *Fix) { f.PolicyRouting.RulePriority = 49 }), []string{"fixes[2].rules[0].priority: rule priority 50 is already used by fixes[0].policy_routing.rule_priority"}},
		{"pr table", fix(0, func(f *Fix) { f.PolicyRouting.TableA = 254 }), []string{"fixes[0].policy_routing.table_a: table_a 254: want 1..252 or 256..4294967295 (253 default, 254 main and 255 local belong to the kernel)"}},
		{"pr tables equal", fix(0, func(f *Fix) { f.PolicyRouting.TableB = 100 }), []string{"fixes[0].policy_routing.table_b: table_b 100 equals table_a: each endpoint needs a table of its own"}},
		{"sysctl no value", fix(1, func(f *Fix) { f.Sysctls[0] = "net.ipv4.ip_forward" }), []string{`fixes[1].sysctls[0]: "net.ipv4.ip_forward" is not key=value: want e.g. net.ipv4.conf.all.rp_filter=2`}},
		{"sysctl outside net", fix(1, func(f *Fix) { f.Sysctls[0] = "kernel.panic=1" }), []string{`fixes[1].sysctls[0]: sysctl "kernel.panic" is outside net.ipv4, net.ipv6 and net.core: rocebed sets only network sysctls`}},
		{"sysctl other net", fix(1, func(f *Fix) { f.Sysctls[0] = "net.netfilter.nf_conntrack_max=1" }), []string{`fixes[1].sysctls[0]: sysctl "net.netfilter.nf_conntrack_max" is outside net.ipv4, net.ipv6 and net.core: rocebed sets only network sysctls`}},
		{"sysctl slash form", fix(1, func(f *Fix) { f.Sysctls[0] = "net/ipv4/ip_forward=1" }), []string{`fixes[1].sysctls[0]: sysctl "net/ipv4/ip_forward" is outside net.ipv4, net.ipv6 and net.core: rocebed sets only network sysctls`}},
		{"sysctl bad part", fix(1, func(f *Fix) { f.Sysctls[0] = "net.ipv4..ip_forward=1" }), []string{`fixes[1].sysctls[0]: sysctl "net.ipv4..ip_forward" has a bad component "": want letters, digits, '_' and '-' between dots`}},
		{"sysctl traversal", fix(1, func(f *Fix) { f.Sysctls[0] = "net.ipv4.conf.all.x/../y=1" }), []string{`fixes[1].sysctls[0]: sysctl "net.ipv4.conf.all.x/../y" has a bad component "/y": want letters, digits, '_' and '-' between dots`}},
		{"sysctl incomplete", fix(1, func(f *Fix) { f.Sysctls[0] = "net.ipv4.conf.vA=1" }), []string{`fixes[1].sysctls[0]: sysctl "net.ipv4.conf.vA" is incomplete: want net.ipv4.conf.INTERFACE.NAME`}},
		{"sysctl undeclared iface", fix(1, func(f *Fix) { f.Sysctls[0] = "net.ipv6.conf.eth0.disable_ipv6=1" }), []string{
			`fixes[1].sysctls[0]: sysctl net.ipv6.conf.eth0.disable_ipv6 names interface "eth0", which is not a declared NIC: rocebed touches only the lab's NICs (declared: vA, vB, eth9; or all, default, lo)`}},
		{"sysctl neigh undeclared", fix(1, func(f *Fix) { f.Sysctls[0] = "net.ipv4.neigh.lo.gc_stale_time=1" }), []string{
			`fixes[1].sysctls[0]: sysctl net.ipv4.neigh.lo.gc_stale_time names interface "lo", which is not a declared NIC: rocebed touches only the lab's NICs (declared: vA, vB, eth9; or all, default)`}},
		{"sysctl ok forms", fix(1, func(f *Fix) {
			f.Sysctls = []string{"net.ipv4.conf.lo.accept_local=1", "net.ipv4.neigh.default.gc_thresh3=1", "net.ipv6.neigh.vB.retrans_time_ms=1", "net.core.somaxconn=1", "net.ipv4.tcp_rmem=4096"}
		}), nil},
		{"sysctl dotted iface", func(s *Scenario) {
			s.NICs[2].Name = "eth9.100"
			s.Fixes[1].Sysctls = []string{"net.ipv4.conf.eth9/100.rp_filter=0", "net.ipv4.conf.eth9.100.rp_filter=0"}
		}, []string{`fixes[1].sysctls[1]: sysctl net.ipv4.conf.eth9.100.rp_filter is already set by fixes[1].sysctls[0]: set each key once`}},
		{"sysctl dotted iface either spelling", func(s *Scenario) {
			s.NICs[2].Name = "eth9.100"
			s.Fixes[1].Sysctls = []string{"net.ipv4.conf.eth9/100.rp_filter=0", "net.ipv6.conf.eth9.100.disable_ipv6=0"}
		}, nil},
		{"sysctl iface with a dot is the whole name", fix(1, func(f *Fix) { f.Sysctls[0] = "net.ipv4.conf.vA.100.rp_filter=2" }), []string{
			`fixes[1].sysctls[0]: sysctl net.ipv4.conf.vA.100.rp_filter names interface "vA.100", which is not a declared NIC: rocebed touches only the lab's NICs (declared: vA, vB, eth9; or all, default, lo)`}},
		{"sysctl iface dotdot", fix(1, func(f *Fix) { f.Sysctls[0] = "net.ipv4.conf.//.rp_filter=2" }), []string{
			`fixes[1].sysctls[0]: sysctl "net.ipv4.conf.//.rp_filter" names interface "..", which no interface can be called`}},
		{"sysctl empty value", fix(1, func(f *Fix) { f.Sysctls[0] = "net.ipv4.ip_forward=" }), []string{"fixes[1].sysctls[0]: net.ipv4.ip_forward has an empty value"}},
		{"sysctl whitespace", fix(1, func(f *Fix) { f.Sysctls[0] = "net.ipv4.ip_forward=1\n" }), []string{`fixes[1].sysctls[0]: value "1\n" of net.ipv4.ip_forward contains whitespace`}},
		{"sysctl twice", func(s *Scenario) { s.Fixes[2].Sysctls = []string{"net.ipv4.conf.all.rp_filter=0"} }, []string{
			"fixes[2].sysctls[0]: sysctl net.ipv4.conf.all.rp_filter is already set by fixes[1].sysctls[0]: set each key once"}},
		{"sysctl twice via arp", func(s *Scenario) { s.Fixes[2].Sysctls = []string{"net.ipv4.conf.vA.arp_ignore=2"} }, []string{
			"fixes[2].sysctls[0]: sysctl net.ipv4.conf.vA.arp_ignore is already set by fixes[1].arp[0].ignore: set each key once"}},
		{"arp nic", fix(1, func(f *Fix) { f.ARP[0].NIC = "eth0" }), []string{`fixes[1].arp[0].nic: nic "eth0" is not a declared NIC (declared: vA, vB, eth9)`}},
		{"arp nothing", fix(1, func(f *Fix) { f.ARP[0].Ignore = nil }), []string{"fixes[1].arp[0]: set at least one of ignore, announce and filter"}},
		{"arp ignore", fix(1, func(f *Fix) { f.ARP[0].Ignore = intp(9) }), []string{"fixes[1].arp[0].ignore: ignore 9 out of range: arp_ignore is 0..8"}},
		{"arp announce", fix(1, func(f *Fix) { f.ARP[0].Announce = intp(3) }), []string{"fixes[1].arp[0].announce: announce 3 out of range: arp_announce is 0..2"}},
		{"arp filter", fix(1, func(f *Fix) { f.ARP[0].Filter = intp(-1) }), []string{"fixes[1].arp[0].filter: filter -1 out of range: arp_filter is 0..1"}},
		{"neighbor nic", fix(1, func(f *Fix) { f.Neighbors[0].NIC = "" }), []string{"fixes[1].neighbors[0].nic: nic is required: name a declared NIC (declared: vA, vB, eth9)"}},
		{"neighbor ip", fix(1, func(f *Fix) { f.Neighbors[0].IP = "10.10.0.2/24" }), []string{`fixes[1].neighbors[0].ip: "10.10.0.2/24" is not an IP address: want a bare address like 10.10.0.2`}},
		{"neighbor mac", fix(1, func(f *Fix) { f.Neighbors[0].MAC = "zz" }), []string{`fixes[1].neighbors[0].mac: "zz" is not a MAC address: want six octets like 02:00:00:00:00:01`}},
		{"neighbor mac empty", fix(1, func(f *Fix) { f.Neighbors[0].MAC = "" }), []string{"fixes[1].neighbors[0].mac: mac is required: a MAC address, or peer for the other end of a veth cable"}},
		{"neighbor peer existing", fix(1, func(f *Fix) { f.Neighbors[0].NIC = "eth9" }), []string{`fixes[1].neighbors[0].mac: mac: peer needs a veth NIC (its cable's other end); "eth9" is kind "existing"`}},
		{"neighbor mac ok", fix(1, func(f *Fix) { f.Neighbors[0].NIC, f.Neighbors[0].MAC = "eth9", "02:aa:bb:cc:dd:ee" }), nil},
		{"neighbor dup", fix(1, func(f *Fix) {
			f.Neighbors = append(f.Neighbors, Neighbor{NIC: "vA", IP: "10.10.0.2", MAC: "02:00:00:00:00:02"})
		}), []string{
			"fixes[1].neighbors[1].ip: neighbour 10.10.0.2 on \"vA\" is already set by fixes[1].neighbors[0]"}},
		{"rule priority 0", fix(2, func(f *Fix) { f.Rules[0].Priority = 0 }), []string{"fixes[2].rules[0].priority: priority 0 out of range: want 1..32765 (0 is the local rule's, 32766 main's, 32767 default's)"}},
		{"rule priority main", fix(2, func(f *Fix) { f.Rules[0].Priority = 32766 }), []string{"fixes[2].rules[0].priority: priority 32766 out of range: want 1..32765 (0 is the local rule's, 32766 main's, 32767 default's)"}},
		{"rule priority dup", fix(2, func(f *Fix) { f.Rules = append(f.Rules, Rule{Priority: 50, Table: 201}) }), []string{"fixes[2].rules[1].priority: rule priority 50 is already used by fixes[2].rules[0].priority"}},
		{"rule priority vs policy routing", fix(2, func(f *Fix) { f.Rules[0].Priority = 11 }), []string{"fixes[2].rules[0].priority: rule priority 11 is already used by fixes[0].policy_routing.rule_priority"}},
		{"rule priority vs local", fix(2, func(f *Fix) { f.Rules[0].Priority = 100 }), []string{"fixes[2].rules[0].priority: rule priority 100 is already used by fixes[0].policy_routing.local_rule_priority"}},
		{"rule table 0", fix(2, func(f *Fix) { f.Rules[0].Table = 0 }), []string{"fixes[2].rules[0].table: table 0: want 1..252 or 256..4294967295 (253 default, 254 main and 255 local belong to the kernel)"}},
		{"rule table 253", fix(2, func(f *Fix) { f.Rules[0].Table = 253 }), []string{"fixes[2].rules[0].table: table 253: want 1..252 or 256..4294967295 (253 default, 254 main and 255 local belong to the kernel)"}},
		{"rule table 254", fix(2, func(f *Fix) { f.Rules[0].Table = 254 }), []string{"fixes[2].rules[0].table: table 254: want 1..252 or 256..4294967295 (253 default, 254 main and 255 local belong to the kernel)"}},
		{"rule table 255", fix(2, func(f *Fix) { f.Rules[0].Table = 255 }), []string{"fixes[2].rules[0].table: table 255: want 1..252 or 256..4294967295 (253 default, 254 main and 255 local belong to the kernel)"}},
		{"rule table 2^32", fix(2, func(f *Fix) { f.Rules[0].Table = 1 << 32 }), []string{"fixes[2].rules[0].table: table 4294967296: want 1..252 or 256..4294967295 (253 default, 254 main and 255 local belong to the kernel)"}},
		{"rule table 256 and 252 ok", fix(2, func(f *Fix) { f.Rules[0].Table = 256; f.Routes[0].Table = 252 }), nil},
		{"rule iif", fix(2, func(f *Fix) { f.Rules[0].IIF = "eth0" }), []string{`fixes[2].rules[0].iif: iif "eth0" is not a declared NIC or lo (declared: vA, vB, eth9)`}},
		{"rule oif", fix(2, func(f *Fix) { f.Rules[0].OIF = "eth0" }), []string{`fixes[2].rules[0].oif: oif "eth0" is not a declared NIC or lo (declared: vA, vB, eth9)`}},
		{"rule oif ok", fix(2, func(f *Fix) { f.Rules[0].OIF = "vB"; f.Rules[0].To = "fd00::/8" }), nil},
		{"rule from", fix(2, func(f *Fix) { f.Rules[0].From = "10.10.0" }), []string{`fixes[2].rules[0].from: "10.10.0" is not an IP address or CIDR prefix`}},
		{"rule to", fix(2, func(f *Fix) { f.Rules[0].To = "any" }), []string{`fixes[2].rules[0].to: "any" is not an IP address or CIDR prefix`}},
		{"route to missing", fix(2, func(f *Fix) { f.Routes[0].To = "" }), []string{"fixes[2].routes[0].to: to is required: a CIDR prefix or an IP address"}},
		{"route to bad", fix(2, func(f *Fix) { f.Routes[0].To = "10.10.0.0/40" }), []string{`fixes[2].routes[0].to: "10.10.0.0/40" is not an IP address or CIDR prefix`}},
		{"route dev", fix(2, func(f *Fix) { f.Routes[0].Dev = "lo" }), []string{`fixes[2].routes[0].dev: dev "lo" is not a declared NIC (declared: vA, vB, eth9)`}},
		{"route dev missing", fix(2, func(f *Fix) { f.Routes[0].Dev = "" }), []string{"fixes[2].routes[0].dev: dev is required: name a declared NIC (declared: vA, vB, eth9)"}},
		{"route src", fix(2, func(f *Fix) { f.Routes[0].Src = "10.10.0.9" }), []string{"fixes[2].routes[0].src: src 10.10.0.9 is not an address of a declared NIC"}},
		{"route src prefix", fix(2, func(f *Fix) { f.Routes[0].Src = "10.10.0.1/24" }), []string{`fixes[2].routes[0].src: "10.10.0.1/24" is not an IP address: want a bare address like 10.10.0.1`}},
		{"route src other nic ok", fix(2, func(f *Fix) { f.Routes[0].Src = "fd00::9"; f.Routes[0].To = "fd00::/64" }), nil},
		{"route via", fix(2, func(f *Fix) { f.Routes[0].Via = "gw" }), []string{`fixes[2].routes[0].via: "gw" is not an IP address`}},
		{"route table", fix(2, func(f *Fix) { f.Routes[0].Table = 255 }), []string{"fixes[2].routes[0].table: table 255: want 0 (main) or 1..252 or 256..4294967295 (253 default, 254 main and 255 local belong to the kernel)"}},
		{"route table main ok", fix(2, func(f *Fix) { f.Routes[0].Table = 0 }), nil},

		// Traffic.
		{"traffic name", trf(0, func(t *Traffic) { t.Name = "" }), []string{"traffic[0].name: name is required"}},
		{"traffic dup", trf(1, func(t *Traffic) { t.Name = "rc" }), []string{`traffic[1].name: traffic "rc" is already declared at traffic[0]`}},
		{"transport empty", trf(0, func(t *Traffic) { t.Transport = ""; t.RC = nil }), []string{"traffic[0].transport: transport is required: rc or ud"}},
		{"transport unknown", trf(0, func(t *Traffic) { t.Transport = "uc"; t.RC = nil }), []string{`traffic[0].transport: unknown transport "uc": want rc or ud`}},
		{"direction empty", trf(0, func(t *Traffic) { t.Direction = "" }), []string{"traffic[0].direction: direction is required: a->b, b->a or both"}},
		{"direction unknown", trf(0, func(t *Traffic) { t.Direction = "a<-b" }), []string{`traffic[0].direction: unknown direction "a<-b": want a->b, b->a or both`}},
		{"messages 0", trf(0, func(t *Traffic) { t.Messages = 0 }), []string{"traffic[0].messages: messages 0 out of range: want 1..1000000"}},
		{"messages big", trf(0, func(t *Traffic) { t.Messages = 1000001 }), []string{"traffic[0].messages: messages 1000001 out of range: want 1..1000000"}},
		{"size 0", trf(0, func(t *Traffic) { t.Size = 0 }), []string{"traffic[0].size: size 0 out of range: want 1..1073741824 bytes"}},
		{"size big", trf(0, func(t *Traffic) { t.Size = 1<<30 + 1 }), []string{"traffic[0].size: size 1073741825 out of range: want 1..1073741824 bytes"}},
		{"size 1G ok", trf(0, func(t *Traffic) { t.Size = 1 << 30 }), nil},
		{"ud size", trf(1, func(t *Traffic) { t.Size = 4097 }), []string{"traffic[1].size: size 4097 is too big for UD: a UD message is one packet and must fit the path MTU (at most 4096 bytes)"}},
		{"rc on ud", trf(1, func(t *Traffic) { t.RC = &RCParams{} }), []string{"traffic[1].rc: rc timers are only for transport rc"}},
		{"rc timeout", trf(0, func(t *Traffic) { t.RC.Timeout = intp(32) }), []string{"traffic[0].rc.timeout: timeout 32 out of range: want 0..31"}},
		{"rc retry", trf(0, func(t *Traffic) { t.RC.RetryCount = intp(8) }), []string{"traffic[0].rc.retry_cnt: retry_cnt 8 out of range: want 0..7"}},
		{"rc rnr", trf(0, func(t *Traffic) { t.RC.RNRRetry = intp(-1) }), []string{"traffic[0].rc.rnr_retry: rnr_retry -1 out of range: want 0..7"}},
		{"family unknown", trf(0, func(t *Traffic) { t.Family = "ipv5" }), []string{`traffic[0].family: unknown family "ipv5": want ipv4 or ipv6`}},
		{"family without addresses", trf(0, func(t *Traffic) { t.Family = FamilyIPv6 }), []string{
			`traffic[0].family: family ipv6: endpoint a's nic "vA" has no ipv6 address (10.10.0.1/24): add one to its addresses, or leave family out`,
			`traffic[0].family: family ipv6: endpoint b's nic "vB" has no ipv6 address (10.10.0.2/24): add one to its addresses, or leave family out`}},
		{"family ok", func(s *Scenario) {
			s.NICs[0].Addresses = append(s.NICs[0].Addresses, "fd00::1/64")
			s.NICs[1].Addresses = append(s.NICs[1].Addresses, "fd00::2/64")
			s.Traffic[0].Family = FamilyIPv6
		}, nil},
		{"pattern unknown", trf(0, func(t *Traffic) { t.Pattern = "burst" }), []string{`traffic[0].pattern: unknown pattern "burst": want stream or pingpong`}},
		{"pattern stream ok", trf(0, func(t *Traffic) { t.Pattern = PatternStream; t.Window = 8 }), nil},
		{"pingpong ok", trf(0, func(t *Traffic) { t.Pattern = PatternPingPong }), nil},
		{"pingpong window 1 ok", trf(0, func(t *Traffic) { t.Pattern = PatternPingPong; t.Window = 1 }), nil},
		{"pingpong window", trf(0, func(t *Traffic) { t.Pattern = PatternPingPong; t.Window = 2 }), []string{
			"traffic[0].window: window 2 with pattern pingpong: a ping-pong has one message in flight; leave window out or set 1"}},
		{"pingpong ud", trf(1, func(t *Traffic) { t.Pattern = PatternPingPong }), []string{
			"traffic[1].pattern: pattern pingpong needs transport rc: a UD message that is lost would stop the ping-pong"}},
		{"deadline negative", trf(0, func(t *Traffic) { t.DeadlineMS = -1 }), []string{"traffic[0].deadline_ms: deadline_ms -1 out of range: want 0 (default 30000) or up to 3600000"}},
		{"deadline big", trf(0, func(t *Traffic) { t.DeadlineMS = 3600001 }), []string{"traffic[0].deadline_ms: deadline_ms 3600001 out of range: want 0 (default 30000) or up to 3600000"}},

		// Expect.
		{"result empty", func(s *Scenario) { s.Expect.Result = "" }, []string{"expect.result: result is required: pass or fail"}},
		{"result unknown", func(s *Scenario) { s.Expect.Result = "ok" }, []string{`expect.result: unknown result "ok": want pass or fail`}},
		{"fail without failure", func(s *Scenario) { s.Expect.Result = ResultFail }, []string{
			"expect: result fail needs failure: the failure that must happen, one of local-route, martian-source, neighbor-martian, no-listener, retry-exceeded, rp-filter"}},
		{"unknown failure", func(s *Scenario) { s.Expect = Expect{Result: ResultFail, Failure: "timeout"} }, []string{
			`expect.failure: unknown failure "timeout": want one of local-route, martian-source, neighbor-martian, no-listener, retry-exceeded, rp-filter`}},
		{"pass with failure", func(s *Scenario) { s.Expect.Failure = FailureRPFilter }, []string{"expect.failure: failure is only for result fail"}},
		{"fail ok", func(s *Scenario) { s.Expect = Expect{Result: ResultFail, Failure: FailureNoListener} }, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := loadBase(t)
			c.mutate(s)
			var got []string
			for _, fe := range fieldErrors(t, s.Validate()) {
				got = append(got, fe.Path+": "+fe.Msg)
				assert.Equal(t, "base.yaml", fe.File)
				assert.Equal(t, s.Where(fe.Path), fe.Pos)
				assert.Positive(t, fe.Pos.Line)
			}
			assert.Equal(t, c.want, got)
		})
	}
}

// TestValidateZeroValues: a scenario built in Go, with nothing set, reports every required
// field and does not panic without positions.
func TestValidateZeroValues(t *testing.T) {
	var s Scenario
	var got []string
	for _, fe := range fieldErrors(t, s.Validate()) {
		got = append(got, fe.Error())
	}
	assert.Equal(t, []string{
		":0:0: version: unsupported version 0: this rocebed reads version 1",
		`:0:0: name: "" is not a lab name: want 1 to 32 lowercase letters, digits and '-', starting with a letter or digit`,
		":0:0: endpoints.a.nic: nic is required: name a declared NIC (none are declared)",
		":0:0: endpoints.a: set exactly one of rxe (a soft-RoCE device rocebed adds) and device (an RDMA device the host has, or auto)",
		":0:0: endpoints.b.nic: nic is required: name a declared NIC (none are declared)",
		":0:0: endpoints.b: set exactly one of rxe (a soft-RoCE device rocebed adds) and device (an RDMA device the host has, or auto)",
		":0:0: expect.result: result is required: pass or fail",
	}, got)
}

// TestValidateWithoutDefaults: Validate accepts the zeros SetDefaults would fill.
func TestValidateWithoutDefaults(t *testing.T) {
	s := &Scenario{
		Version: 1, Name: "go",
		NICs: []NIC{
			{Name: "a", Kind: NICVeth, Peer: "b", Addresses: []string{"10.0.0.1/24"}},
			{Name: "b", Kind: NICVeth, Peer: "a", Addresses: []string{"10.0.0.2/24"}},
		},
		Endpoints: Endpoints{A: Endpoint{NIC: "a", RXE: "r0"}, B: Endpoint{NIC: "b", RXE: "r1"}},
		Fixes:     []Fix{{Name: "pr", PolicyRouting: &PolicyRouting{}}},
		Traffic:   []Traffic{{Name: "t", Transport: TransportRC, Direction: DirectionBoth, Messages: 1, Size: 1}},
		Expect:    Expect{Result: ResultPass},
	}
	require.NoError(t, s.Validate())
	s.SetDefaults()
	require.NoError(t, s.Validate())
	assert.Equal(t, "10.0.0.2", s.Endpoints.B.Address)
}
