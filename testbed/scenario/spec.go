package scenario

// This file holds the scenario format v1: the YAML a user writes. The types carry no behaviour
// beyond small accessors; loading is in load.go, checking in validate.go, and turning a scenario
// into host changes in package plan.

// Scenario is one declared lab: two NICs of one host (created as a veth "cable", or existing),
// the RDMA endpoint on each, the fixes that let traffic between them cross the cable, the
// traffic to run and what must happen.
type Scenario struct {
	// Version of the scenario format; must be 1.
	Version int `yaml:"version" json:"version"`
	// Name of the lab: lowercase letters, digits and '-', at most 32 bytes. It names the state
	// directory, so two scenarios with one name cannot be up at once.
	Name        string `yaml:"name" json:"name"`
	Description string `yaml:"description,omitempty" json:"description,omitempty"`
	// Params are named values a scenario refers to as ${name} in any string; `--set name=value`
	// overrides the default. Used for interface names that differ between machines.
	Params []Param `yaml:"params,omitempty" json:"params,omitempty"`
	// NICs are the network interfaces the lab uses. rocebed never touches any other interface.
	NICs []NIC `yaml:"nics" json:"nics"`
	// Endpoints say which RDMA device sits on which NIC.
	Endpoints Endpoints `yaml:"endpoints" json:"endpoints"`
	// Fixes are named groups of host changes that make the same-host path work. Each group can be
	// removed on its own (`run --ablate`), so a group is the unit of "this fix is necessary".
	Fixes []Fix `yaml:"fixes,omitempty" json:"fixes,omitempty"`
	// Traffic is what runs between the endpoints after `up`.
	Traffic []Traffic `yaml:"traffic,omitempty" json:"traffic,omitempty"`
	// Expect is the verdict the scenario must produce.
	Expect Expect `yaml:"expect" json:"expect"`

	// File is where the scenario came from ("builtin:same-host" for embedded ones); set by the
	// loader, used in error messages.
	File string `yaml:"-" json:"file,omitempty"`
	// Host is, in a two-host lab, the host this process works on ("a" or "b"), set by ForHost,
	// which also leaves out the other host's NIC; empty for a one-host lab (see hosts.go).
	Host HostName `yaml:"-" json:"host,omitempty"`
	// positions maps a field path ("nics[1].addresses[0]") to where it stands in File.
	positions map[string]Position
	// fingerprint is the whole lab's Fingerprint, kept by ForHost; others are the NICs of the
	// other host, which ForHost leaves out of NICs but keeps for its endpoint's addresses.
	fingerprint string
	others      []NIC
}

// Param is one named scenario parameter.
type Param struct {
	Name        string `yaml:"name" json:"name"`
	Default     string `yaml:"default" json:"default"`
	Description string `yaml:"description,omitempty" json:"description,omitempty"`
}

// NICKind says whether rocebed creates a NIC or uses one the host already has.
type NICKind string

const (
	// NICVeth is one end of a veth pair rocebed creates: the lab's cable.
	NICVeth NICKind = "veth"
	// NICExisting is an interface the host already has; rocebed changes only what the scenario
	// declares on it (MTU, addresses, up) and restores it on `down`.
	NICExisting NICKind = "existing"
)

// NIC is one network interface of the lab.
type NIC struct {
	Name string  `yaml:"name" json:"name"`
	Kind NICKind `yaml:"kind" json:"kind"`
	// Peer names the NIC at the other end of the cable (veth only; both ends name each other).
	Peer string `yaml:"peer,omitempty" json:"peer,omitempty"`
	// MTU to set; 0 leaves the kernel's default (veth) or the current value (existing).
	MTU int `yaml:"mtu,omitempty" json:"mtu,omitempty"`
	// MAC to set on a veth end ("02:00:00:00:00:01"); empty lets the kernel pick one.
	MAC string `yaml:"mac,omitempty" json:"mac,omitempty"`
	// Addresses in CIDR form, IPv4 or IPv6.
	Addresses []string `yaml:"addresses,omitempty" json:"addresses,omitempty"`
	// AllowDefaultRoute lets an existing NIC that carries the host's default route be used.
	// Without it rocebed refuses, because a mistake there cuts the host off the network.
	AllowDefaultRoute bool `yaml:"allow_default_route,omitempty" json:"allow_default_route,omitempty"`
	// Netns, when set, puts this NIC in a network namespace of that name, which rocebed creates
	// (and removes) if it does not exist. rxe on kernels up to 6.12 works only in the initial
	// namespace, so this exists to reproduce that failure, not to build working labs.
	Netns string `yaml:"netns,omitempty" json:"netns,omitempty"`
	// Host, set on every NIC or on none, makes the lab a two-host lab: the NIC is on host a
	// (which carries endpoint a) or host b. NIC names are unique per host. See hosts.go.
	Host HostName `yaml:"host,omitempty" json:"host,omitempty"`
}

