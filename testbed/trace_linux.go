package testbed

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// The optional drop-trace layer: the skb:kfree_skb tracepoint, filtered to IPv4 and ARP,
// counted by a histogram trigger (protocol, freeing function, drop reason) and recorded in a
// private tracefs instance (`mkdir /sys/kernel/tracing/instances/NAME`). The instance has its
// own buffer, event switches and triggers, so the host's tracing state is never touched:
// removing the instance (and unmounting tracefs, if this mounted it) restores it exactly.

var tracefsRoots = []string{"/sys/kernel/tracing", "/sys/kernel/debug/tracing"}

const (
	traceFilter   = "protocol == 2048 || protocol == 2054" // ETH_P_IP, ETH_P_ARP (host order in the event)
	traceHist     = "hist:keys=protocol,location.sym-offset,reason:vals=hitcount:sort=hitcount.descending"
	traceMaxLines = 8
)

type traceSession struct {
	root    string // tracefs mount point
	mounted bool   // this process mounted it
	inst    string // instance directory
	event   string // instance's events/skb/kfree_skb
	hist    bool   // the histogram trigger is set
	reason  string
	reasons map[int]string // drop reason number -> name, from the event's format
}

// startTrace sets up the kfree_skb layer. It returns nil and evidence saying why when the
// layer is unavailable.
func startTrace() (*traceSession, *TraceEvidence) {
	ev := &TraceEvidence{}
	root, mounted, why := findTracefs()
	if root == "" {
		ev.Reason = why
		return nil, ev
	}
	t := &traceSession{root: root, mounted: mounted}
	fail := func(format string, args ...any) (*traceSession, *TraceEvidence) {
		ev.Reason = fmt.Sprintf(format, args...)
		t.cleanup()
		return nil, ev
	}
	format, err := os.ReadFile(filepath.Join(root, "events", "skb", "kfree_skb", "format"))
	if err != nil {
		return fail("the skb:kfree_skb event is missing from %s (%v)", root, err)
	}
	t.reasons = dropReasonNames(string(format))
	var b [4]byte
	_, _ = rand.Read(b[:])
	t.inst = filepath.Join(root, "instances", fmt.Sprintf("rocebed-%d-%x", os.Getpid(), b))
	if err := os.Mkdir(t.inst, 0o700); err != nil {
		t.inst = ""
		return fail("cannot create a tracefs instance in %s (%v)", root, err)
	}
	t.event = filepath.Join(t.inst, "events", "skb", "kfree_skb")
	var notes []string
	if err := writeTracefs(filepath.Join(t.event, "filter"), traceFilter); err != nil {
		notes = append(notes, "no filter: "+err.Error())
	}
	if err := writeTracefs(filepath.Join(t.event, "trigger"), traceHist+" if "+traceFilter); err == nil {
		t.hist = true
	} else {
		notes = append(notes, "no histogram trigger ("+err.Error()+"): counting the recorded lines")
	}
	if err := writeTracefs(filepath.Join(t.event, "enable"), "1"); err != nil {
		return fail("cannot enable skb:kfree_skb (%v)", err)
	}
	t.reason = fmt.Sprintf("skb:kfree_skb traced in instance %s (filter %q)", t.inst, traceFilter)
	if mounted {
		t.reason += "; tracefs mounted for it and unmounted after"
	}
	if len(notes) > 0 {
		t.reason += "; " + strings.Join(notes, "; ")
	}
	return t, nil
}

// findTracefs returns a mounted tracefs, mounting it on /sys/kernel/tracing if none is.
func findTracefs() (root string, mounted bool, why string) {
	for _, r := range tracefsRoots {
		if _, err := os.Stat(filepath.Join(r, "events")); err == nil {
			return r, false, ""
		}
	}
	dir := tracefsRoots[0]
	if _, err := os.Stat(dir); err != nil {
		return "", false, fmt.Sprintf("no tracefs: %s does not exist (kernel without CONFIG_TRACING?)", dir)
	}
	if err := unix.Mount("tracefs", dir, "tracefs", 0, ""); err != nil {
		return "", false, fmt.Sprintf("tracefs is not mounted at %s and mounting it failed: %v", strings.Join(tracefsRoots, " or "), err)
	}
	if _, err := os.Stat(filepath.Join(dir, "events")); err != nil {
		_ = unix.Unmount(dir, 0)
		return "", false, fmt.Sprintf("tracefs mounted at %s has no events directory", dir)
	}
	return dir, true, ""
}

func writeTracefs(path, v string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	_, werr := f.WriteString(v)
	return errors.Join(werr, f.Close())
}

// stop disables the event, reads what it saw and removes the instance.
func (t *traceSession) stop() *TraceEvidence {
	ev := &TraceEvidence{Available: true, Reason: t.reason}
	_ = writeTracefs(filepath.Join(t.event, "enable"), "0")
	if data, err := os.ReadFile(filepath.Join(t.inst, "trace")); err == nil {
		ev.Lines = traceLines(string(data), traceMaxLines)
	}
	if t.hist {
		if data, err := os.ReadFile(filepath.Join(t.event, "hist")); err == nil {
			ev.Drops = parseKfreeHist(string(data), t.reasons)
		} else {
			ev.Reason += "; histogram unreadable: " + err.Error()
		}
	} else if data, err := os.ReadFile(filepath.Join(t.inst, "trace")); err == nil {
		ev.Drops = groupKfreeLines(string(data))
	}
	if err := t.cleanup(); err != nil {
		ev.Reason += "; cleanup: " + err.Error()
	}
	return ev
}

func (t *traceSession) cleanup() error {
	var errs []error
	if t.hist {
		if err := writeTracefs(filepath.Join(t.event, "trigger"), "!"+traceHist+" if "+traceFilter); err != nil {
			errs = append(errs, fmt.Errorf("remove trigger: %w", err))
		}
		t.hist = false
	}
	if t.inst != "" {
		if err := os.Remove(t.inst); err != nil {
			errs = append(errs, fmt.Errorf("remove tracefs instance %s: %w", t.inst, err))
		}
		t.inst = ""
	}
	if t.mounted {
		if err := unix.Unmount(t.root, 0); err != nil {
			errs = append(errs, fmt.Errorf("unmount %s: %w", t.root, err))
		}
		t.mounted = false
	}
	return errors.Join(errs...)
}

func (e *TraceEvidence) reasonOr(t *traceSession) string {
	if t != nil {
		return t.reason
	}
	if e == nil {
		return ""
	}
	return e.Reason
}
