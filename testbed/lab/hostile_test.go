package lab_test

// The hostile-input suite of the lab package (issue 10): journal tampering, symlinks and
// ownership in the state directory, races between labs, corrupt journals, kill -9 between
// steps, sysctl key forms, names that are paths and restore gaps. Every case runs in
// throwaway namespaces and checks that nothing outside the lab changed.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/rocebed/rocebed/internal/host"
	"github.com/rocebed/rocebed/internal/testenv"
	"github.com/rocebed/rocebed/internal/testlab"
	"github.com/rocebed/rocebed/testbed/lab"
	"github.com/rocebed/rocebed/testbed/plan"
	"github.com/rocebed/rocebed/testbed/scenario"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netlink"
)

func journalPath(state, name string) string { return filepath.Join(state, name, "journal.jsonl") }

func appendJournal(t *testing.T, state, name, line string) {
	t.Helper()
	f, err := os.OpenFile(journalPath(state, name), os.O_WRONLY|os.O_APPEND, 0)
	require.NoError(t, err)
	_, err = f.WriteString(line + "\n")
	require.NoError(t, err)
	require.NoError(t, f.Close())
}

func readJournalFile(t *testing.T, state, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(journalPath(state, name))
	require.NoError(t, err)
	return b
}

func writeJournalFile(t *testing.T, state, name string, b []byte) {
	t.Helper()
	require.NoError(t, os.WriteFile(journalPath(state, name), b, 0o644))
}

// victims puts things in ns that no lab made: a veth pair victim0/victim1 (mtu 1500, with
// 192.0.2.9/24 on victim0) and the rule `pref 5 lookup main`.
func victims(t *testing.T, ns *testenv.NetNS) {
	t.Helper()
	la := netlink.NewLinkAttrs()
	la.Name = "victim0"
	require.NoError(t, ns.NL.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "victim1", PeerTxQLen: -1}))
	l, err := ns.NL.LinkByName("victim0")
	require.NoError(t, err)
	a, err := netlink.ParseAddr("192.0.2.9/24")
	require.NoError(t, err)
	require.NoError(t, ns.NL.AddrAdd(l, a))
	out, err := exec.Command("ip", "-n", ns.Name, "rule", "add", "pref", "5", "lookup", "main").CombinedOutput()
	require.NoError(t, err, "%s", out)
}

// upSameHost brings same-host (network part) up in ns and returns its state directory.
func upSameHost(t *testing.T, env *host.Env, s *scenario.Scenario) string {
	t.Helper()
	state := t.TempDir()
	_, err := lab.Up(context.Background(), env, s, lab.UpOptions{StateDir: state, SkipRDMA: true})
	require.NoError(t, err)
	return state
}

