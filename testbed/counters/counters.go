package counters

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/rocebed/rocebed/rdma"
)

// Kernel counter names a Snapshot keeps. They are the ones that tell where a same-host RoCE
// packet died: in input routing as a martian (rt_cache), in the reverse-path filter (TcpExt),
// or at a UDP port nobody listens on (Udp).
const (
	CounterMartianSrc      = "rt_cache.in_martian_src"    // /proc/net/stat/rt_cache, summed over CPUs
	CounterRPFilter        = "TcpExt.IPReversePathFilter" // /proc/net/netstat
	CounterUDPNoPorts      = "Udp.NoPorts"                // /proc/net/snmp
	CounterUDPInErrors     = "Udp.InErrors"               // /proc/net/snmp
	CounterIPInAddrErrors  = "Ip.InAddrErrors"            // /proc/net/snmp
	CounterIPInHdrErrors   = "Ip.InHdrErrors"             // /proc/net/snmp
	CounterIPInDiscards    = "Ip.InDiscards"              // /proc/net/snmp
	CounterIPOutNoRoutes   = "Ip.OutNoRoutes"             // /proc/net/snmp
	CounterARPFilterDrops  = "TcpExt.ArpFilter"           // /proc/net/netstat
	CounterRXEHWSentPkts   = "sent_pkts"                  // rxe hw_counters
	CounterRXEHWRcvdPkts   = "rcvd_pkts"                  // rxe hw_counters
	CounterRXECompRetryErr = "completer_retry_err"        // rxe hw_counters
	CounterPortXmitPackets = "port_xmit_packets"          // IB PMA counters (hardware)
	CounterPortRcvPackets  = "port_rcv_packets"           // IB PMA counters (hardware)
)

// LinkCounters are the packet counters of one netdev (`ip -s link show DEV`).
type LinkCounters struct {
	RxPackets uint64 `json:"rx_packets"`
	TxPackets uint64 `json:"tx_packets"`
	RxBytes   uint64 `json:"rx_bytes"`
	TxBytes   uint64 `json:"tx_bytes"`
	RxDropped uint64 `json:"rx_dropped"`
	TxDropped uint64 `json:"tx_dropped"`
	RxErrors  uint64 `json:"rx_errors"`
	TxErrors  uint64 `json:"tx_errors"`
	// IP6InReceives is the IPv6 packets the interface received (Ip6InReceives of
	// /proc/net/dev_snmp6/DEV): RoCE over IPv6 shows here on the receiving NIC. (Its
	// Ip6OutRequests does not count rxe's packets, which leave through ip6_local_out.)
	IP6InReceives uint64 `json:"ip6_in_receives,omitempty"`
}

// Snapshot is the counters that prove where a lab's packets went, read at one moment: each
// endpoint's RDMA hw_counters, the lab's NICs' and lo's link statistics, and the kernel drop
// counters of the lab's namespace. Traffic keeps the difference of two snapshots around each
// batch; diagnosis reads the same type.
type Snapshot struct {
	Taken time.Time `json:"taken"`
	// RDMA maps a device name ("rxe0") to its port-1 hw_counters.
	RDMA map[string]rdma.Counters `json:"rdma,omitempty"`
	// Links maps a netdev name ("vA", "lo") to its statistics.
	Links map[string]LinkCounters `json:"links,omitempty"`
	// Kernel maps a counter name (CounterMartianSrc, ...) to its value in the lab's namespace.
	// A NIC in another namespace adds that namespace's counters as "NETNS/NAME".
	Kernel map[string]uint64 `json:"kernel,omitempty"`
	// Errors say what could not be read; the snapshot holds everything else.
	Errors []string `json:"errors,omitempty"`
}

// Delta returns s minus before, counter by counter, as a Snapshot whose Taken is s's. A
// counter that went down (a device re-created in between) reports its current value rather
// than a wrapped number. Errors of both snapshots are kept.
func (s *Snapshot) Delta(before *Snapshot) *Snapshot {
	if before == nil {
		before = &Snapshot{}
	}
	d := &Snapshot{Taken: s.Taken, RDMA: map[string]rdma.Counters{}, Links: map[string]LinkCounters{}, Kernel: map[string]uint64{}}
	for dev, c := range s.RDMA {
		d.RDMA[dev] = c.Delta(before.RDMA[dev])
	}
	for name, now := range s.Links {
		was := before.Links[name]
		d.Links[name] = LinkCounters{
			RxPackets: sub(now.RxPackets, was.RxPackets), TxPackets: sub(now.TxPackets, was.TxPackets),
			RxBytes: sub(now.RxBytes, was.RxBytes), TxBytes: sub(now.TxBytes, was.TxBytes),
			RxDropped: sub(now.RxDropped, was.RxDropped), TxDropped: sub(now.TxDropped, was.TxDropped),
			RxErrors: sub(now.RxErrors, was.RxErrors), TxErrors: sub(now.TxErrors, was.TxErrors),
			IP6InReceives: sub(now.IP6InReceives, was.IP6InReceives),
		}
	}
	for name, now := range s.Kernel {
		d.Kernel[name] = sub(now, before.Kernel[name])
	}
	d.Errors = append(append(d.Errors, before.Errors...), s.Errors...)
	return d
}

