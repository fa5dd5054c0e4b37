package diagnose

import (
	"fmt"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/rocebed/rocebed/internal/kernel"
	"github.com/rocebed/rocebed/rdma"
	"github.com/rocebed/rocebed/rdma/verbs"
)

// The typed values of the evidence. Each spells itself in JSON as the kernel or the tool prints
// it ("local", "REACHABLE", "ACTIVE", "EXDEV"), so recorded evidence reads as before and
// replays into the same values.

// TrafficSource says where the traffic evidence came from.
type TrafficSource string

const (
	SourceDiagnose TrafficSource = "diagnose" // Run ran the traffic between two counter snapshots
	SourceRun      TrafficSource = "run"      // a report of traffic that already ran (a failed `run`)
)

// Side names an endpoint of the lab.
type Side string

const (
	SideA Side = "a"
	SideB Side = "b"
)

// RouteType is a route's type (RTN_*), spelled as `ip route` prints it ("unicast", "local");
// zero when the kernel was not asked or refused.
type RouteType int

// The route types the rules tell apart.
const (
	RouteUnicast RouteType = unix.RTN_UNICAST
	RouteLocal   RouteType = unix.RTN_LOCAL
)

func (t RouteType) String() string {
	if t == 0 {
		return ""
	}
	return kernel.RouteTypeName(int(t))
}

func (t RouteType) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

func (t *RouteType) UnmarshalText(b []byte) error {
	s := string(b)
	switch n := kernel.RouteTypeOf(s); {
	case s == "":
		*t = 0
	case n != 0:
		*t = RouteType(n)
	default:
		// kernel.RouteTypeName prints types it has no name for as "type N".
		v, err := strconv.Atoi(strings.TrimPrefix(s, "type "))
		if err != nil || !strings.HasPrefix(s, "type ") {
			return fmt.Errorf("unknown route type %q", s)
		}
		*t = RouteType(v)
	}
	return nil
}

// Errno is the error the kernel answered a route query with, spelled by its name ("EXDEV");
// zero for none.
type Errno syscall.Errno

func (e Errno) String() string {
	if e == 0 {
		return ""
	}
	return unix.ErrnoName(syscall.Errno(e))
}

func (e Errno) MarshalText() ([]byte, error) { return []byte(e.String()), nil }

func (e *Errno) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*e = 0
		return nil
	}
	// errno values are below MAX_ERRNO (4095).
	for v := syscall.Errno(1); v < 4096; v++ {
		if unix.ErrnoName(v) == string(b) {
			*e = Errno(v)
			return nil
		}
	}
	return fmt.Errorf("unknown errno %q", b)
}

// NeighborLookup is how looking up the peer's address in the neighbour table went.
type NeighborLookup uint8

const (
	NeighborNotLooked  NeighborLookup = iota // not looked up: the endpoint addresses are not IP addresses
	NeighborEntry                            // an entry, in state NUD
	NeighborAbsent                           // no entry
	NeighborUnknown                          // the source NIC was not found, or its namespace not opened
	NeighborUnreadable                       // the table could not be read (Err says why)
)

// NeighborState is the peer's neighbour entry as `ip neigh` shows it ("REACHABLE",
// "STALE,…"), or "absent", "unknown" or "unreadable: ERR"; "" when not looked up.
type NeighborState struct {
	Lookup NeighborLookup
	NUD    int    // the entry's NUD_* bits (kernel.NUD*), for NeighborEntry
	Err    string // why the table could not be read, for NeighborUnreadable
}

// NeighborEntryState is an entry in state nud (kernel.NUD* bits).
func NeighborEntryState(nud int) NeighborState {
	return NeighborState{Lookup: NeighborEntry, NUD: nud}
}

// Usable reports whether the kernel sends to the cached MAC in this state (kernel.NUDUsable).
func (s NeighborState) Usable() bool {
	return s.Lookup == NeighborEntry && s.NUD&kernel.NUDUsable != 0
}

