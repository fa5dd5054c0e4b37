package lab_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/rocebed/rocebed/internal/host"
	"github.com/rocebed/rocebed/internal/preflight"
	"github.com/rocebed/rocebed/internal/testenv"
	"github.com/rocebed/rocebed/internal/testlab"
	"github.com/rocebed/rocebed/testbed/lab"
	"github.com/rocebed/rocebed/testbed/plan"
	"github.com/rocebed/rocebed/testbed/scenario"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netlink"
)

// TestUpDownRestoresExactly brings up each network-only lab and takes it down again: links,
// addresses, rules, routes of every table, neighbours and every net.ipv4/net.ipv6 sysctl are
// byte-identical to before, as iproute2 and /proc/sys see them.
func TestUpDownRestoresExactly(t *testing.T) {
	for _, name := range []string{"same-host", "same-host-sysctl", "same-host-nofix", "same-host-ud", "seed", "seed-fixed", "same-host-v6", "same-host-dual", "seed-v6"} {
		t.Run(name, func(t *testing.T) {
			ns, env, s := testlab.InNetNS(t, name)
			state := t.TempDir()
			before := ns.Dump(t)

			p, err := lab.Up(context.Background(), env, s, lab.UpOptions{StateDir: state, SkipRDMA: true})
			require.NoError(t, err)
			during := ns.Dump(t)
			assert.NotEqual(t, before, during, "up changed nothing")
			for _, st := range p.Steps {
				if v, ok := st.Change.(*plan.Veth); ok {
					assert.Contains(t, during, v.Link+"@"+v.Peer)
				}
			}
			st, err := lab.StatusOf(state, s.Name)
			require.NoError(t, err)
			assert.Equal(t, lab.StateUp, st.State)
			assert.Equal(t, len(p.Steps), st.Done)

			require.NoError(t, lab.Down(context.Background(), state, s.Name))
			testenv.SameState(t, before, ns.Dump(t), "down did not restore the namespace exactly")
			require.NoError(t, lab.Down(context.Background(), state, s.Name), "a second down must be a no-op")
			st, err = lab.StatusOf(state, s.Name)
			require.NoError(t, err)
			assert.Equal(t, lab.StateDown, st.State)
			assert.NoDirExists(t, lab.Dir(state, s.Name))
		})
	}
}

// TestSysctlRestoredToExactPreviousValue starts from non-default values, so a restore to "the
// default" would be caught.
func TestSysctlRestoredToExactPreviousValue(t *testing.T) {
	ns, env, s := testlab.InNetNS(t, "same-host-sysctl")
	require.NoError(t, env.SetSysctl("net.ipv4.conf.all.rp_filter", "1"))
	require.NoError(t, env.SetSysctl("net.ipv4.conf.all.accept_local", "0"))
	before := ns.Dump(t)
	state := t.TempDir()
	_, err := lab.Up(context.Background(), env, s, lab.UpOptions{StateDir: state, SkipRDMA: true})
	require.NoError(t, err)
	v, err := env.GetSysctl("net.ipv4.conf.all.rp_filter")
	require.NoError(t, err)
	assert.Equal(t, "2", v)
	require.NoError(t, lab.Down(context.Background(), state, s.Name))
	v, err = env.GetSysctl("net.ipv4.conf.all.rp_filter")
	require.NoError(t, err)
	assert.Equal(t, "1", v)
	testenv.SameState(t, before, ns.Dump(t))
}

var errInjected = errors.New("injected failure")

// TestFailureAtEveryStepRollsBack injects a failure at every step k of the same-host plan, both
// before the change is made and after it, and checks that Up rolls back to exactly the state
// before and leaves no journal.
func TestFailureAtEveryStepRollsBack(t *testing.T) {
	ns, env, s := testlab.InNetNS(t, "same-host")
	p, err := plan.MakePlan(s, plan.View(env), plan.PlanOptions{SkipRDMA: true})
	require.NoError(t, err)
	require.Greater(t, len(p.Steps), 8)
	before := ns.Dump(t)
	for k := range p.Steps {
		for _, phase := range []string{"before", "after"} {
			t.Run(fmt.Sprintf("step%d-%s", k+1, phase), func(t *testing.T) {
				state := t.TempDir()
				fail := func(i int, _ *plan.Step) error {
					if i == k {
						return errInjected
					}
					return nil
				}
				opts := lab.UpOptions{StateDir: state, SkipRDMA: true}
				if phase == "before" {
					opts.BeforeApply = fail
				} else {
					opts.AfterApply = fail
				}
				_, err := lab.Up(context.Background(), env, s, opts)
				require.ErrorIs(t, err, errInjected)
				var se *lab.StepError
				require.ErrorAs(t, err, &se)
				assert.Equal(t, k, se.Index)
				testenv.SameState(t, before, ns.Dump(t), "rollback after a failure at step %d (%s) left changes", k+1, phase)
				assert.False(t, lab.JournalExists(state, s.Name), "rollback left a journal")
			})
		}
	}
}

