package diagnose

import (
	"github.com/rocebed/rocebed/rdma/verbs"
	"github.com/rocebed/rocebed/testbed/counters"
	"github.com/rocebed/rocebed/testbed/traffic"
)

// TrafficEvidenceOf turns a traffic report into evidence; the counter delta is the sum of
// the batches' deltas.
func TrafficEvidenceOf(r *traffic.Report, source TrafficSource) *TrafficEvidence {
	te := &TrafficEvidence{Ran: r != nil && len(r.Batches) > 0, Source: source}
	if r == nil {
		return te
	}
	te.Pass = r.Pass && len(r.Batches) > 0
	for _, b := range r.Batches {
		te.Batches = append(te.Batches, BatchEvidenceOf(b))
		te.Delta = counters.Sum(te.Delta, b.Counters)
	}
	return te
}

// TallyCompletions sums up completions.
func TallyCompletions(cs []traffic.CompletionRecord) CompletionTally {
	var t CompletionTally
	first := -1
	for i, c := range cs {
		ok := c.Status == verbs.WCSuccess
		switch c.Role {
		case traffic.RoleSender:
			t.SenderCompletions++
			if ok {
				t.SenderOK++
			}
		case traffic.RoleReceiver:
			t.ReceiverCompletions++
			if ok {
				t.ReceiverOK++
			}
		}
		if !ok && first < 0 {
			first = i
		}
	}
	if first >= 0 {
		t.FirstError = CompletionStatus(cs[first].Status)
		t.FirstErrorMS = cs[first].AtMS
	}
	return t
}