func (s NeighborState) String() string {
	switch s.Lookup {
	case NeighborEntry:
		return kernel.NeighStateName(s.NUD)
	case NeighborAbsent:
		return "absent"
	case NeighborUnknown:
		return "unknown"
	case NeighborUnreadable:
		return "unreadable: " + s.Err
	}
	return ""
}

func (s NeighborState) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

func (s *NeighborState) UnmarshalText(b []byte) error {
	v := string(b)
	switch {
	case v == "":
		*s = NeighborState{}
	case v == "absent":
		*s = NeighborState{Lookup: NeighborAbsent}
	case v == "unknown":
		*s = NeighborState{Lookup: NeighborUnknown}
	case strings.HasPrefix(v, "unreadable: "):
		*s = NeighborState{Lookup: NeighborUnreadable, Err: strings.TrimPrefix(v, "unreadable: ")}
	default:
		nud := kernel.NeighStateOf(v)
		if nud == 0 && v != kernel.NeighStateName(0) {
			return fmt.Errorf("unknown neighbour state %q", v)
		}
		*s = NeighborEntryState(nud)
	}
	return nil
}

// PortState is an RDMA port's state as sysfs gives it, spelled as `rdma link` prints it
// ("ACTIVE"); the zero value means it was not read (no such device).
type PortState struct {
	State rdma.PortState
	Read  bool
}

// PortStateOf is a state read from sysfs.
func PortStateOf(s rdma.PortState) PortState { return PortState{State: s, Read: true} }

// Active reports whether the port was read and is ACTIVE.
func (p PortState) Active() bool { return p.Read && p.State == rdma.PortActive }

// IsZero reports whether the state was not read (the JSON leaves it out).
func (p PortState) IsZero() bool { return !p.Read }

func (p PortState) String() string {
	if !p.Read {
		return ""
	}
	return p.State.String()
}

func (p PortState) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

func (p *PortState) UnmarshalText(b []byte) error {
	v := string(b)
	if v == "" {
		*p = PortState{}
		return nil
	}
	for s := rdma.PortNop; s <= rdma.PortActiveDefer; s++ {
		if s.String() == v {
			*p = PortStateOf(s)
			return nil
		}
	}
	// rdma.PortState prints states it has no name for as "PortState(N)".
	if n, ok := strings.CutPrefix(v, "PortState("); ok {
		if i, err := strconv.Atoi(strings.TrimSuffix(n, ")")); err == nil {
			*p = PortStateOf(rdma.PortState(i))
			return nil
		}
	}
	return fmt.Errorf("unknown port state %q", v)
}

// CompletionStatus is a work completion's status, spelled by its C name
// ("IBV_WC_RETRY_EXC_ERR"); zero (IBV_WC_SUCCESS) where there was no failed completion.
type CompletionStatus verbs.WCStatus

func (s CompletionStatus) String() string {
	if s == 0 {
		return ""
	}
	return verbs.WCStatus(s).CName()
}

func (s CompletionStatus) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

func (s *CompletionStatus) UnmarshalText(b []byte) error {
	v := string(b)
	if v == "" {
		*s = 0
		return nil
	}
	// CName names the statuses in order and the rest "IBV_WC_STATUS_N".
	for st := verbs.WCStatus(0); !strings.HasPrefix(st.CName(), "IBV_WC_STATUS_"); st++ {
		if st.CName() == v {
			*s = CompletionStatus(st)
			return nil
		}
	}
	if n, ok := strings.CutPrefix(v, "IBV_WC_STATUS_"); ok {
		if i, err := strconv.ParseUint(n, 10, 32); err == nil {
			*s = CompletionStatus(i)
			return nil
		}
	}
	return fmt.Errorf("unknown completion status %q", v)
}

// TraceProtocol is the protocol of a traced skb: "IPv4", "ARP", or "ethertype N".
type TraceProtocol string

const (
	TraceIPv4 TraceProtocol = "IPv4"
	TraceARP  TraceProtocol = "ARP"
)
