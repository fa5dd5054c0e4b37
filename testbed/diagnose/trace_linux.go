package diagnose

import (
	"bufio"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// The optional drop-trace layer: the skb:kfree_skb tracepoint, filtered to IPv4 and ARP, in a
// private tracefs instance (`mkdir /sys/kernel/tracing/instances/NAME`) with its own buffer
// event switch and options (hash-ptr off, so the freeing function's address prints raw and is
// named from /proc/kallsyms), so the host's tracing is left alone: removing the instance, and
// unmounting tracefs if this mounted it, puts everything back.
//
// Kept to the fewest tracefs operations: on the 6.1 guest kernel under QEMU TCG, removing a
// hist trigger from kfree_skb (2 runs) and resizing the instance's buffer (1 run) soft-locked
// a CPU, so the drops are counted from the default-sized buffer, and --no-trace turns the
// layer off. With hash-ptr off, 6.1 prints the drop reason empty: the location is kept.

var tracefsRoots = []string{"/sys/kernel/tracing", "/sys/kernel/debug/tracing"}

const (
	traceFilter   = "protocol == 2048 || protocol == 2054" // ETH_P_IP, ETH_P_ARP (host order in the event)
	traceMaxLines = 8
)

type traceSession struct {
	root     string // tracefs mount point
	mounted  bool   // this process mounted it
	inst     string // instance directory
	event    string // instance's events/skb/kfree_skb
	reason   string
	rawAddrs bool
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
		_ = t.cleanup()
		return nil, ev
	}
	if _, err := os.Stat(filepath.Join(root, "events", "skb", "kfree_skb", "format")); err != nil {
		return fail("the skb:kfree_skb event is missing from %s (%v)", root, err)
	}
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
	// The instance's own hash-ptr option: off, the freeing function's address prints raw.
	if err := writeTracefs(filepath.Join(t.inst, "options", "hash-ptr"), "0"); err == nil {
		t.rawAddrs = true
	} else {
		notes = append(notes, "locations stay hashed (no per-instance hash-ptr option: "+err.Error()+")")
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

// stop disables the event, reads what it saw and puts tracing back as it was.
func (t *traceSession) stop() *TraceEvidence {
	ev := &TraceEvidence{Available: true, Reason: t.reason}
	if err := writeTracefs(filepath.Join(t.event, "enable"), "0"); err != nil {
		ev.Reason += "; disable: " + err.Error()
	}
	slog.Debug("trace: event disabled")
	data, err := os.ReadFile(filepath.Join(t.inst, "trace"))
	if err != nil {
		ev.Reason += "; trace unreadable: " + err.Error()
	}
	if err := t.cleanup(); err != nil {
		ev.Reason += "; cleanup: " + err.Error()
	}
	slog.Debug("trace: cleaned up")
	ev.Lines = traceLines(string(data), traceMaxLines)
	resolve := func(s string) string { return s }
	if t.rawAddrs && strings.Contains(string(data), "kfree_skb:") {
		if ks, err := loadKallsyms(); err == nil {
			resolve = ks.name
		} else {
			ev.Reason += "; locations unnamed: " + err.Error()
		}
	}
	ev.Drops = groupKfreeLines(string(data), resolve)
	if strings.Contains(string(data), "LOST") {
		ev.Reason += "; the buffer overflowed: counts are lower bounds"
	}
	return ev
}

func (t *traceSession) cleanup() error {
	var errs []error
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

// kallsyms is the kernel's text symbols by address.
type kallsyms struct {
	addrs []uint64
	names []string
}

func loadKallsyms() (*kallsyms, error) {
	f, err := os.Open("/proc/kallsyms")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ks := &kallsyms{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 3 || (fs[1] != "t" && fs[1] != "T") {
			continue
		}
		a, err := strconv.ParseUint(fs[0], 16, 64)
		if err != nil || a == 0 {
			continue
		}
		ks.addrs = append(ks.addrs, a)
		ks.names = append(ks.names, fs[2])
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(ks.addrs) == 0 {
		return nil, errors.New("/proc/kallsyms shows no addresses (kernel.kptr_restrict)")
	}
	idx := make([]int, len(ks.addrs))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(i, j int) bool { return ks.addrs[idx[i]] < ks.addrs[idx[j]] })
	a, n := make([]uint64, len(idx)), make([]string, len(idx))
	for i, k := range idx {
		a[i], n[i] = ks.addrs[k], ks.names[k]
	}
	ks.addrs, ks.names = a, n
	return ks, nil
}

// name turns a raw address ("ffffffff81a1b2c3" or "0x...") into "symbol+0xoff".
func (ks *kallsyms) name(s string) string {
	a, err := strconv.ParseUint(strings.TrimPrefix(s, "0x"), 16, 64)
	if err != nil {
		return s
	}
	i := sort.Search(len(ks.addrs), func(i int) bool { return ks.addrs[i] > a }) - 1
	if i < 0 {
		return s
	}
	return fmt.Sprintf("%s+0x%x", ks.names[i], a-ks.addrs[i])
}
