package plan

import (
	"fmt"
	"net"

	"github.com/rocebed/rocebed/internal/host"
	"github.com/vishvananda/netlink"
)

// RuleAdd adds a policy rule.
type RuleAdd struct {
	Rule *RuleSpec `json:"rule"`
}

func (*RuleAdd) Kind() Kind              { return KindRule }
func (*RuleAdd) Transition() string      { return "" }
func (*RuleAdd) Prepare(*host.Env) error { return nil }
func (c *RuleAdd) Command() string {
	return "ip " + c.Rule.familyFlag() + "rule add " + c.Rule.String()
}
func (c *RuleAdd) UndoCommand() string {
	return "ip " + c.Rule.familyFlag() + "rule del " + c.Rule.String()
}

func (c *RuleAdd) Apply(env *host.Env) error {
	r, err := netlinkRule(*c.Rule)
	if err != nil {
		return notMade(err)
	}
	// EEXIST: the same rule is there already, added by someone else since planning.
	return notMade(env.NL.RuleAdd(r))
}

func (c *RuleAdd) Undo(env *host.Env) error {
	r, err := netlinkRule(*c.Rule)
	if err != nil {
		return err
	}
	return ignoreGone(env.NL.RuleDel(r))
}

func (c *RuleAdd) Check() error { return c.Rule.check() }

// RuleDel deletes a policy rule (the kernel's `0: from all lookup local`, moved elsewhere);
// undo adds it back exactly, protocol included.
type RuleDel struct {
	Rule *RuleSpec `json:"rule"`
}

func (*RuleDel) Kind() Kind              { return KindRuleDel }
func (*RuleDel) Transition() string      { return "" }
func (*RuleDel) Prepare(*host.Env) error { return nil }
func (c *RuleDel) Command() string {
	return "ip " + c.Rule.familyFlag() + "rule del " + c.Rule.String()
}
func (c *RuleDel) UndoCommand() string {
	return "ip " + c.Rule.familyFlag() + "rule add " + c.Rule.String()
}

func (c *RuleDel) Apply(env *host.Env) error {
	r, err := netlinkRule(*c.Rule)
	if err != nil {
		return notMade(err)
	}
	return notMade(env.NL.RuleDel(r))
}

func (c *RuleDel) Undo(env *host.Env) error {
	// The kernel accepts duplicate rules that differ only in protocol, so check first.
	rules, err := View(env).Rules(c.Rule.Family)
	if err != nil {
		return err
	}
	for _, x := range rules {
		if SameRule(x, *c.Rule) {
			return nil
		}
	}
	r, err := netlinkRule(*c.Rule)
	if err != nil {
		return err
	}
	return env.NL.RuleAdd(r)
}

func (c *RuleDel) Check() error { return c.Rule.check() }

// netlinkRule converts rocebed's rule form to netlink's.
func netlinkRule(rs RuleSpec) (*netlink.Rule, error) {
	r := netlink.NewRule()
	r.Family = rs.Family
	r.Priority = rs.Priority
	r.Table = rs.Table
	r.IifName = rs.IIF
	r.OifName = rs.OIF
	r.Protocol = uint8(rs.Protocol)
	var err error
	if rs.From != "" {
		if _, r.Src, err = net.ParseCIDR(rs.From); err != nil {
			return nil, fmt.Errorf("rule from %q: %w", rs.From, err)
		}
	}
	if rs.To != "" {
		if _, r.Dst, err = net.ParseCIDR(rs.To); err != nil {
			return nil, fmt.Errorf("rule to %q: %w", rs.To, err)
		}
	}
	return r, nil
}

// RuleSpecOf converts a kernel rule to rocebed's form, so planned and existing rules compare.
func RuleSpecOf(family int, r netlink.Rule) RuleSpec {
	rs := RuleSpec{Family: family, Priority: r.Priority, IIF: r.IifName, OIF: r.OifName, Table: r.Table, Protocol: int(r.Protocol)}
	if r.Src != nil {
		rs.From = r.Src.String()
	}
	if r.Dst != nil {
		rs.To = r.Dst.String()
	}
	return rs
}
