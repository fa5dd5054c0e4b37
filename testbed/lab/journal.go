package lab

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"time"

	"github.com/rocebed/rocebed/internal/host"
	"github.com/rocebed/rocebed/testbed/plan"
	"github.com/rocebed/rocebed/testbed/scenario"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The journal makes `down` possible after anything: a failed step, Ctrl-C, `kill -9`, a reboot
// of the tool. `up` first writes a header with the whole plan, atomically (a temporary file,
// linked into place); then, before each host change, the step — with the old value it
// replaces and the ifindex of the link it acts on — is appended and synced; only then is it
// made, and a `done` record (or `failed`, when the kernel refused it and nothing changed)
// follows. `down` undoes every begun step that was not refused, newest first. Undo is
// idempotent and acts only on what the step made, so a step that was journaled but never made
// is harmless to undo.
//
// `down` carries out nothing the lab's own plan did not contain: the journal is read strictly
// (readJournal) and refused whole — kept, with the line that is wrong — when its header is
// not one `up` writes, when a record is not the next step of the recorded plan, or when a line
// in the middle is not a record. Only a last line without its newline, a write that a crash
// cut short, is ignored.
//
// Layout, under the state directory (see statedir.go for who may write there):
//
//	LAB/lock          flock(2)ed by the process working on the lab
//	LAB/journal.jsonl one JSON record a line: header, then begin/done/failed/undone per step

// DefaultStateDir is where labs keep their journals.
const DefaultStateDir = "/run/rocebed"

const (
	journalFile = "journal.jsonl"
	journalTmp  = "journal.jsonl.new"
	lockFile    = "lock"

	// journalVersion is the journal format: 2 records the plan in the header.
	journalVersion = 2
	// maxJournal bounds how much of a journal is read: the header holds the scenario (at
	// most 1 MiB) and the plan, each step a few hundred bytes.
	maxJournal = 64 << 20
)

// JournalHeader is the first record: the plan `up` carries out, and enough to find the lab's
// namespace and scenario again.
type JournalHeader struct {
	Version int      `json:"version"`
	Lab     string   `json:"lab"`
	File    string   `json:"file"`           // where the scenario came from
	Source  []byte   `json:"source"`         // the scenario text, re-parsed by `probe`, `status`, `traffic`
	Sets    []string `json:"sets,omitempty"` // --set overrides used
	// Netns is the named namespace the lab lives in ("" = the tool's own), NetnsID that
	// namespace's identity (device:inode of its nsfs file): `down` acts only there.
	Netns    string    `json:"netns,omitempty"`
	NetnsID  string    `json:"netns_id"`
	SkipRDMA bool      `json:"skip_rdma"`      // up --skip-rdma
	Side     string    `json:"side,omitempty"` // --side: the host of a two-host lab this is
	PID      int       `json:"pid"`            // the process that brought it up
	Started  time.Time `json:"started"`
	// Plan is every change `up` was to make, in order, as planned; PlanDigest is the SHA-256
	// of its JSON. A begun step must be Plan's next step (plan.SameStep).
	Plan       []plan.Step `json:"plan"`
	PlanDigest string      `json:"plan_digest"`
}

type journalRecord struct {
	Type   string         `json:"type"` // header | begin | done | failed | undone
	Index  int            `json:"index,omitempty"`
	Step   *plan.Step     `json:"step,omitempty"`
	Header *JournalHeader `json:"header,omitempty"`
	Error  string         `json:"error,omitempty"` // failed: what the kernel said
}

// Journal is an open lab journal.
type Journal struct {
	f      *os.File
	path   string
	Header JournalHeader
	// Steps are the begun steps by index; Done, Failed and Undone mark what became of them
	// (Failed: the kernel refused the change, so nothing was made).
	Steps  map[int]*plan.Step
	Done   map[int]bool
	Failed map[int]bool
	Undone map[int]bool
}

// Dir returns the state directory of lab (for messages; state paths are opened with openLabDir).
func Dir(stateDir, lab string) string {
	if stateDir == "" {
		stateDir = DefaultStateDir
	}
	return filepath.Join(stateDir, lab)
}

// ErrBusy means another rocebed process is working on the lab.
var ErrBusy = errors.New("lab is busy")

// ErrUp means the lab already has a journal: it is up, or an earlier run was interrupted.
var ErrUp = errors.New("lab is already up")

