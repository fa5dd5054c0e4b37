//go:build linux

package verbs

// Real-kernel tests: two rdma_rxe devices on the ends of a veth pair, driven through this
// package in one process. rxe works only in the initial network namespace, so these tests
// change the current namespace's links, rules and routes: they run in the throwaway rocebed VM
// (`rocebed vm exec`, `make test-vm`), or where ROCEBED_ALLOW_HOST_CHANGES=1 says the host
// may be changed. Every change is undone by t.Cleanup, including the `lookup local` rule at
// pref 0 that the routing fix moves.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rocebed/rocebed/internal/testenv"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// labOptions selects the routing state of a lab.
type labOptions struct {
	policyRouting bool // the same-host fix: rules and tables 100/101
	staticNeigh   bool // permanent neighbour entries for the peer on each veth
}

// end is one side of the lab: a veth, its address, and the rxe device on it.
type end struct {
	veth  string
	link  netlink.Link
	ip    net.IP
	rxe   string
	gidIx int
	gid   GID
}

type lab struct{ a, b end }

// newLab builds vethA(10.98.0.1/24) <-> vethB(10.98.0.2/24), an rxe device on each, and the
// requested routing state, and waits until both ports are ACTIVE with a RoCE v2 GID.
func newLab(t *testing.T, opt labOptions) *lab {
	t.Helper()
	testenv.RequireRXE(t)

	rb := make([]byte, 3)
	_, _ = rand.Read(rb)
	tag := "rbt" + hex.EncodeToString(rb)
	l := &lab{
		a: end{veth: tag + "a", rxe: tag + "ra", ip: net.IPv4(10, 98, 0, 1).To4()},
		b: end{veth: tag + "b", rxe: tag + "rb", ip: net.IPv4(10, 98, 0, 2).To4()},
	}

	nl, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatalf("netlink route handle: %v", err)
	}
	t.Cleanup(nl.Close)
	// Registered first, so it runs last: every change must be undone exactly.
	rules0 := ruleSnapshot(t, nl)
	t.Cleanup(func() {
		if got := ruleSnapshot(t, nl); got != rules0 {
			t.Errorf("IPv4 rules not restored:\nbefore:\n%s\nafter:\n%s", rules0, got)
		}
		links, err := nl.LinkList()
		if err != nil {
			t.Errorf("ip link show: %v", err)
		}
		for _, lk := range links {
			if strings.HasPrefix(lk.Attrs().Name, tag) {
				t.Errorf("link %s left behind", lk.Attrs().Name)
			}
		}
		for _, dev := range []string{l.a.rxe, l.b.rxe} {
			if _, err := os.Stat(filepath.Join("/sys/class/infiniband", dev)); err == nil {
				t.Errorf("rdma device %s left behind", dev)
			}
		}
	})
	rd, err := netlink.NewHandle(unix.NETLINK_RDMA)
	if err != nil {
		t.Fatalf("netlink rdma handle: %v", err)
	}
	t.Cleanup(rd.Close)

	// ip link add A type veth peer name B
	if err := nl.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: l.a.veth}, PeerName: l.b.veth}); err != nil {
		t.Fatalf("ip link add %s type veth peer name %s: %v", l.a.veth, l.b.veth, err)
	}
	t.Cleanup(func() {
		if lk, err := nl.LinkByName(l.a.veth); err == nil {
			if err := nl.LinkDel(lk); err != nil {
				t.Errorf("ip link del %s: %v", l.a.veth, err)
			}
		}
	})
	for _, e := range []*end{&l.a, &l.b} {
		if e.link, err = nl.LinkByName(e.veth); err != nil {
			t.Fatal(err)
		}
		// ip addr add 10.98.0.x/24 dev VETH; ip link set VETH up
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: e.ip, Mask: net.CIDRMask(24, 32)}}
		if err := nl.AddrAdd(e.link, addr); err != nil {
			t.Fatalf("ip addr add %s/24 dev %s: %v", e.ip, e.veth, err)
		}
		if err := nl.LinkSetUp(e.link); err != nil {
			t.Fatalf("ip link set %s up: %v", e.veth, err)
		}
	}
	for _, e := range []*end{&l.a, &l.b} {
		// rdma link add RXE type rxe netdev VETH
		if err := rd.RdmaLinkAdd(e.rxe, "rxe", e.veth); err != nil {
			t.Fatalf("rdma link add %s type rxe netdev %s: %v", e.rxe, e.veth, err)
		}
		name := e.rxe
		t.Cleanup(func() {
			if err := rd.RdmaLinkDel(name); err != nil {
				t.Errorf("rdma link del %s: %v", name, err)
			}
		})
	}

	if opt.staticNeigh {
		for _, p := range [][2]*end{{&l.a, &l.b}, {&l.b, &l.a}} {
			self, peer := p[0], p[1]
			// ip neigh add PEER_IP lladdr PEER_MAC dev SELF nud permanent
			n := &netlink.Neigh{LinkIndex: self.link.Attrs().Index, Family: unix.AF_INET, State: netlink.NUD_PERMANENT,
				IP: peer.ip, HardwareAddr: peer.link.Attrs().HardwareAddr}
			if err := nl.NeighAdd(n); err != nil {
				t.Fatalf("ip neigh add %s lladdr %s dev %s nud permanent: %v", peer.ip, n.HardwareAddr, self.veth, err)
			}
			t.Cleanup(func() {
				if err := nl.NeighDel(n); err != nil && !errors.Is(err, syscall.ENOENT) {
					t.Errorf("ip neigh del %s dev %s: %v", n.IP, self.veth, err)
				}
			})
		}
	}
	if opt.policyRouting {
		addPolicyRouting(t, nl, l)
	}

	for _, e := range []*end{&l.a, &l.b} {
		e.gidIx, e.gid = waitRoCEv2GID(t, e.rxe, e.ip)
		t.Logf("%s on %s: %s, RoCE v2 GID index %d", e.rxe, e.veth, e.ip, e.gidIx)
	}
	return l
}

