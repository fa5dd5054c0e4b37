package testenv

import (
	"context"
	"errors"
	"io/fs"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rocebed/rocebed/internal/kernel"
	"github.com/rocebed/rocebed/internal/nsutil"
	"golang.org/x/sys/unix"
)

// SettleTimeout bounds how long Dump waits for the kernel to finish what it does on its own
// after a change. DAD takes about a second after a link comes up (RetransTimer × dad_transmits
// plus a random delay); under TCG and beside other work it takes longer, never this long.
const SettleTimeout = 30 * time.Second

// Settle waits until the namespace has no tentative address, no address without its local
// route, no running link still waiting for its IPv6 link-local address and no carrier change
// that linkwatch has yet to report; it fails the test naming what never settled.
func (ns *NetNS) Settle(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), SettleTimeout)
	defer cancel()
	if err := kernel.WaitSettled(ctx, ns.NL, ns.Handle); err != nil {
		t.Fatalf("namespace %q: %v", ns.Name, err)
	}
}

// Dump returns the namespace's network state as iproute2 prints it — links, addresses, rules
// and routes of every table in both families, neighbours — followed by every readable
// net.ipv4 and net.ipv6 sysctl, once the state has settled (see Settle). iproute2 is an oracle
// independent of rocebed's own netlink code: two dumps that are byte-identical mean the state
// is; settling first means two dumps differ only when the state really does, not because one
// caught DAD half-way.
func (ns *NetNS) Dump(t testing.TB) string {
	t.Helper()
	ns.Settle(t)
	return ns.DumpNow(t)
}

// dumpBatches are the iproute2 runs of a dump, in its order: global options, then the
// commands that one `ip -batch -` runs. An `ip` run costs about 0.1 s of CPU under TCG and a
// test takes many dumps, so the commands that share their options share a run: three instead
// of seven (the family options -4/-6 are global, which is why there are three).
var dumpBatches = []struct {
	opts     []string
	commands []string
}{
	{[]string{"-d"}, []string{"link show", "addr show"}},
	{[]string{"-d", "-4"}, []string{"rule show", "route show table all", "neigh show"}},
	{[]string{"-d", "-6"}, []string{"rule show", "route show table all", "neigh show"}},
}

// DumpNow is Dump without waiting for the state to settle: what iproute2 prints at this moment.
// Each section is headed "### ip OPTS: COMMAND; COMMAND". The iproute2 runs and the sysctl walk
// run at once; each reads state that nothing changes while it runs.
func (ns *NetNS) DumpNow(t testing.TB) string {
	t.Helper()
	outs := make([][]byte, len(dumpBatches))
	errs := make([]error, len(dumpBatches)+1)
	argvs := make([][]string, len(dumpBatches))
	var sysctls string
	var wg sync.WaitGroup
	for i, batch := range dumpBatches {
		args := batch.opts
		if ns.Name != "" {
			args = append([]string{"-n", ns.Name}, args...)
		}
		argvs[i] = args
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.Command("ip", append(args, "-batch", "-")...)
			cmd.Stdin = strings.NewReader(strings.Join(batch.commands, "\n") + "\n")
			outs[i], errs[i] = cmd.CombinedOutput()
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		sysctls, errs[len(dumpBatches)] = ns.sysctlDump()
	}()
	wg.Wait()
	var b strings.Builder
	for i, args := range argvs {
		head := "ip " + strings.Join(args, " ") + ": " + strings.Join(dumpBatches[i].commands, "; ")
		if errs[i] != nil {
			t.Fatalf("%s: %v: %s", head, errs[i], outs[i])
		}
		b.WriteString("### " + head + "\n")
		b.Write(outs[i])
	}
	if err := errs[len(dumpBatches)]; err != nil {
		t.Fatalf("dump sysctls in %s: %v", ns.Name, err)
	}
	b.WriteString("### sysctl\n")
	b.WriteString(sysctls)
	return b.String()
}

// sysctlDump lists every readable net.ipv4 and net.ipv6 sysctl of the namespace as sorted
// "key = value" lines. Each value is one open, one read and one close.
func (ns *NetNS) sysctlDump() (string, error) {
	var lines []string
	err := nsutil.Do(ns.Handle, func() error {
		buf := make([]byte, 4096)
		for _, root := range []string{"/proc/sys/net/ipv4", "/proc/sys/net/ipv6"} {
			err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
				if err != nil || d.IsDir() {
					return nil
				}
				fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
				if err != nil {
					return nil // write-only
				}
				n, err := unix.Read(fd, buf)
				unix.Close(fd)
				if err != nil || n < 0 {
					return nil // EIO (stable_secret unset)
				}
				lines = append(lines, strings.TrimPrefix(p, "/proc/sys/")+" = "+strings.TrimSpace(string(buf[:n])))
				return nil
			})
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
		return nil
	})
	sort.Strings(lines)
	return strings.Join(lines, "\n"), err
}
