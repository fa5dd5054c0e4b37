package plan

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/rocebed/rocebed/internal/host"
	"github.com/rocebed/rocebed/rdma"
	"github.com/rocebed/rocebed/testbed/scenario"
)

// RXE creates a soft-RoCE device on a NIC.
type RXE struct {
	Link string `json:"link"` // the netdev
	RXE  string `json:"rxe"`  // the RDMA link name
}

func (*RXE) Kind() Kind              { return KindRXE }
func (*RXE) Transition() string      { return "" }
func (*RXE) Prepare(*host.Env) error { return nil }
func (c *RXE) Command() string {
	return "rdma link add " + Quote(c.RXE) + " type rxe netdev " + Quote(c.Link)
}
func (c *RXE) UndoCommand() string { return "rdma link del " + Quote(c.RXE) }

// rxeActiveTimeout bounds the wait for a new rxe port to become ACTIVE.
const rxeActiveTimeout = 10 * time.Second

func (c *RXE) Apply(env *host.Env) error {
	h, err := env.RDMA()
	if err != nil {
		return notMade(err)
	}
	// EEXIST: the name is taken, or the netdev has an rxe device already — not this lab's.
	if err := rdma.AddRXE(h, c.RXE, c.Link); err != nil {
		return notMade(err)
	}
	// The port turns ACTIVE once rxe sees the netdev up; traffic needs it.
	ctx, cancel := context.WithTimeout(context.Background(), rxeActiveTimeout)
	defer cancel()
	return rdma.Sysfs{Root: env.SysfsRoot}.WaitActive(ctx, c.RXE, 1)
}

// Undo deletes the rxe device, unless a device of that name sits on another netdev: that one
// is someone else's (while this lab's existed, nobody could have made another of its name), so
// this lab's is gone already.
func (c *RXE) Undo(env *host.Env) error {
	parent, err := os.ReadFile(filepath.Join(env.SysfsRoot, "class/infiniband", c.RXE, "parent"))
	if err == nil && strings.TrimSpace(string(parent)) != c.Link {
		return nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("read the netdev of rdma device %s: %w", c.RXE, err)
	}
	h, err := env.RDMA()
	if err != nil {
		return err
	}
	// Done only when the device is gone from sysfs, where the next lab's plan looks. Two
	// labs' downs at once in one kernel race: a device was seen there a second after its
	// delete had returned, and a delete failed with "not found" (the RDMA device dump it looks
	// the name up in missed it) while the device stayed. So the delete is made again until
	// the device is gone, and an error counts only if it is still there at the deadline.
	dev := filepath.Join(env.SysfsRoot, "class/infiniband", c.RXE)
	deadline := time.Now().Add(rxeGoneTimeout)
	var delErr error
	for try := 0; ; try++ {
		if try%rxeDeleteEvery == 0 {
			// Before a repeat: a device of that name on another netdev is someone else's, made
			// after ours went (the first delete follows the same check above).
			if try > 0 {
				if p, err := os.ReadFile(filepath.Join(dev, "parent")); err == nil && strings.TrimSpace(string(p)) != c.Link {
					return nil
				}
			}
			delErr = rdma.DelRXE(h, c.RXE) // nil when it is already gone
		}
		if _, err := os.Lstat(dev); errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if time.Now().After(deadline) {
			if delErr != nil {
				return delErr
			}
			return fmt.Errorf("rdma device %s still in %s %s after it was deleted: %w; check `rdma link show`", c.RXE, filepath.Dir(dev), rxeGoneTimeout, errRXEStays)
		}
		time.Sleep(rxeGonePoll)
	}
}

// How Undo waits for a deleted rxe device to leave sysfs: polled every rxeGonePoll, deleted
// again every rxeDeleteEvery polls, for up to rxeGoneTimeout.
const (
	rxeGonePoll    = 10 * time.Millisecond
	rxeDeleteEvery = 10
	rxeGoneTimeout = 10 * time.Second
)

var errRXEStays = errors.New("rdma device not removed")

func (c *RXE) Check() error {
	if err := checkIfName(c.Link); err != nil {
		return err
	}
	if msg := scenario.RDMANameProblem(c.RXE); msg != "" {
		return errors.New(msg)
	}
	return nil
}
