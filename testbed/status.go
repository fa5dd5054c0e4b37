package testbed

import (
	"errors"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"time"
)

// LabState is what `status` reports of a lab.
type LabState string

const (
	LabDown       LabState = "down"       // no journal
	LabUp         LabState = "up"         // every planned change made
	LabIncomplete LabState = "incomplete" // up or down was interrupted: run down
	LabBusy       LabState = "busy"       // another process holds the lock right now
)

// Status is a lab's state as its journal and lock tell it.
type Status struct {
	Lab      string    `json:"lab"`
	State    LabState  `json:"state"`
	File     string    `json:"file,omitempty"`
	Netns    string    `json:"netns,omitempty"`
	SkipRDMA bool      `json:"skip_rdma,omitempty"`
	PID      int       `json:"pid,omitempty"`
	Started  time.Time `json:"started,omitempty"`
	Steps    []Step    `json:"steps,omitempty"`
	Done     int       `json:"done"`
	Undone   int       `json:"undone"`
}

// LabStatus reads a lab's journal without changing it. A lab whose journal ends in a step that
// was begun but not finished, or that has undone steps, is incomplete.
func LabStatus(stateDir, lab string) (*Status, error) {
	if stateDir == "" {
		stateDir = DefaultStateDir
	}
	st := &Status{Lab: lab, State: LabDown}
	if !JournalExists(stateDir, lab) {
		return st, nil
	}
	if lockHeld(filepath.Join(LabDir(stateDir, lab), lockFile)) {
		st.State = LabBusy
	}
	j, err := OpenJournal(stateDir, lab)
	if err != nil {
		if errors.Is(err, ErrLabNotUp) {
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
	if st.State != LabBusy {
		st.State = LabUp
		if st.Done != len(j.Steps) || st.Undone > 0 {
			st.State = LabIncomplete
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
