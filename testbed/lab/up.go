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
	BeforeApply func(i int, st *plan.Step) error
	AfterApply  func(i int, st *plan.Step) error
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
	if JournalExists(stateDir, s.Name) {
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
	j, err := createJournal(stateDir, JournalHeader{
		Lab: s.Name, File: s.File, Source: opts.Source, Sets: opts.Sets, Netns: env.NetnsName,
		SkipRDMA: opts.SkipRDMA, Side: string(s.Host), PID: os.Getpid(), Started: time.Now().UTC(),
	})
	if err != nil {
		return nil, err
	}
	defer j.Close()

	for i := range p.Steps {
		st := &p.Steps[i]
		if err := ctx.Err(); err != nil {
			return nil, errors.Join(fmt.Errorf("interrupted before step %d: %w", i+1, err), rollback(env, j))
		}
		start := time.Now()
		if err := applyStep(env, j, i, st, opts); err != nil {
			stepErr := &StepError{Index: i, Step: *st, Err: err}
			slog.Error("step failed, rolling back", "step", i+1, "change", st.Command(), "error", err)
			return nil, errors.Join(stepErr, rollback(env, j))
		}
		slog.Info("applied", "step", i+1, "of", len(p.Steps), "change", st.Command(), "took", time.Since(start).Round(time.Microsecond))
	}
	ok = true
	return p, nil
}

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
func rollback(env *host.Env, j *Journal) error {
	if err := undoAll(env, j); err != nil {
		return fmt.Errorf("rollback incomplete, the journal is kept: run `rocebed down %s`: %w", j.Header.Lab, err)
	}
	return j.Remove()
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
// that is not up is not an error: Down is idempotent. The namespace comes from the journal.
func Down(ctx context.Context, stateDir, lab string) error {
	if stateDir == "" {
		stateDir = DefaultStateDir
	}
	if !JournalExists(stateDir, lab) {
		slog.Info("lab is not up; nothing to do", "lab", lab)
		return nil
	}
	lock, err := TakeLock(stateDir, lab)
	if err != nil {
		return err
	}
	ok := false
	defer func() { lock.Unlock(ok) }()
	j, err := OpenJournal(stateDir, lab)
	if err != nil {
		if errors.Is(err, ErrNotUp) {
			ok = true
			return nil
		}
		return err
	}
	defer j.Close()
	env, err := host.Open(j.Header.Netns)
	if err != nil {
		return fmt.Errorf("lab %q: %w", lab, err)
	}
	defer env.Close()
	if err := undoAll(env, j); err != nil {
		return fmt.Errorf("lab %q: down incomplete, the journal is kept; fix the cause and run `rocebed down %s` again: %w", lab, lab, err)
	}
	if err := j.Remove(); err != nil {
		return err
	}
	ok = true
	return nil
}
