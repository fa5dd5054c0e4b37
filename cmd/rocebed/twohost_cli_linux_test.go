package main

import (
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/rocebed/rocebed/internal/testenv"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netlink"
)

// TestTwoHostUsage: a two-host lab needs --side, and --listen or --connect; a one-host lab takes
// neither. Each mistake exits 2 and says what to give.
func TestTwoHostUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "two-hosts"}, "spans two hosts: say which one this is with --side a or --side b"},
		{[]string{"plan", "two-hosts"}, "spans two hosts: say which one this is with --side a or --side b"},
		{[]string{"run", "two-hosts", "--side", "a"}, "give this host --listen ADDR:PORT and the other --connect ADDR:PORT"},
		{[]string{"run", "two-hosts", "--side", "a", "--listen", "127.0.0.1:1", "--connect", "127.0.0.1:2"}, "give this host --listen ADDR:PORT and the other --connect"},
		{[]string{"run", "two-hosts", "--side", "c", "--listen", "127.0.0.1:1"}, `side "c": want a or b`},
		{[]string{"run", "two-hosts", "--side", "a", "--listen", "127.0.0.1:1", "--", "true"}, "run -- CMD is for one-host labs"},
		{[]string{"run", "same-host", "--side", "a"}, "lab same-host is on one host (no NIC says host:): leave --side out"},
		{[]string{"run", "same-host", "--listen", "127.0.0.1:1"}, "--listen and --connect are for a two-host lab"},
	} {
		r := rocebed(t, nil, tc.args...)
		assert.Equal(t, exitUsage, r.code, "%v: %s", tc.args, r.stderr)
		assert.Contains(t, r.stderr, tc.want, "%v", tc.args)
	}
}

// hostNS is a throwaway namespace with an eth1 (one end of a veth pair), as one host of a
// two-host lab sees it.
func hostNS(t *testing.T) *testenv.NetNS {
	t.Helper()
	ns := testenv.NewNetNS(t)
	la := netlink.NewLinkAttrs()
	la.Name = "eth1"
	require.NoError(t, ns.NL.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "cable", PeerTxQLen: -1}))
	ns.UpOnce(t, "eth1", "cable")
	return ns
}

// freePort is a TCP port on 127.0.0.1 nothing listens on.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// runBoth runs two rocebed processes at once and returns their results.
func runBoth(t *testing.T, a, b []string) (result, result) {
	t.Helper()
	var wg sync.WaitGroup
	var ra, rb result
	wg.Add(2)
	go func() { defer wg.Done(); ra = rocebed(t, nil, a...) }()
	go func() { defer wg.Done(); rb = rocebed(t, nil, b...) }()
	wg.Wait()
	return ra, rb
}

// TestTwoHostPlanAndRefusals: `plan --side` prints one host's changes only; two hosts given
// different labs refuse each other (exit 2), and a host whose other host never answers gives
// up after --peer-timeout (exit 3); none of them changes anything.
func TestTwoHostPlanAndRefusals(t *testing.T) {
	nsA, nsB := hostNS(t), hostNS(t)
	beforeA, beforeB := nsA.Dump(t), nsB.Dump(t)

	r := rocebed(t, nil, "plan", "two-hosts", "--side", "b", "--netns", nsB.Name)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "lab two-hosts (builtin:two-hosts), host b: 3 changes")
	assert.Contains(t, r.stdout, "ip addr add 10.20.0.2/24 brd + dev eth1")
	assert.NotContains(t, r.stdout, "10.20.0.1", "host b's plan names nothing of host a's")

	addr := freePort(t)
	state := t.TempDir()
	ra, rb := runBoth(t,
		[]string{"run", "two-hosts", "--side", "a", "--listen", addr, "--netns", nsA.Name, "--state-dir", state, "--peer-timeout", "1m"},
		[]string{"run", "two-hosts", "--side", "b", "--connect", addr, "--netns", nsB.Name, "--state-dir", t.TempDir(), "--peer-timeout", "1m",
			"--set", "addr_b=10.20.0.9/24"})
	for _, r := range []result{ra, rb} {
		assert.Equal(t, exitUsage, r.code, r.stderr)
		assert.Contains(t, r.stderr, "runs lab two-hosts with other contents")
		assert.Contains(t, r.stderr, "give both hosts the same scenario file and the same --set values")
	}

	r = rocebed(t, nil, "run", "two-hosts", "--side", "b", "--connect", freePort(t), "--netns", nsB.Name, "--state-dir", state, "--peer-timeout", "1s")
	assert.Equal(t, exitEnvironment, r.code, r.stderr)
	assert.Contains(t, r.stderr, "start `rocebed run two-hosts --side a --listen")

	testenv.SameState(t, beforeA, nsA.Dump(t))
	testenv.SameState(t, beforeB, nsB.Dump(t))
	entries, _ := os.ReadDir(state)
	assert.Empty(t, entries)
}

// TestTwoHostBothFailAlike: on a kernel without rdma_rxe neither host's part can come up; each
// says so to the other and both exit 3, naming what is missing, with nothing changed.
func TestTwoHostBothFailAlike(t *testing.T) {
	if _, err := os.Stat("/sys/module/rdma_rxe"); err == nil {
		t.Skip("this kernel has rdma_rxe: the missing-RDMA path cannot be exercised here (it is, on hosts without rxe)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2 for the state dumps")
	}
	nsA, nsB := hostNS(t), hostNS(t)
	beforeA, beforeB := nsA.Dump(t), nsB.Dump(t)
	addr := freePort(t)
	ra, rb := runBoth(t,
		[]string{"run", "two-hosts", "--side", "a", "--listen", addr, "--netns", nsA.Name, "--state-dir", t.TempDir(), "--peer-timeout", "1m"},
		[]string{"run", "two-hosts", "--side", "b", "--connect", addr, "--netns", nsB.Name, "--state-dir", t.TempDir(), "--peer-timeout", "1m"})
	for _, r := range []result{ra, rb} {
		assert.Equal(t, exitEnvironment, r.code, r.stderr)
		assert.True(t, strings.Contains(r.stderr, "rdma"), r.stderr)
	}
	testenv.SameState(t, beforeA, nsA.Dump(t))
	testenv.SameState(t, beforeB, nsB.Dump(t))
}
