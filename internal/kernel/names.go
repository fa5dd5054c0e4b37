package kernel

import (
	"net"
	"net/netip"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Address families as the kernel numbers them.
const (
	AFInet  = unix.AF_INET
	AFInet6 = unix.AF_INET6
)

// Routing tables the kernel owns.
const (
	TableDefault = unix.RT_TABLE_DEFAULT // 253
	TableMain    = unix.RT_TABLE_MAIN    // 254
	TableLocal   = unix.RT_TABLE_LOCAL   // 255
)

// TableName names a routing table as iproute2 does (rt_tables).
func TableName(t int) string {
	switch t {
	case TableLocal:
		return "local"
	case TableMain:
		return "main"
	case TableDefault:
		return "default"
	}
	return strconv.Itoa(t)
}

// ProtocolName names a route or rule protocol as iproute2 does (rt_protos).
func ProtocolName(p int) string {
	switch p {
	case unix.RTPROT_KERNEL:
		return "kernel"
	case unix.RTPROT_BOOT:
		return "boot"
	case unix.RTPROT_STATIC:
		return "static"
	}
	return strconv.Itoa(p)
}

// RouteTypeName names a route type (RTN_*) as `ip route` prints it.
func RouteTypeName(t int) string {
	switch t {
	case unix.RTN_UNICAST:
		return "unicast"
	case unix.RTN_LOCAL:
		return "local"
	case unix.RTN_BROADCAST:
		return "broadcast"
	case unix.RTN_MULTICAST:
		return "multicast"
	case unix.RTN_BLACKHOLE:
		return "blackhole"
	case unix.RTN_UNREACHABLE:
		return "unreachable"
	case unix.RTN_PROHIBIT:
		return "prohibit"
	}
	return "type " + strconv.Itoa(t)
}

// Neighbour states (NUD_*), as in <linux/neighbour.h>.
const (
	NUDIncomplete = unix.NUD_INCOMPLETE
	NUDReachable  = unix.NUD_REACHABLE
	NUDStale      = unix.NUD_STALE
	NUDDelay      = unix.NUD_DELAY
	NUDProbe      = unix.NUD_PROBE
	NUDFailed     = unix.NUD_FAILED
	NUDNoARP      = unix.NUD_NOARP
	NUDPermanent  = unix.NUD_PERMANENT
)

// NUDUsable are the neighbour states in which the kernel sends to the entry's MAC without
// resolving it again first (NUD_VALID in the kernel).
const NUDUsable = NUDReachable | NUDStale | NUDDelay | NUDProbe | NUDPermanent | NUDNoARP

var nudNames = []struct {
	bit  int
	name string
}{
	{NUDIncomplete, "INCOMPLETE"}, {NUDReachable, "REACHABLE"}, {NUDStale, "STALE"},
	{NUDDelay, "DELAY"}, {NUDProbe, "PROBE"}, {NUDFailed, "FAILED"},
	{NUDNoARP, "NOARP"}, {NUDPermanent, "PERMANENT"},
}

// NeighStateName names a neighbour state as `ip neigh` does ("REACHABLE", "STALE,…"; "NONE"
// for no bit).
func NeighStateName(s int) string {
	var out []string
	for _, n := range nudNames {
		if s&n.bit != 0 {
			out = append(out, n.name)
		}
	}
	if len(out) == 0 {
		return "NONE"
	}
	return strings.Join(out, ",")
}

// NeighStateOf parses NeighStateName's output back; unknown names count for nothing.
func NeighStateOf(name string) int {
	s := 0
	for _, part := range strings.Split(name, ",") {
		for _, n := range nudNames {
			if n.name == part {
				s |= n.bit
			}
		}
	}
	return s
}

// LinkFlagsString lists the interface flags that decide whether a link carries traffic.
func LinkFlagsString(f uint32) string {
	var out []string
	for _, x := range []struct {
		bit  uint32
		name string
	}{{unix.IFF_UP, "UP"}, {unix.IFF_LOWER_UP, "LOWER_UP"}, {unix.IFF_RUNNING, "RUNNING"}, {unix.IFF_NOARP, "NOARP"}} {
		if f&x.bit != 0 {
			out = append(out, x.name)
		}
	}
	return strings.Join(out, ",")
}

// FamilyOf is the address family of ip (AFInet for IPv4 and IPv4-mapped addresses).
func FamilyOf(ip net.IP) int {
	if ip.To4() != nil {
		return AFInet
	}
	return AFInet6
}

// FamilyOfAddr is FamilyOf for a netip.Addr.
func FamilyOfAddr(a netip.Addr) int {
	if a.Unmap().Is4() {
		return AFInet
	}
	return AFInet6
}