func sub(now, was uint64) uint64 {
	if now >= was {
		return now - was
	}
	return now
}

// RDMACounter returns counter name of dev, and whether it was read.
func (s *Snapshot) RDMACounter(dev, name string) (uint64, bool) {
	if s == nil {
		return 0, false
	}
	c, ok := s.RDMA[dev]
	if !ok {
		return 0, false
	}
	v, ok := c[name]
	return v, ok
}

// SentPackets is the packets dev sent: rxe's sent_pkts, else the PMA's port_xmit_packets.
func (s *Snapshot) SentPackets(dev string) (uint64, bool) {
	if v, ok := s.RDMACounter(dev, CounterRXEHWSentPkts); ok {
		return v, true
	}
	return s.RDMACounter(dev, CounterPortXmitPackets)
}

// ReceivedPackets is the packets dev received: rxe's rcvd_pkts, else port_rcv_packets.
func (s *Snapshot) ReceivedPackets(dev string) (uint64, bool) {
	if v, ok := s.RDMACounter(dev, CounterRXEHWRcvdPkts); ok {
		return v, true
	}
	return s.RDMACounter(dev, CounterPortRcvPackets)
}

// Link returns the counters of netdev name, and whether they were read.
func (s *Snapshot) Link(name string) (LinkCounters, bool) {
	if s == nil {
		return LinkCounters{}, false
	}
	l, ok := s.Links[name]
	return l, ok
}

// KernelCounter returns a kernel counter, and whether it was read.
func (s *Snapshot) KernelCounter(name string) (uint64, bool) {
	if s == nil {
		return 0, false
	}
	v, ok := s.Kernel[name]
	return v, ok
}

// Cable names what a batch of RoCE packets should move when it crosses the lab's cable: the
// sending and receiving RDMA devices and the NICs under them.
type Cable struct {
	SenderDevice, ReceiverDevice string
	SenderNIC, ReceiverNIC       string
	// IPv6 says the packets are IPv6 (the endpoints' GIDs are IPv6 addresses): the receiving
	// NIC must then count them as IPv6 packets received.
	IPv6 bool
	// Loopbacks are the loopback devices that must not carry the packets: ["lo"] when empty;
	// both hosts' ("a/lo", "b/lo") in a two-host lab's Qualified counters.
	Loopbacks []string
}

// Crossed checks that a delta shows at least n packets crossing the cable: sent by the sender
// device and out of its NIC, into the receiving NIC and received by its device, with lo
// moving by less than n (else they may have looped back inside the host). With acks (RC), the
// receiver must also have answered. It returns what is missing, empty when they crossed.
func (s *Snapshot) Crossed(c Cable, n uint64, acks bool) []string {
	if s == nil {
		return []string{"no counters were read"}
	}
	var missing []string
	need := func(what string, v uint64, ok bool, min uint64) {
		switch {
		case !ok:
			missing = append(missing, what+" unreadable")
		case v < min:
			missing = append(missing, fmt.Sprintf("%s +%d < %d", what, v, min))
		}
	}
	v, ok := s.SentPackets(c.SenderDevice)
	need(c.SenderDevice+" sent_pkts", v, ok, n)
	v, ok = s.ReceivedPackets(c.ReceiverDevice)
	need(c.ReceiverDevice+" rcvd_pkts", v, ok, n)
	if acks {
		v, ok = s.SentPackets(c.ReceiverDevice)
		need(c.ReceiverDevice+" sent_pkts (ACKs)", v, ok, 1)
		v, ok = s.ReceivedPackets(c.SenderDevice)
		need(c.SenderDevice+" rcvd_pkts (ACKs)", v, ok, 1)
	}
	l, ok := s.Link(c.SenderNIC)
	need(c.SenderNIC+" tx_packets", l.TxPackets, ok, n)
	l, ok = s.Link(c.ReceiverNIC)
	need(c.ReceiverNIC+" rx_packets", l.RxPackets, ok, n)
	if c.IPv6 {
		need(c.ReceiverNIC+" Ip6InReceives", l.IP6InReceives, ok, n)
	}
	loopbacks := c.Loopbacks
	if len(loopbacks) == 0 {
		loopbacks = []string{"lo"}
	}
	for _, name := range loopbacks {
		if lo, ok := s.Link(name); !ok {
			missing = append(missing, name+" unreadable")
		} else if lo.TxPackets >= n || lo.RxPackets >= n {
			missing = append(missing, fmt.Sprintf("%s moved by tx +%d rx +%d (≥ %d: the packets may have looped back)", name, lo.TxPackets, lo.RxPackets, n))
		}
	}
	return missing
}

