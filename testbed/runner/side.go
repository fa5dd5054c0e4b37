package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/rocebed/rocebed/internal/host"
	"github.com/rocebed/rocebed/testbed/lab"
	"github.com/rocebed/rocebed/testbed/scenario"
	"github.com/rocebed/rocebed/testbed/traffic"
)

// SideOptions control RunSide.
type SideOptions struct {
	Up lab.UpOptions
	// Keep leaves this host's part up afterwards (take it down with lab.Down).
	Keep bool
	// PeerTimeout bounds each wait for the other host outside the traffic batches (which
	// bound their own): for its part to come up, and for its word that it went down.
	PeerTimeout time.Duration
	// ExitCode classifies this host's own failure for the other host, which then fails with
	// the same code (nil: every failure is 4).
	ExitCode func(error) int
}

// DefaultPeerTimeout is SideOptions.PeerTimeout's default: the other host's `up` includes
// loading rdma_rxe and a cold neighbour; two minutes is generous.
const DefaultPeerTimeout = 2 * time.Minute

// PeerStatus is what the other host of a two-host lab said about its part.
type PeerStatus struct {
	Host scenario.HostName `json:"host"`
	Name string            `json:"name"` // "host b (192.168.100.2:7471)"
	Up   bool              `json:"up"`   // its part came up
	// Restored says its part went down and its host is restored; nil when it did not say
	// (it went away, or it keeps its part up: Kept).
	Restored *bool  `json:"restored,omitempty"`
	Kept     bool   `json:"kept,omitempty"`
	Error    string `json:"error,omitempty"`
}

// sideStatus is the runner's message to the other host after `up` and after `down`.
type sideStatus struct {
	OK    bool   `json:"ok"`
	Kept  bool   `json:"kept,omitempty"`
	Error string `json:"error,omitempty"`
	Exit  int    `json:"exit,omitempty"`
}

// PeerError says the other host of a two-host lab failed: its part did not come up. Exit is the
// code its rocebed exits with, so both hosts exit alike.
type PeerError struct {
	Peer  string
	Stage string
	Msg   string
	Exit  int
}

func (e *PeerError) Error() string {
	return fmt.Sprintf("%s: its part of the lab did not come %s: %s", e.Peer, e.Stage, e.Msg)
}

// RunSide runs one host's part of a two-host lab (s from scenario.ForHost) with peer, rocebed
// on the other host, which runs RunSide with the other part: each brings its part up, says so,
// runs its end of every batch (traffic.RunSide; both get the same report), and takes its part
// down again — also when the traffic fails, the other host goes away, or ctx is cancelled —
// and says whether it did. Each host restores only itself: a host whose rocebed was killed is
// restored there by `rocebed down`, as after any kill -9.
func RunSide(ctx context.Context, env *host.Env, s *scenario.Scenario, peer traffic.Peer, opts SideOptions) (res *Result, err error) {
	if opts.PeerTimeout <= 0 {
		opts.PeerTimeout = DefaultPeerTimeout
	}
	res = &Result{Peer: &PeerStatus{Host: s.Host.Other(), Name: peer.Name()}}
	p, upErr := lab.Up(ctx, env, s, opts.Up)
	mine := sideStatus{OK: upErr == nil}
	if upErr != nil {
		mine.Error, mine.Exit = upErr.Error(), exitOf(opts, upErr)
	}
	var theirs sideStatus
	xerr := exchangeStatus(ctx, peer, "up", mine, &theirs, opts.PeerTimeout)
	if upErr != nil {
		return res, upErr // Up has rolled back; the other host knows
	}
	res.Plan = p
	slog.Info("this host's part of the lab is up", "lab", s.Name, "host", s.Host, "changes", len(p.Steps))
	lost := false
	defer func() {
		if opts.Keep {
			slog.Info("lab kept up", "lab", s.Name, "restore", "rocebed down "+s.Name)
		} else if derr := lab.Down(context.WithoutCancel(ctx), opts.Up.StateDir, s.Name); derr != nil {
			err = errors.Join(err, &DownError{Lab: s.Name, Err: derr})
		} else {
			res.Down = true
			slog.Info("this host's part is down; the host is restored", "lab", s.Name, "host", s.Host)
		}
		if lost || !res.Peer.Up {
			return
		}
		mine := sideStatus{OK: res.Down, Kept: opts.Keep}
		var theirs sideStatus
		if xerr := exchangeStatus(context.WithoutCancel(ctx), peer, "down", mine, &theirs, opts.PeerTimeout); xerr != nil {
			res.Peer.Error = xerr.Error()
			return
		}
		res.Peer.Kept = theirs.Kept
		if !theirs.Kept {
			restored := theirs.OK
			res.Peer.Restored = &restored
		}
		if theirs.Error != "" {
			res.Peer.Error = theirs.Error
		}
	}()
	switch {
	case xerr != nil:
		lost = true
		res.Peer.Error = xerr.Error()
		return res, fmt.Errorf("%s did not say whether its part came up: %w", peer.Name(), xerr)
	case !theirs.OK:
		res.Peer.Error = theirs.Error
		return res, &PeerError{Peer: peer.Name(), Stage: "up", Msg: theirs.Error, Exit: theirs.Exit}
	}
	res.Peer.Up = true
	res.Traffic, err = traffic.RunSide(ctx, env, s, peer)
	if errors.Is(err, traffic.ErrPeerLost) {
		lost = true
		res.Peer.Error = err.Error()
	}
	return res, err
}

// exchangeStatus sends this host's status of a stage and receives the other's, within timeout.
func exchangeStatus(ctx context.Context, peer traffic.Peer, stage string, mine sideStatus, theirs *sideStatus, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err := peer.Send(ctx, stage, mine)
	if err == nil {
		err = peer.Recv(ctx, stage, theirs)
	}
	if err != nil && !errors.Is(err, traffic.ErrPeerLost) && errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("%s said nothing about its %s within %s: %w", peer.Name(), stage, timeout, traffic.ErrPeerLost)
	}
	return err
}

func exitOf(opts SideOptions, err error) int {
	if opts.ExitCode == nil {
		return 4
	}
	return opts.ExitCode(err)
}

// Summary says in one line what the other host did: "host b (192.168.100.2:7471): its part
// came up and went down again; that host is restored".
func (p *PeerStatus) Summary() string {
	switch {
	case !p.Up && p.Error != "":
		return fmt.Sprintf("%s: its part did not come up: %s", p.Name, p.Error)
	case !p.Up:
		return fmt.Sprintf("%s: its part did not come up", p.Name)
	case p.Kept:
		return fmt.Sprintf("%s: its part came up and is kept up (`rocebed down` there restores it)", p.Name)
	case p.Restored != nil && *p.Restored:
		return fmt.Sprintf("%s: its part came up and went down again; that host is restored", p.Name)
	case p.Restored != nil:
		return fmt.Sprintf("%s: its part came up, and going down failed there: %s (run `rocebed down` there)", p.Name, p.Error)
	}
	return fmt.Sprintf("%s: its part came up; whether it went down is unknown (%s): run `rocebed down` there", p.Name, p.Error)
}