// TestJournalTamperingIsRefused (case 1): records appended to a real journal — a veth the
// lab never made, a sysctl outside net.*, a rule, an address and an MTU of someone else's —
// and a header whose namespace is a path into another process's namespace make `down` refuse
// the whole journal: it keeps it, undoes nothing, and nothing outside the lab changes. With
// the journal put back, `down` restores the namespace exactly.
func TestJournalTamperingIsRefused(t *testing.T) {
	hostname, err := os.ReadFile("/proc/sys/kernel/hostname")
	require.NoError(t, err)
	records := map[string]string{
		"veth":   `{"type":"begin","index":%d,"step":{"kind":"veth","link":"victim0","peer":"victim1"}}`,
		"sysctl": `{"type":"begin","index":%d,"step":{"kind":"sysctl","key":"kernel.hostname","value":"x","old":"` + strings.TrimSpace(string(hostname)) + `"}}`,
		"rule":   `{"type":"begin","index":%d,"step":{"kind":"rule","rule":{"family":2,"priority":5,"table":254}}}`,
		"addr":   `{"type":"begin","index":%d,"step":{"kind":"addr","link":"victim0","addr":"192.0.2.9/24"}}`,
		"mtu":    `{"type":"begin","index":%d,"step":{"kind":"mtu","link":"victim0","mtu":1400,"old":"1280"}}`,
	}
	for _, kind := range []string{"veth", "sysctl", "rule", "addr", "mtu"} {
		t.Run("appended-"+kind, func(t *testing.T) {
			ns, env, s := testlab.InNetNS(t, "same-host")
			victims(t, ns)
			before := ns.Dump(t)
			state := upSameHost(t, env, s)
			during := ns.Dump(t)
			orig := readJournalFile(t, state, s.Name)
			n := bytes.Count(orig, []byte(`"type":"begin"`))
			appendJournal(t, state, s.Name, fmt.Sprintf(records[kind], n))
			tampered := readJournalFile(t, state, s.Name)

			err := lab.Down(context.Background(), state, s.Name)
			require.Error(t, err, "down carried out a record the lab's plan does not hold")
			assert.Contains(t, err.Error(), "is kept")
			testenv.SameState(t, during, ns.Dump(t), "a refused down changed the namespace")
			assert.Equal(t, tampered, readJournalFile(t, state, s.Name), "a refused down changed the journal")
			st, err := lab.StatusOf(state, s.Name)
			assert.Error(t, err, "status of a tampered journal: %+v", st)

			writeJournalFile(t, state, s.Name, orig)
			require.NoError(t, lab.Down(context.Background(), state, s.Name))
			testenv.SameState(t, before, ns.Dump(t))
		})
	}

	// A begun step that is a planned step with another link: refused as well.
	t.Run("rewritten-step", func(t *testing.T) {
		ns, env, s := testlab.InNetNS(t, "same-host")
		victims(t, ns)
		before := ns.Dump(t)
		state := upSameHost(t, env, s)
		during := ns.Dump(t)
		orig := readJournalFile(t, state, s.Name)
		tampered := bytes.Replace(orig, []byte(`"type":"begin","step":{"kind":"veth","link":"vA"`), []byte(`"type":"begin","step":{"kind":"veth","link":"victim0"`), 1)
		require.NotEqual(t, orig, tampered)
		writeJournalFile(t, state, s.Name, tampered)
		require.Error(t, lab.Down(context.Background(), state, s.Name))
		testenv.SameState(t, during, ns.Dump(t))
		writeJournalFile(t, state, s.Name, orig)
		require.NoError(t, lab.Down(context.Background(), state, s.Name))
		testenv.SameState(t, before, ns.Dump(t))
	})

	// The header's namespace rewritten to a path into another namespace, where another vA/vB
	// pair lives: down must not act there.
	t.Run("header-netns-path", func(t *testing.T) {
		ns, env, s := testlab.InNetNS(t, "same-host")
		before := ns.Dump(t)
		other := testenv.NewNetNS(t)
		la := netlink.NewLinkAttrs()
		la.Name = "vA"
		require.NoError(t, other.NL.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "vB", PeerTxQLen: -1}))
		sleeper := exec.Command("ip", "netns", "exec", other.Name, "sleep", "600")
		require.NoError(t, sleeper.Start())
		t.Cleanup(func() { _ = sleeper.Process.Kill(); _ = sleeper.Wait() })
		otherBefore := other.Dump(t)

		state := upSameHost(t, env, s)
		during := ns.Dump(t)
		orig := readJournalFile(t, state, s.Name)
		first, rest, _ := bytes.Cut(orig, []byte("\n"))
		var rec map[string]any
		require.NoError(t, json.Unmarshal(first, &rec))
		rec["header"].(map[string]any)["netns"] = "../../proc/" + strconv.Itoa(sleeper.Process.Pid) + "/ns/net"
		first, err := json.Marshal(rec)
		require.NoError(t, err)
		writeJournalFile(t, state, s.Name, append(append(first, '\n'), rest...))

		require.Error(t, lab.Down(context.Background(), state, s.Name))
		testenv.SameState(t, otherBefore, other.Dump(t), "down acted in another process's namespace")
		testenv.SameState(t, during, ns.Dump(t))
		writeJournalFile(t, state, s.Name, orig)
		require.NoError(t, lab.Down(context.Background(), state, s.Name))
		testenv.SameState(t, before, ns.Dump(t))
	})
}

