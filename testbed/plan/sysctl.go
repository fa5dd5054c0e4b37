package plan

import (
	"errors"
	"fmt"
	"strings"

	"github.com/rocebed/rocebed/internal/host"
	"github.com/rocebed/rocebed/sysctl"
)

// Sysctl writes a kernel parameter; Old is the value it replaced. Index is the ifindex of the
// interface a per-interface key configures, so Undo never writes a parameter of another
// interface that has since taken the name.
type Sysctl struct {
	Key   string `json:"key"`
	Value string `json:"value,omitempty"`
	Old   string `json:"old,omitempty"`
	Index int    `json:"ifindex,omitempty"`
}

func (*Sysctl) Kind() Kind            { return KindSysctl }
func (c *Sysctl) Command() string     { return "sysctl -w " + Quote(c.Key+"="+c.Value) }
func (c *Sysctl) UndoCommand() string { return "sysctl -w " + Quote(c.Key+"="+c.Old) }
func (c *Sysctl) Transition() string  { return fmt.Sprintf("%s → %s", c.Old, c.Value) }

func (c *Sysctl) Prepare(env *host.Env) error {
	if err := c.Check(); err != nil {
		return err
	}
	if ifc := ownInterface(c.Key); ifc != "" {
		if _, err := prepareLink(env, ifc, &c.Index); err != nil {
			return err
		}
	}
	old, err := env.GetSysctl(c.Key)
	if err != nil {
		return err
	}
	c.Old = old
	return nil
}

func (c *Sysctl) Apply(env *host.Env) error {
	err := env.SetSysctl(c.Key, c.Value)
	if err != nil && !errors.Is(err, sysctl.ErrReadBack) {
		return notMade(err) // the write itself failed: the old value stands
	}
	return err
}

func (c *Sysctl) Undo(env *host.Env) error {
	if err := c.Check(); err != nil {
		return err
	}
	if ifc := ownInterface(c.Key); ifc != "" {
		l, err := linkAt(env, ifc, c.Index)
		if err != nil {
			return err
		}
		if l == nil {
			return nil // the per-interface parameter went with its interface
		}
	}
	return env.SetSysctl(c.Key, c.Old)
}

// Check allows only the network parameters a scenario may set (net.ipv4, net.ipv6, net.core),
// read the one way the validator and the writer read them, and values of one printable line.
func (c *Sysctl) Check() error {
	k, err := sysctl.ParseKey(c.Key)
	if err != nil {
		return err
	}
	if len(k.Parts) < 3 || k.Parts[0] != "net" || (k.Parts[1] != "ipv4" && k.Parts[1] != "ipv6" && k.Parts[1] != "core") {
		return fmt.Errorf("sysctl %q is outside net.ipv4, net.ipv6 and net.core", c.Key)
	}
	if k.String() != c.Key {
		return fmt.Errorf("sysctl %q is not in its canonical form %q", c.Key, k.String())
	}
	if err := checkValue("value", c.Value); err != nil {
		return err
	}
	return checkValue("old value", c.Old)
}

// ownInterface is the interface of a per-interface key, "" for others and for all, default
// (and lo, whose parameters Undo writes back like global ones).
func ownInterface(key string) string {
	switch ifc := sysctl.Interface(key); {
	case ifc == "all", ifc == "default", ifc == "lo":
		return ""
	case strings.TrimSpace(ifc) == "":
		return ""
	default:
		return ifc
	}
}
