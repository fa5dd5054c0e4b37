package lab

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/rocebed/rocebed/internal/host"
	"github.com/rocebed/rocebed/testbed/plan"
	"github.com/rocebed/rocebed/testbed/scenario"
)

// UpOptions control Up.
type UpOptions struct {
	// StateDir holds the journal and lock (DefaultStateDir if empty).
	StateDir string
	// SkipRDMA builds everything but the rxe links.
	SkipRDMA bool
	// Source is the scenario text, kept in the journal so later commands can name the lab only.
	Source []byte
	// Sets are the --set overrides the scenario was loaded with.
	Sets []string

	// BeforeApply and AfterApply are test hooks, called around each change with its index in the
	// plan. An error from either fails the step, which is how tests inject a failure at step k.
	// AfterStep is called once the step's `done` record is written, between two steps.
	BeforeApply func(i int, st *plan.Step) error
	AfterApply  func(i int, st *plan.Step) error
	AfterStep   func(i int, st *plan.Step) error
}

// StepError says which step of a plan failed.
type StepError struct {
	Index int
	Step  plan.Step
	Err   error
}

func (e *StepError) Error() string {
	return fmt.Sprintf("step %d (%s): %v", e.Index+1, e.Step.Command(), e.Err)
}

func (e *StepError) Unwrap() error { return e.Err }

// Up builds the lab: it plans, checks what the lab needs, and makes each change journaled
// first. If any change fails, or ctx is cancelled, everything already done is undone and the
// host is as before. On success the journal stays, for Down.
func Up(ctx context.Context, env *host.Env, s *scenario.Scenario, opts UpOptions) (*plan.Plan, error) {
	stateDir := opts.StateDir
	if stateDir == "" {
		stateDir = DefaultStateDir
	}
	lock, err := TakeLock(stateDir, s.Name)
	if err != nil {
		return nil, err
	}
	if journalExists(lock.dir) {
		lock.Unlock(false)
		return nil, fmt.Errorf("lab %q: %w (journal in %s): run `rocebed down %s` first", s.Name, ErrUp, Dir(stateDir, s.Name), s.Name)
	}
	ok := false
	defer func() { lock.Unlock(!ok) }()

	p, err := plan.MakePlan(s, plan.View(env), plan.PlanOptions{SkipRDMA: opts.SkipRDMA})
	if err != nil {
		return nil, err
	}
	if err := checkHost(env, s, p, opts.SkipRDMA); err != nil {
		return nil, err
	}
	nsID, err := NetnsID(env)
	if err != nil {
		return nil, err
	}
	j, err := createJournal(lock, JournalHeader{
		Lab: s.Name, File: s.File, Source: opts.Source, Sets: opts.Sets, Netns: env.NetnsName, NetnsID: nsID,
		SkipRDMA: opts.SkipRDMA, Side: string(s.Host), PID: os.Getpid(), Started: time.Now().UTC(), Plan: p.Steps,
	})
	if err != nil {
		return nil, err
	}
	defer j.Close()

	for i := range p.Steps {
		st := &p.Steps[i]
		if err := ctx.Err(); err != nil {
			return nil, errors.Join(fmt.Errorf("interrupted before step %d: %w", i+1, err), rollback(env, lock, j))
		}
		start := time.Now()
		if err := applyStep(env, j, i, st, opts); err != nil {
			stepErr := &StepError{Index: i, Step: *st, Err: err}
			slog.Error("step failed, rolling back", "step", i+1, "change", st.Command(), "error", err)
			return nil, errors.Join(stepErr, rollback(env, lock, j))
		}
		slog.Info("applied", "step", i+1, "of", len(p.Steps), "change", st.Command(), "took", time.Since(start).Round(time.Microsecond))
		if opts.AfterStep != nil {
			if err := opts.AfterStep(i, st); err != nil {
				return nil, errors.Join(&StepError{Index: i, Step: *st, Err: err}, rollback(env, lock, j))
			}
		}
	}
	ok = true
	return p, nil
}

// applyStep prepares, journals and makes step i. A change the kernel refused outright
// (plan.ErrNotMade) is journaled as failed: the host is as before, and rollback must not undo
// what may be someone else's (the link that made the name taken, say).
func applyStep(env *host.Env, j *Journal, i int, st *plan.Step, opts UpOptions) error {
	if err := st.Prepare(env); err != nil {
		return err
	}
	if err := j.Begin(i, st); err != nil {
		return err
	}
	if opts.BeforeApply != nil {
		if err := opts.BeforeApply(i, st); err != nil {
			return err
		}
	}
	if err := st.Apply(env); err != nil {
		if errors.Is(err, plan.ErrNotMade) {
			if ferr := j.Fail(i, err); ferr != nil {
				return errors.Join(err, ferr)
			}
		}
		return err
	}
	if opts.AfterApply != nil {
		if err := opts.AfterApply(i, st); err != nil {
			return err
		}
	}
	return j.Finish(i)
}

