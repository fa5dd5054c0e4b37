package lab

import (
	"errors"
	"sort"
	"time"

	"github.com/rocebed/rocebed/testbed/plan"
	"golang.org/x/sys/unix"
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
	Steps    []plan.Step `json:"steps,omitempty"` // the begun steps, in order
	Planned  int         `json:"planned"`         // the steps of the plan `up` recorded
	Done     int         `json:"done"`
	Failed   int         `json:"failed"`
	Undone   int         `json:"undone"`
}

// StatusOf reads a lab's journal without changing it (it needs no root when the state
// directory is readable). A lab is up when every step of the plan recorded at `up` was done
// and none undone; anything else — a step begun but not finished, fewer steps done than
// planned (a `kill -9` between two steps), a refused or an undone step — is incomplete. A
// journal that cannot be trusted is an error (ErrCorrupt, ErrUntrusted).
func StatusOf(stateDir, lab string) (*Status, error) {
	stateDir = stateDirOrDefault(stateDir)
	st := &Status{Lab: lab, State: StateDown}
	err := withLabDir(stateDir, lab, func(dir int) error {
		if !journalExists(dir) {
			return nil
		}
		busy := lockHeld(dir, stateDir, lab)
		j, err := readJournal(dir, stateDir, lab, false)
		if err != nil {
			if errors.Is(err, ErrNotUp) {
				return nil // taken down meanwhile
			}
			return err
		}
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
		st.Planned, st.Done, st.Failed, st.Undone = len(h.Plan), len(j.Done), len(j.Failed), len(j.Undone)
		switch {
		case busy:
			st.State = StateBusy
		case st.Done == st.Planned && st.Failed == 0 && st.Undone == 0:
			st.State = StateUp
		default:
			st.State = StateIncomplete
		}
		return nil
	})
	if errors.Is(err, ErrNotUp) {
		return st, nil
	}
	if err != nil {
		return nil, err
	}
	return st, nil
}

// lockHeld reports whether some process holds the flock on the lab directory's lock.
func lockHeld(dir int, stateDir, lab string) bool {
	f, err := openStateFile(dir, stateDir, lab, lockFile, unix.O_RDONLY, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return errors.Is(err, unix.EWOULDBLOCK)
	}
	_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
	return false
}
