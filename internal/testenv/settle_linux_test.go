package testenv

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/rocebed/rocebed/internal/kernel"
	"github.com/rocebed/rocebed/internal/nsutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netlink"
)

// upVethPair creates vA/vB with an IPv4 address on vA, and brings both up.
func upVethPair(t *testing.T, ns *NetNS, beforeUp func()) {
	t.Helper()
	la := netlink.NewLinkAttrs()
	la.Name = "vA"
	require.NoError(t, ns.NL.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "vB"}))
	a, err := ns.NL.LinkByName("vA")
	require.NoError(t, err)
	b, err := ns.NL.LinkByName("vB")
	require.NoError(t, err)
	require.NoError(t, ns.NL.AddrAdd(a, &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(10, 10, 0, 1), Mask: net.CIDRMask(24, 32)}}))
	if beforeUp != nil {
		beforeUp()
	}
	require.NoError(t, ns.NL.LinkSetUp(a))
	require.NoError(t, ns.NL.LinkSetUp(b))
}

// TestDumpWaitsForAddrconf: a dump taken right after `ip link set up` catches the kernel half-way
// (link-local addresses tentative or not yet added, their local routes missing); Dump waits for it to finish, and
// what it returns is the state that stays. DAD is slowed to two probes 4 s apart, so "right
// after" holds however slow the dump is: under TCG, DumpNow's seven `ip` runs took longer than
// a default DAD (about 2 s), and the kernel was settled before the test looked.
func TestDumpWaitsForAddrconf(t *testing.T) {
	KernelDependent(t)
	ns := NewNetNS(t)
	upVethPair(t, ns, func() {
		require.NoError(t, nsutil.Do(ns.Handle, func() error {
			for _, dev := range []string{"vA", "vB"} {
				for _, kv := range [][2]string{{"net/ipv6/conf/" + dev + "/dad_transmits", "2"}, {"net/ipv6/neigh/" + dev + "/retrans_time_ms", "4000"}} {
					if err := os.WriteFile(filepath.Join("/proc/sys", kv[0]), []byte(kv[1]), 0o644); err != nil {
						return err
					}
				}
			}
			return nil
		}))
	})
	rawState, err := kernel.ReadSettleState(ns.NL, ns.Handle)
	require.NoError(t, err)
	raw := ns.DumpNow(t)

	settled := ns.Dump(t)
	again := ns.DumpNow(t)

	t.Logf("unsettled right after link up: %q", rawState.Unsettled())
	assert.NotEmpty(t, rawState.Unsettled(), "the kernel was already settled right after link up")
	// Right after link up at least one end has no usable link-local address yet: DAD is still
	// running on it (tentative), or addrconf has not added it because linkwatch has not yet
	// reported the carrier (under load that takes a while; seen in a CI run).
	usable := regexp.MustCompile(`(?m)^\s+inet6 fe80::\S+/64 scope link\s*$`)
	assert.Less(t, len(usable.FindAllString(raw, -1)), 2, "right after link up, both link-local addresses were already usable:\n%s", raw)
	assert.NotEqual(t, raw, settled)

	assert.NotContains(t, settled, "tentative")
	assert.Len(t, regexp.MustCompile(`inet6 fe80::\S+/64 scope link`).FindAllString(settled, -1), 2, "one link-local address per veth end")
	for _, dev := range []string{"vA", "vB"} {
		assert.Regexp(t, `local fe80::\S+ dev `+dev+` table local proto kernel`, settled)
	}
	assert.Equal(t, settled, again, "the settled state changed afterwards")
}

// TestSettleNamesWhatNeverSettled: with DAD slowed to minutes, the wait ends at its bound and
// the error names the interface and the address still tentative.
func TestSettleNamesWhatNeverSettled(t *testing.T) {
	KernelDependent(t)
	ns := NewNetNS(t)
	upVethPair(t, ns, func() {
		require.NoError(t, nsutil.Do(ns.Handle, func() error {
			for _, kv := range [][2]string{
				{"net/ipv6/conf/vA/dad_transmits", "100"},
				{"net/ipv6/neigh/vA/retrans_time_ms", "100000"},
			} {
				if err := os.WriteFile(filepath.Join("/proc/sys", kv[0]), []byte(kv[1]), 0o644); err != nil {
					return err
				}
			}
			return nil
		}))
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	err := kernel.WaitSettled(ctx, ns.NL, ns.Handle)
	require.Error(t, err)
	assert.True(t, errors.Is(err, kernel.ErrNotSettled), "%v", err)
	assert.True(t, errors.Is(err, context.DeadlineExceeded), "%v", err)
	assert.Regexp(t, `vA: fe80::\S+ is tentative \(duplicate address detection running\)`, err.Error())
	assert.NotContains(t, err.Error(), "vB", "vB settled; only vA is named")
}

func TestWaitTCPListen(t *testing.T) {
	KernelDependent(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, WaitTCPListen(ctx, port, nil))
	ln.Close()

	short, cancelShort := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancelShort()
	assert.ErrorIs(t, WaitTCPListen(short, port, nil), context.DeadlineExceeded)
	exited := make(chan struct{})
	close(exited)
	assert.ErrorContains(t, WaitTCPListen(context.Background(), port, exited), "exited before it listened")
}
