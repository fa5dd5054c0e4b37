package counters

import (
	"testing"

	"github.com/rocebed/rocebed/rdma"
	"github.com/stretchr/testify/assert"
)

func TestSnapshotDelta(t *testing.T) {
	before := &Snapshot{
		RDMA:   map[string]rdma.Counters{"rxe0": {"sent_pkts": 10, "rcvd_pkts": 5}},
		Links:  map[string]LinkCounters{"vA": {TxPackets: 100, RxPackets: 50}},
		Kernel: map[string]uint64{CounterMartianSrc: 7},
		Errors: []string{"before: x"},
	}
	after := &Snapshot{
		RDMA:   map[string]rdma.Counters{"rxe0": {"sent_pkts": 25, "rcvd_pkts": 5}, "rxe1": {"sent_pkts": 3}},
		Links:  map[string]LinkCounters{"vA": {TxPackets: 130, RxPackets: 40}, "lo": {TxPackets: 2}},
		Kernel: map[string]uint64{CounterMartianSrc: 10},
	}
	d := after.Delta(before)
	assert.Equal(t, rdma.Counters{"sent_pkts": 15, "rcvd_pkts": 0}, d.RDMA["rxe0"])
	assert.Equal(t, rdma.Counters{"sent_pkts": 3}, d.RDMA["rxe1"], "a new device counts from zero")
	assert.Equal(t, LinkCounters{TxPackets: 30, RxPackets: 40}, d.Links["vA"], "a counter that went down reports its value")
	assert.Equal(t, LinkCounters{TxPackets: 2}, d.Links["lo"])
	assert.Equal(t, uint64(3), d.Kernel[CounterMartianSrc])
	assert.Equal(t, []string{"before: x"}, d.Errors)
	s := d.String()
	assert.Contains(t, s, "rxe0: sent_pkts=15")
	assert.Contains(t, s, "vA: tx 30 rx 40 packets")
	assert.Contains(t, s, "kernel: rt_cache.in_martian_src=3")
}

func TestCrossedSumKernelSum(t *testing.T) {
	cable := Cable{SenderDevice: "rxe0", ReceiverDevice: "rxe1", SenderNIC: "vA", ReceiverNIC: "vB"}
	d := &Snapshot{
		RDMA:   map[string]rdma.Counters{"rxe0": {"sent_pkts": 10, "rcvd_pkts": 10}, "rxe1": {"sent_pkts": 10, "rcvd_pkts": 10}},
		Links:  map[string]LinkCounters{"vA": {TxPackets: 11, RxPackets: 10}, "vB": {TxPackets: 10, RxPackets: 11}, "lo": {}},
		Kernel: map[string]uint64{CounterUDPNoPorts: 0, "peer/" + CounterUDPNoPorts: 4},
	}
	assert.Empty(t, d.Crossed(cable, 10, true))
	short := d.Crossed(cable, 11, true)
	assert.Contains(t, short, "rxe0 sent_pkts +10 < 11")
	assert.Contains(t, short, "rxe1 rcvd_pkts +10 < 11")
	assert.NotContains(t, short, "vA tx_packets +11 < 11")
	d.Links["lo"] = LinkCounters{TxPackets: 10, RxPackets: 10}
	assert.Contains(t, d.Crossed(cable, 10, false), "lo moved by tx +10 rx +10 (≥ 10: the packets may have looped back)")
	assert.Equal(t, []string{"no counters were read"}, (*Snapshot)(nil).Crossed(cable, 1, false))

	total, per := d.KernelSum(CounterUDPNoPorts)
	assert.Equal(t, uint64(4), total)
	assert.Equal(t, []string{"peer/Udp.NoPorts +4"}, per)

	s := Sum(nil, d)
	s = Sum(s, d)
	assert.Equal(t, uint64(20), s.RDMA["rxe0"]["sent_pkts"])
	assert.Equal(t, uint64(22), s.Links["vA"].TxPackets)
	assert.Equal(t, uint64(8), s.Kernel["peer/"+CounterUDPNoPorts])
}
