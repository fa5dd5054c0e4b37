package testenv

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/rocebed/rocebed/internal/kernel"
	"github.com/rocebed/rocebed/internal/nsutil"
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

// DumpNow is Dump without waiting for the state to settle: what iproute2 prints at this moment.
func (ns *NetNS) DumpNow(t testing.TB) string {
	t.Helper()
	var b strings.Builder
	for _, args := range [][]string{
		{"-d", "link", "show"},
		{"addr", "show"},
		{"-d", "-4", "rule", "show"},
		{"-d", "-6", "rule", "show"},
		{"-4", "route", "show", "table", "all"},
		{"-6", "route", "show", "table", "all"},
		{"neigh", "show"},
	} {
		if ns.Name != "" {
			args = append([]string{"-n", ns.Name}, args...)
		}
		out, err := exec.Command("ip", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
		b.WriteString("### ip " + strings.Join(args, " ") + "\n")
		b.Write(out)
	}
	b.WriteString("### sysctl\n")
	if err := nsutil.Do(ns.Handle, func() error {
		var lines []string
		for _, root := range []string{"/proc/sys/net/ipv4", "/proc/sys/net/ipv6"} {
			err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
				if err != nil || d.IsDir() {
					return nil
				}
				v, err := os.ReadFile(p)
				if err != nil {
					return nil // write-only or EIO (stable_secret unset)
				}
				lines = append(lines, strings.TrimPrefix(p, "/proc/sys/")+" = "+strings.TrimSpace(string(v)))
				return nil
			})
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
		sort.Strings(lines)
		b.WriteString(strings.Join(lines, "\n"))
		return nil
	}); err != nil {
		t.Fatalf("dump sysctls in %s: %v", ns.Name, err)
	}
	return b.String()
}