// TestStateDirectoryTrust (case 2): rocebed acts on a state directory only if nobody but root
// could have changed it. A lock planted as a symlink in a world-writable state directory does
// not make `up` write through it; a state directory, lab directory or journal that another
// user owns, a symlinked or hard-linked journal and a group-writable lab directory are all
// refused, and nothing changes. A root-owned symlink on the way, and a sticky world-writable
// parent (as /tmp), are fine.
func TestStateDirectoryTrust(t *testing.T) {
	const nobody = 65534
	t.Run("planted-lock-symlink", func(t *testing.T) {
		ns, env, s := testlab.InNetNS(t, "same-host")
		before := ns.Dump(t)
		secretDir := t.TempDir()
		secret := filepath.Join(secretDir, "secret")
		require.NoError(t, os.WriteFile(secret, []byte("root's own file"), 0o600))
		state := filepath.Join(t.TempDir(), "state")
		require.NoError(t, os.Mkdir(state, 0o777))
		require.NoError(t, os.Chmod(state, 0o777)) // past the umask: anyone may write here
		require.NoError(t, os.Mkdir(filepath.Join(state, s.Name), 0o777))
		require.NoError(t, os.Chown(filepath.Join(state, s.Name), nobody, nobody))
		require.NoError(t, os.Symlink(secret, filepath.Join(state, s.Name, "lock")))

		_, err := lab.Up(context.Background(), env, s, lab.UpOptions{StateDir: state, SkipRDMA: true})
		require.ErrorIs(t, err, lab.ErrUntrusted)
		got, err := os.ReadFile(secret)
		require.NoError(t, err)
		assert.Equal(t, "root's own file", string(got), "up wrote through a planted symlink")
		testenv.SameState(t, before, ns.Dump(t))
		assert.NoFileExists(t, journalPath(state, s.Name))
	})

	t.Run("state-dir-owned-by-another-user", func(t *testing.T) {
		ns, env, s := testlab.InNetNS(t, "same-host")
		before := ns.Dump(t)
		state := filepath.Join(t.TempDir(), "state")
		require.NoError(t, os.Mkdir(state, 0o755))
		require.NoError(t, os.Chown(state, nobody, nobody))
		_, err := lab.Up(context.Background(), env, s, lab.UpOptions{StateDir: state, SkipRDMA: true})
		require.ErrorIs(t, err, lab.ErrUntrusted)
		testenv.SameState(t, before, ns.Dump(t))
		entries, _ := os.ReadDir(state)
		assert.Empty(t, entries)
	})

	// A lab that is up; then its state is handed to another user, or swapped.
	for _, tc := range []struct {
		name   string
		tamper func(t *testing.T, state, name string) (undo func())
	}{
		{"state-dir-chowned", func(t *testing.T, state, name string) func() {
			require.NoError(t, os.Chown(state, nobody, nobody))
			return func() { require.NoError(t, os.Chown(state, 0, 0)) }
		}},
		{"lab-dir-group-writable", func(t *testing.T, state, name string) func() {
			require.NoError(t, os.Chmod(filepath.Join(state, name), 0o775))
			return func() { require.NoError(t, os.Chmod(filepath.Join(state, name), 0o755)) }
		}},
		{"lab-dir-symlink", func(t *testing.T, state, name string) func() {
			dir := filepath.Join(state, name)
			require.NoError(t, os.Rename(dir, dir+".real"))
			require.NoError(t, os.Symlink(dir+".real", dir))
			return func() { require.NoError(t, os.Remove(dir)); require.NoError(t, os.Rename(dir+".real", dir)) }
		}},
		{"journal-owned-by-another-user", func(t *testing.T, state, name string) func() {
			require.NoError(t, os.Chown(journalPath(state, name), nobody, nobody))
			return func() { require.NoError(t, os.Chown(journalPath(state, name), 0, 0)) }
		}},
		{"journal-symlink", func(t *testing.T, state, name string) func() {
			p := journalPath(state, name)
			copyOf := filepath.Join(t.TempDir(), "journal")
			require.NoError(t, os.Rename(p, copyOf))
			require.NoError(t, os.Symlink(copyOf, p))
			return func() { require.NoError(t, os.Remove(p)); require.NoError(t, os.Rename(copyOf, p)) }
		}},
		{"journal-hard-link", func(t *testing.T, state, name string) func() {
			other := filepath.Join(state, "elsewhere")
			require.NoError(t, os.Link(journalPath(state, name), other))
			return func() { require.NoError(t, os.Remove(other)) }
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns, env, s := testlab.InNetNS(t, "same-host")
			before := ns.Dump(t)
			state := upSameHost(t, env, s)
			during := ns.Dump(t)
			undo := tc.tamper(t, state, s.Name)
			err := lab.Down(context.Background(), state, s.Name)
			require.ErrorIs(t, err, lab.ErrUntrusted)
			_, err = lab.StatusOf(state, s.Name)
			require.ErrorIs(t, err, lab.ErrUntrusted)
			testenv.SameState(t, during, ns.Dump(t))
			undo()
			require.NoError(t, lab.Down(context.Background(), state, s.Name))
			testenv.SameState(t, before, ns.Dump(t))
		})
	}

	t.Run("root-owned-symlink-on-the-way", func(t *testing.T) {
		ns, env, s := testlab.InNetNS(t, "same-host")
		before := ns.Dump(t)
		dir := t.TempDir()
		require.NoError(t, os.Mkdir(filepath.Join(dir, "real"), 0o755))
		require.NoError(t, os.Symlink("real", filepath.Join(dir, "link")))
		state := filepath.Join(dir, "link", "state")
		_, err := lab.Up(context.Background(), env, s, lab.UpOptions{StateDir: state, SkipRDMA: true})
		require.NoError(t, err)
		assert.FileExists(t, filepath.Join(dir, "real", "state", s.Name, "journal.jsonl"))
		require.NoError(t, lab.Down(context.Background(), state, s.Name))
		testenv.SameState(t, before, ns.Dump(t))
	})

	t.Run("symlink-owned-by-another-user-on-the-way", func(t *testing.T) {
		_, env, s := testlab.InNetNS(t, "same-host")
		dir := t.TempDir()
		require.NoError(t, os.Mkdir(filepath.Join(dir, "real"), 0o755))
		link := filepath.Join(dir, "link")
		require.NoError(t, os.Symlink("real", link))
		require.NoError(t, os.Lchown(link, nobody, nobody))
		_, err := lab.Up(context.Background(), env, s, lab.UpOptions{StateDir: filepath.Join(link, "state"), SkipRDMA: true})
		require.ErrorIs(t, err, lab.ErrUntrusted)
		assert.NoDirExists(t, filepath.Join(dir, "real", "state"))
	})
}

