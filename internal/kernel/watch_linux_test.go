package kernel_test

import (
	"context"
	"testing"
	"time"

	"github.com/rocebed/rocebed/internal/kernel"
	"github.com/rocebed/rocebed/internal/testenv"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netlink"
)

// TestChangeWatch: a watch on one namespace wakes for a link created there, not for one created
// in another namespace, and a wait with nothing happening ends at its fallback or ctx's
// deadline, whichever comes first, saying nothing changed.
func TestChangeWatch(t *testing.T) {
	testenv.KernelDependent(t)
	ns, other := testenv.NewNetNS(t), testenv.NewNetNS(t)
	w, err := kernel.WatchChanges(ns.Handle)
	require.NoError(t, err)
	defer w.Close()
	ctx := context.Background()

	assert.False(t, w.Wait(ctx, 50*time.Millisecond), "nothing changed in the namespace")

	la := netlink.NewLinkAttrs()
	la.Name = "wA"
	require.NoError(t, other.NL.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "wB"}))
	assert.False(t, w.Wait(ctx, 200*time.Millisecond), "a link made in another namespace woke the watch")

	require.NoError(t, ns.NL.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "wB"}))
	assert.True(t, w.Wait(ctx, time.Minute), "the new link's notification did not wake the watch")

	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	w.Wait(short, time.Minute)
	assert.Less(t, time.Since(start), 30*time.Second, "the wait ignored ctx's deadline and ran to its fallback")
}

// A nil watch (the subscription failed) still waits, briefly, so a caller's loop keeps polling.
func TestNilChangeWatchSleeps(t *testing.T) {
	var w *kernel.ChangeWatch
	assert.False(t, w.Wait(context.Background(), time.Minute))
	w.Close()
}
