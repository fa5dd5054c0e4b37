package lab

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"time"

	"github.com/rocebed/rocebed/testbed/plan"
	"github.com/rocebed/rocebed/testbed/scenario"
)

// The journal makes `down` possible after anything: a failed step, Ctrl-C, `kill -9`, a reboot
// of the tool. Before each host change, the change (with the old value it replaces) is appended
// to the journal and synced to disk; only then is it made. `down` undoes every change the
// journal has begun, newest first. Undo is idempotent, so a change that was journaled but never
// made is harmless to undo.
//
// Layout, under the state directory:
//
//	LAB/lock          flock(2)ed by the process working on the lab
//	LAB/journal.jsonl one JSON record a line: header, then begin/done/undone per step

// DefaultStateDir is where labs keep their journals.
const DefaultStateDir = "/run/rocebed"

const (
	journalFile = "journal.jsonl"
	lockFile    = "lock"
)

// JournalHeader is the first record: enough to find the lab's namespace and scenario again.
type JournalHeader struct {
	Lab      string    `json:"lab"`
	File     string    `json:"file"`            // where the scenario came from
	Source   []byte    `json:"source"`          // the scenario text, re-parsed by `probe`, `status`, `traffic`
	Sets     []string  `json:"sets,omitempty"`  // --set overrides used
	Netns    string    `json:"netns,omitempty"` // named namespace the lab lives in ("" = the tool's own)
	SkipRDMA bool      `json:"skip_rdma"`       // up --skip-rdma
	Side     string    `json:"side,omitempty"`  // --side: the host of a two-host lab this is
	PID      int       `json:"pid"`             // the process that brought it up
	Started  time.Time `json:"started"`
}

type journalRecord struct {
	Type   string         `json:"type"` // header | begin | done | undone
	Index  int            `json:"index,omitempty"`
	Step   *plan.Step     `json:"step,omitempty"`
	Header *JournalHeader `json:"header,omitempty"`
}

// Journal is an open lab journal.
type Journal struct {
	f      *os.File
	path   string
	Header JournalHeader
	// Steps are the begun steps by index; Done and Undone mark what completed.
	Steps  map[int]*plan.Step
	Done   map[int]bool
	Undone map[int]bool
}

// Dir returns the state directory of lab.
func Dir(stateDir, lab string) string { return filepath.Join(stateDir, lab) }

// ErrBusy means another rocebed process is working on the lab.
var ErrBusy = errors.New("lab is busy")

// ErrUp means the lab already has a journal: it is up, or an earlier run was interrupted.
var ErrUp = errors.New("lab is already up")

// ErrNotUp means the lab has no journal.
var ErrNotUp = errors.New("lab is not up")

// Lock is an exclusive hold on a lab's state directory.
type Lock struct {
	f    *os.File
	path string
}

// TakeLock takes the lab's lock without waiting. A second `up` (or `down`) of a lab that is being
// worked on fails at once with ErrBusy, naming the holder.
func TakeLock(stateDir, lab string) (*Lock, error) {
	dir := Dir(stateDir, lab)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create state directory %s: %w: choose another state directory", dir, err)
	}
	p := filepath.Join(dir, lockFile)
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", p, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(p)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			who := "another rocebed process"
			if pid, perr := strconv.Atoi(string(holder)); perr == nil {
				who = fmt.Sprintf("rocebed process %d", pid)
			}
			return nil, fmt.Errorf("lab %q: %w: %s is working on it (lock %s); wait for it to finish", lab, ErrBusy, who, p)
		}
		return nil, fmt.Errorf("lock %s: %w", p, err)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())), 0)
	return &Lock{f: f, path: p}, nil
}

// Unlock releases the lock. With remove, the lock file and the (then empty) lab directory go
// too, so a lab that is down leaves nothing behind.
func (l *Lock) Unlock(remove bool) {
	if l == nil || l.f == nil {
		return
	}
	if remove {
		os.Remove(l.path)
		os.Remove(filepath.Dir(l.path))
	}
	l.f.Close() // closing drops the flock
	l.f = nil
}

// createJournal starts a new journal; it fails with ErrUp if one exists.
func createJournal(stateDir string, h JournalHeader) (*Journal, error) {
	p := filepath.Join(Dir(stateDir, h.Lab), journalFile)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o644)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("lab %q: %w (journal %s): run `rocebed down %s` first", h.Lab, ErrUp, p, h.Lab)
		}
		return nil, fmt.Errorf("create journal %s: %w", p, err)
	}
	j := &Journal{f: f, path: p, Header: h, Steps: map[int]*plan.Step{}, Done: map[int]bool{}, Undone: map[int]bool{}}
	if err := j.append(journalRecord{Type: "header", Header: &h}); err != nil {
		f.Close()
		os.Remove(p)
		return nil, err
	}
	// The directory entry of the new file must survive a crash too.
	if d, err := os.Open(filepath.Dir(p)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return j, nil
}