// TestRollbackNeverDeletesWhatItDidNotMake (case 3): when another process creates vA/vB
// between planning and the veth step, the step fails with "file exists" and the rollback
// leaves the other process's links alone.
func TestRollbackNeverDeletesWhatItDidNotMake(t *testing.T) {
	ns, env, s := testlab.InNetNS(t, "same-host")
	var theirs int
	opts := lab.UpOptions{StateDir: t.TempDir(), SkipRDMA: true, BeforeApply: func(i int, st *plan.Step) error {
		if _, ok := st.Change.(*plan.Veth); ok && i == 0 {
			la := netlink.NewLinkAttrs()
			la.Name = "vA"
			if err := ns.NL.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "vB", PeerTxQLen: -1}); err != nil {
				return err
			}
			l, err := ns.NL.LinkByName("vA")
			if err != nil {
				return err
			}
			theirs = l.Attrs().Index
		}
		return nil
	}}
	_, err := lab.Up(context.Background(), env, s, opts)
	require.Error(t, err)
	var se *lab.StepError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, 0, se.Index)
	l, err := ns.NL.LinkByName("vA")
	require.NoError(t, err, "the rollback deleted a vA this lab did not create")
	assert.Equal(t, theirs, l.Attrs().Index)
	assert.False(t, lab.JournalExists(opts.StateDir, s.Name))
}

