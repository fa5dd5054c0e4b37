package diagnose

import (
	"fmt"
	"slices"

	"github.com/rocebed/rocebed/testbed/scenario"
	"github.com/rocebed/rocebed/testbed/traffic"
)

// reconcile re-judges batches the traffic called not-on-wire although every completion
// arrived: their verdict rests on one counter read right after the batch, and rdma
// hw_counters are cached for `lifespan` ms, so that read can be stale. When the counters
// Run read after the whole run (past the lifespan) show the batch's packets crossing,
// the batch passed. It returns the evidence the rules use and a note per re-judged batch.
func reconcile(ev *Evidence) (*Evidence, []string) {
	t := ev.Traffic
	if t == nil || t.Source != SourceDiagnose || t.Delta == nil {
		return ev, nil
	}
	var notes []string
	batches := slices.Clone(t.Batches)
	pass := len(batches) > 0
	for i, b := range batches {
		if b.Class == traffic.ClassNotOnWire && crossed(t, &b) {
			batches[i].Pass, batches[i].Class = true, ""
			notes = append(notes, fmt.Sprintf("traffic %s %s was judged not-on-wire from its own counter read (%s), but the counters read after the run show its packets on both NICs and devices: that read was stale (hw_counters are cached for `lifespan` ms)", b.Traffic, b.Direction, b.Verdict))
		}
		pass = pass && batches[i].Pass
	}
	if notes == nil {
		return ev, nil
	}
	cp, tc := *ev, *t
	tc.Batches, tc.Pass = batches, pass
	cp.Traffic = &tc
	return &cp, notes
}

// crossed: every message of b completed, and the counters over the whole traffic show its
// packets crossing the cable ((*counters.Snapshot).Crossed: at least that many sent and
// received by both devices and NICs, ACKs both ways for RC, fewer on lo).
func crossed(t *TrafficEvidence, b *BatchEvidence) bool {
	if !b.AllCompleted() {
		return false
	}
	return len(t.Delta.Crossed(b.Cable(), uint64(b.Messages), b.Transport == scenario.TransportRC)) == 0
}
