// Package testlab builds labs for rocebed's own tests, so every test gets its lab the same way:
// in a throwaway namespace for the host tier (InNetNS), or with rxe in the initial namespace
// of the VM guest (UpRXE), taken down in Cleanup with a check that nothing of it is left.
package testlab

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/rocebed/rocebed/internal/host"
	"github.com/rocebed/rocebed/internal/kernel"
	"github.com/rocebed/rocebed/internal/testenv"
	"github.com/rocebed/rocebed/scenarios"
	"github.com/rocebed/rocebed/testbed/lab"
	"github.com/rocebed/rocebed/testbed/scenario"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// InNetNS loads a shipped scenario and opens an Env on a fresh throwaway namespace that plays
// the host.
func InNetNS(t testing.TB, name string) (*testenv.NetNS, *host.Env, *scenario.Scenario) {
	t.Helper()
	ns := testenv.NewNetNS(t)
	env, err := host.Open(ns.Name)
	require.NoError(t, err)
	t.Cleanup(env.Close)
	s, err := scenario.Load(name, nil)
	require.NoError(t, err)
	return ns, env, s
}

// MustParse parses an inline scenario named inline.yaml.
func MustParse(t testing.TB, text string) *scenario.Scenario {
	t.Helper()
	s, err := scenario.Parse("inline.yaml", []byte(text), nil)
	require.NoError(t, err)
	return s
}

// ExistingPair creates a veth pair eth1/eth2 in the test namespace that a scenario can name as
// existing NICs, with one address already on eth1. Both have been up once, like a host's NICs:
// the first `up` of a link attaches its default qdisc (noop → noqueue), which the kernel keeps
// after `down`, so a never-up link cannot be restored byte-for-byte (see README, known limits).
func ExistingPair(t testing.TB, ns *testenv.NetNS) { ExistingPairNamed(t, ns, "eth1", "eth2") }

// ExistingPairNamed is ExistingPair with other names (a gets the address).
func ExistingPairNamed(t testing.TB, ns *testenv.NetNS, a, b string) {
	t.Helper()
	la := netlink.NewLinkAttrs()
	la.Name = a
	require.NoError(t, ns.NL.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: b, PeerTxQLen: -1}))
	for _, name := range []string{a, b} {
		l, err := ns.NL.LinkByName(name)
		require.NoError(t, err)
		require.NoError(t, ns.NL.LinkSetUp(l))
		require.NoError(t, ns.NL.LinkSetDown(l))
	}
	l, err := ns.NL.LinkByName(a)
	require.NoError(t, err)
	addr, err := netlink.ParseAddr("10.10.0.1/24")
	require.NoError(t, err)
	require.NoError(t, ns.NL.AddrAdd(l, addr))
}

// Lab is a lab a real-kernel test brought up with its rxe devices in the initial namespace.
type Lab struct {
	Env      *host.Env
	Scenario *scenario.Scenario
	StateDir string

	rulesBefore []string
	down        bool
}

// UpRXE brings a shipped scenario (by name) up with rxe in the current (initial) namespace, after edit
// changes it (and it still validates). It skips or fails (testenv.RequireRXE) where the kernel
// has no rxe. Cleanup takes the lab down if the test did not.
func UpRXE(t testing.TB, name string, edit func(*scenario.Scenario)) *Lab {
	t.Helper()
	testenv.RequireRXE(t)
	env, err := host.Open("")
	require.NoError(t, err)
	t.Cleanup(env.Close)
	s, err := scenario.Load(name, nil)
	require.NoError(t, err)
	if edit != nil {
		edit(s)
		require.NoError(t, s.Validate())
	}
	// The journal keeps the scenario's text, as the CLI's does, so later commands (diagnose
	// --fix) can read it back.
	src, err := scenarios.Read(name)
	require.NoError(t, err)
	l := &Lab{Env: env, Scenario: s, StateDir: t.TempDir(), rulesBefore: RuleSet(t, env)}
	_, err = lab.Up(context.Background(), env, s, lab.UpOptions{StateDir: l.StateDir, Source: src})
	require.NoError(t, err)
	t.Cleanup(func() {
		if !l.down {
			_ = lab.Down(context.Background(), l.StateDir, s.Name)
		}
	})
	return l
}

// Down takes the lab down and checks that nothing of it is left: no rxe device, no veth, and
// the IPv4 and IPv6 rules exactly as before.
func (l *Lab) Down(t testing.TB) {
	t.Helper()
	require.NoError(t, lab.Down(context.Background(), l.StateDir, l.Scenario.Name))
	l.down = true
	for _, ep := range []scenario.Endpoint{l.Scenario.Endpoints.A, l.Scenario.Endpoints.B} {
		if ep.RXE != "" {
			_, err := os.Stat(filepath.Join("/sys/class/infiniband", ep.RXE))
			assert.True(t, errors.Is(err, os.ErrNotExist), "rxe device %s left behind after down", ep.RXE)
		}
	}
	for _, n := range l.Scenario.NICs {
		if n.Kind == scenario.NICVeth {
			_, err := l.Env.NL.LinkByName(n.Name)
			var lnf netlink.LinkNotFoundError
			assert.True(t, errors.As(err, &lnf), "veth %s left behind after down (err %v)", n.Name, err)
		}
	}
	assert.Equal(t, l.rulesBefore, RuleSet(t, l.Env), "ip rules differ after down")
}

// RuleSet lists the IPv4 and IPv6 policy rules as text.
func RuleSet(t testing.TB, env *host.Env) []string {
	t.Helper()
	var out []string
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		rules, err := kernel.Dump(func() ([]netlink.Rule, error) { return env.NL.RuleList(fam) })
		require.NoError(t, err)
		for _, r := range rules {
			out = append(out, r.String())
		}
	}
	return out
}

// LockedBuffer collects a child process's output.
type LockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *LockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