// TestCancelledUpRollsBack: Ctrl-C (a cancelled context) during up undoes what was done.
func TestCancelledUpRollsBack(t *testing.T) {
	ns, env, s := testlab.InNetNS(t, "same-host")
	before := ns.Dump(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err := lab.Up(ctx, env, s, lab.UpOptions{StateDir: t.TempDir(), SkipRDMA: true, AfterApply: func(i int, _ *plan.Step) error {
		if i == 4 {
			cancel()
		}
		return nil
	}})
	require.ErrorIs(t, err, context.Canceled)
	testenv.SameState(t, before, ns.Dump(t))
}

// TestSecondUpIsRefused: while one up holds the lab, a second fails at once with lab.ErrBusy and
// changes nothing; the first finishes unharmed. Once up, another up fails with lab.ErrUp.
func TestSecondUpIsRefused(t *testing.T) {
	ns, env, s := testlab.InNetNS(t, "same-host")
	state := t.TempDir()
	before := ns.Dump(t)

	paused, resume := make(chan struct{}), make(chan struct{})
	firstDone := make(chan error, 1)
	go func() {
		_, err := lab.Up(context.Background(), env, s, lab.UpOptions{StateDir: state, SkipRDMA: true, BeforeApply: func(i int, _ *plan.Step) error {
			if i == 3 {
				close(paused)
				<-resume
			}
			return nil
		}})
		firstDone <- err
	}()
	<-paused
	mid := ns.Dump(t)
	env2, err := host.Open(ns.Name)
	require.NoError(t, err)
	defer env2.Close()
	_, err = lab.Up(context.Background(), env2, s, lab.UpOptions{StateDir: state, SkipRDMA: true})
	require.ErrorIs(t, err, lab.ErrBusy)
	assert.Contains(t, err.Error(), "is working on it")
	testenv.SameState(t, mid, ns.Dump(t), "the refused up changed something")
	close(resume)
	require.NoError(t, <-firstDone)

	st, err := lab.StatusOf(state, s.Name)
	require.NoError(t, err)
	assert.Equal(t, lab.StateUp, st.State)
	_, err = lab.Up(context.Background(), env2, s, lab.UpOptions{StateDir: state, SkipRDMA: true})
	require.ErrorIs(t, err, lab.ErrUp)

	require.NoError(t, lab.Down(context.Background(), state, s.Name))
	testenv.SameState(t, before, ns.Dump(t))
}

// TestPlanRefusesConflicts: a veth name that exists, a rule priority in use, or an existing NIC
// that is absent stop the plan before anything changes.
func TestPlanRefusesConflicts(t *testing.T) {
	ns, env, s := testlab.InNetNS(t, "same-host")
	state := t.TempDir()
	// Occupy vA with an unrelated veth pair and rule priority 10 with another rule.
	_, err := lab.Up(context.Background(), env, testlab.MustParse(t, `version: 1
name: squatter
nics:
  - {name: vA, kind: veth, peer: vZ, addresses: [192.0.2.1/24]}
  - {name: vZ, kind: veth, peer: vA, addresses: [192.0.2.2/24]}
endpoints:
  a: {nic: vA, rxe: rxeA}
  b: {nic: vZ, rxe: rxeZ}
fixes:
  - name: rule10
    rules: [{priority: 10, from: 192.0.2.1, table: 7}]
expect: {result: pass}
`), lab.UpOptions{StateDir: state, SkipRDMA: true})
	require.NoError(t, err)
	before := ns.Dump(t)
	_, err = lab.Up(context.Background(), env, s, lab.UpOptions{StateDir: state, SkipRDMA: true})
	var pe *preflight.Error
	require.ErrorAs(t, err, &pe)
	assert.Contains(t, err.Error(), "vA")
	assert.Contains(t, err.Error(), "rule priority 10")
	testenv.SameState(t, before, ns.Dump(t))
	require.NoError(t, lab.Down(context.Background(), state, "squatter"))
}

const existingScenario = `version: 1
name: existing
nics:
  - {name: eth1, kind: existing, mtu: 4000, addresses: [10.10.0.1/24]}
  - {name: eth2, kind: existing, mtu: 4000, addresses: [10.10.0.2/24, "fd00::2/64"]}
endpoints:
  a: {nic: eth1, rxe: rxe0}
  b: {nic: eth2, rxe: rxe1}
fixes:
  - name: policy-routing
    policy_routing: {}
  - name: arp
    arp: [{nic: eth1, ignore: 1, announce: 2}]
expect: {result: pass}
`

// TestExistingNICsRestored: on NICs the host already has, rocebed changes only what the
// scenario declares (MTU, missing addresses, up) and puts back exactly what was there — the
// address that was already present stays, the old MTU and the down state come back.
func TestExistingNICsRestored(t *testing.T) {
	ns := testenv.NewNetNS(t)
	testlab.ExistingPair(t, ns)
	env, err := host.Open(ns.Name)
	require.NoError(t, err)
	defer env.Close()
	s := testlab.MustParse(t, existingScenario)
	before := ns.Dump(t)
	state := t.TempDir()
	p, err := lab.Up(context.Background(), env, s, lab.UpOptions{StateDir: state, SkipRDMA: true})
	require.NoError(t, err)
	for _, st := range p.Steps {
		a, isAddr := st.Change.(*plan.Addr)
		assert.False(t, isAddr && a.Addr == "10.10.0.1/24", "planned to add an address that was already there")
		assert.NotEqual(t, plan.KindVeth, st.Kind(), "created a link for an existing NIC")
	}
	l, err := ns.NL.LinkByName("eth2")
	require.NoError(t, err)
	assert.Equal(t, 4000, l.Attrs().MTU)
	require.NoError(t, lab.Down(context.Background(), state, s.Name))
	testenv.SameState(t, before, ns.Dump(t))
	_, err = ns.NL.LinkByName("eth1")
	require.NoError(t, err, "down removed an existing NIC")
}

// TestDefaultRouteNICRefused: an existing NIC that carries the default route is refused unless
// the scenario says allow_default_route, and the refusal names file, line and field.
func TestDefaultRouteNICRefused(t *testing.T) {
	ns := testenv.NewNetNS(t)
	testlab.ExistingPair(t, ns)
	// Both NICs up and cabled, as on a host whose eth1 carries the default route (Dump waits
	// for their addrconf to finish before taking the "before" picture).
	ns.SetUp(t, "eth2", "eth1")
	l, err := ns.NL.LinkByName("eth1")
	require.NoError(t, err)
	require.NoError(t, ns.NL.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Gw: net.ParseIP("10.10.0.254")}))
	env, err := host.Open(ns.Name)
	require.NoError(t, err)
	defer env.Close()
	before := ns.Dump(t)
	_, err = lab.Up(context.Background(), env, testlab.MustParse(t, existingScenario), lab.UpOptions{StateDir: t.TempDir(), SkipRDMA: true})
	require.Error(t, err)
	assert.True(t, scenario.IsScenarioError(err))
	assert.Contains(t, err.Error(), "inline.yaml:4:")
	assert.Contains(t, err.Error(), "nics[0].name: interface eth1 carries this host's default route")
	testenv.SameState(t, before, ns.Dump(t))

	allowed := strings.Replace(existingScenario, "{name: eth1, kind: existing,", "{name: eth1, kind: existing, allow_default_route: true,", 1)
	state := t.TempDir()
	_, err = lab.Up(context.Background(), env, testlab.MustParse(t, allowed), lab.UpOptions{StateDir: state, SkipRDMA: true})
	require.NoError(t, err)
	require.NoError(t, lab.Down(context.Background(), state, "existing"))
	testenv.SameState(t, before, ns.Dump(t))
}