// ErrNotUp means the lab has no journal.
var ErrNotUp = errors.New("lab is not up")

// ErrCorrupt means a journal `down` cannot trust: it is kept, and nothing is undone.
var ErrCorrupt = errors.New("journal is corrupt")

// Lock is an exclusive hold on a lab's state directory.
type Lock struct {
	f        *os.File
	state    int // O_PATH descriptors of the state directory and of the lab's
	dir      int
	stateDir string
	lab      string
}

// TakeLock takes the lab's lock without waiting. A second `up` (or `down`) of a lab that is being
// worked on fails at once with ErrBusy, naming the holder.
func TakeLock(stateDir, lab string) (*Lock, error) {
	if stateDir == "" {
		stateDir = DefaultStateDir
	}
	for range 5 {
		l, retry, err := tryLock(stateDir, lab)
		if !retry {
			return l, err
		}
	}
	return nil, fmt.Errorf("lab %q: %w: its directory keeps being removed under rocebed (lock %s)", lab, ErrBusy, filepath.Join(Dir(stateDir, lab), lockFile))
}

// tryLock opens and locks LAB/lock; retry says the lab's directory or lock file was removed
// by a `down` that finished meanwhile, so the lock taken is not the lab's any more.
func tryLock(stateDir, lab string) (l *Lock, retry bool, err error) {
	if err := checkLabName(lab); err != nil {
		return nil, false, err
	}
	sd, err := openStateDir(stateDir, true)
	if err != nil {
		return nil, false, err
	}
	dir, err := openLabDir(sd, stateDir, lab, true)
	if err != nil {
		unix.Close(sd)
		return nil, errors.Is(err, fs.ErrNotExist), err
	}
	f, err := openStateFile(dir, stateDir, lab, lockFile, unix.O_RDWR|unix.O_CREAT, 0o644)
	if err != nil {
		unix.Close(dir)
		unix.Close(sd)
		// ENOENT: the directory was removed between opening it and creating the lock.
		return nil, errors.Is(err, fs.ErrNotExist), err
	}
	p := f.Name()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		holder := make([]byte, 16)
		n, _ := f.ReadAt(holder, 0)
		f.Close()
		unix.Close(dir)
		unix.Close(sd)
		if errors.Is(err, unix.EWOULDBLOCK) {
			who := "another rocebed process"
			if pid, perr := strconv.Atoi(string(holder[:n])); perr == nil {
				who = fmt.Sprintf("rocebed process %d", pid)
			}
			return nil, false, fmt.Errorf("lab %q: %w: %s is working on it (lock %s); wait for it to finish", lab, ErrBusy, who, p)
		}
		return nil, false, fmt.Errorf("lock %s: %w", p, err)
	}
	if !sameFile(f, dir, lockFile) || !sameDir(dir, sd, lab) {
		f.Close()
		unix.Close(dir)
		unix.Close(sd)
		return nil, true, nil
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())), 0)
	return &Lock{f: f, state: sd, dir: dir, stateDir: stateDir, lab: lab}, false, nil
}

// Unlock releases the lock. With remove, the lock file and the (then empty) lab directory go
// too, so a lab that is down leaves nothing behind.
func (l *Lock) Unlock(remove bool) {
	if l == nil || l.f == nil {
		return
	}
	if remove {
		_ = unix.Unlinkat(l.dir, lockFile, 0)
		_ = unix.Unlinkat(l.state, l.lab, unix.AT_REMOVEDIR)
	}
	l.f.Close() // closing drops the flock
	l.f = nil
	unix.Close(l.dir)
	unix.Close(l.state)
}

// NetnsID is the identity of the namespace env acts in: the device and inode of its nsfs file.
// Two namespaces never share it while both exist; one made again under the same name has
// another.
func NetnsID(env *host.Env) (string, error) {
	ns := env.NS
	if !ns.IsOpen() {
		runtime.LockOSThread()
		cur, err := netns.Get()
		runtime.UnlockOSThread()
		if err != nil {
			return "", fmt.Errorf("identify the current network namespace: %w", err)
		}
		defer cur.Close()
		ns = cur
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(ns), &st); err != nil {
		return "", fmt.Errorf("identify %s: %w", env, err)
	}
	return fmt.Sprintf("%d:%d", st.Dev, st.Ino), nil
}

// planDigest is the SHA-256 of a plan's JSON.
func planDigest(steps []plan.Step) (string, error) {
	b, err := json.Marshal(steps)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}

