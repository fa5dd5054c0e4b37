package testenv

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/rocebed/rocebed/internal/nsutil"
)

// Dump returns the namespace's network state as iproute2 prints it — links, addresses, rules
// and routes of every table in both families, neighbours — followed by every readable
// net.ipv4 and net.ipv6 sysctl. iproute2 is an oracle independent of rocebed's own netlink
// code: two dumps that are byte-identical mean the state is.
func (ns *NetNS) Dump(t testing.TB) string {
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