// Endpoints are the two RDMA ends of the lab. Traffic directions are named after them: a->b.
type Endpoints struct {
	A Endpoint `yaml:"a" json:"a"`
	B Endpoint `yaml:"b" json:"b"`
}

// Endpoint is one RDMA device and the NIC it is bound to.
type Endpoint struct {
	// NIC is the name of a declared NIC.
	NIC string `yaml:"nic" json:"nic"`
	// RXE, when set, is the name of the soft-RoCE link rocebed adds on NIC
	// (`rdma link add RXE type rxe netdev NIC`) and removes on `down`.
	RXE string `yaml:"rxe,omitempty" json:"rxe,omitempty"`
	// Device names an RDMA device the host already has on NIC (a hardware RoCE NIC), or "auto"
	// to find it from sysfs. Exactly one of RXE and Device is set.
	Device string `yaml:"device,omitempty" json:"device,omitempty"`
	// Address is the NIC address whose RoCE v2 GID the endpoint uses; empty means the NIC's
	// first IPv4 address.
	Address string `yaml:"address,omitempty" json:"address,omitempty"`
	// Host is, in a two-host lab, the host the endpoint is on (its own name: endpoint a is on
	// host a), set by SetDefaults so that its NIC is looked up there.
	Host HostName `yaml:"-" json:"-"`
}

// Fix is one named group of host changes. All its parts are applied together and removed
// together.
type Fix struct {
	Name        string `yaml:"name" json:"name"`
	Description string `yaml:"description,omitempty" json:"description,omitempty"`
	// PolicyRouting generates the policy-routing fix from the endpoint pair: the `local` rule
	// moved below per-direction `iif lo` rules that send each endpoint's traffic out of its own
	// NIC through a table of its own.
	PolicyRouting *PolicyRouting `yaml:"policy_routing,omitempty" json:"policy_routing,omitempty"`
	// Sysctls are "key=value" settings, e.g. "net.ipv4.conf.all.accept_local=1". Interface
	// sysctls may name only declared NICs, "all" or "default".
	Sysctls []string `yaml:"sysctls,omitempty" json:"sysctls,omitempty"`
	// ARP settings per NIC; sugar for the net.ipv4.conf.<nic>.arp_* sysctls.
	ARP []ARPSetting `yaml:"arp,omitempty" json:"arp,omitempty"`
	// Neighbors are static (permanent) neighbour entries.
	Neighbors []Neighbor `yaml:"neighbors,omitempty" json:"neighbors,omitempty"`
	// MoveLocalRule moves the `local` table rule from priority 0 to this priority (written-out
	// policy routing). 0 leaves it alone.
	MoveLocalRule int `yaml:"move_local_rule,omitempty" json:"move_local_rule,omitempty"`
	// Rules and Routes are written-out policy routing.
	Rules  []Rule  `yaml:"rules,omitempty" json:"rules,omitempty"`
	Routes []Route `yaml:"routes,omitempty" json:"routes,omitempty"`
}

// PolicyRoutingRules is how many rule priorities the policy-routing fix takes from
// RulePriority on: per direction, one rule for traffic bound to the endpoint's address and one
// for traffic with no source yet (a client that binds none, as most rdma_cm software).
const PolicyRoutingRules = 4

// PolicyRoutingRulesIPv6 is how many it takes when the lab has IPv6 endpoints: the IPv6 rules
// add, per direction, one matching the endpoint's NIC as output interface, for the route
// lookup rdma_cm makes (with no input interface) to accept a connection.
const PolicyRoutingRulesIPv6 = 6

