// Package runner runs whole labs. Run is up → traffic → (diagnosis) → down in one call: the
// sequence behind the CLI's `run` and behind ablation. Ablate repeats it with each fix left
// out in turn. RunSide is one host's part of a two-host lab, with the other host's rocebed.
// The lab always comes down and the host is restored, unless asked to keep it.
package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/rocebed/rocebed/internal/host"
	"github.com/rocebed/rocebed/testbed/diagnose"
	"github.com/rocebed/rocebed/testbed/lab"
	"github.com/rocebed/rocebed/testbed/plan"
	"github.com/rocebed/rocebed/testbed/scenario"
	"github.com/rocebed/rocebed/testbed/traffic"
)

// Options control Run.
type Options struct {
	Up lab.UpOptions
	// Keep leaves the lab up afterwards (the caller takes it down with lab.Down).
	Keep bool
	// Diagnose explains a failed traffic run while the lab is still up.
	Diagnose bool
}

// Result is what Run did. Plan is nil when the lab never came up; Traffic is nil when the
// traffic did not run at all.
type Result struct {
	Plan      *plan.Plan
	Traffic   *traffic.Report
	Diagnosis *diagnose.Diagnosis
	// Down says the lab was taken down and the host restored.
	Down bool
	// Peer is, in a two-host lab (RunSide), what the other host said of its part.
	Peer *PeerStatus
}

// Run brings the lab up, runs its traffic, diagnoses a failure if asked, and takes the lab down
// again — also when the traffic fails or ctx is cancelled (the restore itself is not
// cancelled). An error from Up comes back as it is (Up has rolled back); a diagnosis that
// cannot finish is logged, not returned, because the traffic verdict stands without it.
func Run(ctx context.Context, env *host.Env, s *scenario.Scenario, opts Options) (res *Result, err error) {
	res = &Result{}
	p, err := lab.Up(ctx, env, s, opts.Up)
	if err != nil {
		return res, err
	}
	res.Plan = p
	slog.Info("lab is up", "lab", s.Name, "changes", len(p.Steps))
	defer func() {
		if opts.Keep {
			slog.Info("lab kept up", "lab", s.Name, "restore", "rocebed down "+s.Name)
			return
		}
		if derr := lab.Down(context.WithoutCancel(ctx), opts.Up.StateDir, s.Name); derr != nil {
			err = errors.Join(err, &DownError{Lab: s.Name, Err: derr})
			return
		}
		res.Down = true
		slog.Info("lab is down; the host is restored", "lab", s.Name)
	}()
	res.Traffic, err = traffic.Run(ctx, env, s)
	if err == nil && !res.Traffic.Pass && opts.Diagnose {
		// The traffic failed (as expected or not): say where the packets died while the lab
		// is still up.
		var derr error
		if res.Diagnosis, derr = diagnose.AfterRun(ctx, env, s, res.Traffic); derr != nil {
			slog.Warn("diagnosis after the failed traffic did not complete", "error", derr)
		}
	}
	return res, err
}

// DownError says the lab ran but could not be taken down: the journal is kept, and `down`
// finishes the restore once the cause is fixed.
type DownError struct {
	Lab string
	Err error
}

func (e *DownError) Error() string {
	return fmt.Sprintf("take lab %q down: %v", e.Lab, e.Err)
}

func (e *DownError) Unwrap() error { return e.Err }
