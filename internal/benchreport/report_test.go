package main

import (
	"strings"
	"testing"
)

const sample = `goos: linux
BenchmarkFirstConnect-2   	       5	         4.100 first-connect-ms	         9.000 first-connect-ms-max	         3.000 first-connect-ms-min	         1.500 warm-connect-ms	         2.000 warm-connect-ms-max	         1.000 warm-connect-ms-min
--- BENCH: BenchmarkFirstConnect-2
BenchmarkRate-2   	5	0 ns/op	5000 ib_send_bw-msg/s	6000 ib_send_bw-msg/s-max	4000 ib_send_bw-msg/s-min	1.1 rate-ratio	1.3 rate-ratio-max	0.9 rate-ratio-min	5500 rocebed-msg/s	6500 rocebed-msg/s-max	4500 rocebed-msg/s-min	4000 profile-rocebed-msg/s	170 profile-rocebed-kernel-us/msg	5000 profile-ib_send_bw-msg/s	160 profile-ib_send_bw-kernel-us/msg	0.6 profile-rocebed-busiest-kernel-share	7 rocebed-retries	1 ib_send_bw-retries	15 rate-pairs
BenchmarkExecTrue-2 	5	2.1 boot-s	2.5 boot-s-max	1.9 boot-s-min	2.4 total-s	2.9 total-s-max	2.2 total-s-min
BenchmarkMakeLab	1	6.5 make-lab-s
BenchmarkMakeLab	1	5.5 make-lab-s
BenchmarkMakeLab	1	7.5 make-lab-s
`

// parseFigures parses benchmark lines and returns the metrics and the figures by name.
func parseFigures(t *testing.T, in string) (map[string]map[string][]float64, map[string]Figure) {
	t.Helper()
	m := map[string]map[string][]float64{}
	if err := Parse(strings.NewReader(in), m); err != nil {
		t.Fatal(err)
	}
	byName := map[string]Figure{}
	for _, f := range figures(m) {
		byName[f.Name] = f
	}
	return m, byName
}