// addPolicyRouting is the same-host fix from the notes, each step undone in reverse:
//
//	ip rule add pref 100 lookup local
//	ip rule del pref 0 lookup local
//	ip route add 10.98.0.2 dev vethA src 10.98.0.1 table 100
//	ip rule add pref 10 iif lo from 10.98.0.1 to 10.98.0.2 lookup 100
//	ip route add 10.98.0.1 dev vethB src 10.98.0.2 table 101
//	ip rule add pref 11 iif lo from 10.98.0.2 to 10.98.0.1 lookup 101
func addPolicyRouting(t *testing.T, nl *netlink.Handle, l *lab) {
	t.Helper()
	local100 := netlink.NewRule()
	local100.Family, local100.Priority, local100.Table = unix.AF_INET, 100, unix.RT_TABLE_LOCAL
	if err := nl.RuleAdd(local100); err != nil {
		t.Fatalf("ip rule add pref 100 lookup local: %v", err)
	}
	t.Cleanup(func() {
		if err := nl.RuleDel(local100); err != nil {
			t.Errorf("ip rule del pref 100 lookup local: %v", err)
		}
	})
	local0 := netlink.NewRule()
	local0.Family, local0.Priority, local0.Table = unix.AF_INET, 0, unix.RT_TABLE_LOCAL
	if err := nl.RuleDel(local0); err != nil {
		t.Fatalf("ip rule del pref 0 lookup local: %v", err)
	}
	t.Cleanup(func() {
		if err := nl.RuleAdd(local0); err != nil {
			t.Errorf("restore: ip rule add pref 0 lookup local: %v", err)
		}
	})
	for i, p := range [][2]*end{{&l.a, &l.b}, {&l.b, &l.a}} {
		self, peer := p[0], p[1]
		table, pref := 100+i, 10+i
		rt := &netlink.Route{LinkIndex: self.link.Attrs().Index, Dst: host(peer.ip), Src: self.ip,
			Table: table, Scope: netlink.SCOPE_LINK}
		if err := nl.RouteAdd(rt); err != nil {
			t.Fatalf("ip route add %s dev %s src %s table %d: %v", peer.ip, self.veth, self.ip, table, err)
		}
		t.Cleanup(func() {
			if err := nl.RouteDel(rt); err != nil {
				t.Errorf("ip route del %s table %d: %v", peer.ip, table, err)
			}
		})
		r := netlink.NewRule()
		r.Family, r.Priority, r.Table = unix.AF_INET, pref, table
		r.IifName, r.Src, r.Dst = "lo", host(self.ip), host(peer.ip)
		if err := nl.RuleAdd(r); err != nil {
			t.Fatalf("ip rule add pref %d iif lo from %s to %s lookup %d: %v", pref, self.ip, peer.ip, table, err)
		}
		t.Cleanup(func() {
			if err := nl.RuleDel(r); err != nil {
				t.Errorf("ip rule del pref %d: %v", pref, err)
			}
		})
	}
}

