package runner

import (
	"testing"

	"github.com/rocebed/rocebed/rdma"
	"github.com/rocebed/rocebed/testbed/counters"
	"github.com/stretchr/testify/assert"
)

// delta builds a counter delta for rxe0 on vA and rxe1 on vB.
func delta(sent0, rcvd0, sent1, rcvd1, txA, rxA, txB, rxB, lo, martian uint64) *counters.Snapshot {
	return &counters.Snapshot{
		RDMA: map[string]rdma.Counters{
			"rxe0": {"sent_pkts": sent0, "rcvd_pkts": rcvd0},
			"rxe1": {"sent_pkts": sent1, "rcvd_pkts": rcvd1},
		},
		Links: map[string]counters.LinkCounters{
			"vA": {TxPackets: txA, RxPackets: rxA}, "vB": {TxPackets: txB, RxPackets: rxB}, "lo": {TxPackets: lo, RxPackets: lo},
		},
		Kernel: map[string]uint64{counters.CounterMartianSrc: martian},
	}
}

func TestJudgePath(t *testing.T) {
	a, b := PathDevice{Device: "rxe0", NIC: "vA"}, PathDevice{Device: "rxe1", NIC: "vB"}
	for _, tc := range []struct {
		name    string
		d       *counters.Snapshot
		want    PathVerdict
		crossed uint64
		looped  uint64
		reason  string
	}{
		// rping bound to 10.10.0.1 on same-host, as measured: both devices, both NICs.
		{"crossed both ways", delta(349, 317, 317, 349, 352, 320, 320, 352, 0, 0), PathCrossed, 666, 0, "666 packets crossed the cable"},
		// unbound rping on the same lab before the fix: everything inside rxe1, NICs ≤ 2.
		{"looped inside rxe1", delta(0, 0, 340, 340, 2, 1, 1, 2, 6, 0), PathLoopback, 0, 340, "340 packets looped inside rxe1"},
		// the seed: rxe0 sends, nothing arrives, martians counted on the receiving NIC.
		{"martian", delta(30, 0, 0, 0, 31, 0, 0, 30, 0, 30), PathMartian, 0, 0, "30 packets sent, none received, and the kernel dropped martian sources"},
		{"lost", delta(30, 0, 0, 0, 31, 0, 0, 0, 0, 0), PathLost, 0, 0, "30 packets sent, none received"},
		{"none", delta(0, 0, 0, 0, 3, 3, 3, 3, 10, 0), PathNone, 0, 0, "no RDMA packet"},
		// the devices say they exchanged packets but the NICs did not carry them.
		{"not on the NICs", delta(10, 10, 10, 10, 1, 1, 1, 1, 20, 0), PathLost, 20, 0, "the NICs did not carry"},
		// part crossed, part looped: loopback wins (the command proved less than it claims).
		{"mixed", delta(10, 5, 20, 25, 12, 6, 6, 12, 10, 0), PathLoopback, 15, 15, "looped inside rxe1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := JudgePath(tc.d, a, b)
			assert.Equal(t, tc.want, p.Verdict, p.Reason)
			assert.Equal(t, tc.crossed, p.Crossed, "crossed")
			assert.Equal(t, tc.looped, p.Looped, "looped")
			assert.Contains(t, p.Reason, tc.reason)
		})
	}
	p := JudgePath(&counters.Snapshot{}, a, b)
	assert.Equal(t, PathLost, p.Verdict)
	assert.Contains(t, p.Reason, "counters unreadable: rxe0 sent_pkts")
}

func TestCommandVerdict(t *testing.T) {
	for _, tc := range []struct {
		name       string
		exit       int
		path       PathVerdict
		loopbackOK bool
		pass       bool
		contains   string
	}{
		{"exit 0 and crossed", 0, PathCrossed, false, true, "command exited 0; crossed"},
		{"exit 0 but looped", 0, PathLoopback, false, false, "did not cross the cable: local-loopback"},
		{"looped, loopback wanted", 0, PathLoopback, true, true, "local-loopback"},
		{"exit 0, no RDMA", 0, PathNone, false, false, "no-rdma-traffic"},
		{"failed and crossed", 3, PathCrossed, false, false, "command exited 3; crossed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &CommandResult{ExitCode: tc.exit, Path: Path{Verdict: tc.path, Reason: "why"}}
			r.judge(tc.loopbackOK)
			assert.Equal(t, tc.pass, r.Pass)
			assert.Contains(t, r.Verdict, tc.contains)
		})
	}
}
