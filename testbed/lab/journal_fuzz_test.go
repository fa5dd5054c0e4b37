package lab

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/rocebed/rocebed/testbed/plan"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// samplePlan has one step of every kind, as MakePlan makes them (before Prepare).
func samplePlan() []plan.Step {
	return []plan.Step{
		{Change: &plan.Veth{Link: "vA", Peer: "vB", MTU: 1500}},
		{Change: &plan.MTU{Link: "eth1", MTU: 4000, Old: "1500"}},
		{Change: &plan.Addr{Link: "vA", Addr: "10.10.0.1/24"}},
		{Fix: "f", Change: &plan.Sysctl{Key: "net.ipv4.conf.all.rp_filter", Value: "2", Old: "1"}},
		{Change: &plan.LinkUp{Link: "vA", Old: "down"}},
		{Fix: "f", Change: &plan.Neighbor{Link: "vA", Addr: "10.10.0.2", MAC: "peer"}},
		{Fix: "f", Change: &plan.RuleAdd{Rule: &plan.RuleSpec{Family: 2, Priority: 100, Table: 255}}},
		{Fix: "f", Change: &plan.RuleDel{Rule: &plan.RuleSpec{Family: 2, Priority: 0, Table: 255, Protocol: 2}}},
		{Fix: "f", Change: &plan.Route{Route: &plan.RouteSpec{To: "10.10.0.2/32", Dev: "vA", Src: "10.10.0.1", Table: 100}}},
		{Change: &plan.RXE{Link: "vA", RXE: "rxe0"}},
	}
}

// prepared is step as Prepare leaves it: old values and ifindexes filled in.
func prepared(t testing.TB, st plan.Step) plan.Step {
	b, err := json.Marshal(st)
	require.NoError(t, err)
	var out plan.Step
	require.NoError(t, json.Unmarshal(b, &out))
	switch c := out.Change.(type) {
	case *plan.Veth:
		c.Index = 4242
	case *plan.MTU:
		c.Index, c.Old = 7, "1500"
	case *plan.Addr:
		c.Index = 4242
	case *plan.LinkUp:
		c.Index = 4242
	case *plan.Neighbor:
		c.Index, c.MAC, c.Old, c.OldState = 4242, "02:00:00:00:00:02", "02:00:00:00:00:09", "stale"
	case *plan.Route:
		c.Index = 4242
	}
	return out
}

// sampleJournal is the journal of a lab whose up made done steps of samplePlan, failed the
// next one if fail, and whose rollback then undid undone steps.
func sampleJournal(t testing.TB, done int, fail bool, undone int) []byte {
	steps := samplePlan()
	d, err := planDigest(steps)
	require.NoError(t, err)
	h := JournalHeader{Version: journalVersion, Lab: "lab", File: "builtin:same-host", Source: []byte("version: 1\n"),
		NetnsID: "4:4026531840", PID: 1, Started: time.Unix(0, 0).UTC(), Plan: steps, PlanDigest: d}
	var b bytes.Buffer
	rec := func(r journalRecord) {
		line, err := json.Marshal(r)
		require.NoError(t, err)
		b.Write(append(line, '\n'))
	}
	rec(journalRecord{Type: "header", Header: &h})
	for i := 0; i < done; i++ {
		st := prepared(t, steps[i])
		rec(journalRecord{Type: "begin", Index: i, Step: &st})
		rec(journalRecord{Type: "done", Index: i})
	}
	last := done - 1
	if fail && done < len(steps) {
		st := prepared(t, steps[done])
		rec(journalRecord{Type: "begin", Index: done, Step: &st})
		rec(journalRecord{Type: "failed", Index: done, Error: "file exists"})
	}
	for i := 0; i < undone && last-i >= 0; i++ {
		rec(journalRecord{Type: "undone", Index: last - i})
	}
	return b.Bytes()
}