// ruleSnapshot renders the IPv4 rules (`ip -4 rule show`) in a comparable form.
func ruleSnapshot(t *testing.T, nl *netlink.Handle) string {
	t.Helper()
	rules, err := nl.RuleList(unix.AF_INET)
	if err != nil {
		t.Fatalf("ip -4 rule show: %v", err)
	}
	lines := make([]string, 0, len(rules))
	for _, r := range rules {
		lines = append(lines, fmt.Sprintf("%d: from %v to %v iif %q lookup %d", r.Priority, r.Src, r.Dst, r.IifName, r.Table))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func host(ip net.IP) *net.IPNet { return &net.IPNet{IP: ip, Mask: net.CIDRMask(32, 32)} }

// waitRoCEv2GID waits for port 1 of dev to be ACTIVE and to list ::ffff:ip with type
// "RoCE v2" among its first 64 GIDs (sysfs), and returns the index. rdma/ has the full
// sysfs reader; this tiny copy keeps the verbs tests independent of it.
func waitRoCEv2GID(t *testing.T, dev string, ip net.IP) (int, GID) {
	t.Helper()
	want, err := GIDFromIP(ip)
	if err != nil {
		t.Fatal(err)
	}
	port := filepath.Join("/sys/class/infiniband", dev, "ports/1")
	deadline := time.Now().Add(15 * time.Second)
	for {
		state, _ := os.ReadFile(filepath.Join(port, "state"))
		if strings.Contains(string(state), "ACTIVE") {
			for i := 0; i < 64; i++ {
				g, err := os.ReadFile(filepath.Join(port, "gids", strconv.Itoa(i)))
				if err != nil {
					break
				}
				typ, _ := os.ReadFile(filepath.Join(port, "gid_attrs/types", strconv.Itoa(i)))
				if gip := net.ParseIP(strings.TrimSpace(string(g))); gip != nil && gip.Equal(ip) &&
					strings.TrimSpace(string(typ)) == "RoCE v2" {
					return i, want
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s port 1: no ACTIVE state with a RoCE v2 GID %s within 15s (state %q)", dev, want, strings.TrimSpace(string(state)))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// hwCounter reads /sys/class/infiniband/DEV/ports/1/hw_counters/NAME.
func hwCounter(t *testing.T, dev, name string) uint64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/sys/class/infiniband", dev, "ports/1/hw_counters", name))
	if err != nil {
		t.Fatalf("read %s counter %s: %v", dev, name, err)
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		t.Fatalf("parse %s counter %s: %v", dev, name, err)
	}
	return v
}

// side holds the verbs objects of one end, closed in the documented order.
type side struct {
	ctx *Context
	pd  *PD
	cq  *CQ
	mr  *MR
	qp  *QP
	ah  *AH
}

func openSide(t *testing.T, dev string, typ QPType, msgs, bufLen int) *side {
	t.Helper()
	s := &side{}
	var err error
	if s.ctx, err = OpenDevice(dev); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeOK(t, s.ctx.Close) })
	pa, err := s.ctx.QueryPort(1)
	if err != nil {
		t.Fatal(err)
	}
	if pa.State != PortActive || pa.LinkLayer != LinkLayerEthernet || pa.ActiveMTU < MTU1024 || pa.GIDTableLen == 0 {
		t.Fatalf("%s port 1: %+v, want ACTIVE Ethernet with active MTU >= 1024 and a GID table", dev, pa)
	}
	if s.pd, err = s.ctx.AllocPD(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeOK(t, s.pd.Close) })
	if s.cq, err = s.ctx.CreateCQ(2 * msgs); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeOK(t, s.cq.Close) })
	if s.mr, err = s.pd.RegMR(msgs * bufLen); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeOK(t, s.mr.Close) })
	if s.qp, err = s.pd.CreateQP(QPConfig{Type: typ, SendCQ: s.cq, RecvCQ: s.cq, MaxSend: msgs, MaxRecv: msgs}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeOK(t, s.qp.Close) })
	return s
}

func closeOK(t *testing.T, close func() error) {
	t.Helper()
	if err := close(); err != nil {
		t.Errorf("close: %v", err)
	}
	if err := close(); err != nil {
		t.Errorf("second close: %v (Close must be idempotent)", err)
	}
}

// connectRC brings two RC QPs to RTS pointing at each other (path MTU 1024, hop limit 64,
// timeout 12, retry_cnt 2: a broken path gives RETRY_EXC_ERR in well under a second).
func connectRC(t *testing.T, l *lab, a, b *side) error {
	t.Helper()
	const psnA, psnB = 0x1a2b3c, 0x4d5e6f
	for _, s := range []*side{a, b} {
		if err := s.qp.ToInit(1, 0); err != nil {
			t.Fatal(err)
		}
	}
	rtr := func(s *side, self, peer end, peerQPN uint32, peerPSN uint32) error {
		return s.qp.ToRTR(RTRConfig{Port: 1, RemoteQPN: peerQPN, RemotePSN: peerPSN, DestGID: peer.gid,
			SGIDIndex: self.gidIx, PathMTU: MTU1024, HopLimit: 64, MinRNRTimer: 12})
	}
	if err := rtr(a, l.a, l.b, b.qp.QPN(), psnB); err != nil {
		return err
	}
	if err := rtr(b, l.b, l.a, a.qp.QPN(), psnA); err != nil {
		return err
	}
	if err := a.qp.ToRTS(RTSConfig{PSN: psnA, Timeout: 12, RetryCnt: 2, RNRRetry: 7}); err != nil {
		t.Fatal(err)
	}
	if err := b.qp.ToRTS(RTSConfig{PSN: psnB, Timeout: 12, RetryCnt: 2, RNRRetry: 7}); err != nil {
		t.Fatal(err)
	}
	return nil
}

const (
	msgLen = 1024
	nMsgs  = 10
)

