package lab

import (
	"errors"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"time"

	"github.com/rocebed/rocebed/testbed/plan"
)

// State is what `status` reports of a lab.
type State string

const (
	StateDown       State = "down"       // no journal
	StateUp         State = "up"         // every planned change made
	StateIncomplete State = "incomplete" // up or down was interrupted: run down
	StateBusy       State = "busy"       // another process holds the lock right now
)

// Status is a lab's state as its journal and lock tell it.
type Status struct {
	Lab      string      `json:"lab"`
	State    State       `json:"state"`
	File     string      `json:"file,omitempty"`
	Netns    string      `json:"netns,omitempty"`
	SkipRDMA bool        `json:"skip_rdma,omitempty"`
	PID      int         `json:"pid,omitempty"`
	Started  time.Time   `json:"started,omitempty"`
	Steps    []plan.Step `json:"steps,omitempty"`
	Done     int         `json:"done"`
	Undone   int         `json:"undone"`
}

// StatusOf reads a lab's journal without changing it. A lab whose journal ends in a step that
// was begun but not finished, or that has undone steps, is incomplete.
func StatusOf(stateDir, lab string) (*Status, error) {
	if stateDir == "" {
		stateDir = DefaultStateDir
	}
	st := &Status{Lab: lab, State: StateDown}
	if !JournalExists(stateDir, lab) {
		return st, nil
	}
	if lockHeld(filepath.Join(Dir(stateDir, lab), lockFile)) {
		st.State = StateBusy
	}
	j, err := OpenJournal(stateDir, lab)
	if err != nil {
		if errors.Is(err, ErrNotUp) {
			return st, nil
		}
		return nil, err
	}
	defer j.Close()
	h := j.Header
	st.File, st.Netns, st.SkipRDMA, st.PID, st.Started = h.File, h.Netns, h.SkipRDMA, h.PID, h.Started
	idx := make([]int, 0, len(j.Steps))
	for i := range j.Steps {
		idx = append(idx, i)
	}
	sort.Ints(idx)
	for _, i := range idx {
		st.Steps = append(st.Steps, *j.Steps[i])
	}
	st.Done, st.Undone = len(j.Done), len(j.Undone)
	if st.State != StateBusy {
		st.State = StateUp
		if st.Done != len(j.Steps) || st.Undone > 0 {
			st.State = StateIncomplete
		}
	}
	return st, nil
}

// lockHeld reports whether some process holds the flock on path.
func lockHeld(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return errors.Is(err, syscall.EWOULDBLOCK)
	}
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false
}