// createJournal starts a new journal under the lock with the header h (its Plan as planned,
// before any Prepare). It fails with ErrUp if one exists. The header is written to a
// temporary file, synced and linked into place, so a journal always begins with a whole
// header: an empty one is never rocebed's.
func createJournal(l *Lock, h JournalHeader) (*Journal, error) {
	h.Version = journalVersion
	digest, err := planDigest(h.Plan)
	if err != nil {
		return nil, fmt.Errorf("encode the plan: %w", err)
	}
	h.PlanDigest = digest
	line, err := json.Marshal(journalRecord{Type: "header", Header: &h})
	if err != nil {
		return nil, fmt.Errorf("encode journal header: %w", err)
	}
	p := filepath.Join(Dir(l.stateDir, l.lab), journalFile)
	_ = unix.Unlinkat(l.dir, journalTmp, 0) // left by a crash before the link below
	f, err := openStateFile(l.dir, l.stateDir, l.lab, journalTmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("create journal: %w", err)
	}
	fail := func(err error) (*Journal, error) {
		f.Close()
		_ = unix.Unlinkat(l.dir, journalTmp, 0)
		return nil, err
	}
	if _, err := f.Write(append(line, '\n')); err != nil {
		return fail(fmt.Errorf("write journal %s: %w", p, err))
	}
	if err := f.Sync(); err != nil {
		return fail(fmt.Errorf("sync journal %s: %w", p, err))
	}
	if err := unix.Linkat(l.dir, journalTmp, l.dir, journalFile, 0); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return fail(fmt.Errorf("lab %q: %w (journal %s): run `rocebed down %s` first", h.Lab, ErrUp, p, h.Lab))
		}
		return fail(fmt.Errorf("create journal %s: %w", p, err))
	}
	_ = unix.Unlinkat(l.dir, journalTmp, 0)
	syncDir(l.dir) // the journal's directory entry must survive a crash too
	// The header as read back, so the journal's plan does not share the steps Up prepares.
	j, err := parseJournal(append(line, '\n'), h.Lab)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("read back journal header: %w", err)
	}
	j.f, j.path = f, p
	return j, nil
}

// journalExists reports whether the lab directory dir holds a journal.
func journalExists(dir int) bool {
	var st unix.Stat_t
	return unix.Fstatat(dir, journalFile, &st, unix.AT_SYMLINK_NOFOLLOW) == nil
}

// JournalExists reports whether lab has a journal in a state directory rocebed trusts.
func JournalExists(stateDir, lab string) bool {
	sd, err := openStateDir(stateDir, false)
	if err != nil {
		return false
	}
	defer unix.Close(sd)
	dir, err := openLabDir(sd, stateDir, lab, false)
	if err != nil {
		return false
	}
	defer unix.Close(dir)
	return journalExists(dir)
}

// readJournal reads the journal in the lab directory dir; with write it stays open for
// appending. A lab without one is ErrNotUp; one that cannot be trusted is ErrCorrupt.
func readJournal(dir int, stateDir, lab string, write bool) (*Journal, error) {
	flags := unix.O_RDONLY
	if write {
		flags = unix.O_RDWR | unix.O_APPEND
	}
	f, err := openStateFile(dir, stateDir, lab, journalFile, flags, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("lab %q: %w (no journal in %s)", lab, ErrNotUp, Dir(stateDir, lab))
		}
		return nil, err
	}
	data, err := io.ReadAll(io.LimitReader(f, maxJournal+1))
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("read journal %s: %w", f.Name(), err)
	}
	if len(data) > maxJournal {
		f.Close()
		return nil, fmt.Errorf("journal %s: %w: more than %d bytes", f.Name(), ErrCorrupt, maxJournal)
	}
	j, err := parseJournal(data, lab)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("journal %s: %w; it is kept and nothing was undone: check what the lab changed (ip link, ip rule, sysctl) and remove %s by hand once the host is clean",
			f.Name(), err, Dir(stateDir, lab))
	}
	j.path = f.Name()
	if write {
		j.f = f
	} else {
		f.Close()
	}
	return j, nil
}