func TestRXERCSend(t *testing.T) {
	l := newLab(t, labOptions{policyRouting: true})
	a := openSide(t, l.a.rxe, QPTypeRC, nMsgs, msgLen)
	b := openSide(t, l.b.rxe, QPTypeRC, nMsgs, msgLen)
	sentA0, rcvdB0 := hwCounter(t, l.a.rxe, "sent_pkts"), hwCounter(t, l.b.rxe, "rcvd_pkts")

	t0 := time.Now()
	if err := connectRC(t, l, a, b); err != nil {
		t.Fatalf("connect RC QPs %#x <-> %#x with the policy-routing fix: %v", a.qp.QPN(), b.qp.QPN(), err)
	}
	t.Logf("RC QPs %#x (%s) <-> %#x (%s) connected in %v", a.qp.QPN(), l.a.rxe, b.qp.QPN(), l.b.rxe, time.Since(t0))

	for i := 0; i < nMsgs; i++ {
		if err := b.qp.PostRecv(b.mr, i*msgLen, msgLen, uint64(100+i)); err != nil {
			t.Fatal(err)
		}
	}
	bufA := a.mr.Bytes()
	for i := 0; i < nMsgs; i++ {
		FillPayload(bufA[i*msgLen:(i+1)*msgLen], AToB, uint32(i))
	}
	t1 := time.Now()
	for i := 0; i < nMsgs; i++ {
		if err := a.qp.PostSend(a.mr, i*msgLen, msgLen, uint64(i), true); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sends, errA := a.cq.PollUntil(ctx, nMsgs)
	recvs, errB := b.cq.PollUntil(ctx, nMsgs)
	t.Logf("%d send and %d recv completions in %v", len(sends), len(recvs), time.Since(t1))
	if errA != nil || errB != nil {
		t.Fatalf("poll: A %v (%v); B %v (%v)", errA, sends, errB, recvs)
	}
	for i, c := range sends {
		if c.Status != WCSuccess || c.Opcode != WCSend || c.WRID != uint64(i) || c.QPN != a.qp.QPN() {
			t.Errorf("A completion %d: %v, want wr %d send success on qp %#x", i, c, i, a.qp.QPN())
		}
	}
	bufB := b.mr.Bytes()
	for i, c := range recvs {
		if c.Status != WCSuccess || c.Opcode != WCRecv || c.ByteLen != msgLen || c.WRID != uint64(100+i) || c.QPN != b.qp.QPN() {
			t.Errorf("B completion %d: %v, want wr %d recv success len=%d on qp %#x", i, c, 100+i, msgLen, b.qp.QPN())
			continue
		}
		if err := VerifyPayload(bufB[i*msgLen:(i+1)*msgLen], AToB, uint32(i)); err != nil {
			t.Error(err)
		}
	}
	// Nothing more may arrive.
	if extra, err := a.cq.Poll(4); err != nil || len(extra) != 0 {
		t.Errorf("extra completions on A: %v %v", extra, err)
	}
	if extra, err := b.cq.Poll(4); err != nil || len(extra) != 0 {
		t.Errorf("extra completions on B: %v %v", extra, err)
	}
	// The packets went from rxe A to rxe B (not one device to itself).
	sentA, rcvdB := hwCounter(t, l.a.rxe, "sent_pkts")-sentA0, hwCounter(t, l.b.rxe, "rcvd_pkts")-rcvdB0
	if sentA < nMsgs || rcvdB < nMsgs {
		t.Errorf("%s sent_pkts +%d, %s rcvd_pkts +%d: want at least %d each", l.a.rxe, sentA, l.b.rxe, rcvdB, nMsgs)
	}
	t.Logf("%s sent_pkts +%d, %s rcvd_pkts +%d", l.a.rxe, sentA, l.b.rxe, rcvdB)

	// The order rules hold on real objects: the PD refuses to go while its QP and MR are open.
	if err := a.pd.Close(); !errors.Is(err, syscall.EBUSY) {
		t.Errorf("closing a PD with an open QP = %v, want EBUSY", err)
	}
}

// TestRXERCSendList posts 100 SENDs as one PostSends call (two lists: 64 is one call's most),
// every tenth signalled: exactly those complete, in order, and all 100 arrive intact.
func TestRXERCSendList(t *testing.T) {
	const n = 100
	l := newLab(t, labOptions{policyRouting: true})
	a := openSide(t, l.a.rxe, QPTypeRC, n, msgLen)
	b := openSide(t, l.b.rxe, QPTypeRC, n, msgLen)
	if err := connectRC(t, l, a, b); err != nil {
		t.Fatalf("connect RC QPs: %v", err)
	}
	for i := 0; i < n; i++ {
		if err := b.qp.PostRecv(b.mr, i*msgLen, msgLen, uint64(i)); err != nil {
			t.Fatal(err)
		}
	}
	wrs := make([]SendWR, n)
	for i := range wrs {
		FillPayload(a.mr.Bytes()[i*msgLen:(i+1)*msgLen], AToB, uint32(i))
		wrs[i] = SendWR{Offset: i * msgLen, Length: msgLen, WRID: uint64(i), Signaled: i%10 == 9}
	}
	if posted, err := a.qp.PostSends(a.mr, wrs); err != nil || posted != n {
		t.Fatalf("PostSends = %d, %v; want %d, nil", posted, err, n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sends, errA := a.cq.PollUntil(ctx, n/10)
	recvs, errB := b.cq.PollUntil(ctx, n)
	if errA != nil || errB != nil {
		t.Fatalf("poll: A %v (%d); B %v (%d)", errA, len(sends), errB, len(recvs))
	}
	for i, c := range sends {
		if want := uint64(10*i + 9); c.Status != WCSuccess || c.WRID != want {
			t.Errorf("send completion %d: %v, want wr %d success (only signalled sends complete)", i, c, want)
		}
	}
	for i, c := range recvs {
		if c.Status != WCSuccess || c.WRID != uint64(i) || c.ByteLen != msgLen {
			t.Errorf("recv completion %d: %v", i, c)
			continue
		}
		if err := VerifyPayload(b.mr.Bytes()[i*msgLen:(i+1)*msgLen], AToB, uint32(i)); err != nil {
			t.Error(err)
		}
	}
	if extra, err := a.cq.Poll(4); err != nil || len(extra) != 0 {
		t.Errorf("unsignalled sends completed: %v %v", extra, err)
	}
	// A range outside the region is refused before anything is posted.
	if posted, err := a.qp.PostSends(a.mr, []SendWR{{Offset: 0, Length: msgLen}, {Offset: n * msgLen, Length: 1}}); posted != 0 || !errors.Is(err, syscall.EINVAL) {
		t.Errorf("PostSends past the region = %d, %v; want 0, EINVAL", posted, err)
	}
}

// TestRXEConcurrentPollers polls one CQ from four goroutines at once while 200 messages
// arrive: each poller beyond the first polls through a pooled buffer instead of the CQ's own,
// and every completion is taken exactly once, intact.
func TestRXEConcurrentPollers(t *testing.T) {
	const n, pollers = 200, 4
	l := newLab(t, labOptions{policyRouting: true})
	a := openSide(t, l.a.rxe, QPTypeRC, n, 64)
	b := openSide(t, l.b.rxe, QPTypeRC, n, 64)
	if err := connectRC(t, l, a, b); err != nil {
		t.Fatalf("connect RC QPs: %v", err)
	}
	for i := 0; i < n; i++ {
		if err := b.qp.PostRecv(b.mr, i*64, 64, uint64(i)); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var mu sync.Mutex
	seen := map[uint64]int{}
	var wg sync.WaitGroup
	for range pollers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var wcs [PollBatch]Completion
			for ctx.Err() == nil {
				k, err := b.cq.PollInto(wcs[:])
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				for _, c := range wcs[:k] {
					if c.Status != WCSuccess || c.Opcode != WCRecv || c.ByteLen != 64 || c.QPN != b.qp.QPN() {
						t.Errorf("recv completion %v", c)
					}
					seen[c.WRID]++
				}
				done := len(seen) == n
				mu.Unlock()
				if done {
					return
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		FillPayload(a.mr.Bytes()[i*64:(i+1)*64], AToB, uint32(i))
		if err := a.qp.PostSend(a.mr, i*64, 64, uint64(i), i == n-1); err != nil {
			t.Fatal(err)
		}
		if i%8 == 7 {
			time.Sleep(100 * time.Microsecond) // let the pollers overlap with arrivals
		}
	}
	wg.Wait()
	if ctx.Err() != nil {
		t.Fatalf("%d of %d receives completed in time", len(seen), n)
	}
	for i := 0; i < n; i++ {
		if seen[uint64(i)] != 1 {
			t.Errorf("receive %d taken %d times", i, seen[uint64(i)])
		}
		if err := VerifyPayload(b.mr.Bytes()[i*64:(i+1)*64], AToB, uint32(i)); err != nil {
			t.Error(err)
		}
	}
}

func TestRXEUDSend(t *testing.T) {
	l := newLab(t, labOptions{policyRouting: true})
	const qkey = 0x11111111
	a := openSide(t, l.a.rxe, QPTypeUD, nMsgs, GRHLen+msgLen)
	b := openSide(t, l.b.rxe, QPTypeUD, nMsgs, GRHLen+msgLen)
	for _, s := range []*side{a, b} {
		if err := s.qp.ToInit(1, qkey); err != nil {
			t.Fatal(err)
		}
		if err := s.qp.ToRTR(RTRConfig{}); err != nil {
			t.Fatal(err)
		}
		if err := s.qp.ToRTS(RTSConfig{PSN: 0x123}); err != nil {
			t.Fatal(err)
		}
	}
	t0 := time.Now()
	var err error
	if a.ah, err = a.pd.CreateAH(1, l.b.gid, l.a.gidIx, 64); err != nil {
		t.Fatalf("create AH to %s with the policy-routing fix: %v", l.b.gid, err)
	}
	t.Cleanup(func() { closeOK(t, a.ah.Close) })
	t.Logf("AH %s -> %s created in %v", l.a.rxe, l.b.gid, time.Since(t0))

	const slot = GRHLen + msgLen
	for i := 0; i < nMsgs; i++ {
		if err := b.qp.PostRecv(b.mr, i*slot, slot, uint64(100+i)); err != nil {
			t.Fatal(err)
		}
	}
	bufA := a.mr.Bytes()
	for i := 0; i < nMsgs; i++ {
		FillPayload(bufA[i*slot:i*slot+msgLen], AToB, uint32(i))
		if err := a.qp.PostSendUD(a.mr, i*slot, msgLen, uint64(i), a.ah, b.qp.QPN(), qkey); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sends, errA := a.cq.PollUntil(ctx, nMsgs)
	recvs, errB := b.cq.PollUntil(ctx, nMsgs)
	if errA != nil || errB != nil {
		t.Fatalf("poll: A %v (%v); B %v (%v)", errA, sends, errB, recvs)
	}
	for i, c := range sends {
		if c.Status != WCSuccess || c.Opcode != WCSend || c.WRID != uint64(i) {
			t.Errorf("A completion %d: %v, want wr %d send success", i, c, i)
		}
	}
	bufB := b.mr.Bytes()
	seen := map[uint32]bool{}
	for i, c := range recvs {
		if c.Status != WCSuccess || c.Opcode != WCRecv || c.ByteLen != GRHLen+msgLen || c.SrcQP != a.qp.QPN() || c.Flags&WCFlagGRH == 0 {
			t.Errorf("B completion %d: %v src_qp=%#x flags=%#x, want recv success len=%d from qp %#x with a GRH",
				i, c, c.SrcQP, c.Flags, GRHLen+msgLen, a.qp.QPN())
			continue
		}
		// UD may in principle reorder: name what arrived in this slot, then check it exactly.
		off := int(c.WRID-100)*slot + GRHLen
		msg := bufB[off : off+msgLen]
		dir, seq, ok := ParsePayloadHeader(msg)
		if !ok {
			t.Errorf("B completion %d (%v): no intact payload header", i, c)
			continue
		}
		if err := VerifyPayload(msg, AToB, seq); err != nil || dir != AToB || seq >= nMsgs || seen[seq] {
			t.Errorf("B completion %d (%v): %s seq %d (duplicate %v), verify: %v", i, c, dir, seq, seen[seq], err)
		}
		seen[seq] = true
	}
	if len(seen) != nMsgs {
		t.Errorf("B received %d distinct messages, want %d", len(seen), nMsgs)
	}
}

// TestRXENoFixRTRTimesOut: without the routing fix and without static neighbours, the peer's
// ARP reply never comes (the request is dropped as a martian on the other veth), so RTR fails
// with ETIMEDOUT. No ARP, no RoCE packet.
func TestRXENoFixRTRTimesOut(t *testing.T) {
	l := newLab(t, labOptions{})
	a := openSide(t, l.a.rxe, QPTypeRC, 1, msgLen)
	b := openSide(t, l.b.rxe, QPTypeRC, 1, msgLen)
	t0 := time.Now()
	err := connectRC(t, l, a, b)
	t.Logf("connect without fix: %v after %v", err, time.Since(t0))
	if !errors.Is(err, syscall.ETIMEDOUT) {
		t.Fatalf("connect without the routing fix = %v, want ETIMEDOUT from modify to RTR", err)
	}
	var ve *Error
	if !errors.As(err, &ve) || !strings.Contains(ve.Op, "to RTR") {
		t.Errorf("error %v does not name the RTR transition", err)
	}
}

// TestRXENoFixStaticNeighRetryExceeded: with static neighbours RTR succeeds, the SEND crosses
// the veth, and the receiving kernel drops it as a martian source: the requester gets
// IBV_WC_RETRY_EXC_ERR, the responder nothing.
func TestRXENoFixStaticNeighRetryExceeded(t *testing.T) {
	l := newLab(t, labOptions{staticNeigh: true})
	a := openSide(t, l.a.rxe, QPTypeRC, 1, msgLen)
	b := openSide(t, l.b.rxe, QPTypeRC, 1, msgLen)
	if err := connectRC(t, l, a, b); err != nil {
		t.Fatalf("connect with static neighbours: %v", err)
	}
	if err := b.qp.PostRecv(b.mr, 0, msgLen, 7); err != nil {
		t.Fatal(err)
	}
	FillPayload(a.mr.Bytes()[:msgLen], AToB, 0)
	sentA0, rcvdB0 := hwCounter(t, l.a.rxe, "sent_pkts"), hwCounter(t, l.b.rxe, "rcvd_pkts")
	t0 := time.Now()
	if err := a.qp.PostSend(a.mr, 0, msgLen, 1, true); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cs, err := a.cq.PollUntil(ctx, 1)
	elapsed := time.Since(t0)
	if err != nil {
		t.Fatalf("no completion on A: %v", err)
	}
	t.Logf("A: %v (%s) after %v", cs[0], cs[0].Status.CName(), elapsed)
	if cs[0].Status != WCRetryExcErr || cs[0].WRID != 1 {
		t.Errorf("A completion %v, want wr 1 with %s (%s)", cs[0], WCRetryExcErr.CName(), WCRetryExcErr)
	}
	// The responder must have nothing: its kernel dropped every packet before rxe saw it.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel2()
	if got, err := b.cq.PollUntil(ctx2, 1); len(got) != 0 || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("B got %v (%v), want no completion", got, err)
	}
	sentA, rcvdB := hwCounter(t, l.a.rxe, "sent_pkts")-sentA0, hwCounter(t, l.b.rxe, "rcvd_pkts")-rcvdB0
	t.Logf("%s sent_pkts +%d (retries included), %s rcvd_pkts +%d", l.a.rxe, sentA, l.b.rxe, rcvdB)
	if sentA < 2 || rcvdB != 0 {
		t.Errorf("%s sent_pkts +%d, %s rcvd_pkts +%d: want retransmissions that never arrive", l.a.rxe, sentA, l.b.rxe, rcvdB)
	}
}

// TestRXEPingPong runs 300 messages of 64 bytes through a PingPong in Runs of at most 64 (the
// receives posted), pinger and ponger on two goroutines, the way the traffic package does:
// every message and every echo completes once, in order, intact, each echo after its message
// was posted. Then, on the same connected QPs, Stop and EndPong each end a Run that would
// otherwise wait for ever (the ponger never runs).
func TestRXEPingPong(t *testing.T) {
	const n, win, size, echoBit = 300, 64, 64, uint64(1) << 62
	l := newLab(t, labOptions{policyRouting: true})
	a := openSide(t, l.a.rxe, QPTypeRC, 512, size) // messages at [0, n*size), echo receives after
	b := openSide(t, l.b.rxe, QPTypeRC, 512, size) // receives at [0, win*size), echoes from 8 KiB
	if err := connectRC(t, l, a, b); err != nil {
		t.Fatalf("connect RC QPs: %v", err)
	}
	const echoRecvOff, echoSendOff = n * size, 8 << 10
	for k := 0; k < n; k++ {
		FillPayload(a.mr.Bytes()[k*size:(k+1)*size], AToB, uint32(k))
		FillPayload(b.mr.Bytes()[echoSendOff+k*size:echoSendOff+(k+1)*size], BToA, uint32(k))
	}
	postRecv := func(s *side, off, k int, id uint64) {
		t.Helper()
		if err := s.qp.PostRecv(s.mr, off+(k%win)*size, size, id); err != nil {
			t.Fatal(err)
		}
	}
	for k := 0; k < win; k++ {
		postRecv(b, 0, k, uint64(k))
		postRecv(a, echoRecvOff, k, echoBit|uint64(k))
	}
	pp, err := NewPingPong(PingPongConfig{
		Ping: PingPongEnd{QP: a.qp, CQ: a.cq, MR: a.mr, SendOffset: 0, SendSlots: n},
		Pong: PingPongEnd{QP: b.qp, CQ: b.cq, MR: b.mr, SendOffset: echoSendOff, SendSlots: n},
		Size: size, Messages: n, SendQueue: 16, Window: win, EchoWRID: echoBit,
		Spin: time.Millisecond, MinWait: 20 * time.Microsecond, MaxWait: time.Millisecond, IdleGrace: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeOK(t, pp.Close) })
	pp.Start()

	// serve runs role in Runs up to the receives posted, checks every RECV's payload, reposts
	// its receive, and returns everything polled.
	serve := func(role PingPongRole, s *side, recvOff int, dir Direction, recvID uint64) ([]TimedCompletion, PingPongStop, error) {
		var all []TimedCompletion
		posted := win
		for {
			stop, err := pp.Run(role, posted)
			if err != nil {
				return all, stop, err
			}
			got := pp.Completions(role, nil)
			for _, c := range got {
				if c.Status != WCSuccess || c.Opcode != WCRecv {
					continue
				}
				k := int(c.WRID &^ echoBit)
				off := recvOff + (k%win)*size
				if err := VerifyPayload(s.mr.Bytes()[off:off+size], dir, uint32(k)); err != nil {
					return all, stop, err
				}
				if posted < n {
					if err := s.qp.PostRecv(s.mr, recvOff+(posted%win)*size, size, recvID|uint64(posted)); err != nil {
						return all, stop, err
					}
					posted++
				}
			}
			all = append(all, got...)
			if stop != PingPongLimit || posted == n && pp.Progress(role).Arrived == n {
				return all, stop, nil
			}
		}
	}
	var pongs []TimedCompletion
	var pongStop PingPongStop
	var pongErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		pongs, pongStop, pongErr = serve(Pong, b, 0, AToB, 0)
	}()
	pings, pingStop, pingErr := serve(Ping, a, echoRecvOff, BToA, echoBit)
	<-done
	if pingErr != nil || pongErr != nil || pingStop != PingPongLimit || pongStop != PingPongLimit {
		t.Fatalf("pinger: %v, %v; ponger: %v, %v; want both to reach the limit %d", pingStop, pingErr, pongStop, pongErr, n)
	}
	check := func(who string, recs []TimedCompletion, sendID, recvID uint64, qpn uint32) {
		t.Helper()
		var sends, recvs int
		for _, c := range recs {
			if c.Status != WCSuccess || c.QPN != qpn {
				t.Fatalf("%s: %v, want success on qp %#x", who, c.Completion, qpn)
			}
			switch c.Opcode {
			case WCSend:
				if c.WRID != sendID|uint64(sends) {
					t.Fatalf("%s: send completion %d is %v", who, sends, c.Completion)
				}
				sends++
			case WCRecv:
				if c.WRID != recvID|uint64(recvs) || c.ByteLen != size {
					t.Fatalf("%s: receive %d is %v", who, recvs, c.Completion)
				}
				if recvID != 0 && c.At <= pp.PostedAt(recvs) { // an echo, after its message went
					t.Fatalf("%s: echo %d polled at %v, message posted at %v", who, recvs, c.At, pp.PostedAt(recvs))
				}
				recvs++
			}
		}
		if sends != n || recvs != n {
			t.Fatalf("%s: %d sends and %d receives completed, want %d each", who, sends, recvs, n)
		}
	}
	check("pinger", pings, 0, echoBit, a.qp.QPN())
	check("ponger", pongs, echoBit, 0, b.qp.QPN())
	for _, role := range []PingPongRole{Ping, Pong} {
		if p := pp.Progress(role); p.Posted != n || p.SendsDone != n || p.Arrived != n || p.Failed {
			t.Errorf("role %d: %+v, want %d posted, completed and arrived", role, p, n)
		}
	}
	first, last := pp.PostedAt(0), pp.PostedAt(n-1)
	t.Logf("%d round trips in %v", n, last-first)

	// A Run that waits for a ponger that never runs ends on Stop, or on EndPong.
	for _, end := range []struct {
		name string
		call func(*PingPong)
		want PingPongStop
	}{{"stop", (*PingPong).Stop, PingPongStopped}, {"end-pong", (*PingPong).EndPong, PingPongPeerEnded}} {
		idle, err := NewPingPong(PingPongConfig{
			Ping: PingPongEnd{QP: a.qp, CQ: a.cq, MR: a.mr, SendSlots: 1},
			Pong: PingPongEnd{QP: b.qp, CQ: b.cq, MR: b.mr, SendSlots: 1},
			Size: size, Messages: 1, SendQueue: 1, Window: 1, EchoWRID: echoBit,
			Spin: time.Millisecond, MinWait: 20 * time.Microsecond, MaxWait: time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		idle.Start()
		timer := time.AfterFunc(50*time.Millisecond, func() { end.call(idle) })
		stop, err := idle.Run(Ping, 1)
		timer.Stop()
		if err != nil || stop != end.want || idle.Progress(Ping).Posted != 0 {
			t.Errorf("%s: Run = %v, %v with %+v; want %v and nothing posted", end.name, stop, err, idle.Progress(Ping), end.want)
		}
		closeOK(t, idle.Close)
		if _, err := idle.Run(Ping, 1); !errors.Is(err, ErrClosed) {
			t.Errorf("%s: Run after Close = %v, want ErrClosed", end.name, err)
		}
	}
}

// TestRXESendStream streams 300 messages of 2 KiB (two packets each) through a SendStream
// in lists of at most 4 with 16 outstanding, while the receiver, on another goroutine, keeps
// 32 receives posted, checks each payload, reposts and lets the stream go as far as its
// receives: every SEND completes once, in order, after it was posted, and every message
// arrives intact. Then, on the same QPs, a stream allowed 5 of 10 messages posts 5 and ends
// on Stop, and Run after Close says the stream is closed.
func TestRXESendStream(t *testing.T) {
	const n, win, size = 300, 32, 2048
	l := newLab(t, labOptions{policyRouting: true})
	a := openSide(t, l.a.rxe, QPTypeRC, n, size)
	b := openSide(t, l.b.rxe, QPTypeRC, n, size)
	if err := connectRC(t, l, a, b); err != nil {
		t.Fatalf("connect RC QPs: %v", err)
	}
	for k := 0; k < n; k++ {
		FillPayload(a.mr.Bytes()[k*size:(k+1)*size], AToB, uint32(k))
	}
	st, err := NewSendStream(SendStreamConfig{QP: a.qp, CQ: a.cq, MR: a.mr, Slots: n, Size: size, Messages: n, Queue: 16, List: 4,
		Spin: time.Millisecond, MinWait: 20 * time.Microsecond, MaxWait: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeOK(t, st.Close) })
	posted := 0
	for ; posted < win; posted++ {
		if err := b.qp.PostRecv(b.mr, (posted%win)*size, size, uint64(posted)); err != nil {
			t.Fatal(err)
		}
	}
	st.Start()
	st.Allow(posted)

	// The receiver: 300 intact messages, in order, each receive reposted before the stream
	// may use it.
	recvErr := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		for got := 0; got < n; {
			cs, err := b.cq.PollUntil(ctx, 1)
			if err != nil {
				st.Stop()
				recvErr <- fmt.Errorf("after %d messages: %w", got, err)
				return
			}
			for _, c := range cs {
				if c.Status != WCSuccess || c.WRID != uint64(got) || c.ByteLen != size {
					st.Stop()
					recvErr <- fmt.Errorf("receive %d: %v", got, c)
					return
				}
				if err := VerifyPayload(b.mr.Bytes()[(got%win)*size:(got%win+1)*size], AToB, uint32(got)); err != nil {
					st.Stop()
					recvErr <- err
					return
				}
				got++
				if posted < n {
					if err := b.qp.PostRecv(b.mr, (posted%win)*size, size, uint64(posted)); err != nil {
						st.Stop()
						recvErr <- err
						return
					}
					posted++
				}
			}
			st.Allow(posted)
		}
		recvErr <- nil
	}()
	stop, err := st.Run(n)
	if rerr := <-recvErr; rerr != nil {
		t.Fatalf("receiver: %v", rerr)
	}
	if err != nil || stop != SendStreamLimit {
		t.Fatalf("Run = %v, %v; want the limit", stop, err)
	}
	recs := st.Completions(nil)
	if len(recs) != n {
		t.Fatalf("%d SEND completions, want %d", len(recs), n)
	}
	for k, c := range recs {
		if c.Status != WCSuccess || c.Opcode != WCSend || c.WRID != uint64(k) || c.QPN != a.qp.QPN() {
			t.Fatalf("SEND completion %d: %v", k, c.Completion)
		}
		if at := st.PostedAt(k); at <= 0 || c.At < at {
			t.Fatalf("SEND %d polled at %v, posted at %v", k, c.At, at)
		}
	}
	if p := st.Progress(); p.Posted != n || p.Done != n || p.Failed || p.PostErr != nil || p.PollErr != nil {
		t.Errorf("progress %+v, want %d posted and done", p, n)
	}
	if more := st.Completions(nil); len(more) != 0 {
		t.Errorf("Completions gave %d again", len(more))
	}
	t.Logf("%d messages in %v", n, recs[n-1].At-st.PostedAt(0))

	// Only as far as Allow says: 5 of 10 go, then Run waits until Stop.
	for k := 0; k < 5; k++ {
		if err := b.qp.PostRecv(b.mr, k*size, size, uint64(k)); err != nil {
			t.Fatal(err)
		}
	}
	part, err := NewSendStream(SendStreamConfig{QP: a.qp, CQ: a.cq, MR: a.mr, Slots: 10, Size: size, Messages: 10, Queue: 16, List: 4,
		Spin: time.Millisecond, MinWait: 20 * time.Microsecond, MaxWait: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	part.Start()
	part.Allow(5)
	timer := time.AfterFunc(300*time.Millisecond, part.Stop)
	stop, err = part.Run(10)
	timer.Stop()
	if p := part.Progress(); err != nil || stop != SendStreamStopped || p.Posted != 5 || p.Done != 5 {
		t.Errorf("Run allowed 5 of 10 = %v, %v with %+v; want stopped with 5 posted and done", stop, err, p)
	}
	if got := len(part.Completions(nil)); got != 5 {
		t.Errorf("%d completions, want 5", got)
	}
	closeOK(t, part.Close)
	if _, err := part.Run(10); !errors.Is(err, ErrClosed) {
		t.Errorf("Run after Close = %v, want ErrClosed", err)
	}
	if cs, err := b.cq.Poll(16); err != nil || len(cs) != 5 {
		t.Errorf("receiver polled %d, %v after the partial stream; want the 5 allowed", len(cs), err)
	}
}