// JournalExists reports whether lab has a journal.
func JournalExists(stateDir, lab string) bool {
	_, err := os.Stat(filepath.Join(Dir(stateDir, lab), journalFile))
	return err == nil
}

// OpenJournal reads a lab's journal and opens it for appending. A torn last line (a crash in
// the middle of a write) is ignored: the change it described was not made yet.
func OpenJournal(stateDir, lab string) (*Journal, error) {
	p := filepath.Join(Dir(stateDir, lab), journalFile)
	f, err := os.OpenFile(p, os.O_RDWR|os.O_APPEND, 0)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("lab %q: %w (no journal in %s)", lab, ErrNotUp, Dir(stateDir, lab))
		}
		return nil, fmt.Errorf("open journal %s: %w", p, err)
	}
	j := &Journal{f: f, path: p, Steps: map[int]*plan.Step{}, Done: map[int]bool{}, Undone: map[int]bool{}}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	first := true
	for sc.Scan() {
		var r journalRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			break // torn write at the end
		}
		switch {
		case first && r.Type == "header" && r.Header != nil:
			j.Header = *r.Header
		case first:
			f.Close()
			return nil, fmt.Errorf("journal %s: first record is not a header", p)
		case r.Type == "begin" && r.Step != nil:
			j.Steps[r.Index] = r.Step
		case r.Type == "done":
			j.Done[r.Index] = true
		case r.Type == "undone":
			j.Undone[r.Index] = true
		}
		first = false
	}
	if first {
		f.Close()
		return nil, fmt.Errorf("journal %s is empty or unreadable: the lab was interrupted before its first change; remove %s", p, Dir(stateDir, lab))
	}
	return j, nil
}

// OpenScenario reads the scenario a lab that is up was brought up with — its text, file and
// --set overrides are in the journal — and the journal's header.
func OpenScenario(stateDir, lab string) (*scenario.Scenario, JournalHeader, error) {
	j, err := OpenJournal(stateDir, lab)
	if err != nil {
		return nil, JournalHeader{}, err
	}
	h := j.Header
	j.Close()
	s, err := scenario.Parse(h.File, h.Source, h.Sets)
	if err != nil {
		return nil, h, fmt.Errorf("lab %q: the journal's scenario no longer parses: %w", lab, err)
	}
	if s, err = s.ForHost(scenario.HostName(h.Side)); err != nil {
		return nil, h, fmt.Errorf("lab %q: %w", lab, err)
	}
	return s, h, nil
}

func (j *Journal) append(r journalRecord) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode journal record: %w", err)
	}
	if _, err := j.f.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("write journal %s: %w", j.path, err)
	}
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("sync journal %s: %w", j.path, err)
	}
	return nil
}

// Begin records that step i is about to be made.
func (j *Journal) Begin(i int, st *plan.Step) error {
	if err := j.append(journalRecord{Type: "begin", Index: i, Step: st}); err != nil {
		return err
	}
	j.Steps[i] = st
	return nil
}

// Finish records that step i was made.
func (j *Journal) Finish(i int) error {
	j.Done[i] = true
	return j.append(journalRecord{Type: "done", Index: i})
}

// MarkUndone records that step i was undone, so an interrupted `down` does not redo it.
func (j *Journal) MarkUndone(i int) error {
	j.Undone[i] = true
	return j.append(journalRecord{Type: "undone", Index: i})
}

// Pending returns the indexes of begun steps not yet undone, newest first.
func (j *Journal) Pending() []int {
	var idx []int
	for i := range j.Steps {
		if !j.Undone[i] {
			idx = append(idx, i)
		}
	}
	// Newest first: undo in reverse order of application.
	sort.Sort(sort.Reverse(sort.IntSlice(idx)))
	return idx
}

// Remove deletes the journal; the lab is down.
func (j *Journal) Remove() error {
	j.Close()
	if err := os.Remove(j.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove journal: %w", err)
	}
	return nil
}

// Close closes the journal file.
func (j *Journal) Close() {
	if j.f != nil {
		j.f.Close()
		j.f = nil
	}
}