// PolicyRouting holds the knobs of the generated policy-routing fix. The zero value is the
// measured recipe: local rule at 100, rules at 10 to 13 (10 to 15 for IPv6), tables 100 and
// 101. It covers every address family both endpoints have an address in.
type PolicyRouting struct {
	LocalRulePriority int `yaml:"local_rule_priority,omitempty" json:"local_rule_priority,omitempty"`
	RulePriority      int `yaml:"rule_priority,omitempty" json:"rule_priority,omitempty"`
	TableA            int `yaml:"table_a,omitempty" json:"table_a,omitempty"`
	TableB            int `yaml:"table_b,omitempty" json:"table_b,omitempty"`
}

// ARPSetting sets the ARP sysctls of one NIC; nil fields are left alone.
type ARPSetting struct {
	NIC      string `yaml:"nic" json:"nic"`
	Ignore   *int   `yaml:"ignore,omitempty" json:"ignore,omitempty"`
	Announce *int   `yaml:"announce,omitempty" json:"announce,omitempty"`
	Filter   *int   `yaml:"filter,omitempty" json:"filter,omitempty"`
}

// PeerMAC in Neighbor.MAC means "the MAC of the NIC at the other end of this NIC's cable",
// which for a veth rocebed creates is known only after it exists.
const PeerMAC = "peer"

// Neighbor is a permanent neighbour entry (`ip neigh replace IP lladdr MAC dev NIC nud permanent`).
type Neighbor struct {
	NIC string `yaml:"nic" json:"nic"`
	IP  string `yaml:"ip" json:"ip"`
	MAC string `yaml:"mac" json:"mac"`
}

// Rule is a policy-routing rule (`ip rule add pref P iif I from F to T lookup TABLE`).
type Rule struct {
	Priority int    `yaml:"priority" json:"priority"`
	IIF      string `yaml:"iif,omitempty" json:"iif,omitempty"`
	OIF      string `yaml:"oif,omitempty" json:"oif,omitempty"`
	From     string `yaml:"from,omitempty" json:"from,omitempty"`
	To       string `yaml:"to,omitempty" json:"to,omitempty"`
	Table    int    `yaml:"table" json:"table"`
}

// Route is a route in a routing table (`ip route add TO dev DEV src SRC table TABLE`).
type Route struct {
	To    string `yaml:"to" json:"to"`
	Dev   string `yaml:"dev" json:"dev"`
	Src   string `yaml:"src,omitempty" json:"src,omitempty"`
	Via   string `yaml:"via,omitempty" json:"via,omitempty"`
	Table int    `yaml:"table,omitempty" json:"table,omitempty"`
}

// Transport is the InfiniBand transport a traffic item uses.
type Transport string

const (
	TransportRC Transport = "rc" // reliable connected: acknowledged, retried
	TransportUD Transport = "ud" // unreliable datagram: one packet per message, no retries
)

// Direction says which endpoint sends.
type Direction string

const (
	DirectionAToB Direction = "a->b"
	DirectionBToA Direction = "b->a"
	DirectionBoth Direction = "both"
)

// Pattern says how a batch's messages go.
type Pattern string

const (
	// PatternStream keeps up to the window's SENDs in flight one way (the default).
	PatternStream Pattern = "stream"
	// PatternPingPong sends each message back before the next one goes, as ib_send_lat does:
	// the batch's half round trips are the latency ib_send_lat reports as t_typical.
	PatternPingPong Pattern = "pingpong"
)

// Traffic is one batch of SEND-only messages between the endpoints.
type Traffic struct {
	Name      string    `yaml:"name" json:"name"`
	Transport Transport `yaml:"transport" json:"transport"`
	Direction Direction `yaml:"direction" json:"direction"`
	Messages  int       `yaml:"messages" json:"messages"`
	// Size of each message in bytes. UD messages must fit the path MTU.
	Size int `yaml:"size" json:"size"`
	// Family is the address family the batch runs over (ipv4 or ipv6): each endpoint uses its
	// NIC's address of that family and its RoCE v2 GID. Empty takes the endpoints' own
	// addresses (endpoints.*.address, or each NIC's first IPv4 address).
	Family Family `yaml:"family,omitempty" json:"family,omitempty"`
	// RC holds the reliable-connection timers; nil takes defaults that give a bounded verdict
	// on a broken path (timeout 12, retry_cnt 2: measured ~58 ms to IBV_WC_RETRY_EXC_ERR).
	RC *RCParams `yaml:"rc,omitempty" json:"rc,omitempty"`
	// DeadlineMS bounds the whole batch, connect included; 0 takes a default.
	DeadlineMS int `yaml:"deadline_ms,omitempty" json:"deadline_ms,omitempty"`
	// Window is how many SENDs may be outstanding at once; 0 lets rocebed keep up to 128 in
	// flight (throughput). 1 sends the next message only after the previous one completed,
	// which makes the batch's mean post→completion time a round-trip latency.
	Window int `yaml:"window,omitempty" json:"window,omitempty"`
	// Pattern is stream (empty: the default) or pingpong: the receiver sends each message back
	// to the sender, whose next message waits for it; every SEND and RECV completion of both
	// ways is checked. RC only, both ends on one host.
	Pattern Pattern `yaml:"pattern,omitempty" json:"pattern,omitempty"`
}

