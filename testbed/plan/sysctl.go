package plan

import (
	"errors"
	"fmt"

	"github.com/rocebed/rocebed/internal/host"
	"github.com/rocebed/rocebed/sysctl"
	"github.com/vishvananda/netlink"
)

// Sysctl writes a kernel parameter; Old is the value it replaced.
type Sysctl struct {
	Key   string `json:"key"`
	Value string `json:"value,omitempty"`
	Old   string `json:"old,omitempty"`
}

func (*Sysctl) Kind() Kind            { return KindSysctl }
func (c *Sysctl) Command() string     { return fmt.Sprintf("sysctl -w %s=%s", c.Key, c.Value) }
func (c *Sysctl) UndoCommand() string { return fmt.Sprintf("sysctl -w %s=%s", c.Key, c.Old) }
func (c *Sysctl) Transition() string  { return fmt.Sprintf("%s → %s", c.Old, c.Value) }

func (c *Sysctl) Prepare(env *host.Env) error {
	old, err := env.GetSysctl(c.Key)
	if err != nil {
		return err
	}
	c.Old = old
	return nil
}

func (c *Sysctl) Apply(env *host.Env) error { return env.SetSysctl(c.Key, c.Value) }

func (c *Sysctl) Undo(env *host.Env) error {
	err := env.SetSysctl(c.Key, c.Old)
	if err != nil && sysctlOfGoneLink(env, c.Key) {
		return nil // the per-interface parameter went with its interface
	}
	return err
}

// sysctlOfGoneLink reports whether key belongs to an interface that no longer exists.
func sysctlOfGoneLink(env *host.Env, key string) bool {
	ifc := sysctl.Interface(key)
	if ifc == "" || ifc == "all" || ifc == "default" {
		return false
	}
	_, err := env.NL.LinkByName(ifc)
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf)
}