// raceScenario is same-host under another lab name: the same NIC names, addresses and rules.
func raceScenario(t *testing.T, name string) *scenario.Scenario {
	t.Helper()
	src, err := os.ReadFile("../../scenarios/same-host.yaml")
	require.NoError(t, err)
	s, err := scenario.Parse(name+".yaml", bytes.Replace(src, []byte("name: same-host"), []byte("name: "+name), 1), nil)
	require.NoError(t, err)
	return s
}

// TestTwoLabsWithTheSameNICNamesRace (case 3): two labs with the same NIC names are brought up
// at the same moment, 40 times. In no round does either delete the other's links: while the
// winner is up its vA is the one it made (same ifindex); and every round ends, after the
// winner's down, with the namespace exactly as before.
func TestTwoLabsWithTheSameNICNamesRace(t *testing.T) {
	ns := testenv.NewNetNS(t)
	before := ns.Dump(t)
	labs := []*scenario.Scenario{raceScenario(t, "race-a"), raceScenario(t, "race-b")}
	wins := map[string]int{}
	for round := range 40 {
		state := t.TempDir()
		var wg sync.WaitGroup
		start := make(chan struct{})
		plans := make([]*plan.Plan, 2)
		errs := make([]error, 2)
		for i, s := range labs {
			env, err := host.Open(ns.Name)
			require.NoError(t, err)
			defer env.Close()
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				plans[i], errs[i] = lab.Up(context.Background(), env, s, lab.UpOptions{StateDir: state, SkipRDMA: true})
			}()
		}
		close(start)
		wg.Wait()
		var up []int
		for i := range labs {
			if errs[i] == nil {
				up = append(up, i)
			}
		}
		require.Len(t, up, 1, "round %d: want exactly one lab up, got errors %v", round, errs)
		w := up[0]
		wins[labs[w].Name]++
		switch loser := errs[1-w]; {
		case errors.Is(loser, plan.ErrNotMade):
			wins["loser refused by the kernel (file exists), journaled as not made"]++
		case errors.Is(loser, lab.ErrBusy):
			wins["loser found the winner's lock"]++
		default:
			wins["loser refused at planning"]++
		}
		assert.False(t, lab.JournalExists(state, labs[1-w].Name), "round %d: the loser left a journal", round)
		veth := plans[w].Steps[0].Change.(*plan.Veth)
		l, err := ns.NL.LinkByName("vA")
		require.NoError(t, err, "round %d: the winner's vA is gone: the loser deleted it (%v)", round, errs[1-w])
		require.Equal(t, veth.Index, l.Attrs().Index, "round %d: vA is not the winner's", round)
		require.NoError(t, lab.Down(context.Background(), state, labs[w].Name))
		if !testenv.SameState(t, before, ns.Dump(t), "round %d: namespace not restored", round) {
			t.FailNow()
		}
	}
	t.Logf("over 40 rounds: %v", wins)
}

