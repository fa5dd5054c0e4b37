package diagnose

import (
	"fmt"
	"strings"
	"time"

	"github.com/rocebed/rocebed/testbed/counters"
	"github.com/rocebed/rocebed/testbed/probe"
	"github.com/rocebed/rocebed/testbed/scenario"
)

// Evidence is everything Run observed. It is plain data so it can be recorded as JSON
// and replayed through the rules in tests.
type Evidence struct {
	Lab    string    `json:"lab"`
	Kernel string    `json:"kernel,omitempty"`
	Taken  time.Time `json:"taken"`
	// Netns is the lab's namespace ("" = the tool's own).
	Netns string `json:"netns,omitempty"`
	// RDMANetnsMode is `rdma system show netns`: shared or exclusive.
	RDMANetnsMode string `json:"rdma_netns_mode,omitempty"`
	// Fixes are the scenario's fix groups, as declared.
	Fixes      []scenario.Fix      `json:"fixes,omitempty"`
	NICs       []NICEvidence       `json:"nics"`
	Endpoints  []EndpointEvidence  `json:"endpoints"`
	Directions []DirectionEvidence `json:"directions"`
	// Sysctls are the "all" values that combine with each NIC's (rp_filter, accept_local, arp_*).
	Sysctls map[string]string `json:"sysctls,omitempty"`
	// Rules is `ip rule` (IPv4) of the lab's namespace, then `ip -6 rule` ("-6 …") when the
	// lab has IPv6 endpoints.
	Rules   []string         `json:"rules,omitempty"`
	Traffic *TrafficEvidence `json:"traffic,omitempty"`
	Trace   *TraceEvidence   `json:"trace,omitempty"`
	// Notes say what could not be read.
	Notes []string `json:"notes,omitempty"`
}

// NICEvidence is one NIC as the kernel shows it.
type NICEvidence struct {
	Name string `json:"name"`
	// Peer is the declared other end of a veth.
	Peer string `json:"peer,omitempty"`
	// Found is false when the NIC is in neither the lab's namespace nor a named one.
	Found bool `json:"found"`
	// Netns is where it was found ("" = the lab's namespace) and DeclaredNetns where the
	// scenario puts it.
	Netns         string   `json:"netns,omitempty"`
	DeclaredNetns string   `json:"declared_netns,omitempty"`
	Up            bool     `json:"up"`
	Carrier       bool     `json:"carrier"`
	OperState     string   `json:"oper_state,omitempty"`
	MTU           int      `json:"mtu,omitempty"`
	MAC           string   `json:"mac,omitempty"`
	Addresses     []string `json:"addresses,omitempty"`
	// Sysctls are this NIC's own values (net.ipv4.conf.NIC.*).
	Sysctls map[string]string `json:"sysctls,omitempty"`
	// RPFilter is the effective rp_filter (kernel.EffectiveRPFilter: max of all and NIC);
	// AcceptLocal the effective accept_local (kernel.EffectiveAcceptLocal: all OR NIC). -1 if
	// unreadable.
	RPFilter    int `json:"rp_filter"`
	AcceptLocal int `json:"accept_local"`
}

// EndpointEvidence is one RDMA endpoint as sysfs shows it.
type EndpointEvidence struct {
	Side    Side   `json:"side"`
	NIC     string `json:"nic"`
	Address string `json:"address"`
	Device  string `json:"device"`
	// RXE is true for a soft-RoCE device the lab adds, false for a hardware one.
	RXE bool `json:"rxe,omitempty"`
	// DevicePresent is false when /sys/class/infiniband has no such device.
	DevicePresent bool      `json:"device_present"`
	PortNetdev    string    `json:"port_netdev,omitempty"`
	PortState     PortState `json:"port_state,omitzero"`
	// ActiveMTU is the IB MTU the port uses (rxe: derived from its netdev's MTU).
	ActiveMTU int `json:"active_mtu,omitempty"`
	// GID is the RoCE v2 GID of Address ("1 10.10.0.1 (RoCE v2) on vA"), or empty with GIDError.
	GID      string `json:"gid,omitempty"`
	GIDError string `json:"gid_error,omitempty"`
}

