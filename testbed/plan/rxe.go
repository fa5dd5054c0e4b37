package plan

import (
	"context"
	"time"

	"github.com/rocebed/rocebed/internal/host"
	"github.com/rocebed/rocebed/rdma"
)

// RXE creates a soft-RoCE device on a NIC.
type RXE struct {
	Link string `json:"link"` // the netdev
	RXE  string `json:"rxe"`  // the RDMA link name
}

func (*RXE) Kind() Kind              { return KindRXE }
func (*RXE) Transition() string      { return "" }
func (*RXE) Prepare(*host.Env) error { return nil }
func (c *RXE) Command() string       { return "rdma link add " + c.RXE + " type rxe netdev " + c.Link }
func (c *RXE) UndoCommand() string   { return "rdma link del " + c.RXE }

// rxeActiveTimeout bounds the wait for a new rxe port to become ACTIVE.
const rxeActiveTimeout = 10 * time.Second

func (c *RXE) Apply(env *host.Env) error {
	h, err := env.RDMA()
	if err != nil {
		return err
	}
	if err := rdma.AddRXE(h, c.RXE, c.Link); err != nil {
		return err
	}
	// The port turns ACTIVE once rxe sees the netdev up; traffic needs it.
	ctx, cancel := context.WithTimeout(context.Background(), rxeActiveTimeout)
	defer cancel()
	return rdma.Sysfs{Root: env.SysfsRoot}.WaitActive(ctx, c.RXE, 1)
}

func (c *RXE) Undo(env *host.Env) error {
	h, err := env.RDMA()
	if err != nil {
		return err
	}
	return rdma.DelRXE(h, c.RXE) // nil when it is already gone
}