// TestCorruptJournalKeepsTheLab (case 6): a journal with a line in the middle that is not a
// record, or one emptied, makes `down` fail without claiming success: the journal stays, the
// lab's links stay; put back, the journal takes the lab down exactly.
func TestCorruptJournalKeepsTheLab(t *testing.T) {
	for _, tc := range []struct {
		name    string
		corrupt func([]byte) []byte
	}{
		{"middle-line", func(b []byte) []byte {
			lines := bytes.SplitAfter(b, []byte("\n"))
			lines[3] = []byte("{\"type\":\"begin\",\"ind\x00ex\n")
			return bytes.Join(lines, nil)
		}},
		{"empty", func([]byte) []byte { return []byte{} }},
		{"header-only-cut", func(b []byte) []byte { first, _, _ := bytes.Cut(b, []byte("\n")); return first[:len(first)/2] }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns, env, s := testlab.InNetNS(t, "same-host")
			before := ns.Dump(t)
			state := upSameHost(t, env, s)
			during := ns.Dump(t)
			orig := readJournalFile(t, state, s.Name)
			bad := tc.corrupt(orig)
			writeJournalFile(t, state, s.Name, bad)
			err := lab.Down(context.Background(), state, s.Name)
			require.Error(t, err, "down claimed success on a corrupt journal")
			assert.Equal(t, bad, readJournalFile(t, state, s.Name), "the corrupt journal was not kept as it was")
			_, err = ns.NL.LinkByName("vA")
			assert.NoError(t, err, "the lab's vA went while the journal was refused")
			testenv.SameState(t, during, ns.Dump(t))
			writeJournalFile(t, state, s.Name, orig)
			require.NoError(t, lab.Down(context.Background(), state, s.Name))
			testenv.SameState(t, before, ns.Dump(t))
		})
	}
}

// TestStatusIncompleteBetweenSteps (case 7): a journal that ends after step k's `done`, as a
// `kill -9` between two steps leaves it, is incomplete, not up: fewer steps are done than the
// plan recorded at `up` holds.
func TestStatusIncompleteBetweenSteps(t *testing.T) {
	ns, env, s := testlab.InNetNS(t, "same-host")
	before := ns.Dump(t)
	state := upSameHost(t, env, s)
	orig := readJournalFile(t, state, s.Name)
	lines := bytes.SplitAfter(orig, []byte("\n"))
	steps := (len(lines) - 2) / 2 // header, begin+done per step, "" after the last newline
	require.Greater(t, steps, 3)
	for k := 1; k < steps; k++ {
		writeJournalFile(t, state, s.Name, bytes.Join(lines[:1+2*k], nil))
		st, err := lab.StatusOf(state, s.Name)
		require.NoError(t, err)
		assert.Equal(t, lab.StateIncomplete, st.State, "status after %d of %d steps", k, steps)
		assert.Equal(t, k, st.Done)
	}
	writeJournalFile(t, state, s.Name, orig)
	st, err := lab.StatusOf(state, s.Name)
	require.NoError(t, err)
	assert.Equal(t, lab.StateUp, st.State)
	require.NoError(t, lab.Down(context.Background(), state, s.Name))
	testenv.SameState(t, before, ns.Dump(t))
}

// TestDottedNICSysctlEitherSpelling (case 8): a sysctl of a NIC whose name has a dot, written
// as sysctl(8) spells it (v/A) or with the dot, plans, writes that NIC's parameter and is
// restored.
func TestDottedNICSysctlEitherSpelling(t *testing.T) {
	for _, key := range []string{"net.ipv4.conf.v/A.rp_filter", "net.ipv4.conf.v.A.rp_filter"} {
		t.Run(key, func(t *testing.T) {
			ns := testenv.NewNetNS(t)
			env, err := host.Open(ns.Name)
			require.NoError(t, err)
			defer env.Close()
			s := testlab.MustParse(t, `version: 1
name: dotted
nics:
  - {name: v.A, kind: veth, peer: v.B, addresses: [10.10.0.1/24]}
  - {name: v.B, kind: veth, peer: v.A, addresses: [10.10.0.2/24]}
endpoints:
  a: {nic: v.A, rxe: rxe0}
  b: {nic: v.B, rxe: rxe1}
fixes:
  - name: loose
    sysctls: ["`+key+`=2"]
expect: {result: pass}
`)
			before := ns.Dump(t)
			state := t.TempDir()
			_, err = lab.Up(context.Background(), env, s, lab.UpOptions{StateDir: state, SkipRDMA: true})
			require.NoError(t, err)
			v, err := env.GetSysctl("net.ipv4.conf.v.A.rp_filter")
			require.NoError(t, err)
			assert.Equal(t, "2", v)
			require.NoError(t, lab.Down(context.Background(), state, s.Name))
			testenv.SameState(t, before, ns.Dump(t))
		})
	}
}