// withLabDir opens the state and lab directories (never creating them) for fn.
func withLabDir(stateDir, lab string, fn func(dir int) error) error {
	if err := checkLabName(lab); err != nil {
		return err
	}
	if stateDir == "" {
		stateDir = DefaultStateDir
	}
	sd, err := openStateDir(stateDir, false)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("lab %q: %w (no journal in %s)", lab, ErrNotUp, Dir(stateDir, lab))
		}
		return err
	}
	defer unix.Close(sd)
	dir, err := openLabDir(sd, stateDir, lab, false)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("lab %q: %w (no journal in %s)", lab, ErrNotUp, Dir(stateDir, lab))
		}
		return err
	}
	defer unix.Close(dir)
	return fn(dir)
}

// OpenJournal reads a lab's journal (read only), checked as `down` checks it.
func OpenJournal(stateDir, lab string) (*Journal, error) {
	var j *Journal
	err := withLabDir(stateDir, lab, func(dir int) error {
		var err error
		j, err = readJournal(dir, stateDirOrDefault(stateDir), lab, false)
		return err
	})
	return j, err
}

func stateDirOrDefault(s string) string {
	if s == "" {
		return DefaultStateDir
	}
	return s
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

// corrupt is an ErrCorrupt at a line of the journal.
func corrupt(line int, format string, args ...any) error {
	return fmt.Errorf("%w at line %d: %s", ErrCorrupt, line, fmt.Sprintf(format, args...))
}

// ParseJournal reads a journal's text as `down` does (see readJournal); lab is the lab whose
// journal it must be. It exists for the fuzzer and for tests.
func ParseJournal(data []byte, lab string) (*Journal, error) { return parseJournal(data, lab) }

// parseJournal checks everything a journal says before anyone acts on it:
//
//   - the first line is a header of this format version, for this lab, whose namespace is a
//     name (not a path), whose plan hashes to its digest and whose every step is well-formed;
//   - every other line is a record; only a last line without its newline may be cut short;
//   - steps begin in the plan's order, each only after the one before it was done, and each
//     is the plan's step (plan.SameStep) with at most old values and ifindexes filled in;
//   - done and failed follow their step's begin; undone names a begun step that was not
//     refused, and once a step is undone nothing begins any more.
func parseJournal(data []byte, lab string) (*Journal, error) {
	j := &Journal{Steps: map[int]*plan.Step{}, Done: map[int]bool{}, Failed: map[int]bool{}, Undone: map[int]bool{}}
	lines := bytes.Split(data, []byte{'\n'})
	// The text after the last newline: empty, or a write a crash cut short.
	lines = lines[:len(lines)-1]
	if len(lines) == 0 {
		return nil, fmt.Errorf("%w: it has no header (up writes its header whole, so this journal is not up's)", ErrCorrupt)
	}
	var h JournalHeader
	if err := decodeRecord(lines[0], func(r journalRecord) error {
		if r.Type != "header" || r.Header == nil {
			return errors.New("the first record is not a header")
		}
		h = *r.Header
		return checkHeader(h, lab)
	}); err != nil {
		return nil, corrupt(1, "%v", err)
	}
	j.Header = h
	begun, undoing := 0, false
	for n, line := range lines[1:] {
		err := decodeRecord(line, func(r journalRecord) error {
			i := r.Index
			if r.Header != nil {
				return errors.New("a second header")
			}
			if r.Type != "begin" && r.Step != nil {
				return fmt.Errorf("a %s record with a step", r.Type)
			}
			switch r.Type {
			case "begin":
				switch {
				case undoing:
					return fmt.Errorf("step %d begins after steps were undone", i+1)
				case i != begun:
					return fmt.Errorf("step %d begins, but the next step of the plan is %d", i+1, begun+1)
				case i >= len(h.Plan):
					return fmt.Errorf("step %d begins, but the plan has %d steps", i+1, len(h.Plan))
				case i > 0 && !j.Done[i-1]:
					return fmt.Errorf("step %d begins before step %d was done", i+1, i)
				case r.Step == nil:
					return fmt.Errorf("step %d begins without the step", i+1)
				}
				if err := r.Step.Check(); err != nil {
					return fmt.Errorf("step %d: %w", i+1, err)
				}
				if !plan.SameStep(h.Plan[i], *r.Step) {
					return fmt.Errorf("step %d (%s) is not the plan's step %d (%s)", i+1, r.Step.Command(), i+1, h.Plan[i].Command())
				}
				j.Steps[i] = r.Step
				begun++
			case "done", "failed":
				switch {
				case undoing:
					return fmt.Errorf("step %d is %s after steps were undone", i+1, r.Type)
				case i != begun-1 || i < 0:
					return fmt.Errorf("step %d is %s, but the step begun last is %d", i+1, r.Type, begun)
				case j.Done[i] || j.Failed[i]:
					return fmt.Errorf("step %d is %s twice", i+1, r.Type)
				}
				if r.Type == "done" {
					j.Done[i] = true
				} else {
					j.Failed[i] = true
				}
			case "undone":
				switch {
				case j.Steps[i] == nil:
					return fmt.Errorf("step %d is undone but never began", i+1)
				case j.Failed[i]:
					return fmt.Errorf("step %d is undone but was never made", i+1)
				case j.Undone[i]:
					return fmt.Errorf("step %d is undone twice", i+1)
				}
				j.Undone[i] = true
				undoing = true
			default:
				return fmt.Errorf("unknown record type %q", r.Type)
			}
			return nil
		})
		if err != nil {
			return nil, corrupt(n+2, "%v", err)
		}
	}
	return j, nil
}

// decodeRecord decodes one line strictly (unknown fields are an error) and hands it to fn.
func decodeRecord(line []byte, fn func(journalRecord) error) error {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	var r journalRecord
	if err := dec.Decode(&r); err != nil {
		return fmt.Errorf("not a journal record: %w", err)
	}
	if dec.More() {
		return errors.New("more than one record on a line")
	}
	return fn(r)
}

// checkHeader checks a header against the lab whose journal it is.
func checkHeader(h JournalHeader, lab string) error {
	switch {
	case h.Version != journalVersion:
		return fmt.Errorf("journal format %d, not %d: it was written by another version of rocebed; take the lab down with that version", h.Version, journalVersion)
	case h.Lab != lab:
		return fmt.Errorf("the header is lab %q's, not %q's", h.Lab, lab)
	case h.NetnsID == "":
		return errors.New("the header does not identify the lab's network namespace")
	case len(h.Source) > scenario.MaxSize:
		return fmt.Errorf("the header's scenario is %d bytes", len(h.Source))
	case h.Side != "" && h.Side != string(scenario.HostA) && h.Side != string(scenario.HostB):
		return fmt.Errorf("the header's side %q is neither host a nor host b", h.Side)
	}
	if msg := scenario.LabNameProblem(h.Lab); msg != "" {
		return errors.New(msg)
	}
	if h.Netns != "" {
		if msg := scenario.NetnsNameProblem(h.Netns); msg != "" {
			return fmt.Errorf("netns: %s", msg)
		}
	}
	for i, st := range h.Plan {
		if st.Change == nil {
			return fmt.Errorf("plan step %d is empty", i+1)
		}
		if err := st.Check(); err != nil {
			return fmt.Errorf("plan step %d: %w", i+1, err)
		}
	}
	if d, err := planDigest(h.Plan); err != nil || d != h.PlanDigest {
		return errors.New("the plan does not match its digest")
	}
	return nil
}

func (j *Journal) append(r journalRecord) error {
	if j.f == nil {
		return fmt.Errorf("journal %s is not open for writing", j.path)
	}
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

// Begin records that step i (prepared: old values and ifindexes read) is about to be made.
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

// Fail records that step i was not made: the kernel refused it and the host is as before, so
// nothing of it is to be undone.
func (j *Journal) Fail(i int, cause error) error {
	j.Failed[i] = true
	return j.append(journalRecord{Type: "failed", Index: i, Error: cause.Error()})
}

// MarkUndone records that step i was undone, so an interrupted `down` does not redo it.
func (j *Journal) MarkUndone(i int) error {
	j.Undone[i] = true
	return j.append(journalRecord{Type: "undone", Index: i})
}

// Pending returns the indexes of begun steps that were made (or may have been) and are not
// undone yet, newest first.
func (j *Journal) Pending() []int {
	var idx []int
	for i := range j.Steps {
		if !j.Undone[i] && !j.Failed[i] {
			idx = append(idx, i)
		}
	}
	// Newest first: undo in reverse order of application.
	sort.Sort(sort.Reverse(sort.IntSlice(idx)))
	return idx
}

// remove deletes the journal from the lab directory dir; the lab is down.
func (j *Journal) remove(dir int) error {
	j.Close()
	if err := unix.Unlinkat(dir, journalFile, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove journal %s: %w", j.path, err)
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
