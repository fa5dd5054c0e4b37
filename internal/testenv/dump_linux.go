package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
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

// dumpCommands are the iproute2 commands of a dump, in its order, each with its global
// options. Routes and neighbours of both families come from one command each (`route show
// table all` and `neigh show` dump every family unless told one); rules are listed one family
// at a time (`rule show` means -4). They run in the namespace's ip sessions (ipSession), so a
// dump starts no process.
var dumpCommands = []struct {
	opts    []string
	command string
}{
	{[]string{"-d"}, "link show"},
	{[]string{"-d"}, "addr show"},
	{[]string{"-d"}, "rule show"},
	{[]string{"-d", "-6"}, "rule show"},
	{[]string{"-d"}, "route show table all"},
	{[]string{"-d"}, "neigh show"},
}

// DumpNow is Dump without waiting for the state to settle: what iproute2 prints at this moment.
// Each section is headed "### ip OPTS: COMMAND". The iproute2 commands and the sysctl walk run
// at once; each reads state that nothing changes while it runs.
func (ns *NetNS) DumpNow(t testing.TB) string {
	t.Helper()
	var sysctls string
	var sysctlErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		sysctls, sysctlErr = ns.sysctlDump()
	}()
	var b strings.Builder
	var ipErr error
	for _, c := range dumpCommands {
		args := c.opts
		if ns.Name != "" {
			args = append([]string{"-n", ns.Name}, args...)
		}
		out, err := ns.ip.run(args, c.command)
		if err == nil && c.command == "link show" && ns.ip.renamed(out) {
			// A link was renamed since the last dump: new sessions, which know no names yet.
			if err = ns.ip.closeAll(); err == nil {
				out, err = ns.ip.run(args, c.command)
			}
		}
		if err != nil {
			ipErr = err
			break
		}
		b.WriteString("### ip " + strings.Join(args, " ") + ": " + c.command + "\n")
		b.WriteString(out)
	}
	<-done
	if ipErr != nil {
		t.Fatalf("dump %s: %v", ns.Name, ipErr)
	}
	if sysctlErr != nil {
		t.Fatalf("dump sysctls in %s: %v", ns.Name, sysctlErr)
	}
	b.WriteString("### sysctl\n")
	b.WriteString(sysctls)
	return b.String()
}

// sysctlDump lists every readable net.ipv4 and net.ipv6 sysctl of the namespace as sorted
// "key = value" lines. Each value is one openat relative to its directory, one read and one
// close: a walk by full paths spent about a third of its time resolving /proc/sys/net/...
// again for each of the thousand-odd files (`perf` in the guest, where the walk was a sixth
// of a lab test's CPU).
func (ns *NetNS) sysctlDump() (string, error) {
	var lines []string
	err := nsutil.Do(ns.Handle, func() error {
		buf := make([]byte, 4096)
		for _, root := range []string{"net/ipv4", "net/ipv6"} {
			fd, err := unix.Open("/proc/sys/"+root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			if errors.Is(err, unix.ENOENT) {
				continue // a kernel without IPv6
			}
			if err != nil {
				return fmt.Errorf("open /proc/sys/%s: %w", root, err)
			}
			if err := walkSysctls(fd, root, buf, &lines); err != nil {
				return err
			}
		}
		return nil
	})
	sort.Strings(lines)
	return strings.Join(lines, "\n"), err
}

// walkSysctls appends "dir/name = value" for every readable file under the directory dirfd
// (which it closes). Write-only files and values that cannot be read (stable_secret unset:
// EIO) are left out.
func walkSysctls(dirfd int, dir string, buf []byte, lines *[]string) error {
	d := os.NewFile(uintptr(dirfd), dir)
	defer d.Close()
	entries, err := d.ReadDir(-1)
	if err != nil {
		return fmt.Errorf("list /proc/sys/%s: %w", dir, err)
	}
	for _, e := range entries {
		if e.IsDir() {
			fd, err := unix.Openat(dirfd, e.Name(), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			if errors.Is(err, unix.ENOENT) {
				continue // a link's directory, gone with the link since the listing
			}
			if err != nil {
				return fmt.Errorf("open /proc/sys/%s/%s: %w", dir, e.Name(), err)
			}
			if err := walkSysctls(fd, dir+"/"+e.Name(), buf, lines); err != nil {
				return err
			}
			continue
		}
		fd, err := unix.Openat(dirfd, e.Name(), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			continue // write-only
		}
		n, err := unix.Read(fd, buf)
		unix.Close(fd)
		if err != nil || n < 0 {
			continue
		}
		*lines = append(*lines, dir+"/"+e.Name()+" = "+strings.TrimSpace(string(buf[:n])))
	}
	return nil
}