func TestFiguresFromBenchmarkLines(t *testing.T) {
	m, byName := parseFigures(t, sample)
	fc := byName["first RC connect on a fresh lab"]
	if fc.Rocebed == nil || *fc.Rocebed != (Stat{Median: 4.1, Min: 3, Max: 9, N: 1}) || fc.Met == nil || !*fc.Met {
		t.Errorf("first connect: %+v %v", fc.Rocebed, fc.Met)
	}
	if r := byName["send-only message rate, 2000 × 4 KiB RC"]; r.Ratio == nil || r.Ratio.Median != 1.1 || !*r.Met || r.Anchor.Median != 5000 {
		t.Errorf("rate: %+v", r)
	}
	// The rate's profile: µs per message at each tool's rate, and the CPU each transfer spent.
	if p := byName["rate profile, 15000 × 4 KiB: time per message"]; p.Rocebed == nil || p.Anchor == nil || p.Rocebed.Median != 250 || p.Anchor.Median != 200 {
		t.Errorf("time per message: %+v anchor %+v", p.Rocebed, p.Anchor)
	}
	if k := byName["rate profile, 15000 × 4 KiB: kernel CPU per message in the transfer (system, irq, softirq; all CPUs)"]; k.Rocebed == nil || k.Rocebed.Median != 170 || k.Anchor.Median != 160 {
		t.Errorf("kernel CPU: %+v", k)
	}
	if p := byName["rate runs: pairs the medians are over (rocebed and ib_send_bw back to back)"]; p.Rocebed == nil || p.Rocebed.Median != 15 || p.Anchor != nil || p.Met != nil {
		t.Errorf("rate pairs: %+v", p)
	}
	if r := byName["rate runs: requester retries a run (retransmit timer or sequence NAK)"]; r.Rocebed == nil || r.Rocebed.Median != 7 || r.Anchor.Median != 1 {
		t.Errorf("retries: %+v", r)
	}
	if b := byName["rate profile, 15000 × 4 KiB: share of its time the CPU most in the kernel spent there"]; b.Rocebed == nil || b.Rocebed.Median != 0.6 || b.Anchor != nil {
		t.Errorf("busiest CPU: %+v", b)
	}
	// Lines of whole commands are repetitions: their median, min and max.
	if l := byName["make lab, warm cache, whole command"]; l.Rocebed == nil || *l.Rocebed != (Stat{Median: 6.5, Min: 5.5, Max: 7.5, N: 3}) || l.Anchor.Median != 3.1 {
		t.Errorf("make lab: %+v anchor %+v", l.Rocebed, l.Anchor)
	}
	// Figures a run did not measure have no verdict.
	if ci := byName["CI=true bash .ci/run on a fresh clone"]; ci.Rocebed != nil || ci.Met != nil {
		t.Errorf("ci: %+v", ci)
	}
	var b strings.Builder
	(&Report{Figures: figures(m)}).WriteTable(&b)
	for _, want := range []string{"| first RC connect on a fresh lab | ms | 4.10 (3.00–9.00) | 1.50 (1.00–2.00) |", "| 1.10 (0.900–1.30) | ratio ≥ 1.0 | yes |", "| — |"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
}

// TestMissSaysByHowMuch: a missed target says how far off the median is.
func TestMissSaysByHowMuch(t *testing.T) {
	m := map[string]map[string][]float64{}
	in := "BenchmarkRate-2 5 2000 rocebed-msg/s 4000 ib_send_bw-msg/s 0.5 rate-ratio\nBenchmarkExecTrue-2 5 3.6 boot-s\n"
	if err := Parse(strings.NewReader(in), m); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"send-only message rate, 2000 × 4 KiB RC": "0.5 short, ×2.00 needed", "guest boot to first command": "0.6 s over, ×1.20 the limit"}
	for _, f := range figures(m) {
		if w, ok := want[f.Name]; ok && (f.Met == nil || *f.Met || f.Miss != w) {
			t.Errorf("%s: met %v, miss %q, want %q", f.Name, f.Met, f.Miss, w)
		}
	}
}

// TestLatencyFigureNamesItsMethod: the ping-pong's half round trip (with its one-way beside
// it) is named as such; an older run's one-way figure keeps its own name.
func TestLatencyFigureNamesItsMethod(t *testing.T) {
	for in, want := range map[string][]string{
		"BenchmarkLatency-2 5 0 ns/op 40 rocebed-lat-us 38 ib_send_lat-us 1.05 lat-ratio 45 rocebed-oneway-us\n": {
			"send latency, 64 B ping-pong, median half round trip", "the same ping-pong, median one-way (post to the peer's RECV)"},
		"BenchmarkLatency-2 5 0 ns/op 80 rocebed-lat-us 40 ib_send_lat-us 2 lat-ratio\n": {"send latency, 64 B, median one-way"},
	} {
		_, byName := parseFigures(t, in)
		for _, name := range want {
			if f, ok := byName[name]; !ok || f.Rocebed == nil {
				t.Errorf("%q: no figure %q with a value", in, name)
			}
		}
		if lat := byName[want[0]]; lat.Met == nil || *lat.Met != (lat.Ratio.Median <= 1.1) {
			t.Errorf("%q: verdict %v for ratio %v", in, lat.Met, lat.Ratio)
		}
	}
}

// TestStealPercent: the steal share of the CPU time between two /proc/stat lines.
func TestStealPercent(t *testing.T) {
	p, err := stealPercent("cpu  100 0 50 800 0 0 0 50 0 0", "cpu  200 0 100 1500 0 0 0 200 0 0")
	if err != nil || p != 15 {
		t.Errorf("stealPercent = %v, %v; want 15 (150 of 1000 ticks)", p, err)
	}
	if _, err := stealPercent("intr 1 2 3", "cpu  1 2 3 4 5 6 7 8"); err == nil {
		t.Error("a line that is not /proc/stat's cpu line was accepted")
	}
}
