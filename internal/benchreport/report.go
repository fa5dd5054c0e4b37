// Command benchreport turns the output of rocebed's benchmarks (`go test -bench` lines, and
// the lines .ci/bench writes for whole commands) into one table: every figure of issue 11 with
// rocebed and its anchor side by side from the same run, the target and whether it was met.
// With -json it writes the same as JSON, so two commits can be compared.
//
//	go run ./internal/benchreport [-json bench.json] [-commit REV] [-load-start L] [-load-end L] FILE...
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Stat is a median with the smallest and largest value it was taken from.
type Stat struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	N      int     `json:"n"` // how many values (runs or repetitions) it summarises
}

// Figure is one row of the table.
type Figure struct {
	Name    string `json:"name"`
	Unit    string `json:"unit"`
	Rocebed *Stat  `json:"rocebed,omitempty"`
	Anchor  *Stat  `json:"anchor,omitempty"`
	// AnchorName says what the anchor is (ib_send_bw, the other direction, ...).
	AnchorName string `json:"anchor_name,omitempty"`
	Ratio      *Stat  `json:"ratio,omitempty"` // rocebed / anchor
	Target     string `json:"target,omitempty"`
	// Met is nil when there is no target or no figure.
	Met *bool `json:"met,omitempty"`
	// Miss says by how much a missed target was missed ("" when met).
	Miss string `json:"miss,omitempty"`
}

// Report is bench.json.
type Report struct {
	Commit    string `json:"commit,omitempty"`
	Date      string `json:"date"`
	LoadStart string `json:"load_start,omitempty"` // /proc/loadavg before the run
	LoadEnd   string `json:"load_end,omitempty"`
	// StealPercent is the share of this machine's CPU time its hypervisor gave to others during
	// the run (/proc/stat's steal), nil when not measured: noise no rerun of rocebed can remove.
	StealPercent *float64 `json:"steal_percent,omitempty"`
	Figures      []Figure `json:"figures"`
	// Metrics is every metric read, by benchmark and unit, as the values found.
	Metrics map[string]map[string][]float64 `json:"metrics"`
}

var benchLine = regexp.MustCompile(`^(Benchmark[A-Za-z0-9_]+?)(-\d+)?\s+(\d+)\s+(.*)$`)

// Parse reads benchmark lines: "BenchmarkName-2  N  v1 unit1  v2 unit2 ...". Every value is
// kept, by benchmark (without the -GOMAXPROCS suffix) and unit.
func Parse(r io.Reader, into map[string]map[string][]float64) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		m := benchLine.FindStringSubmatch(strings.TrimSpace(sc.Text()))
		if m == nil {
			continue
		}
		f := strings.Fields(m[4])
		for i := 0; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil || f[i+1] == "ns/op" && v == 0 {
				continue
			}
			if into[m[1]] == nil {
				into[m[1]] = map[string][]float64{}
			}
			into[m[1]][f[i+1]] = append(into[m[1]][f[i+1]], v)
		}
	}
	return sc.Err()
}

// stat summarises a metric: a benchmark that reported its own median with unit-min and
// unit-max keeps them (the median of medians over several runs); otherwise the values are the
// repetitions.
func stat(metrics map[string]map[string][]float64, bench, unit string) *Stat {
	m := metrics[bench]
	vals := m[unit]
	if len(vals) == 0 {
		return nil
	}
	s := &Stat{Median: median(vals), Min: slices.Min(vals), Max: slices.Max(vals), N: len(vals)}
	if mins, maxs := m[unit+"-min"], m[unit+"-max"]; len(mins) > 0 && len(maxs) > 0 {
		s.Min, s.Max = slices.Min(mins), slices.Max(maxs)
	}
	return s
}

// statOf is stat of the first (benchmark, unit) pair that has values: older commits' benchmarks
// reported some figures under other names, and a report of such a commit still fills the row.
func statOf(m map[string]map[string][]float64, pairs ...string) *Stat {
	for i := 0; i+1 < len(pairs); i += 2 {
		if s := stat(m, pairs[i], pairs[i+1]); s != nil {
			return s
		}
	}
	return nil
}

