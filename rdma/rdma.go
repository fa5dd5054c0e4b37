// Package rdma finds and manages the RDMA side of a soft-RoCE testbed without cgo: rxe links
// over the RDMA netlink family (what `rdma link` does), and ports, GIDs and counters from sysfs
// (/sys/class/infiniband). Verbs traffic lives in the cgo subpackage rdma/verbs.
//
// Nothing here imports the testbed package: failures that mean "this host lacks something"
// come back as *MissingError, which the testbed layer turns into its PreflightError.
package rdma

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
)

// Sentinels. Test with errors.Is; the errors returned carry more context.
var (
	// ErrNoRDMA: the kernel has no RDMA core (no NETLINK_RDMA family, no /sys/class/infiniband).
	ErrNoRDMA = errors.New("this kernel has no RDMA core")
	// ErrNoRXE: the kernel has an RDMA core but no soft-RoCE driver (rdma_rxe).
	ErrNoRXE = errors.New("this kernel has no rdma_rxe (soft-RoCE) driver")
	// ErrNotFound: the named device, port, GID or netdev does not exist.
	ErrNotFound = errors.New("not found")
)

// MissingError says something the host lacks, in the same shape as testbed.PreflightError
// (Check, Need, Have, Hint), so the testbed layer can convert it field by field. Err wraps
// ErrNoRDMA or ErrNoRXE and the underlying cause.
type MissingError struct {
	Check string // "rdma_rxe"
	Need  string // "the rdma_rxe kernel module"
	Have  string // "not loaded, and `modprobe rdma_rxe` failed: ..."
	Hint  string // "run `modprobe rdma_rxe`, or ..."
	Err   error
}

func (e *MissingError) Error() string {
	msg := fmt.Sprintf("%s: need %s, have %s", e.Check, e.Need, e.Have)
	if e.Hint != "" {
		msg += ": " + e.Hint
	}
	return msg
}

func (e *MissingError) Unwrap() error { return e.Err }

// GIDType is the kind of a GID table entry (sysfs gid_attrs/types/N).
type GIDType uint8

const (
	GIDTypeUnknown GIDType = iota
	// RoCEv1 is "IB/RoCE v1" on an Ethernet port: RoCE over raw Ethernet (ethertype 0x8915),
	// not routable.
	RoCEv1
	// RoCEv2 is "RoCE v2": RoCE over UDP/IP port 4791, what rxe testbeds use.
	RoCEv2
	// IB is "IB/RoCE v1" on an InfiniBand port.
	IB
)

func (t GIDType) String() string {
	switch t {
	case RoCEv1:
		return "RoCE v1"
	case RoCEv2:
		return "RoCE v2"
	case IB:
		return "IB"
	default:
		return "unknown"
	}
}

// parseGIDType maps the sysfs type string and the port's link layer ("Ethernet",
// "InfiniBand") to a GIDType. The kernel prints "IB/RoCE v1" for both IB and RoCE v1.
func parseGIDType(s, linkLayer string) GIDType {
	switch strings.TrimSpace(s) {
	case "RoCE v2":
		return RoCEv2
	case "IB/RoCE v1", "RoCE v1":
		if strings.EqualFold(strings.TrimSpace(linkLayer), "InfiniBand") {
			return IB
		}
		return RoCEv1
	case "IB":
		return IB
	}
	return GIDTypeUnknown
}

// GID is one entry of a port's GID table.
type GID struct {
	Index  int        // the GID index: what ibv_*_pingpong -g and perftest -x take
	Addr   netip.Addr // the 16-byte GID as an IPv6 address (::ffff:a.b.c.d for IPv4)
	Raw    string     // as sysfs prints it: "0000:0000:0000:0000:0000:ffff:0a0a:0001"
	Type   GIDType
	NetDev string // the netdev the GID belongs to (gid_attrs/ndevs/N); empty for IB
}

// IP is the IP address the GID stands for: the IPv4 address for an IPv4-mapped GID,
// otherwise the GID itself.
func (g GID) IP() netip.Addr { return g.Addr.Unmap() }

func (g GID) String() string {
	s := fmt.Sprintf("%d %s (%s)", g.Index, g.IP(), g.Type)
	if g.NetDev != "" {
		s += " on " + g.NetDev
	}
	return s
}

// PortState is the IB port state (sysfs ports/N/state, "4: ACTIVE").
type PortState int

const (
	PortNop         PortState = 0
	PortDown        PortState = 1
	PortInit        PortState = 2
	PortArmed       PortState = 3
	PortActive      PortState = 4
	PortActiveDefer PortState = 5
)

func (s PortState) String() string {
	switch s {
	case PortNop:
		return "NOP"
	case PortDown:
		return "DOWN"
	case PortInit:
		return "INIT"
	case PortArmed:
		return "ARMED"
	case PortActive:
		return "ACTIVE"
	case PortActiveDefer:
		return "ACTIVE_DEFER"
	}
	return fmt.Sprintf("PortState(%d)", int(s))
}

// Port is one port of an RDMA device as sysfs shows it.
type Port struct {
	Num       int
	State     PortState
	PhysState string // "5: LinkUp"
	LinkLayer string // "Ethernet" or "InfiniBand"
	NetDev    string // the netdev bound to the port (rxe: the one from `rdma link add ... netdev`)
	GIDs      []GID
}

// Device is an RDMA device (an entry of /sys/class/infiniband).
type Device struct {
	Name  string
	Ports []Port
}

// Counters are named port counters (hw_counters or counters), as read at one moment.
type Counters map[string]uint64

// Delta returns c minus before, per counter. A counter missing from before counts from zero;
// one that went down (the device was re-created) reports its current value, not a wrapped
// huge number.
func (c Counters) Delta(before Counters) Counters {
	d := make(Counters, len(c))
	for name, now := range c {
		was := before[name]
		if now >= was {
			d[name] = now - was
		} else {
			d[name] = now
		}
	}
	return d
}

// Names returns the counter names in sorted order, for stable output.
func (c Counters) Names() []string {
	return slices.Sorted(maps.Keys(c))
}

// NonZero returns only the counters that are not zero.
func (c Counters) NonZero() Counters {
	out := make(Counters)
	for k, v := range c {
		if v != 0 {
			out[k] = v
		}
	}
	return out
}

// String prints "name=value" pairs in name order.
func (c Counters) String() string {
	var b strings.Builder
	for i, name := range c.Names() {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%d", name, c[name])
	}
	return b.String()
}

// RXEActiveMTU is the IB MTU (256..4096) an rxe port uses over a netdev with MTU netdevMTU:
// rxe keeps 80 bytes for its headers and rounds down to an IB MTU, with 256 as the floor.
// sysfs has no active_mtu file; for hardware ports ask verbs (ibv_query_port).
func RXEActiveMTU(netdevMTU int) int {
	const rxeMaxHdrLength = 80
	m := netdevMTU - rxeMaxHdrLength
	for _, ib := range []int{4096, 2048, 1024, 512, 256} {
		if m >= ib {
			return ib
		}
	}
	return 256
}
