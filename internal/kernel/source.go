package kernel

import (
	"strconv"

	"golang.org/x/sys/unix"
)

// The source check (fib_validate_source, called from ip_route_input_slow) decides whether an
// IPv4 packet arriving on a NIC may come from its source address. The kernel looks up the
// route back to the source as if answering it, and:
//   - if that route is local (the source is one of the host's own addresses), drops the
//     packet as a martian source unless accept_local is on for the NIC;
//   - with strict rp_filter (1), drops it when the route back leaves through another NIC;
//   - with loose rp_filter (2), only needs some route back.
// This is the seed's bug: two NICs of one host cabled together see each other's packets as
// martians. ARP requests go through the same check (arp_process → ip_route_input).

// SourceVerdict is what the source check does to a packet.
type SourceVerdict string

const (
	SourceAccepted SourceVerdict = ""          // the packet passes
	SourceMartian  SourceVerdict = "martian"   // the source is local and accept_local is off
	SourceRPFilter SourceVerdict = "rp_filter" // strict rp_filter and the route back leaves elsewhere
	SourceUnknown  SourceVerdict = "unknown"   // a sysctl or the route back could not be read
)

// EffectiveAcceptLocal is accept_local as the kernel applies it on a NIC: on when "all" or the
// NIC's is on (IN_DEV_ORCONF). -1 when either is unknown (negative).
func EffectiveAcceptLocal(all, nic int) int {
	if all < 0 || nic < 0 {
		return -1
	}
	if all > 0 || nic > 0 {
		return 1
	}
	return 0
}

// EffectiveRPFilter is rp_filter as the kernel applies it on a NIC: the larger of "all" and
// the NIC's (IN_DEV_MAXCONF). -1 when either is unknown (negative).
func EffectiveRPFilter(all, nic int) int {
	if all < 0 || nic < 0 {
		return -1
	}
	return max(all, nic)
}

// ParseSysctlInt reads an integer sysctl value; -1 when it is not one.
func ParseSysctlInt(v string) int {
	n, err := strconv.Atoi(v)
	if err != nil {
		return -1
	}
	return n
}

// RouteBack is the route the source check finds back to a packet's source: its type (RTN_*,
// 0 when there is none or it could not be read) and the NIC it leaves through.
type RouteBack struct {
	Type int
	Dev  string
}

// PredictSource says what the source check on NIC inDev does to a packet whose route back is
// back, under the NIC's effective accept_local and rp_filter.
func PredictSource(acceptLocal, rpFilter int, back RouteBack, inDev string) SourceVerdict {
	if back.Type == 0 {
		return SourceUnknown
	}
	local := back.Type == unix.RTN_LOCAL
	switch {
	case local && acceptLocal == 0:
		return SourceMartian
	case rpFilter == 1 && back.Dev != inDev && (back.Type == unix.RTN_UNICAST || local && acceptLocal == 1):
		return SourceRPFilter
	case acceptLocal < 0 || rpFilter < 0:
		return SourceUnknown
	}
	return SourceAccepted
}

// RouteTypeOf parses RouteTypeName's output back (0 for anything else).
func RouteTypeOf(name string) int {
	for t := unix.RTN_UNICAST; t <= unix.RTN_XRESOLVE; t++ {
		if RouteTypeName(t) == name {
			return t
		}
	}
	return 0
}