// TestLabNamesThatArePathsAreRefused (case 9): a lab name is a directory name, never a path:
// "..", "a/b" and the like are refused by down, status and up, and nothing around the state
// directory is read or changed.
func TestLabNamesThatArePathsAreRefused(t *testing.T) {
	parent := t.TempDir()
	state := filepath.Join(parent, "state")
	require.NoError(t, os.Mkdir(state, 0o755))
	// A journal-looking file where ".." would lead.
	require.NoError(t, os.WriteFile(filepath.Join(parent, "journal.jsonl"), []byte("{}\n"), 0o644))
	for _, name := range []string{"..", ".", "a/b", "../state", "", "UPPER", "x\x1b[2J"} {
		require.ErrorIs(t, lab.Down(context.Background(), state, name), lab.ErrBadName, "down %q", name)
		_, err := lab.StatusOf(state, name)
		require.ErrorIs(t, err, lab.ErrBadName, "status %q", name)
		_, err = lab.TakeLock(state, name)
		require.ErrorIs(t, err, lab.ErrBadName, "lock %q", name)
	}
	assert.FileExists(t, filepath.Join(parent, "journal.jsonl"))
	entries, _ := os.ReadDir(state)
	assert.Empty(t, entries)
}

// TestLearntNeighbourRestored (case 12): a stale or reachable neighbour entry on an existing
// NIC that a fix overwrites with a permanent one comes back as it was — state, MAC and router
// flag — not deleted.
func TestLearntNeighbourRestored(t *testing.T) {
	for _, state := range []string{"stale", "reachable"} {
		t.Run(state, func(t *testing.T) {
			ns := testenv.NewNetNS(t)
			testlab.ExistingPair(t, ns)
			ns.SetUp(t, "eth2", "eth1") // up and cabled, as a host's NICs
			out, err := exec.Command("ip", "-n", ns.Name, "neigh", "replace", "10.10.0.2", "lladdr", "02:00:00:00:00:99", "dev", "eth1", "nud", state).CombinedOutput()
			require.NoError(t, err, "%s", out)
			env, err := host.Open(ns.Name)
			require.NoError(t, err)
			defer env.Close()
			s := testlab.MustParse(t, strings.Replace(existingScenario, "  - name: arp\n", "  - name: neigh\n    neighbors: [{nic: eth1, ip: 10.10.0.2, mac: \"02:00:00:00:00:42\"}]\n  - name: arp\n", 1))
			before := ns.Dump(t)
			dir := t.TempDir()
			_, err = lab.Up(context.Background(), env, s, lab.UpOptions{StateDir: dir, SkipRDMA: true})
			require.NoError(t, err)
			l, err := ns.NL.LinkByName("eth1")
			require.NoError(t, err)
			neighs, err := ns.NL.NeighList(l.Attrs().Index, netlink.FAMILY_V4)
			require.NoError(t, err)
			found := false
			for _, n := range neighs {
				if n.IP.Equal(net.ParseIP("10.10.0.2")) {
					found = true
					assert.Equal(t, "02:00:00:00:00:42", n.HardwareAddr.String())
				}
			}
			assert.True(t, found)
			require.NoError(t, lab.Down(context.Background(), dir, s.Name))
			// A reachable entry ages to stale by itself: compare what Down put back before the
			// kernel gets to it, then the whole namespace once both are stale.
			after := ns.DumpNow(t)
			assert.Contains(t, after, "10.10.0.2 dev eth1 lladdr 02:00:00:00:00:99")
			if state == "stale" {
				testenv.SameState(t, before, ns.Dump(t))
			}
		})
	}
}

