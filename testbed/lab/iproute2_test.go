package lab_test

import (
	"context"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/rocebed/rocebed/internal/host"
	"github.com/rocebed/rocebed/internal/testenv"
	"github.com/rocebed/rocebed/internal/testlab"
	"github.com/rocebed/rocebed/testbed/lab"
	"github.com/rocebed/rocebed/testbed/plan"
	"github.com/rocebed/rocebed/testbed/scenario"
	"github.com/stretchr/testify/require"
)

// shellScript turns a plan into the iproute2/sysctl commands that make the same changes
// (up) and revert them (down, newest first), as a user would type them.
func shellScript(p *plan.Plan) (up, down string) {
	var u, d []string
	for _, st := range p.Steps {
		u = append(u, st.Command())
	}
	for i := len(p.Steps) - 1; i >= 0; i-- {
		if c := p.Steps[i].UndoCommand(); !strings.HasPrefix(c, "(") {
			d = append(d, c)
		}
	}
	return "set -e\n" + strings.Join(u, "\n") + "\n", "set -e\n" + strings.Join(d, "\n") + "\n"
}

func runInNetns(tb testing.TB, ns, script string) {
	tb.Helper()
	out, err := exec.Command("ip", "netns", "exec", ns, "sh", "-c", script).CombinedOutput()
	require.NoError(tb, err, "%s\n%s", script, out)
}

// TestPlanCommandsAreRealIproute2 runs the commands `plan` prints with iproute2 itself and
// checks they build the same namespace state as Up, and that the undo commands restore it:
// the plan output is something a user can copy and paste.
func TestPlanCommandsAreRealIproute2(t *testing.T) {
	for _, name := range []string{"same-host", "same-host-sysctl", "seed-fixed", "same-host-v6", "same-host-dual"} {
		t.Run(name, func(t *testing.T) {
			ns, env, s := testlab.InNetNS(t, name)
			before := ns.Dump(t)
			state := t.TempDir()
			p, err := lab.Up(context.Background(), env, s, lab.UpOptions{StateDir: state, SkipRDMA: true})
			require.NoError(t, err)
			viaRocebed := stripMACs(ns.Dump(t), p)
			require.NoError(t, lab.Down(context.Background(), state, s.Name))

			// seed-fixed's neighbours say "peer"; resolve them the way Up did.
			up, down := shellScript(p)
			runInNetns(t, ns.Name, up)
			if !testenv.SameState(t, viaRocebed, stripMACs(ns.Dump(t), p)) {
				t.FailNow()
			}
			runInNetns(t, ns.Name, down)
			if !testenv.SameState(t, before, ns.Dump(t)) {
				t.FailNow()
			}
		})
	}
}

// linkLocalIID matches an IPv6 link-local address with its interface identifier (not the
// fe80::/64 prefix route).
var linkLocalIID = regexp.MustCompile(`fe80::[0-9a-f][0-9a-f:]*`)

// ruleLine matches a line of `ip rule show`: "PRIORITY:<tab>SELECTOR ACTION".
var ruleLine = regexp.MustCompile(`^[0-9]+:\t`)

// dynamicNUD matches the states a resolved neighbour moves through on its own timers.
var dynamicNUD = regexp.MustCompile(` (REACHABLE|STALE|DELAY|PROBE) *$`)

// stripMACs blanks what the kernel chooses anew for each creation (ifindexes, veth MACs and
// the IPv6 link-local addresses derived from them) and the state a resolved neighbour ages
// through, and sorts what follows from those choices: the links (listed in ifindex order),
// the neighbour table (hash order) and the route tables, whose order follows when addrconf
// happened to run on each NIC.
func stripMACs(dump string, p *plan.Plan) string {
	var out, section []string
	var mode string // how the current section's lines are ordered: "", "lines" or "links"
	flush := func() {
		switch mode {
		case "lines":
			// Rules first, in the kernel's order (two of one priority are tried in it),
			// then the routes and neighbours sorted.
			var rules, rest []string
			for _, l := range section {
				if ruleLine.MatchString(l) {
					rules = append(rules, l)
				} else {
					rest = append(rest, l)
				}
			}
			sort.Strings(rest)
			section = append(rules, rest...)
		case "links":
			// One block per link (its first line, then the indented ones), in ifindex order in
			// the dump; rocebed and iproute2 give the veths different ifindexes.
			var blocks []string
			for _, l := range section {
				if !strings.HasPrefix(l, " ") || len(blocks) == 0 {
					blocks = append(blocks, l)
				} else {
					blocks[len(blocks)-1] += "\n" + l
				}
			}
			sort.Strings(blocks)
			section = blocks
		}
		out, section = append(out, section...), nil
	}
	for _, l := range strings.Split(dump, "\n") {
		if i := strings.Index(l, "link/ether "); i >= 0 {
			l = l[:i] + "link/ether <mac>"
		}
		if i := strings.Index(l, "lladdr "); i >= 0 {
			l = l[:i] + "lladdr <mac>"
		}
		l = linkLocalIID.ReplaceAllString(l, "fe80::<from mac>")
		l = dynamicNUD.ReplaceAllString(l, " <resolved>")
		if i := strings.Index(l, ": "); i > 0 && !strings.HasPrefix(l, " ") && !strings.HasPrefix(l, "### ") && strings.Contains(l, "@") {
			l = "<ifindex>" + l[i:] // ifindexes grow with every creation
		}
		if strings.HasPrefix(l, "### ") {
			flush()
			switch {
			case strings.HasSuffix(l, "neigh show") || strings.HasSuffix(l, "route show table all"):
				mode = "lines"
			case strings.HasSuffix(l, "link show") || strings.HasSuffix(l, "addr show"):
				mode = "links"
			default:
				mode = ""
			}
			out = append(out, l)
			continue
		}
		section = append(section, l)
	}
	flush()
	return strings.Join(out, "\n")
}

// BenchmarkUpDownVsShell times up+down of the same-host lab (network part) by rocebed and by a
// shell script running the same steps with ip/sysctl commands, and reports the ratio.
// Target: ratio <= 0.2. Run with `make bench` (-benchtime 1x: one run each).
func BenchmarkUpDownVsShell(b *testing.B) {
	ns := testenv.NewNetNS(b)
	env, err := host.Open(ns.Name)
	require.NoError(b, err)
	defer env.Close()
	s, err := scenario.Load("same-host", nil)
	require.NoError(b, err)
	state := b.TempDir()

	var rocebed, shell time.Duration
	var p *plan.Plan
	for i := 0; i < b.N; i++ {
		start := time.Now()
		p, err = lab.Up(context.Background(), env, s, lab.UpOptions{StateDir: state, SkipRDMA: true})
		require.NoError(b, err)
		require.NoError(b, lab.Down(context.Background(), state, s.Name))
		rocebed += time.Since(start)
	}
	up, down := shellScript(p)
	for i := 0; i < b.N; i++ {
		start := time.Now()
		runInNetns(b, ns.Name, up)
		runInNetns(b, ns.Name, down)
		shell += time.Since(start)
	}
	n := float64(b.N)
	b.ReportMetric(float64(rocebed.Microseconds())/1000/n, "rocebed-ms/op")
	b.ReportMetric(float64(shell.Microseconds())/1000/n, "shell-ms/op")
	b.ReportMetric(float64(rocebed)/float64(shell), "ratio")
	b.ReportMetric(0, "ns/op")
}
