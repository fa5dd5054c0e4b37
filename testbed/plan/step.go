package plan

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/rocebed/rocebed/internal/host"
	"github.com/rocebed/rocebed/internal/kernel"
	"github.com/rocebed/rocebed/testbed/scenario"
)

// Kind names one kind of host change.
type Kind string

const (
	KindVeth     Kind = "veth"     // ip link add A type veth peer name B
	KindMTU      Kind = "mtu"      // ip link set NIC mtu N (existing NIC; old value saved)
	KindAddr     Kind = "addr"     // ip addr add CIDR dev NIC
	KindSysctl   Kind = "sysctl"   // sysctl -w KEY=VALUE (old value saved)
	KindUp       Kind = "up"       // ip link set NIC up (old state saved)
	KindRule     Kind = "rule"     // ip rule add ...
	KindRuleDel  Kind = "rule-del" // ip rule del ... (the rule is re-added on undo)
	KindRoute    Kind = "route"    // ip route add ...
	KindNeighbor Kind = "neighbor" // ip neigh replace IP lladdr MAC dev NIC nud permanent
	KindRXE      Kind = "rxe"      // rdma link add NAME type rxe netdev NIC
	KindDAD      Kind = "dad"      // wait until an IPv6 address is no longer tentative (changes nothing)
	KindResolve  Kind = "resolve"  // ip neigh add PEER dev NIC nud none use (resolve the cable's neighbours now)
)

// Change is one kind of host change: everything rocebed knows about it lives on its type —
// the command it prints, the value it saves, how it is made and how it is undone. Adding a
// kind of change means adding a type and registering it in kinds.
type Change interface {
	Kind() Kind
	// Command is the iproute2/sysctl/rdma command that makes the same change, for `plan`.
	Command() string
	// UndoCommand is the command that reverts it.
	UndoCommand() string
	// Transition is the old → new of a value the change replaces ("" when there is none).
	Transition() string
	// Prepare reads what the change replaces, right before it is journaled and made: that is
	// what Undo restores, whatever planning saw.
	Prepare(env *host.Env) error
	// Apply makes the change.
	Apply(env *host.Env) error
	// Undo reverts it. It succeeds when the change is already gone, so it can run after a
	// crash before, during or after the change, and twice. It acts only on what this change
	// made: a link is known by the ifindex Prepare recorded, never by its name alone.
	Undo(env *host.Env) error
	// Check says whether the change is well-formed — names the kernel keeps as written,
	// addresses, keys and values of the right form — without looking at the host. A journal
	// is read through it, so `down` never acts on a record it could not have written.
	Check() error
}

// ErrNotMade marks an Apply error after which the host is as it was: the kernel refused the
// change (a link or address that exists already, say). Up journals such a step as not made,
// so rollback never undoes what another process made.
var ErrNotMade = errors.New("change not made")

// notMade wraps err, the error of the one call that makes a change, with ErrNotMade.
func notMade(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w (%w)", err, ErrNotMade)
}

// kinds makes an empty Change of each kind, for decoding a journal or a plan.
var kinds = map[Kind]func() Change{
	KindVeth:     func() Change { return &Veth{} },
	KindMTU:      func() Change { return &MTU{} },
	KindAddr:     func() Change { return &Addr{} },
	KindSysctl:   func() Change { return &Sysctl{} },
	KindUp:       func() Change { return &LinkUp{} },
	KindRule:     func() Change { return &RuleAdd{} },
	KindRuleDel:  func() Change { return &RuleDel{} },
	KindRoute:    func() Change { return &Route{} },
	KindNeighbor: func() Change { return &Neighbor{} },
	KindRXE:      func() Change { return &RXE{} },
	KindDAD:      func() Change { return &DADWait{} },
	KindResolve:  func() Change { return &Resolve{} },
}

// Step is one change of a plan, with the fix group it belongs to ("" for the topology). It is
// serialised flat — {"kind": …, "fix": …, then the change's own fields} — so the journal can
// undo it after a crash without re-planning and `plan --json` reads as one object per change.
type Step struct {
	Fix string
	Change
}