// TestParseJournalRefuses (cases 1 and 6): the reader takes what up writes, and refuses a
// journal that says anything else, naming the line.
func TestParseJournalRefuses(t *testing.T) {
	good := sampleJournal(t, 6, true, 3)
	j, err := ParseJournal(good, "lab")
	require.NoError(t, err)
	assert.Equal(t, []int{2, 1, 0}, j.Pending(), "pending: begun, not refused, not undone, newest first")

	lines := strings.SplitAfter(string(good), "\n")
	replace := func(i int, s string) string {
		l := append([]string{}, lines...)
		l[i] = s
		return strings.Join(l, "")
	}
	header := lines[0]
	for _, tc := range []struct{ name, journal, want string }{
		{"empty", "", "no header"},
		{"cut header", header[:len(header)/2], "no header"},
		{"other lab", strings.Replace(header, `"lab":"lab"`, `"lab":"other"`, 1), "not \"lab\"'s"},
		{"netns path", strings.Replace(header, `"netns_id"`, `"netns":"../../proc/1/ns/net","netns_id"`, 1), "not a namespace name"},
		{"no netns id", strings.Replace(header, `"netns_id":"4:4026531840"`, `"netns_id":""`, 1), "identify"},
		{"old format", strings.Replace(header, `"version":2`, `"version":1`, 1), "format 1"},
		{"plan edited", strings.Replace(header, `"link":"vA","peer":"vB"`, `"link":"eth0","peer":"vB"`, 1), "digest"},
		{"plan sysctl outside net", strings.Replace(header, `net.ipv4.conf.all.rp_filter`, `kernel.hostname`, 1), "outside net"},
		{"middle line", replace(3, "garbage\n"), "line 4"},
		{"appended step", string(good[:len(good)]) + `{"type":"begin","index":10,"step":{"kind":"veth","link":"victim0","peer":"victim1"}}` + "\n", "begins after steps were undone"},
		{"step out of order", strings.Join(lines[:3], "") + `{"type":"begin","index":5,"step":{"kind":"rxe","link":"vA","rxe":"rxe0"}}` + "\n", "next step of the plan is 2"},
		{"step not the plan's", strings.Join(lines[:3], "") + strings.Replace(lines[3], `"link":"eth1"`, `"link":"eth0"`, 1), "not the plan's step 2"},
		{"unknown kind", strings.Join(lines[:3], "") + `{"type":"begin","index":1,"step":{"kind":"exec","cmd":"reboot"}}` + "\n", "unknown kind"},
		{"unknown field", strings.Join(lines[:3], "") + `{"type":"done","index":0,"shell":"reboot"}` + "\n", "unknown field"},
		{"undone never begun", strings.Join(lines[:3], "") + `{"type":"undone","index":7}` + "\n", "never began"},
		{"second header", strings.Join(lines[:3], "") + header, "second header"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseJournal([]byte(tc.journal), "lab")
			require.ErrorIs(t, err, ErrCorrupt)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	// A last line a crash cut short is ignored: the step it began was not made yet.
	torn := strings.Join(lines[:len(lines)-1], "") + `{"type":"und`
	_, err = ParseJournal([]byte(torn), "lab")
	require.NoError(t, err)
}

// FuzzJournal: the journal reader never panics, and a journal it accepts says nothing up
// could not have written: every begun step is the recorded plan's, well-formed, and nothing
// is both refused and undone.
func FuzzJournal(f *testing.F) {
	for done := 0; done <= len(samplePlan()); done += 3 {
		f.Add(sampleJournal(f, done, false, 0))
		f.Add(sampleJournal(f, done, true, done))
	}
	full := sampleJournal(f, len(samplePlan()), false, 0)
	f.Add(full[:len(full)/2])
	f.Add([]byte(strings.Replace(string(full), `"version":2`, `"version":3`, 1)))
	f.Fuzz(func(t *testing.T, data []byte) {
		j, err := ParseJournal(data, "lab")
		if err != nil {
			if j != nil {
				t.Fatal("journal returned with an error")
			}
			return
		}
		if j.Header.Version != journalVersion || j.Header.Lab != "lab" {
			t.Fatalf("accepted header %+v", j.Header)
		}
		for i, st := range j.Steps {
			if i < 0 || i >= len(j.Header.Plan) {
				t.Fatalf("step %d outside the plan of %d", i, len(j.Header.Plan))
			}
			if !plan.SameStep(j.Header.Plan[i], *st) {
				t.Fatalf("step %d is not the plan's", i)
			}
			if err := st.Check(); err != nil {
				t.Fatalf("step %d accepted but malformed: %v", i, err)
			}
		}
		for _, m := range []map[int]bool{j.Done, j.Failed, j.Undone} {
			for i := range m {
				if j.Steps[i] == nil {
					t.Fatalf("record for step %d, which never began", i)
				}
			}
		}
		for i := range j.Failed {
			if j.Undone[i] || j.Done[i] {
				t.Fatalf("step %d refused and also done or undone", i)
			}
		}
		for _, i := range j.Pending() {
			if j.Failed[i] || j.Undone[i] {
				t.Fatalf("step %d pending but refused or undone", i)
			}
		}
	})
}