// Qualified returns the snapshot with every device, link and kernel counter named
// "HOST/NAME" ("a/rxe0", "b/lo", "a/rt_cache.in_martian_src"): in a two-host lab both hosts
// may have an rxe0 and an eth1, and a batch's counters hold both hosts' snapshots. KernelSum
// still sums a kernel counter over both.
func (s *Snapshot) Qualified(host string) *Snapshot {
	if s == nil {
		return nil
	}
	q := &Snapshot{Taken: s.Taken, RDMA: map[string]rdma.Counters{}, Links: map[string]LinkCounters{}, Kernel: map[string]uint64{}}
	for k, v := range s.RDMA {
		q.RDMA[host+"/"+k] = v
	}
	for k, v := range s.Links {
		q.Links[host+"/"+k] = v
	}
	for k, v := range s.Kernel {
		q.Kernel[host+"/"+k] = v
	}
	for _, e := range s.Errors {
		q.Errors = append(q.Errors, "host "+host+": "+e)
	}
	return q
}

// Sum adds delta b into a (a new one when a is nil) and returns it: the counters of several
// batches as one.
func Sum(a, b *Snapshot) *Snapshot {
	if b == nil {
		return a
	}
	if a == nil {
		a = &Snapshot{Taken: b.Taken, RDMA: map[string]rdma.Counters{}, Links: map[string]LinkCounters{}, Kernel: map[string]uint64{}}
	}
	for dev, c := range b.RDMA {
		if a.RDMA[dev] == nil {
			a.RDMA[dev] = rdma.Counters{}
		}
		for k, v := range c {
			a.RDMA[dev][k] += v
		}
	}
	for n, l := range b.Links {
		x := a.Links[n]
		x.RxPackets += l.RxPackets
		x.TxPackets += l.TxPackets
		x.RxBytes += l.RxBytes
		x.TxBytes += l.TxBytes
		x.RxDropped += l.RxDropped
		x.TxDropped += l.TxDropped
		x.RxErrors += l.RxErrors
		x.TxErrors += l.TxErrors
		x.IP6InReceives += l.IP6InReceives
		a.Links[n] = x
	}
	for k, v := range b.Kernel {
		a.Kernel[k] += v
	}
	a.Errors = append(a.Errors, b.Errors...)
	return a
}

// KernelSum sums a kernel counter over every namespace the snapshot read (the lab's own,
// keyed NAME, and others, keyed NS/NAME); per lists the non-zero ones as "KEY +N", sorted.
func (s *Snapshot) KernelSum(name string) (total uint64, per []string) {
	if s == nil {
		return 0, nil
	}
	for _, k := range slices.Sorted(maps.Keys(s.Kernel)) {
		if k == name || strings.HasSuffix(k, "/"+name) {
			if v := s.Kernel[k]; v > 0 {
				total += v
				per = append(per, fmt.Sprintf("%s +%d", k, v))
			}
		}
	}
	return total, per
}

// String prints the non-zero counters, one group per line: what moved, for humans.
func (s *Snapshot) String() string {
	var b strings.Builder
	for _, dev := range slices.Sorted(maps.Keys(s.RDMA)) {
		if nz := s.RDMA[dev].NonZero(); len(nz) > 0 {
			fmt.Fprintf(&b, "%s: %s\n", dev, nz)
		} else {
			fmt.Fprintf(&b, "%s: all counters 0\n", dev)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(s.Links)) {
		l := s.Links[name]
		fmt.Fprintf(&b, "%s: tx %d rx %d packets", name, l.TxPackets, l.RxPackets)
		if l.IP6InReceives > 0 {
			fmt.Fprintf(&b, " (IPv6 in %d)", l.IP6InReceives)
		}
		if l.TxDropped+l.RxDropped+l.TxErrors+l.RxErrors > 0 {
			fmt.Fprintf(&b, ", dropped tx %d rx %d, errors tx %d rx %d", l.TxDropped, l.RxDropped, l.TxErrors, l.RxErrors)
		}
		b.WriteByte('\n')
	}
	var kern []string
	for _, name := range slices.Sorted(maps.Keys(s.Kernel)) {
		if v := s.Kernel[name]; v != 0 {
			kern = append(kern, fmt.Sprintf("%s=%d", name, v))
		}
	}
	if len(kern) > 0 {
		fmt.Fprintf(&b, "kernel: %s\n", strings.Join(kern, " "))
	} else if len(s.Kernel) > 0 {
		b.WriteString("kernel: drop counters all 0\n")
	}
	for _, e := range s.Errors {
		fmt.Fprintf(&b, "unreadable: %s\n", e)
	}
	return b.String()
}