// DirectionEvidence is the IP path from one endpoint to the other.
type DirectionEvidence struct {
	Name scenario.Direction `json:"name"` // a->b or b->a
	// Family is the address family of SrcAddr and DstAddr: a dual-stack lab has a direction
	// of each name per family ("" in evidence recorded before there were families: IPv4).
	Family  scenario.Family `json:"family,omitempty"`
	SrcNIC  string          `json:"src_nic"`
	DstNIC  string          `json:"dst_nic"`
	SrcAddr string          `json:"src_addr"`
	DstAddr string          `json:"dst_addr"`
	// Neighbor is SrcNIC's neighbour entry for DstAddr.
	Neighbor NeighborEvidence `json:"neighbor"`
	// RouteOut is `ip route get DST from SRC oif SRC_NIC` (the RoCE path: rxe routes with oif).
	RouteOut RouteAnswer `json:"route_out"`
	// RouteIn is `ip route get DST from SRC iif DST_NIC`: input routing on the receiving NIC,
	// source validation included.
	RouteIn RouteAnswer `json:"route_in"`
	// RouteBack is `ip route get SRC from DST fibmatch`: the route DstNIC's source check uses.
	RouteBack RouteAnswer `json:"route_back"`
	// Probe is the first failing probe layer of this direction (nil when it passed or did not run).
	Probe       *probe.LayerResult `json:"probe,omitempty"`
	ProbePassed bool               `json:"probe_passed,omitempty"`
}

// NeighborEvidence is one neighbour entry.
type NeighborEvidence struct {
	State   NeighborState `json:"state"`
	LLAddr  string        `json:"lladdr,omitempty"`
	PeerMAC string        `json:"peer_mac,omitempty"` // the MAC of DstNIC
}

// Usable reports whether the kernel sends to the cached MAC in this state.
func (n NeighborEvidence) Usable() bool { return n.State.Usable() }

// RouteAnswer is the kernel's answer to one route query.
type RouteAnswer struct {
	Query string    `json:"query"` // the ip command that asks the same
	Type  RouteType `json:"type,omitempty"`
	Dev   string    `json:"dev,omitempty"`
	Src   string    `json:"src,omitempty"`
	Table string    `json:"table,omitempty"`
	// Errno is the error (EINVAL, EXDEV, ENETUNREACH) when the kernel refused.
	Errno Errno  `json:"errno,omitempty"`
	Error string `json:"error,omitempty"`
}

// Answered reports whether the kernel answered with a route.
func (r RouteAnswer) Answered() bool { return r.Error == "" && r.Type != 0 }

func (r RouteAnswer) String() string {
	if r.Error != "" {
		return r.Query + ": " + r.Error
	}
	if r.Type == 0 {
		return r.Query + ": not asked"
	}
	s := r.Query + ": " + r.Type.String()
	if r.Dev != "" {
		s += " dev " + r.Dev
	}
	if r.Src != "" {
		s += " src " + r.Src
	}
	if r.Table != "" {
		s += " table " + r.Table
	}
	return s
}

// TrafficEvidence is the traffic Run ran (or was given) and the counters around it.
type TrafficEvidence struct {
	// Ran is false when no traffic ran; Error says why (or why it stopped).
	Ran    bool          `json:"ran"`
	Source TrafficSource `json:"source"`
	Error  string        `json:"error,omitempty"`
	Pass   bool          `json:"pass"`
	// Batches are the batches as the rules read them (BatchEvidence).
	Batches []BatchEvidence `json:"batches,omitempty"`
	// Delta is the counters over all the traffic.
	Delta *counters.Snapshot `json:"delta,omitempty"`
}

// TraceEvidence is the optional kfree_skb layer.
type TraceEvidence struct {
	Available bool `json:"available"`
	// Reason says why the layer is unavailable, or how it was set up.
	Reason string `json:"reason"`
	// Drops are the IPv4 and ARP packets freed as drops while the traffic ran, grouped.
	Drops []TraceDrop `json:"drops,omitempty"`
	// Lines are the first raw trace lines, as the kernel printed them.
	Lines []string `json:"lines,omitempty"`
}

// TraceDrop is a group of skb:kfree_skb events with one protocol, location and reason.
type TraceDrop struct {
	Protocol TraceProtocol `json:"protocol"`
	Location string        `json:"location"` // the function that freed the skb
	Reason   string        `json:"reason,omitempty"`
	Count    int           `json:"count"`
}

// ByRXE reports whether rxe itself freed the skb: rxe releases the packets it has processed
// (and its retransmit copies) with kfree_skb, so these are deliveries, not drops.
func (d TraceDrop) ByRXE() bool { return strings.HasPrefix(d.Location, "rxe_") }

func (d TraceDrop) String() string {
	s := fmt.Sprintf("kfree_skb: %d × %s at %s", d.Count, d.Protocol, d.Location)
	if d.Reason != "" {
		s += " reason " + d.Reason
	}
	return s
}