// RCParams are the RC QP attributes that decide how long a broken path takes to fail.
type RCParams struct {
	// Timeout is the local ACK timeout exponent: 4.096 µs × 2^Timeout (ibv_modify_qp.3).
	Timeout *int `yaml:"timeout,omitempty" json:"timeout,omitempty"`
	// RetryCount is retry_cnt, 0–7. rxe keeps retrying forever at 7, which is why
	// ibv_rc_pingpong hangs on a broken path.
	RetryCount *int `yaml:"retry_cnt,omitempty" json:"retry_cnt,omitempty"`
	// RNRRetry is rnr_retry, 0–7 (7 = infinite).
	RNRRetry *int `yaml:"rnr_retry,omitempty" json:"rnr_retry,omitempty"`
}

// Result is the verdict a scenario expects.
type Result string

const (
	ResultPass Result = "pass"
	ResultFail Result = "fail"
)

// Failure names a way the lab is expected to fail. The names are the diagnosis codes.
type Failure string

const (
	// FailureNeighborMartian: the ARP between the NICs is dropped because its sender address is
	// one of the host's own; the neighbour never resolves and the RC QP cannot reach RTR.
	FailureNeighborMartian Failure = "neighbor-martian"
	// FailureMartianSource: the RoCE packets cross the cable and the receiving NIC drops every
	// one in input routing as a martian source; the requester gets IBV_WC_RETRY_EXC_ERR.
	FailureMartianSource Failure = "martian-source"
	// FailureRPFilter: the strict reverse-path filter drops the packets.
	FailureRPFilter Failure = "rp-filter"
	// FailureNoListener: UDP 4791 arrives where no rxe listens (e.g. another namespace).
	FailureNoListener Failure = "no-listener"
	// FailureRetryExceeded: the requester exhausted its retries for another reason.
	FailureRetryExceeded Failure = "retry-exceeded"
	// FailureLocalRoute: the RoCE packets to the other endpoint's IPv6 address are routed to
	// lo — IPv6 output routing takes the local table's route for an address of this host
	// although rxe names its NIC — so the sender's own MAC becomes the destination, rxe loops
	// them back into the sending device, and none reaches the cable or the other device.
	FailureLocalRoute Failure = "local-route"
)

// KnownFailures lists every Failure a scenario may expect.
var KnownFailures = []Failure{
	FailureNeighborMartian, FailureMartianSource, FailureRPFilter, FailureNoListener, FailureRetryExceeded, FailureLocalRoute,
}

// Expect is what the scenario must produce.
type Expect struct {
	Result Result `yaml:"result" json:"result"`
	// Failure is required when Result is fail: the named failure that must happen.
	Failure Failure `yaml:"failure,omitempty" json:"failure,omitempty"`
}

// Position is where a value stands in a scenario file (1-based).
type Position struct {
	Line   int `json:"line"`
	Column int `json:"column"`
}

// Where returns the position of the value at path ("nics[0].addresses[1]"), or of its nearest
// ancestor that has one, so errors always point somewhere useful.
func (s *Scenario) Where(path string) Position {
	for p := path; ; {
		if pos, ok := s.positions[p]; ok {
			return pos
		}
		i := lastSep(p)
		if i < 0 {
			return s.positions[""]
		}
		p = p[:i]
	}
}

// lastSep returns the index of the last '.' or '[' that splits path into parent and child.
func lastSep(path string) int {
	for i := len(path) - 1; i >= 0; i-- {
		if path[i] == '.' || path[i] == '[' {
			return i
		}
	}
	return -1
}

// NIC returns the declared NIC with that name.
func (s *Scenario) NIC(name string) (*NIC, bool) {
	for i := range s.NICs {
		if s.NICs[i].Name == name {
			return &s.NICs[i], true
		}
	}
	return nil, false
}
