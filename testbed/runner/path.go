package runner

import (
	"fmt"
	"strings"

	"github.com/rocebed/rocebed/testbed/counters"
)

// PathVerdict says where a command's RDMA traffic went, judged from the counters around it.
type PathVerdict string

const (
	// PathCrossed: the endpoints' devices exchanged packets and the NICs under them carried
	// them: the traffic crossed the cable.
	PathCrossed PathVerdict = "crossed"
	// PathLoopback: a device received packets its peer never sent — they came from itself.
	// The traffic looped inside one device (rxe hands a packet for a local GID straight back)
	// and proves nothing about the cable. Its finding code is local-loopback.
	PathLoopback PathVerdict = "local-loopback"
	// PathMartian: packets were sent but not received, and the kernel counted martian
	// sources: they crossed the cable and died in the receiving NIC's input routing.
	PathMartian PathVerdict = "martian-source"
	// PathLost: packets were sent but not received, and no martian drop was counted.
	PathLost PathVerdict = "lost"
	// PathNone: neither device sent or received an RDMA packet.
	PathNone PathVerdict = "no-rdma-traffic"
)

// PathDevice is one endpoint's device and NIC, as Path counts them.
type PathDevice struct {
	Device string `json:"device"`
	NIC    string `json:"nic"`
	Sent   uint64 `json:"sent_pkts"`
	Rcvd   uint64 `json:"rcvd_pkts"`
	NICTx  uint64 `json:"nic_tx_packets"`
	NICRx  uint64 `json:"nic_rx_packets"`
}

// Path is where a command's RDMA traffic went, with the counts it was judged from.
type Path struct {
	Verdict PathVerdict `json:"verdict"`
	Reason  string      `json:"reason"`
	A       PathDevice  `json:"a"`
	B       PathDevice  `json:"b"`
	LoTx    uint64      `json:"lo_tx_packets"`
	Martian uint64      `json:"in_martian_src"`
	Crossed uint64      `json:"crossed_pkts"` // received from the peer: could only have come over the cable
	Looped  uint64      `json:"looped_pkts"`  // received beyond what the peer sent: from the device itself
	Lost    uint64      `json:"lost_pkts"`    // sent but received by neither device
	Missing []string    `json:"unreadable,omitempty"`
}

// JudgePath classifies a counter delta. Every RDMA packet a device receives came from its
// peer (across the cable) or from itself (looped back inside the device): so a device that
// received more than its peer sent looped the rest. Packets counted as crossing must also
// show on the NICs: out of the sender's, into the receiver's.
func JudgePath(d *counters.Snapshot, a, b PathDevice) Path {
	p := Path{A: a, B: b}
	read := func(pd *PathDevice) {
		var ok bool
		if pd.Sent, ok = d.SentPackets(pd.Device); !ok {
			p.Missing = append(p.Missing, pd.Device+" sent_pkts")
		}
		if pd.Rcvd, ok = d.ReceivedPackets(pd.Device); !ok {
			p.Missing = append(p.Missing, pd.Device+" rcvd_pkts")
		}
		l, ok := d.Link(pd.NIC)
		if !ok {
			p.Missing = append(p.Missing, pd.NIC+" packets")
		}
		pd.NICTx, pd.NICRx = l.TxPackets, l.RxPackets
	}
	read(&p.A)
	read(&p.B)
	if lo, ok := d.Link("lo"); ok {
		p.LoTx = lo.TxPackets
	}
	p.Martian, _ = d.KernelSum(counters.CounterMartianSrc)

	ab, ba := min(p.A.Sent, p.B.Rcvd), min(p.B.Sent, p.A.Rcvd)
	p.Crossed = ab + ba
	p.Looped = (p.A.Rcvd - ba) + (p.B.Rcvd - ab)
	if sent := p.A.Sent + p.B.Sent; sent > p.Crossed {
		p.Lost = sent - p.Crossed
	}
	counts := fmt.Sprintf("%s sent +%d rcvd +%d, %s sent +%d rcvd +%d; %s tx +%d rx +%d, %s tx +%d rx +%d, lo tx +%d, in_martian_src +%d",
		p.A.Device, p.A.Sent, p.A.Rcvd, p.B.Device, p.B.Sent, p.B.Rcvd, p.A.NIC, p.A.NICTx, p.A.NICRx, p.B.NIC, p.B.NICTx, p.B.NICRx, p.LoTx, p.Martian)
	switch {
	case len(p.Missing) > 0:
		p.Verdict, p.Reason = PathLost, "counters unreadable: "+strings.Join(p.Missing, ", ")
	case p.Looped > 0:
		dev := p.B.Device
		if p.A.Rcvd-ba > p.B.Rcvd-ab {
			dev = p.A.Device
		}
		p.Verdict = PathLoopback
		p.Reason = fmt.Sprintf("%d packets looped inside %s: it received more than its peer sent (%s). A client that binds no source address resolves the peer's address through lo and rdma_cm picks the device that owns it: the policy-routing fix steers such clients across the cable (accept_local does not), or bind the client to its own endpoint's address (ROCEBED_A_ADDR)", p.Looped, dev, counts)
	case p.Crossed > 0 && p.A.NICTx >= ab && p.B.NICRx >= ab && p.B.NICTx >= ba && p.A.NICRx >= ba:
		p.Verdict = PathCrossed
		p.Reason = fmt.Sprintf("%d packets crossed the cable (%s)", p.Crossed, counts)
	case p.Crossed > 0:
		p.Verdict = PathLost
		p.Reason = "the devices exchanged packets the NICs did not carry (" + counts + ")"
	case p.Lost > 0 && p.Martian > 0:
		p.Verdict = PathMartian
		p.Reason = fmt.Sprintf("%d packets sent, none received, and the kernel dropped martian sources (%s)", p.Lost, counts)
	case p.Lost > 0:
		p.Verdict = PathLost
		p.Reason = fmt.Sprintf("%d packets sent, none received (%s)", p.Lost, counts)
	default:
		p.Verdict = PathNone
		p.Reason = "no RDMA packet was sent or received on either endpoint (" + counts + ")"
	}
	return p
}
