package vm

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
)

// A pair is two guests booted at once and cabled to each other, the two hosts of a two-host
// lab: eth1 of guest a to eth1 of guest b (the lab's cable, left down and unaddressed for the
// scenario), and eth0 to eth0 as a management link with static addresses and neighbours
// (192.168.100.1/24 on a, .2/24 on b), over which the two rocebed processes talk. Every cable
// is a UDP socket pair on the host's 127.0.0.1, like CableNICs'.

// Management addresses of a pair.
var (
	PairAddrA = netip.MustParsePrefix("192.168.100.1/24")
	PairAddrB = netip.MustParsePrefix("192.168.100.2/24")
)

// Environment a pair's guest commands get: which guest they run in, its management address
// and the other guest's.
const (
	PairEnvSide = "ROCEBED_PAIR_SIDE" // "a" or "b"
	PairEnvAddr = "ROCEBED_PAIR_ADDR" // 192.168.100.1 on a
	PairEnvPeer = "ROCEBED_PAIR_PEER" // 192.168.100.2 on a
)

// PairNICs returns the NICs of guest a and guest b of a pair: eth0 on the management link,
// addressed, and eth1 on the lab's cable.
func PairNICs() (a, b []NIC, err error) {
	mac := func(guest, i byte) net.HardwareAddr { return net.HardwareAddr{0x52, 0x54, 0x00, 0xab, guest, i} }
	a = []NIC{{Name: "eth0", MAC: mac(1, 0)}, {Name: "eth1", MAC: mac(1, 1)}}
	b = []NIC{{Name: "eth0", MAC: mac(2, 0)}, {Name: "eth1", MAC: mac(2, 1)}}
	for i := range a {
		if err := Cable(&a[i], &b[i]); err != nil {
			return nil, nil, err
		}
	}
	a[0].Addr, a[0].Peer, a[0].PeerMAC = PairAddrA, PairAddrB.Addr(), b[0].MAC
	b[0].Addr, b[0].Peer, b[0].PeerMAC = PairAddrB, PairAddrA.Addr(), a[0].MAC
	return a, b, nil
}

// PairOptions describes a pair's two boots. Each guest's ExecOptions say its command, output,
// bounds and size (SMP defaults to 1 here: two guests share the host's cores); ExecPair sets
// their NICs and adds the ROCEBED_PAIR_* environment.
type PairOptions struct {
	A, B ExecOptions
}

// PairResult is what the two boots did: each guest's Result and error, as Exec returns them.
type PairResult struct {
	A, B       *Result
	ErrA, ErrB error
}

// ExecPair boots guest a and guest b at once, cabled to each other (PairNICs), and runs each
// guest's command; it returns when both have finished. A guest that fails as a guest (a
// GuestError: it crashed, hung or never booted) has the other stopped too, since that one's
// command would only wait for it; ctx ending stops both. Like Exec, it never returns with a
// QEMU running.
func ExecPair(ctx context.Context, o PairOptions) PairResult {
	var r PairResult
	nicsA, nicsB, err := PairNICs()
	if err != nil {
		r.ErrA, r.ErrB = err, err
		return r
	}
	guests := []struct {
		o       ExecOptions
		side    string
		nics    []NIC
		self    netip.Prefix
		peer    netip.Prefix
		res     **Result
		err     *error
		ctx     context.Context
		cancel  context.CancelFunc
		partner int
	}{
		{o: o.A, side: "a", nics: nicsA, self: PairAddrA, peer: PairAddrB, res: &r.A, err: &r.ErrA, partner: 1},
		{o: o.B, side: "b", nics: nicsB, self: PairAddrB, peer: PairAddrA, res: &r.B, err: &r.ErrB, partner: 0},
	}
	for i := range guests {
		guests[i].ctx, guests[i].cancel = context.WithCancel(ctx)
		defer guests[i].cancel()
	}
	var wg sync.WaitGroup
	for i := range guests {
		g := &guests[i]
		e := g.o
		if e.SMP <= 0 {
			e.SMP = 1
		}
		e.NICs = g.nics
		e.Env = append(append([]string(nil), e.Env...),
			PairEnvSide+"="+g.side, PairEnvAddr+"="+g.self.Addr().String(), PairEnvPeer+"="+g.peer.Addr().String())
		if e.Log != nil {
			fmt.Fprintf(e.Log, "vm pair: guest %s: eth0 %s (management), eth1 cabled to guest %s's eth1\n", g.side, g.self, guests[g.partner].side)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			*g.res, *g.err = Exec(g.ctx, e)
			var ge *GuestError
			if errors.As(*g.err, &ge) {
				guests[g.partner].cancel()
			}
		}()
	}
	wg.Wait()
	return r
}

// PairExitStatus is one exit status for a pair: guest a's when it is not 0, else guest b's;
// false when a guest has no status at all (see ExitStatus).
func PairExitStatus(r PairResult) (int, bool) {
	ca, okA := ExitStatus(r.A, r.ErrA)
	cb, okB := ExitStatus(r.B, r.ErrB)
	switch {
	case okA && ca != 0:
		return ca, true
	case okB && cb != 0:
		return cb, true
	case okA && okB:
		return 0, true
	}
	return 0, false
}