// TestLoIsNeverALabNIC (case 12): a scenario that names lo as a NIC is refused before anything
// changes — bringing lo up in a fresh namespace would leave 127.0.0.1/8 (and a qdisc) behind,
// which no `down` can take back — so lo stays exactly as it was.
func TestLoIsNeverALabNIC(t *testing.T) {
	ns := testenv.NewNetNS(t)
	testlab.ExistingPair(t, ns)
	// lo as in a namespace nobody has used: down, no addresses.
	lo, err := ns.NL.LinkByName("lo")
	require.NoError(t, err)
	require.NoError(t, ns.NL.LinkSetDown(lo))
	out, err := exec.Command("ip", "-n", ns.Name, "addr", "flush", "dev", "lo").CombinedOutput()
	require.NoError(t, err, "%s", out)
	env, err := host.Open(ns.Name)
	require.NoError(t, err)
	defer env.Close()
	before := ns.Dump(t)
	text := `version: 1
name: loop
nics:
  - {name: lo, kind: existing, addresses: [10.9.0.1/24]}
  - {name: eth2, kind: existing, addresses: [10.9.0.2/24]}
endpoints:
  a: {nic: lo, rxe: rxe0}
  b: {nic: eth2, rxe: rxe1}
expect: {result: pass}
`
	s, err := scenario.Parse("loop.yaml", []byte(text), nil)
	if err == nil {
		// The code before this rule: bring the lab up and down and see what lo keeps.
		state := t.TempDir()
		_, uerr := lab.Up(context.Background(), env, s, lab.UpOptions{StateDir: state, SkipRDMA: true})
		if uerr == nil {
			require.NoError(t, lab.Down(context.Background(), state, s.Name))
		}
	}
	testenv.SameState(t, before, ns.Dump(t))
	require.Error(t, err, "a scenario with lo as a NIC was accepted")
	assert.Contains(t, err.Error(), "lo cannot be a lab NIC")
}

// TestDefaultRouteGuardSeesMultipathAndRuleTables (case 5): an existing NIC that carries a
// default route is refused (and nothing changes) also when the route is multipath and the
// NIC is one of its nexthops, and when the route is in another table a rule looks up.
func TestDefaultRouteGuardSeesMultipathAndRuleTables(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup [][]string // ip commands in the namespace
	}{
		{"multipath", [][]string{
			{"route", "add", "default", "nexthop", "via", "10.20.0.254", "dev", "eth3", "nexthop", "via", "10.10.0.254", "dev", "eth1"},
		}},
		{"rule-table", [][]string{
			{"route", "add", "default", "via", "10.10.0.254", "dev", "eth1", "table", "100"},
			{"rule", "add", "pref", "500", "lookup", "100"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := testenv.NewNetNS(t)
			testlab.ExistingPair(t, ns)
			la := netlink.NewLinkAttrs()
			la.Name = "eth3"
			require.NoError(t, ns.NL.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "eth4", PeerTxQLen: -1}))
			ns.SetUp(t, "eth4", "eth3", "eth2", "eth1")
			l, err := ns.NL.LinkByName("eth3")
			require.NoError(t, err)
			a, err := netlink.ParseAddr("10.20.0.1/24")
			require.NoError(t, err)
			require.NoError(t, ns.NL.AddrAdd(l, a))
			for _, args := range tc.setup {
				out, err := exec.Command("ip", append([]string{"-n", ns.Name}, args...)...).CombinedOutput()
				require.NoError(t, err, "ip %v: %s", args, out)
			}
			env, err := host.Open(ns.Name)
			require.NoError(t, err)
			defer env.Close()
			before := ns.Dump(t)
			state := t.TempDir()
			_, err = lab.Up(context.Background(), env, testlab.MustParse(t, existingScenario), lab.UpOptions{StateDir: state, SkipRDMA: true})
			if err == nil {
				_ = lab.Down(context.Background(), state, "existing")
			}
			require.Error(t, err, "up changed a NIC that carries a default route")
			assert.Contains(t, err.Error(), "nics[0].name: interface eth1 carries this host's default route")
			testenv.SameState(t, before, ns.Dump(t))
		})
	}
}