// rollback undoes every begun step, newest first, and removes the journal if all undos worked.
func rollback(env *host.Env, lock *Lock, j *Journal) error {
	if err := undoAll(env, j); err != nil {
		return fmt.Errorf("rollback incomplete, the journal is kept: run `rocebed down %s`: %w", j.Header.Lab, err)
	}
	return j.remove(lock.dir)
}

// undoAll undoes the journal's pending steps, keeping going after a failure.
func undoAll(env *host.Env, j *Journal) error {
	var errs []error
	for _, i := range j.Pending() {
		st := j.Steps[i]
		start := time.Now()
		if err := st.Undo(env); err != nil {
			errs = append(errs, fmt.Errorf("undo step %d (%s): %w", i+1, st.UndoCommand(), err))
			continue
		}
		if err := j.MarkUndone(i); err != nil {
			errs = append(errs, err)
		}
		slog.Info("undone", "step", i+1, "change", st.UndoCommand(), "took", time.Since(start).Round(time.Microsecond))
	}
	return errors.Join(errs...)
}

// Down undoes everything a lab's journal records, newest first, and removes the journal. A lab
// that is not up is not an error: Down is idempotent. It acts only in the network namespace
// the journal names and identifies: when that namespace is gone (deleted, or deleted and made
// again under its name), so is everything the lab changed, and Down only removes the journal;
// when the lab lives in "the current namespace" and this process is in another, Down refuses.
// A journal it cannot trust (see parseJournal) is kept and nothing is undone.
func Down(ctx context.Context, stateDir, lab string) error {
	stateDir = stateDirOrDefault(stateDir)
	if err := checkLabName(lab); err != nil {
		return err
	}
	up := false
	err := withLabDir(stateDir, lab, func(dir int) error {
		up = journalExists(dir)
		return nil
	})
	switch {
	case errors.Is(err, ErrNotUp), err == nil && !up:
		slog.Info("lab is not up; nothing to do", "lab", lab)
		return nil
	case err != nil:
		return err
	}
	lock, err := TakeLock(stateDir, lab)
	if err != nil {
		return err
	}
	ok := false
	defer func() { lock.Unlock(ok) }()
	j, err := readJournal(lock.dir, stateDir, lab, true)
	if err != nil {
		if errors.Is(err, ErrNotUp) {
			ok = true
			return nil
		}
		return err
	}
	defer j.Close()
	env, gone, err := openLabEnv(j.Header)
	if err != nil {
		return fmt.Errorf("lab %q: %w", lab, err)
	}
	if gone != "" {
		slog.Warn("the lab's network namespace is gone, and everything the lab changed with it; removing its journal", "lab", lab, "why", gone)
	} else {
		defer env.Close()
		if err := undoAll(env, j); err != nil {
			return fmt.Errorf("lab %q: down incomplete, the journal is kept; fix the cause and run `rocebed down %s` again: %w", lab, lab, err)
		}
	}
	if err := j.remove(lock.dir); err != nil {
		return err
	}
	ok = true
	return nil
}

// openLabEnv opens the namespace a journal's lab lives in and checks that it is the one the
// lab was built in. gone says why the lab's named namespace no longer exists ("" if it does).
func openLabEnv(h JournalHeader) (env *host.Env, gone string, err error) {
	env, err = host.Open(h.Netns)
	if err != nil {
		if h.Netns != "" && errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Sprintf("netns %q does not exist", h.Netns), nil
		}
		return nil, "", err
	}
	id, err := NetnsID(env)
	if err != nil {
		env.Close()
		return nil, "", err
	}
	if id != h.NetnsID {
		env.Close()
		if h.Netns != "" {
			return nil, fmt.Sprintf("netns %q is %s, not the namespace %s the lab was built in", h.Netns, id, h.NetnsID), nil
		}
		return nil, "", fmt.Errorf("the lab was brought up in network namespace %s and this process is in %s: run `rocebed down` from the namespace the lab was brought up in", h.NetnsID, id)
	}
	return env, "", nil
}
