package plan

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/rocebed/rocebed/internal/host"
	"github.com/rocebed/rocebed/internal/kernel"
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
	// crash before, during or after the change, and twice.
	Undo(env *host.Env) error
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
		fmt.Fprintf(&b, " iif %s", r.IIF)
	}
	if r.OIF != "" {
		fmt.Fprintf(&b, " oif %s", r.OIF)
	}
	if r.From != "" {
		fmt.Fprintf(&b, " from %s", r.From)
	}
	if r.To != "" {
		fmt.Fprintf(&b, " to %s", r.To)
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
	b.WriteString(r.To)
	if r.Via != "" {
		fmt.Fprintf(&b, " via %s", r.Via)
	}
	fmt.Fprintf(&b, " dev %s", r.Dev)
	if r.Src != "" {
		fmt.Fprintf(&b, " src %s", r.Src)
	}
	if r.Table != 0 {
		fmt.Fprintf(&b, " table %s", kernel.TableName(r.Table))
	}
	return b.String()
}