// MarshalJSON writes kind and fix first, then the change's fields.
func (s Step) MarshalJSON() ([]byte, error) {
	body, err := json.Marshal(s.Change)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, `{"kind":%q`, s.Kind())
	if s.Fix != "" {
		fix, _ := json.Marshal(s.Fix)
		b.WriteString(`,"fix":`)
		b.Write(fix)
	}
	if body = bytes.TrimSpace(body); len(body) > 2 {
		b.WriteByte(',')
		b.Write(body[1:])
	} else {
		b.WriteByte('}')
	}
	return b.Bytes(), nil
}

// UnmarshalJSON reads what MarshalJSON wrote; an unknown kind is an error.
func (s *Step) UnmarshalJSON(data []byte) error {
	var head struct {
		Kind Kind   `json:"kind"`
		Fix  string `json:"fix"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return err
	}
	mk, ok := kinds[head.Kind]
	if !ok {
		return fmt.Errorf("unknown kind of change %q", head.Kind)
	}
	c := mk()
	if err := json.Unmarshal(data, c); err != nil {
		return fmt.Errorf("%s change: %w", head.Kind, err)
	}
	s.Fix, s.Change = head.Fix, c
	return nil
}

// RuleSpec is a policy rule as rocebed adds and deletes it.
type RuleSpec struct {
	Family   int    `json:"family"` // unix.AF_INET or AF_INET6
	Priority int    `json:"priority"`
	IIF      string `json:"iif,omitempty"`
	OIF      string `json:"oif,omitempty"`
	From     string `json:"from,omitempty"` // CIDR
	To       string `json:"to,omitempty"`   // CIDR
	Table    int    `json:"table"`
	// Protocol is who installed the rule (2 = kernel for the default rules); kept so a
	// deleted rule comes back exactly as it was.
	Protocol int `json:"protocol,omitempty"`
}

// SameRule compares rules by what they match and where they point, not by who made them.
func SameRule(a, b RuleSpec) bool {
	a.Protocol, b.Protocol = 0, 0
	return a == b
}

func (r *RuleSpec) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "pref %d", r.Priority)
	if r.IIF != "" {
		fmt.Fprintf(&b, " iif %s", Quote(r.IIF))
	}
	if r.OIF != "" {
		fmt.Fprintf(&b, " oif %s", Quote(r.OIF))
	}
	if r.From != "" {
		fmt.Fprintf(&b, " from %s", Quote(r.From))
	}
	if r.To != "" {
		fmt.Fprintf(&b, " to %s", Quote(r.To))
	}
	fmt.Fprintf(&b, " lookup %s", kernel.TableName(r.Table))
	if r.Protocol != 0 {
		fmt.Fprintf(&b, " protocol %s", kernel.ProtocolName(r.Protocol))
	}
	return b.String()
}

// familyFlag is the iproute2 flag for a rule family.
func (r *RuleSpec) familyFlag() string {
	if r.Family == kernel.AFInet6 {
		return "-6 "
	}
	return ""
}

// RouteSpec is a route as rocebed adds and deletes it.
type RouteSpec struct {
	To    string `json:"to"` // CIDR
	Dev   string `json:"dev"`
	Src   string `json:"src,omitempty"`
	Via   string `json:"via,omitempty"`
	Table int    `json:"table,omitempty"`
}

func (r *RouteSpec) String() string {
	var b strings.Builder
	b.WriteString(Quote(r.To))
	if r.Via != "" {
		fmt.Fprintf(&b, " via %s", Quote(r.Via))
	}
	fmt.Fprintf(&b, " dev %s", Quote(r.Dev))
	if r.Src != "" {
		fmt.Fprintf(&b, " src %s", Quote(r.Src))
	}
	if r.Table != 0 {
		fmt.Fprintf(&b, " table %s", kernel.TableName(r.Table))
	}
	return b.String()
}

// check says whether the rule is one rocebed could have made or moved.
func (r *RuleSpec) check() error {
	switch {
	case r == nil:
		return errors.New("no rule")
	case r.Family != kernel.AFInet && r.Family != kernel.AFInet6:
		return fmt.Errorf("rule family %d: want %d (IPv4) or %d (IPv6)", r.Family, kernel.AFInet, kernel.AFInet6)
	case r.Priority < 0 || r.Priority > 32767:
		return fmt.Errorf("rule priority %d out of range", r.Priority)
	case r.Table < 1 || r.Table > maxTable:
		return fmt.Errorf("rule table %d out of range", r.Table)
	case r.Protocol < 0 || r.Protocol > 255:
		return fmt.Errorf("rule protocol %d out of range", r.Protocol)
	}
	for _, n := range []string{r.IIF, r.OIF} {
		if n != "" {
			if err := checkIfName(n); err != nil {
				return err
			}
		}
	}
	for _, p := range []string{r.From, r.To} {
		if p != "" {
			if _, err := netip.ParsePrefix(p); err != nil {
				return fmt.Errorf("rule prefix %q: %w", p, err)
			}
		}
	}
	return nil
}

// check says whether the route is one rocebed could have made.
func (r *RouteSpec) check() error {
	if r == nil {
		return errors.New("no route")
	}
	if _, err := netip.ParsePrefix(r.To); err != nil {
		return fmt.Errorf("route to %q: %w", r.To, err)
	}
	if err := checkIfName(r.Dev); err != nil {
		return err
	}
	for _, a := range []string{r.Src, r.Via} {
		if a != "" {
			if _, err := netip.ParseAddr(a); err != nil {
				return fmt.Errorf("route address %q: %w", a, err)
			}
		}
	}
	if r.Table < 0 || r.Table > maxTable {
		return fmt.Errorf("route table %d out of range", r.Table)
	}
	return nil
}

const maxTable = 1<<32 - 1

// checkIfName refuses an interface name the kernel would refuse or rewrite.
func checkIfName(name string) error {
	if msg := scenario.IfNameProblem(name); msg != "" {
		return fmt.Errorf("interface name: %s", msg)
	}
	return nil
}

// checkValue refuses a value (a sysctl's, an MTU's) that is not one line of printable text;
// tabs separate the fields of multi-value sysctls.
func checkValue(what, v string) error {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < 0x20 && c != '\t') || c >= 0x7f {
			return fmt.Errorf("%s %q: want printable ASCII", what, v)
		}
	}
	return nil
}

// Quote quotes s for a POSIX shell when it needs it: as it is when it is made only of
// characters no shell treats specially, in single quotes otherwise, and — when it holds a
// control character or a byte that is not ASCII — as bash's $'...' with every such byte
// escaped. A printed command can then neither run something else when pasted nor send an
// escape sequence to the terminal.
func Quote(s string) string {
	if s == "" {
		return "''"
	}
	safe, ctrl := true, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("@%+=:,./_-", c) >= 0:
		case c < 0x20 || c >= 0x7f:
			safe, ctrl = false, true
		default:
			safe = false
		}
	}
	switch {
	case safe:
		return s
	case !ctrl:
		return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
	}
	var b strings.Builder
	b.WriteString("$'")
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' || c == '\'':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c >= 0x20 && c < 0x7f:
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "\\x%02x", c)
		}
	}
	b.WriteByte('\'')
	return b.String()
}

// runtimeFields are the JSON fields of each kind that Prepare fills from the host (old values,
// the ifindex of the link acted on); the rest is what planning decided.
var runtimeFields = map[Kind][]string{
	KindVeth:     {"ifindex"},
	KindMTU:      {"old", "ifindex"},
	KindAddr:     {"ifindex"},
	KindSysctl:   {"old", "ifindex"},
	KindUp:       {"old", "ifindex"},
	KindRoute:    {"ifindex"},
	KindNeighbor: {"old", "old_state", "old_router", "ifindex"},
	KindResolve:  {"had", "peer_had", "skip", "ifindex", "peer_ifindex", "taught", "taught_peer"},
}

// SameStep reports whether recorded is the planned step as Prepare left it: the same kind,
// fix and planned fields, whatever old values and ifindex it read from the host. The journal
// holds every begun step against the plan recorded at `up` this way.
func SameStep(planned, recorded Step) bool {
	if planned.Change == nil || recorded.Change == nil || planned.Kind() != recorded.Kind() || planned.Fix != recorded.Fix {
		return false
	}
	a, errA := plannedFields(planned)
	b, errB := plannedFields(recorded)
	if errA != nil || errB != nil {
		return false
	}
	if planned.Kind() == KindNeighbor && a["mac"] == scenario.PeerMAC {
		delete(a, "mac") // Prepare resolves "peer" to the MAC at the other end of the cable
		delete(b, "mac")
	}
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Equal(ja, jb)
}

func plannedFields(s Step) (map[string]any, error) {
	raw, err := json.Marshal(s.Change)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	for _, k := range runtimeFields[s.Kind()] {
		delete(m, k)
	}
	return m, nil
}