// perMessage turns a rate in msg/s into µs per message (the slowest run gives the largest).
func perMessage(rate *Stat) *Stat {
	if rate.Median <= 0 || rate.Min <= 0 || rate.Max <= 0 {
		return nil
	}
	return &Stat{Median: 1e6 / rate.Median, Min: 1e6 / rate.Max, Max: 1e6 / rate.Min, N: rate.N}
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// figures are the rows of issue 11's table, in its order.
func figures(m map[string]map[string][]float64) []Figure {
	met := func(ok bool) *bool { return &ok }
	var out []Figure
	add := func(f Figure, check func() (bool, string)) {
		if check != nil && (f.Rocebed != nil || f.Ratio != nil) {
			ok, miss := check()
			f.Met = met(ok)
			if !ok {
				f.Miss = miss
			}
		}
		out = append(out, f)
	}
	// atMost and atLeast check a median against a limit and say by how much it misses.
	atMost := func(s *Stat, limit float64, unit string) (bool, string) {
		if s == nil {
			return false, "not measured"
		}
		return s.Median <= limit, strings.TrimSpace(fmt.Sprintf("%.3g %s", s.Median-limit, unit)) + fmt.Sprintf(" over, ×%.2f the limit", s.Median/limit)
	}
	atLeast := func(s *Stat, floor float64) (bool, string) {
		if s == nil {
			return false, "not measured"
		}
		return s.Median >= floor, fmt.Sprintf("%.3g short, ×%.2f needed", floor-s.Median, floor/s.Median)
	}
	fc := Figure{Name: "first RC connect on a fresh lab", Unit: "ms", Rocebed: stat(m, "BenchmarkFirstConnect", "first-connect-ms"),
		Anchor: stat(m, "BenchmarkFirstConnect", "warm-connect-ms"), AnchorName: "the other direction, neighbour known", Target: "≤ 20 ms"}
	add(fc, func() (bool, string) { return atMost(fc.Rocebed, 20, "ms") })
	rate := Figure{Name: "send-only message rate, 2000 × 4 KiB RC", Unit: "msg/s",
		Rocebed:    statOf(m, "BenchmarkRate", "rocebed-msg/s", "BenchmarkVersusPerftest", "rocebed-msg/s"),
		Anchor:     statOf(m, "BenchmarkRate", "ib_send_bw-msg/s", "BenchmarkVersusPerftest", "ib_send_bw-msg/s"),
		AnchorName: "ib_send_bw", Target: "ratio ≥ 1.0",
		Ratio: statOf(m, "BenchmarkRate", "rate-ratio", "BenchmarkVersusPerftest", "rate-ratio")}
	add(rate, func() (bool, string) { return atLeast(rate.Ratio, 1.0) })
	add(Figure{Name: "rate runs: pairs the medians are over (rocebed and ib_send_bw back to back)", Unit: "pairs",
		Rocebed: stat(m, "BenchmarkRate", "rate-pairs")}, nil)
	// What rxe sent again in each tool's rate runs.
	add(Figure{Name: "rate runs: requester retries a run (retransmit timer or sequence NAK)", Unit: "",
		Rocebed: stat(m, "BenchmarkRate", "rocebed-retries"), Anchor: stat(m, "BenchmarkRate", "ib_send_bw-retries"), AnchorName: "ib_send_bw"}, nil)
	add(Figure{Name: "rate runs: duplicate packets at the responder a run", Unit: "",
		Rocebed: stat(m, "BenchmarkRate", "rocebed-duplicates"), Anchor: stat(m, "BenchmarkRate", "ib_send_bw-duplicates"), AnchorName: "ib_send_bw"}, nil)
	// The rate's profile: one longer run of each tool, where the guest's CPU went during its
	// transfer (BenchmarkRate): what bounds the rate.
	profile := func(name, unit, metric string, conv func(*Stat) *Stat) {
		r, a := stat(m, "BenchmarkRate", "profile-rocebed-"+metric), stat(m, "BenchmarkRate", "profile-ib_send_bw-"+metric)
		if conv != nil && r != nil {
			r = conv(r)
		}
		if conv != nil && a != nil {
			a = conv(a)
		}
		add(Figure{Name: "rate profile, 15000 × 4 KiB: " + name, Unit: unit, Rocebed: r, Anchor: a, AnchorName: "ib_send_bw"}, nil)
	}
	profile("time per message", "µs", "msg/s", perMessage)
	profile("kernel CPU per message in the transfer (system, irq, softirq; all CPUs)", "µs", "kernel-us/msg", nil)
	profile("user CPU per message in the transfer (all CPUs)", "µs", "user-us/msg", nil)
	profile("share of its time the CPU most in the kernel spent there", "", "busiest-kernel-share", nil)
	lat := Figure{Name: "send latency, 64 B ping-pong, median half round trip", Unit: "µs", Rocebed: stat(m, "BenchmarkLatency", "rocebed-lat-us"),
		Anchor: stat(m, "BenchmarkLatency", "ib_send_lat-us"), AnchorName: "ib_send_lat t_typical", Ratio: stat(m, "BenchmarkLatency", "lat-ratio"), Target: "ratio ≤ 1.1"}
	oneWay := stat(m, "BenchmarkLatency", "rocebed-oneway-us")
	if oneWay == nil {
		// Before the ping-pong: one message at a time, post to the peer's RECV.
		lat.Name = "send latency, 64 B, median one-way"
	}
	if lat.Rocebed == nil {
		// Before BenchmarkLatency: half the mean post→SEND completion beside ib_send_lat's t_avg.
		lat = Figure{Name: "send latency, 64 B (old method: mean post→ACK / 2)", Unit: "µs", Rocebed: stat(m, "BenchmarkVersusPerftest", "rocebed-lat-us"),
			Anchor: stat(m, "BenchmarkVersusPerftest", "ib_send_lat-us"), AnchorName: "ib_send_lat t_avg", Ratio: stat(m, "BenchmarkVersusPerftest", "lat-ratio"), Target: "ratio ≤ 1.1"}
	}
	add(lat, func() (bool, string) { return atMost(lat.Ratio, 1.1, "") })
	if oneWay != nil {
		add(Figure{Name: "the same ping-pong, median one-way (post to the peer's RECV)", Unit: "µs", Rocebed: oneWay}, nil)
	}
	boot := Figure{Name: "guest boot to first command", Unit: "s", Rocebed: statOf(m, "BenchmarkExecTrue", "boot-s", "BenchmarkExecTrue", "boot-s/op"), Target: "≤ 3 s"}
	add(boot, func() (bool, string) { return atMost(boot.Rocebed, 3, "s") })
	add(Figure{Name: "vm exec -- true, whole", Unit: "s", Rocebed: statOf(m, "BenchmarkExecTrue", "total-s", "BenchmarkExecTrue", "total-s/op")}, nil)
	lab := Figure{Name: "make lab, warm cache, whole command", Unit: "s", Rocebed: stat(m, "BenchmarkMakeLab", "make-lab-s"), AnchorName: "guest boot + 1 s of lab work"}
	if boot.Rocebed != nil {
		lab.Anchor = &Stat{Median: boot.Rocebed.Median + 1, Min: boot.Rocebed.Min + 1, Max: boot.Rocebed.Max + 1, N: boot.Rocebed.N}
	}
	if lab.Rocebed != nil && lab.Anchor != nil {
		lab.Ratio = &Stat{Median: lab.Rocebed.Median / lab.Anchor.Median, Min: lab.Rocebed.Min / lab.Anchor.Median, Max: lab.Rocebed.Max / lab.Anchor.Median, N: lab.Rocebed.N}
	}
	add(lab, nil)
	ci := Figure{Name: "CI=true bash .ci/run on a fresh clone", Unit: "s", Rocebed: stat(m, "BenchmarkCI", "ci-s"), Target: "≤ 300 s"}
	add(ci, func() (bool, string) { return atMost(ci.Rocebed, 300, "s") })
	add(Figure{Name: "tests passed in that run (names, subtests included, each passed in at least one tier)", Unit: "tests", Rocebed: stat(m, "BenchmarkCI", "test-names")}, nil)
	add(Figure{Name: "--- PASS lines in that run (a test that passed in two tiers counts twice)", Unit: "lines", Rocebed: stat(m, "BenchmarkCI", "tests")}, nil)
	ud := Figure{Name: "up+down of same-host", Unit: "ms", Rocebed: stat(m, "BenchmarkUpDownVsShell", "rocebed-ms/op"),
		Anchor: stat(m, "BenchmarkUpDownVsShell", "shell-ms/op"), AnchorName: "the same steps as ip/sysctl commands", Ratio: stat(m, "BenchmarkUpDownVsShell", "ratio")}
	add(ud, nil)
	add(Figure{Name: "verdict on a broken data path (seed)", Unit: "s", Rocebed: statOf(m, "BenchmarkBrokenPaths", "seed-verdict-s", "BenchmarkVersusPerftest", "seed-verdict-s"),
		Anchor: statOf(m, "BenchmarkBrokenPaths", "pingpong-seed-s", "BenchmarkVersusPerftest", "pingpong-seed-s"), AnchorName: "ibv_rc_pingpong (killed at 10 s)"}, nil)
	add(Figure{Name: "verdict on same-host-nofix (connect)", Unit: "s", Rocebed: statOf(m, "BenchmarkBrokenPaths", "nofix-verdict-s", "BenchmarkVersusPerftest", "nofix-verdict-s")}, nil)
	return out
}

// WriteTable prints the report as a Markdown table.
func (r *Report) WriteTable(w io.Writer) {
	fmt.Fprintf(w, "rocebed bench %s %s; load before %s, after %s", r.Commit, r.Date, r.LoadStart, r.LoadEnd)
	if r.StealPercent != nil {
		fmt.Fprintf(w, "; CPU stolen by the hypervisor during the run %.1f %%", *r.StealPercent)
	}
	fmt.Fprint(w, "\n\n")
	fmt.Fprintln(w, "| figure | unit | rocebed median (min–max) | anchor median (min–max) | anchor | ratio median (min–max) | target | met |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|")
	for _, f := range r.Figures {
		met := ""
		if f.Met != nil {
			met = map[bool]string{true: "yes", false: "NO"}[*f.Met]
			if f.Miss != "" {
				met += ": " + f.Miss
			}
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", f.Name, f.Unit, f.Rocebed, f.Anchor, f.AnchorName, f.Ratio, f.Target, met)
	}
}

func (s *Stat) String() string {
	if s == nil {
		return "—"
	}
	if s.N == 1 && s.Min == s.Max {
		return num(s.Median)
	}
	return fmt.Sprintf("%s (%s–%s)", num(s.Median), num(s.Min), num(s.Max))
}

// num prints three significant digits, without an exponent.
func num(v float64) string {
	switch a := math.Abs(v); {
	case a >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case a >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
	return strconv.FormatFloat(v, 'f', 3, 64)
}

// stealPercent is the steal share of all CPU time between two of /proc/stat's "cpu " lines.
func stealPercent(start, end string) (float64, error) {
	parse := func(line string) (steal, total float64, err error) {
		f := strings.Fields(line)
		if len(f) < 9 || f[0] != "cpu" {
			return 0, 0, fmt.Errorf("not a /proc/stat cpu line: %q", line)
		}
		for i, v := range f[1:9] { // user nice system idle iowait irq softirq steal
			x, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return 0, 0, fmt.Errorf("/proc/stat cpu line %q: %w", line, err)
			}
			total += x
			if i == 7 {
				steal = x
			}
		}
		return steal, total, nil
	}
	s0, t0, err := parse(start)
	if err != nil {
		return 0, err
	}
	s1, t1, err := parse(end)
	if err != nil {
		return 0, err
	}
	if t1 <= t0 {
		return 0, fmt.Errorf("no CPU time passed between %q and %q", start, end)
	}
	return 100 * (s1 - s0) / (t1 - t0), nil
}

func main() {
	jsonOut := flag.String("json", "", "also write the report as JSON to this file")
	commit := flag.String("commit", "", "the commit the figures are from")
	loadStart := flag.String("load-start", "", "/proc/loadavg before the run")
	loadEnd := flag.String("load-end", "", "/proc/loadavg after the run")
	cpuStart := flag.String("cpu-start", "", `/proc/stat's "cpu " line before the run`)
	cpuEnd := flag.String("cpu-end", "", `/proc/stat's "cpu " line after the run`)
	flag.Parse()
	r := &Report{Commit: *commit, Date: time.Now().UTC().Format(time.RFC3339), LoadStart: strings.TrimSpace(*loadStart),
		LoadEnd: strings.TrimSpace(*loadEnd), Metrics: map[string]map[string][]float64{}}
	for _, name := range flag.Args() {
		f, err := os.Open(name)
		if err != nil {
			fmt.Fprintln(os.Stderr, "benchreport:", err)
			os.Exit(1)
		}
		err = Parse(f, r.Metrics)
		f.Close()
		if err != nil {
			fmt.Fprintf(os.Stderr, "benchreport: %s: %v\n", name, err)
			os.Exit(1)
		}
	}
	if *cpuStart != "" && *cpuEnd != "" {
		p, err := stealPercent(*cpuStart, *cpuEnd)
		if err != nil {
			fmt.Fprintln(os.Stderr, "benchreport:", err)
			os.Exit(1)
		}
		r.StealPercent = &p
	}
	r.Figures = figures(r.Metrics)
	r.WriteTable(os.Stdout)
	if *jsonOut != "" {
		b, _ := json.MarshalIndent(r, "", "  ")
		if err := os.WriteFile(*jsonOut, append(b, '\n'), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "benchreport:", err)
			os.Exit(1)
		}
	}
}
