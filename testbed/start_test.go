package testbed_test

import (
	"context"
	"os"
	"testing"

	"github.com/rocebed/rocebed/internal/testenv"
	"github.com/rocebed/rocebed/rdma/verbs"
	"github.com/rocebed/rocebed/testbed"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestStartSameHost is the library as its users write it: one call builds the lab, the test
// sends messages and reads completions, Cleanup restores the host. It runs in the VM tier.
func TestStartSameHost(t *testing.T) {
	testenv.RequireRXE(t) // Start itself skips without rxe; this also keeps it off real hosts
	ns := testenv.InitialNetNS(t)
	before := ns.Dump(t)
	t.Run("lab", func(t *testing.T) {
		lab := testbed.Start(t, "same-host")
		batches := lab.Send(context.Background(), testbed.Traffic{
			Transport: testbed.TransportRC, Direction: testbed.DirectionAToB, Messages: 20, Size: 2048})
		require.Len(t, batches, 1)
		b := batches[0]
		assert.True(t, b.Pass, b.Verdict)
		var sends, recvs int
		for _, c := range b.Completions {
			if c.Status != verbs.WCSuccess {
				continue
			}
			switch {
			case c.Role == testbed.RoleSender && c.Opcode == verbs.WCSend:
				sends++
			case c.Role == testbed.RoleReceiver && c.Opcode == verbs.WCRecv:
				recvs++
				assert.EqualValues(t, 2048, c.ByteLen)
				assert.Equal(t, "ok", c.Payload)
			}
		}
		assert.Equal(t, 20, sends)
		assert.Equal(t, 20, recvs)

		r := lab.Traffic(context.Background())
		assert.True(t, r.ExpectationMet, r.Verdict)
	})
	// The subtest's Cleanup took the lab down: no rxe link, veth, rule or changed sysctl left.
	testenv.SameState(t, before, ns.Dump(t))
	for _, dev := range []string{"rxe0", "rxe1"} {
		_, err := os.Lstat("/sys/class/infiniband/" + dev)
		assert.True(t, os.IsNotExist(err), "%s still exists", dev)
	}
}
