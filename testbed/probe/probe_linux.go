package probe

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/rocebed/rocebed/internal/host"
	"github.com/rocebed/rocebed/internal/kernel"
	"github.com/rocebed/rocebed/rdma"
	"github.com/rocebed/rocebed/testbed/lab"
	"github.com/rocebed/rocebed/testbed/scenario"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Run timing. Neighbour resolution fails after mcast_solicit (3) probes 1 s apart, so 3 s
// sees a FAILED entry; when the martian counter already moved, 1 s is enough to call it.
const (
	probeNeighWait        = 3 * time.Second
	probeNeighMartianWait = time.Second
	probeUDPWait          = time.Second
	probePoll             = 20 * time.Millisecond
	// probeDatagrams is how many datagrams the udp layer sends.
	probeDatagrams = 5
	// probePort is RoCE v2's UDP port: the probe's datagrams take the path RoCE takes.
	probePort = 4791
	// discardPort takes the neighbour layer's trigger datagram when port 4791 is unsafe.
	discardPort = 9
)

// probeFix is the remedy for the same-host martian drop, measured on 6.1 and 6.18.
const probeFix = "add the policy-routing fix (`fixes: - policy_routing: {}`), or set accept_local=1 (all and both NICs) with rp_filter 0 or 2"

// probeFix6 is the remedy for IPv6, where the packets go to lo: only routing helps.
const probeFix6 = "add the policy-routing fix (`fixes: - policy_routing: {}`): it routes the packets to the other NIC's IPv6 address out of the sender's NIC (accept_local is IPv4 only and does not help)"

// fix is the remedy for a path that does not cross the cable, for this direction's family.
func (p *prober) fix() string {
	if p.src.v6() {
		return probeFix6
	}
	return probeFix
}

// probeEnd is one endpoint as the probe sees it.
type probeEnd struct {
	role string // "a" or "b"
	nic  string
	addr net.IP
	nns  string // the NIC's declared netns, if any
	link netlink.Link
}

func (e *probeEnd) String() string { return fmt.Sprintf("%s (%s %s)", e.role, e.nic, e.addr) }

// Run checks, for a->b and b->a, that plain IP traffic between the endpoints' addresses
// crosses the cable: link, neighbour, output route, input route, UDP 4791 — in each address
// family both endpoints have an address in (scenario.Families), the endpoints' own first. It
// sends a few small datagrams and ARP or neighbour solicitations; it changes no
// configuration. The error is for failures of the probe itself (cancelled ctx, netlink
// errors); a broken lab is a failing layer.
func Run(ctx context.Context, env *host.Env, s *scenario.Scenario) (*Report, error) {
	fams := s.Families()
	if len(fams) == 0 {
		fams = []scenario.Family{""} // an existing NIC with no declared address: the kernel's
	}
	r := &Report{Lab: s.Name}
	for _, f := range fams {
		a, err := newProbeEnd(env, s, "a", s.Endpoints.A, f)
		if err != nil {
			return nil, err
		}
		b, err := newProbeEnd(env, s, "b", s.Endpoints.B, f)
		if err != nil {
			return nil, err
		}
		for _, d := range []struct {
			name     string
			src, dst probeEnd
		}{{"a->b", a, b}, {"b->a", b, a}} {
			p := &prober{env: env, src: d.src, dst: d.dst}
			dr, err := p.run(ctx, d.name)
			if err != nil {
				return r, fmt.Errorf("probe %s %s: %w", s.Name, d.name, err)
			}
			dr.Family = scenario.FamilyOf(d.src.ip())
			r.Directions = append(r.Directions, dr)
		}
	}
	r.Passed = true
	for i := range r.Directions {
		r.Passed = r.Passed && r.Directions[i].Passed()
	}
	return r, nil
}

func newProbeEnd(env *host.Env, s *scenario.Scenario, role string, ep scenario.Endpoint, f scenario.Family) (probeEnd, error) {
	e := probeEnd{role: role, nic: ep.NIC}
	if n, ok := s.NIC(ep.NIC); ok {
		e.nns = n.Netns
	}
	var addr netip.Addr
	var err error
	switch a, ok := s.EndpointAddrIn(ep, f); {
	case ok:
		addr = a.Unmap()
	case env != nil && ep.Address == "":
		addr, err = lab.EndpointAddrIn(env, s, ep, f) // an existing NIC with no declared address
	default:
		err = fmt.Errorf("no address")
	}
	if err != nil {
		return e, fmt.Errorf("endpoint %s: address %q is not an IP address: set endpoints.%s.address, or give NIC %s an address", role, ep.Address, role, ep.NIC)
	}
	e.addr = net.IP(addr.AsSlice())
	return e, nil
}

// ip is the endpoint's address as a netip.Addr.
func (e *probeEnd) ip() netip.Addr {
	a, _ := netip.AddrFromSlice(e.addr)
	return a.Unmap()
}

// v6 reports whether the endpoint's address is IPv6.
func (e *probeEnd) v6() bool { return e.addr.To4() == nil }

// prober runs the layers of one direction.
type prober struct {
	env      *host.Env
	src, dst probeEnd
	// listener is a UDP socket bound to dst's address, port 4791 and NIC, or -1. It counts
	// what D delivers, and keeps the kernel from answering with ICMP port unreachable (which,
	// on a same-host lab, would itself travel over lo).
	listener     int
	listenerNote string
	nonce        [3]byte
	// unsafe4791, when set, says why no datagram may go to dB:4791 (see rxeSafe).
	unsafe4791 string
}

func (p *prober) run(ctx context.Context, name string) (DirectionReport, error) {
	dr := DirectionReport{Name: name, From: p.src.String(), To: p.dst.String()}
	p.listener = -1
	defer func() {
		if p.listener >= 0 {
			unix.Close(p.listener)
		}
	}()
	layers := []struct {
		layer Layer
		fn    func(context.Context) (LayerResult, error)
	}{
		{LayerLink, p.checkLink},
		{LayerNeighbor, p.checkNeighbor},
		{LayerRouteOut, p.checkRouteOut},
		{LayerRouteIn, p.checkRouteIn},
		{LayerUDP, p.checkUDP},
	}
	var failed Layer
	for _, l := range layers {
		if failed != "" {
			dr.Layers = append(dr.Layers, LayerResult{Layer: l.layer, Status: Skipped, Detail: fmt.Sprintf("skipped: %s failed", failed)})
			continue
		}
		if err := ctx.Err(); err != nil {
			return dr, err
		}
		start := time.Now()
		res, err := l.fn(ctx)
		if err != nil {
			return dr, fmt.Errorf("%s: %w", l.layer, err)
		}
		res.Layer = l.layer
		res.Duration = time.Since(start)
		dr.Layers = append(dr.Layers, res)
		if res.Status == Fail {
			failed = l.layer
		}
		if l.layer == LayerLink && res.Status == Pass {
			p.openListener()
			p.unsafe4791 = p.rxeSafe(ctx)
		}
	}
	return dr, nil
}

func probePassed(detail string, ev map[string]string) (LayerResult, error) {
	return LayerResult{Status: Pass, Detail: detail, Evidence: ev}, nil
}

func probeFailed(detail, fix string, ev map[string]string) (LayerResult, error) {
	return LayerResult{Status: Fail, Detail: detail, Fix: fix, Evidence: ev}, nil
}

// checkLink: both NICs exist in the env, are administratively up, have carrier
// (IFF_LOWER_UP) and an operational state of up (or unknown, which drivers without
// operstate support report), and each endpoint's address is on its NIC.
// linkSettle bounds the wait for a link with carrier to become operational.
const linkSettle = 2 * time.Second

func (p *prober) checkLink(ctx context.Context) (LayerResult, error) {
	ev := map[string]string{}
	for _, e := range []*probeEnd{&p.src, &p.dst} {
		l, err := p.env.NL.LinkByName(e.nic)
		if err != nil {
			var nf netlink.LinkNotFoundError
			if errors.As(err, &nf) || errors.Is(err, unix.ENODEV) {
				detail := fmt.Sprintf("%s not found in %s", e.nic, p.env)
				if e.nns != "" {
					detail += fmt.Sprintf(" (it is declared in netns %q; the probe looks at one namespace)", e.nns)
				}
				return probeFailed(detail, "bring the lab up with `rocebed up`, or pass the --netns the lab lives in", ev)
			}
			return LayerResult{}, fmt.Errorf("look up %s: %w", e.nic, err)
		}
		// The oper state follows the flags when the kernel's linkwatch runs, up to a second
		// after a link or its peer came up: give a link that has carrier that long to settle.
		for settle := time.Now().Add(linkSettle); ; {
			a := l.Attrs()
			if a.RawFlags&unix.IFF_LOWER_UP == 0 || a.OperState == netlink.OperUp || a.OperState == netlink.OperUnknown || time.Now().After(settle) || ctx.Err() != nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
			if l, err = p.env.NL.LinkByName(e.nic); err != nil {
				return LayerResult{}, fmt.Errorf("look up %s: %w", e.nic, err)
			}
		}
		e.link = l
		a := l.Attrs()
		up := a.RawFlags&unix.IFF_UP != 0
		carrier := a.RawFlags&unix.IFF_LOWER_UP != 0
		ev[e.nic+".oper_state"] = a.OperState.String()
		ev[e.nic+".flags"] = kernel.LinkFlagsString(a.RawFlags)
		ev[e.nic+".mac"] = a.HardwareAddr.String()
		switch {
		case !up:
			return probeFailed(fmt.Sprintf("%s is administratively down", e.nic), fmt.Sprintf("bring it up (`ip link set %s up`), or re-run `rocebed up`", e.nic), ev)
		case !carrier:
			return probeFailed(fmt.Sprintf("%s has no carrier (oper state %s)", e.nic, a.OperState), "check the cable: for a veth, its peer must exist and be up", ev)
		case a.OperState != netlink.OperUp && a.OperState != netlink.OperUnknown:
			return probeFailed(fmt.Sprintf("%s is not operational (oper state %s)", e.nic, a.OperState), "check the NIC's state with `ip link show`", ev)
		}
		addrs, err := kernel.Dump(func() ([]netlink.Addr, error) { return p.env.NL.AddrList(l, kernel.FamilyOf(e.addr)) })
		if err != nil {
			return LayerResult{}, fmt.Errorf("list addresses of %s: %w", e.nic, err)
		}
		found := false
		for _, ad := range addrs {
			found = found || ad.IP.Equal(e.addr)
		}
		if !found {
			return probeFailed(fmt.Sprintf("%s is not an address of %s", e.addr, e.nic), "add it to the NIC (`addresses:` in the scenario) or fix endpoints.*.address", ev)
		}
	}
	return probePassed(fmt.Sprintf("%s and %s up with carrier, addresses in place", p.src.nic, p.dst.nic), ev)
}

// checkNeighbor sends one datagram from sA on S to dB, which makes the kernel resolve dB on
// S, and waits for the neighbour entry. A usable entry with D's MAC means ARP (IPv6: neighbour
// discovery) crossed the cable both ways.
func (p *prober) checkNeighbor(ctx context.Context) (LayerResult, error) {
	ev := map[string]string{}
	before, merr := p.martianSrc()
	port := probePort
	if p.unsafe4791 != "" {
		port = discardPort
	}
	sent, err := p.send(1, port, true)
	if err != nil {
		ev["error"] = err.Error()
		return probeFailed(fmt.Sprintf("cannot send to %s from %s on %s: %v", p.dst.addr, p.src.addr, p.src.nic, errors.Unwrap(err)),
			fmt.Sprintf("give %s a route to %s (`ip route get %s from %s oif %s` must work)", p.src.nic, p.dst.addr, p.dst.addr, p.src.addr, p.src.nic), ev)
	}
	ev["trigger_datagrams"] = strconv.Itoa(sent)
	start := time.Now()
	var n *netlink.Neigh
	for {
		n, err = p.neighbor()
		if err != nil {
			return LayerResult{}, err
		}
		if n != nil && n.State&kernel.NUDUsable != 0 {
			break
		}
		if n != nil && n.State&netlink.NUD_FAILED != 0 {
			break
		}
		el := time.Since(start)
		if el >= probeNeighWait {
			break
		}
		if el >= probeNeighMartianWait && merr == nil {
			if now, err := p.martianSrc(); err == nil && now > before {
				break
			}
		}
		if err := probeSleep(ctx, probePoll); err != nil {
			return LayerResult{}, err
		}
	}
	ev["waited"] = time.Since(start).Round(time.Millisecond).String()
	state := "absent"
	if n != nil {
		state = kernel.NeighStateName(n.State)
		if len(n.HardwareAddr) > 0 {
			ev["lladdr"] = n.HardwareAddr.String()
		}
	}
	ev["state"] = state
	dmac := p.dst.link.Attrs().HardwareAddr
	ev[p.dst.nic+".mac"] = dmac.String()
	delta, derr := p.martianDelta(before, merr)
	if derr == nil {
		ev["in_martian_src_delta"] = strconv.FormatUint(delta, 10)
	} else {
		ev["in_martian_src_delta"] = "unavailable: " + derr.Error()
	}

	if n != nil && n.State&kernel.NUDUsable != 0 {
		if len(n.HardwareAddr) > 0 && len(dmac) > 0 && n.HardwareAddr.String() != dmac.String() {
			return probeFailed(fmt.Sprintf("%s resolves on %s to %s, not to %s's MAC %s: the answer did not come from %s", p.dst.addr, p.src.nic, n.HardwareAddr, p.dst.nic, dmac, p.dst.nic),
				"remove the stale or static entry (`ip neigh del ADDR dev NIC`), or check for another host or proxy ARP answering on the link", ev)
		}
		return probePassed(fmt.Sprintf("%s resolves on %s to %s (%s), %s's MAC", p.dst.addr, p.src.nic, n.HardwareAddr, state, p.dst.nic), ev)
	}
	// Not resolved: explain with the receiving NIC's source check (route back and sysctls),
	// corroborated by the martian counter. The counter is host-wide, so it alone proves nothing.
	detail := fmt.Sprintf("%s does not resolve on %s (neighbour %s)", p.dst.addr, p.src.nic, state)
	if p.src.v6() {
		// IPv6 drops no neighbour solicitation for its source address: no martian to explain.
		return probeFailed(detail+": no answer to the neighbour solicitation from "+p.dst.nic,
			fmt.Sprintf("check that %s is on %s and not tentative or dadfailed (`ip -6 addr show dev %s`), ip6tables/nft rules for ICMPv6, and that %s and %s share a link", p.dst.addr, p.dst.nic, p.dst.nic, p.src.nic, p.dst.nic), ev)
	}
	acc, rpf, sev := p.sourceSysctls()
	for k, v := range sev {
		ev[k] = v
	}
	back := p.routeBack(ev)
	counter := fmt.Sprintf("in_martian_src +%d", delta)
	if derr != nil {
		counter = "in_martian_src unavailable"
	}
	switch p.predictSource(acc, rpf, back) {
	case kernel.SourceMartian:
		return probeFailed(fmt.Sprintf("ARP request from %s's address %s dropped by %s as a martian source (%s): the kernel drops packets whose source address is one of its own",
			p.src.nic, p.src.addr, p.dst.nic, counter), p.martianFix(back, ev), ev)
	case kernel.SourceRPFilter:
		return probeFailed(fmt.Sprintf("ARP request from %s's address %s dropped by %s as a martian source (%s): accept_local lets the kernel accept its own source address, but the strict reverse-path filter (rp_filter=1) rejects it because the route back leaves through %s",
			p.src.nic, p.src.addr, p.dst.nic, counter, p.backDev(back)), "add the policy-routing fix (it passes rp_filter=1), or set rp_filter=2 (all and both NICs)", ev)
	}
	if derr == nil && delta > 0 {
		detail += fmt.Sprintf(": no answer to ARP from %s; %s, but the routes and sysctls do not predict a martian drop on %s (the counter is host-wide)", p.dst.nic, counter, p.dst.nic)
		return probeFailed(detail, "check rp_filter, accept_local and arp_ignore on "+p.dst.nic+", and `dmesg` with net.ipv4.conf.all.log_martians=1", ev)
	}
	return probeFailed(detail+": no answer to ARP from "+p.dst.nic,
		fmt.Sprintf("check arp_ignore/arp_filter on %s, firewall rules for ARP, and that %s and %s share a link", p.dst.nic, p.src.nic, p.dst.nic), ev)
}

// routeBack looks up the route D's source check uses for a packet sA -> dB: the route from dB
// back to sA as a locally sent packet (iif lo), the FIB entry that matched. With the
// policy-routing fix it is a unicast route out of D; without it, sA's local route.
func (p *prober) routeBack(ev map[string]string) *netlink.Route {
	rb, err := p.env.NL.RouteGetWithOptions(p.src.addr, &netlink.RouteGetOptions{SrcAddr: p.dst.addr, FIBMatch: true})
	switch {
	case err != nil:
		ev["route_back"] = "error: " + err.Error()
	case len(rb) > 0:
		ev["route_back"] = p.routeString(rb[0])
		return &rb[0]
	}
	return nil
}

// martianFix is the remedy for a martian-source drop on D. When policy routing is in place
// but the route back from D is still local, the rule for this direction is missing.
func (p *prober) martianFix(back *netlink.Route, ev map[string]string) string {
	if back != nil && back.Type == unix.RTN_LOCAL && p.hasIifLoRules() {
		return fmt.Sprintf("policy routing is in place but incomplete: add the rule that sends %s's traffic to %s out of %s (`ip rule add iif lo from %s to %s lookup TABLE`, TABLE routing %s dev %s); the route back now is %q",
			p.dst.addr, p.src.addr, p.dst.nic, p.dst.addr, p.src.addr, p.src.addr, p.dst.nic, ev["route_back"])
	}
	return probeFix
}

// predictSource says what D's source check (fib_validate_source) does to sA, from the route
// back and the effective sysctls.
func (p *prober) predictSource(acceptLocal, rpFilter int, back *netlink.Route) kernel.SourceVerdict {
	if back == nil {
		return kernel.SourceUnknown
	}
	return kernel.PredictSource(acceptLocal, rpFilter, kernel.RouteBack{Type: back.Type, Dev: p.linkName(back.LinkIndex)}, p.dst.nic)
}

// hasIifLoRules reports whether any rule of the direction's family matches iif lo: the mark
// of policy routing.
func (p *prober) hasIifLoRules() bool {
	rules, err := kernel.Dump(func() ([]netlink.Rule, error) { return p.env.NL.RuleList(kernel.FamilyOf(p.src.addr)) })
	if err != nil {
		return false
	}
	for _, r := range rules {
		if r.IifName == "lo" {
			return true
		}
	}
	return false
}

// neighbor returns S's entry for dB, or nil.
func (p *prober) neighbor() (*netlink.Neigh, error) {
	list, err := kernel.Dump(func() ([]netlink.Neigh, error) {
		return p.env.NL.NeighList(p.src.link.Attrs().Index, kernel.FamilyOf(p.dst.addr))
	})
	if err != nil {
		return nil, fmt.Errorf("list neighbours of %s: %w", p.src.nic, err)
	}
	for i := range list {
		if list[i].IP.Equal(p.dst.addr) {
			return &list[i], nil
		}
	}
	return nil, nil
}

// checkRouteOut: `ip route get dB from sA oif S` must be a unicast route out of S. rxe and
// rdma-core look routes up with the oif of their netdev, so this is the RoCE path.
func (p *prober) checkRouteOut(ctx context.Context) (LayerResult, error) {
	ev := map[string]string{}
	routes, err := p.env.NL.RouteGetWithOptions(p.dst.addr, &netlink.RouteGetOptions{SrcAddr: p.src.addr, OifIndex: p.src.link.Attrs().Index})
	if err != nil {
		ev["error"] = err.Error()
		return probeFailed(fmt.Sprintf("no route from %s to %s out of %s: %v", p.src.addr, p.dst.addr, p.src.nic, err),
			fmt.Sprintf("give %s a route to %s (an address in the same subnet, or a table route in the policy-routing fix)", p.src.nic, p.dst.addr), ev)
	}
	if len(routes) == 0 {
		return probeFailed("the kernel returned no route", "", ev)
	}
	r := routes[0]
	ev["route"] = p.routeString(r)
	if p.src.v6() && r.Type == unix.RTN_LOCAL {
		return probeFailed(fmt.Sprintf("%s -> %s goes to %s as local: IPv6 routes a packet to one of this host's own addresses through the local table's route to lo, whatever output interface rxe names (it binds only for link-local and multicast destinations), so RoCE packets never reach the cable",
			p.src.addr, p.dst.addr, p.linkName(r.LinkIndex)), p.fix(), ev)
	}
	if r.LinkIndex != p.src.link.Attrs().Index || r.Type != unix.RTN_UNICAST {
		return probeFailed(fmt.Sprintf("%s -> %s leaves through %s as %s, not as unicast out of %s", p.src.addr, p.dst.addr, p.linkName(r.LinkIndex), kernel.RouteTypeName(r.Type), p.src.nic),
			p.fix(), ev)
	}
	return probePassed(fmt.Sprintf("%s -> %s leaves through %s (unicast)", p.src.addr, p.dst.addr, p.src.nic), ev)
}

// checkRouteIn: `ip route get dB from sA iif D` must be local delivery. The kernel runs its
// input routing for this, source validation included, so a martian source or a reverse-path
// filter drop is an error here. Kernel 6.1 answered EINVAL for a martian source and EXDEV for
// rp_filter; 6.18 answers EINVAL for both, so the cause is worked out from the route back to
// sA and the sysctls, the way fib_validate_source decides.
func (p *prober) checkRouteIn(ctx context.Context) (LayerResult, error) {
	ev := map[string]string{}
	routes, err := p.env.NL.RouteGetWithOptions(p.dst.addr, &netlink.RouteGetOptions{SrcAddr: p.src.addr, IifIndex: p.dst.link.Attrs().Index})
	if err != nil && p.src.v6() {
		// IPv6 input routing has no martian-source or reverse-path check to explain.
		ev["error"] = err.Error()
		return probeFailed(fmt.Sprintf("input route %s -> %s on %s: %v", p.src.addr, p.dst.addr, p.dst.nic, err),
			fmt.Sprintf("check the IPv6 rules (`ip -6 rule`) and that %s is on %s", p.dst.addr, p.dst.nic), ev)
	}
	if err != nil {
		ev["error"] = err.Error()
		acc, rpf, sev := p.sourceSysctls()
		for k, v := range sev {
			ev[k] = v
		}
		back := p.routeBack(ev)
		pred := p.predictSource(acc, rpf, back)
		switch {
		case errors.Is(err, unix.EXDEV) || (errors.Is(err, unix.EINVAL) && pred == kernel.SourceRPFilter):
			return probeFailed(fmt.Sprintf("%s drops %s -> %s by the strict reverse-path filter (rp_filter=%d): the route back to %s leaves through %s, not %s", p.dst.nic, p.src.addr, p.dst.addr, rpf, p.src.addr, p.backDev(back), p.dst.nic),
				"add the policy-routing fix (it passes rp_filter=1), or set rp_filter=2 (all and both NICs)", ev)
		case errors.Is(err, unix.EINVAL) && pred == kernel.SourceMartian:
			return probeFailed(fmt.Sprintf("%s drops %s -> %s as a martian source: %s is an address of this host and accept_local=0", p.dst.nic, p.src.addr, p.dst.addr, p.src.addr),
				p.martianFix(back, ev), ev)
		case errors.Is(err, unix.EINVAL):
			return probeFailed(fmt.Sprintf("%s rejects %s -> %s in input routing (martian or invalid source): %v", p.dst.nic, p.src.addr, p.dst.addr, err),
				"check rp_filter, accept_local and the routing rules (`ip rule`) for "+p.dst.nic, ev)
		default:
			return probeFailed(fmt.Sprintf("input route %s -> %s on %s: %v", p.src.addr, p.dst.addr, p.dst.nic, err), "", ev)
		}
	}
	if len(routes) == 0 {
		return probeFailed("the kernel returned no input route", "", ev)
	}
	r := routes[0]
	ev["route"] = p.routeString(r)
	if r.Type != unix.RTN_LOCAL {
		return probeFailed(fmt.Sprintf("%s -> %s arriving on %s is %s, not delivered locally", p.src.addr, p.dst.addr, p.dst.nic, kernel.RouteTypeName(r.Type)),
			fmt.Sprintf("%s must be a local address (on %s), and no rule may send it elsewhere", p.dst.addr, p.dst.nic), ev)
	}
	return probePassed(fmt.Sprintf("%s -> %s arriving on %s is delivered locally", p.src.addr, p.dst.addr, p.dst.nic), ev)
}

// checkUDP sends probeDatagrams datagrams from sA bound to S to dB:4791 and checks where
// they went: D's rx counter, the listener on D (when port 4791 was free), lo's counter and the
// martian counter.
func (p *prober) checkUDP(ctx context.Context) (LayerResult, error) {
	ev := map[string]string{}
	if p.listenerNote != "" {
		ev["listener"] = p.listenerNote
	}
	if p.unsafe4791 != "" {
		return probeFailed(p.unsafe4791, fmt.Sprintf("check that %s is on %s and the rxe device on %s is up (`rdma link show`, `ls /sys/class/infiniband/*/ports/1/gids`)", p.dst.addr, p.dst.nic, p.dst.nic), ev)
	}
	p.drain()
	before, err := p.udpCounters()
	if err != nil {
		return LayerResult{}, err
	}
	if _, err := rand.Read(p.nonce[:]); err != nil {
		return LayerResult{}, err
	}
	n, err := p.send(probeDatagrams, probePort, false)
	if err != nil {
		ev["error"] = err.Error()
		return probeFailed(fmt.Sprintf("sent %d of %d datagrams: %v", n, probeDatagrams, errors.Unwrap(err)), "", ev)
	}
	received := 0
	start := time.Now()
	for {
		if p.listener >= 0 {
			received += p.drain()
			if received >= n {
				break
			}
		} else {
			now, err := p.udpCounters()
			if err != nil {
				return LayerResult{}, err
			}
			if now.dstRx-before.dstRx >= uint64(n) {
				break
			}
		}
		if time.Since(start) >= probeUDPWait {
			break
		}
		if err := probeSleep(ctx, probePoll); err != nil {
			return LayerResult{}, err
		}
	}
	after, err := p.udpCounters()
	if err != nil {
		return LayerResult{}, err
	}
	srcTx, dstRx, loRx := after.srcTx-before.srcTx, after.dstRx-before.dstRx, after.loRx-before.loRx
	ev["sent"] = strconv.Itoa(n)
	ev[p.src.nic+".tx_packets_delta"] = strconv.FormatUint(srcTx, 10)
	ev[p.dst.nic+".rx_packets_delta"] = strconv.FormatUint(dstRx, 10)
	ev["lo.rx_packets_delta"] = strconv.FormatUint(loRx, 10)
	if p.listener >= 0 {
		ev["received"] = strconv.Itoa(received)
	}
	martian := uint64(0)
	if before.martianErr == nil && after.martianErr == nil {
		martian = after.martian - before.martian
		ev["in_martian_src_delta"] = strconv.FormatUint(martian, 10)
	}
	un := uint64(n)
	switch {
	case dstRx < un && loRx >= un:
		return probeFailed(fmt.Sprintf("the datagrams went through lo (lo rx +%d, %s rx +%d): they never crossed the cable", loRx, p.dst.nic, dstRx), p.fix(), ev)
	case dstRx < un:
		return probeFailed(fmt.Sprintf("only %d of %d datagrams arrived on %s (%s tx +%d)", dstRx, n, p.dst.nic, p.src.nic, srcTx),
			"check qdiscs, firewall rules and the link between the NICs", ev)
	case p.listener >= 0 && received < n && martian > 0:
		return probeFailed(fmt.Sprintf("the datagrams reached %s but were dropped there as martian sources (in_martian_src +%d)", p.dst.nic, martian), probeFix, ev)
	case p.listener >= 0 && received < n:
		return probeFailed(fmt.Sprintf("the datagrams reached %s but only %d of %d were delivered to %s:%d", p.dst.nic, received, n, p.dst.addr, probePort),
			"check firewall rules for UDP 4791 (`nft list ruleset`)", ev)
	case loRx >= un:
		return probeFailed(fmt.Sprintf("lo moved by %d packets while %d datagrams were sent: part of the path runs over lo", loRx, n), p.fix(), ev)
	}
	detail := fmt.Sprintf("%d datagrams to %s:%d crossed from %s to %s (%s rx +%d, lo +%d)", n, p.dst.addr, probePort, p.src.nic, p.dst.nic, p.dst.nic, dstRx, loRx)
	if p.listener >= 0 {
		detail += fmt.Sprintf(", %d delivered", received)
	}
	return probePassed(detail, ev)
}

type probeCounters struct {
	srcTx, dstRx, loRx uint64
	martian            uint64
	martianErr         error
}

func (p *prober) udpCounters() (probeCounters, error) {
	var c probeCounters
	for _, x := range []struct {
		name string
		rx   bool
		v    *uint64
	}{{p.src.nic, false, &c.srcTx}, {p.dst.nic, true, &c.dstRx}, {"lo", true, &c.loRx}} {
		l, err := p.env.NL.LinkByName(x.name)
		if err != nil {
			return c, fmt.Errorf("read counters of %s: %w", x.name, err)
		}
		st := l.Attrs().Statistics
		if st == nil {
			return c, fmt.Errorf("read counters of %s: the kernel sent none", x.name)
		}
		if x.rx {
			*x.v = st.RxPackets
		} else {
			*x.v = st.TxPackets
		}
	}
	c.martian, c.martianErr = p.martianSrc()
	return c, nil
}

// openListener binds a UDP socket to dB:4791 on D. If the port is taken (an rxe device
// listens on it), the udp layer counts on D's rx counter alone.
func (p *prober) openListener() {
	err := p.env.Do(func() error {
		fd, err := unix.Socket(kernel.FamilyOf(p.dst.addr), unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		if err := unix.BindToDevice(fd, p.dst.nic); err != nil {
			unix.Close(fd)
			return err
		}
		if err := unix.Bind(fd, probeSockaddr(p.dst.addr, probePort)); err != nil {
			unix.Close(fd)
			return err
		}
		p.listener = fd
		return nil
	})
	if err != nil {
		p.listenerNote = fmt.Sprintf("no listener on %s:%d (%v): counting on %s's rx counter", p.dst.addr, probePort, err, p.dst.nic)
	}
}

// drain reads every queued datagram and returns how many came from sA with the current nonce.
func (p *prober) drain() int {
	if p.listener < 0 {
		return 0
	}
	buf := make([]byte, 64)
	want := probePayload(p.nonce)
	n := 0
	for {
		m, from, err := unix.Recvfrom(p.listener, buf, unix.MSG_DONTWAIT)
		if err != nil {
			return n
		}
		if m == len(want) && string(buf[:m]) == string(want) && probeSockaddrIP(from).Equal(p.src.addr) {
			n++
		}
	}
}

// probePayload is the probe's datagram, built so that an rxe device owning UDP 4791 drops it
// without harm. rxe_rcv (Debian's 6.1.0-57 and 6.12.95 alike; read in their rdma_rxe.ko) drops
// a datagram shorter than a BTH (12 bytes), or one to an address that is not a RoCE v2 GID of
// the device, *before* it clears pkt->qp, and its drop path calls rxe_put(pkt->qp) on whatever
// skb->cb holds there. Over IPv4 that is zero; over IPv6 it is inet6_skb_parm's
// srcrt/dst1/lastopt/nhoff (nhoff = 6), so the kernel dereferences 0x0006000000000000+0x128:
// `RIP: __rxe_put+0xb [rdma_rxe]`, "Fatal exception in interrupt" — the guest panic the 8-byte
// probe caused. This datagram is 15 bytes: a BTH, so the first drop is not taken (the second
// is avoided by rxeSafe), with the opcode of a UD SEND-only, whose headers and ICRC need 24
// bytes, so rxe drops it at its header-length check, after pkt->qp = NULL, touching no QP and
// counting nothing. 15 is also below 16 (BTH + ICRC), the shortest RoCE packet there is. The
// PSN field carries the nonce; "rcb" marks it as the probe's.
func probePayload(nonce [3]byte) []byte {
	bth := []byte{
		probeOpcode, 0, 0xff, 0xff, // opcode, SE/M/pad/tver, P_Key (default)
		0, 0, 0, 0, // reserved, destination QP 0
		0, nonce[0], nonce[1], nonce[2], // A/reserved, PSN
	}
	return append(bth, "rcb"...)
}

// probeOpcode is IB_OPCODE_UD_SEND_ONLY: BTH + DETH (20 bytes) + ICRC, more than the probe sends.
const probeOpcode = 0x64

// send sends count datagrams from sA to dB:port. strict pins them to S (SO_BINDTODEVICE), which
// the neighbour layer wants: resolve dB across the cable whatever the routing says. Otherwise
// an IPv6 datagram only names S as a hint (IPV6_UNICAST_IF), the way rxe looks its route up —
// so it takes the path RoCE takes, through lo when the lab has no fix. (IPv4 honours the
// output interface either way, for rxe too.)
func (p *prober) send(count, port int, strict bool) (int, error) {
	sent := 0
	err := p.env.Do(func() error {
		fd, err := unix.Socket(kernel.FamilyOf(p.src.addr), unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open udp socket: %w", err)
		}
		defer unix.Close(fd)
		if strict || !p.src.v6() {
			if err := unix.BindToDevice(fd, p.src.nic); err != nil {
				return fmt.Errorf("bind udp socket to %s: %w", p.src.nic, err)
			}
		} else if err := setUnicastIf(fd, p.src.link.Attrs().Index); err != nil {
			return fmt.Errorf("set IPV6_UNICAST_IF %s on udp socket: %w", p.src.nic, err)
		}
		if err := unix.Bind(fd, probeSockaddr(p.src.addr, 0)); err != nil {
			return fmt.Errorf("bind udp socket to %s: %w", p.src.addr, err)
		}
		to := probeSockaddr(p.dst.addr, port)
		for range count {
			if err := unix.Sendto(fd, probePayload(p.nonce), 0, to); err != nil {
				return fmt.Errorf("send udp %s -> %s:%d on %s: %w", p.src.addr, p.dst.addr, port, p.src.nic, err)
			}
			sent++
		}
		return nil
	})
	return sent, err
}

// setUnicastIf sets IPV6_UNICAST_IF, which takes the interface index in network byte order.
func setUnicastIf(fd, index int) error {
	var be [4]byte
	binary.BigEndian.PutUint32(be[:], uint32(index))
	return unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_UNICAST_IF, int(int32(binary.NativeEndian.Uint32(be[:]))))
}

// rxeSafe returns why the probe must not send to dB:4791, or "". It matters for IPv6 only
// (see probePayload): a datagram to an address that is not a RoCE v2 GID of the rxe device
// on D would take rxe's early drop and crash kernels up to at least 6.12. So each rxe device
// whose parent is D must have dB as a RoCE v2 GID on port 1; a GID follows its address by a
// kernel work item, so a missing one gets gidWait to appear.
func (p *prober) rxeSafe(ctx context.Context) string {
	if !p.dst.v6() || p.env == nil {
		return ""
	}
	sys := rdma.Sysfs{Root: p.env.SysfsRoot}
	devs, err := sys.Devices()
	if err != nil {
		return "" // no RDMA at all: nothing listens on 4791 but the probe
	}
	want := p.dst.ip()
	for _, dev := range devs {
		parent, err := os.ReadFile(filepath.Join(p.env.SysfsRoot, "class/infiniband", dev, "parent"))
		if err != nil || strings.TrimSpace(string(parent)) != p.dst.nic {
			continue
		}
		var gerr error
		for deadline := time.Now().Add(gidWait); ; {
			if _, gerr = sys.FindGID(dev, lab.RDMAPort, want); gerr == nil || time.Now().After(deadline) || ctx.Err() != nil {
				break
			}
			time.Sleep(probePoll)
		}
		if gerr != nil {
			return fmt.Sprintf("rxe device %s on %s has no RoCE v2 GID for %s (%v): rxe would drop the datagram on a path that crashes Linux up to at least 6.12 for IPv6, so the probe sends none to port %d",
				dev, p.dst.nic, want, gerr, probePort)
		}
	}
	return ""
}

// gidWait bounds the wait for an rxe device's GID of dB.
const gidWait = 2 * time.Second

// martianSrc sums the in_martian_src column of /proc/net/stat/rt_cache over all CPUs.
func (p *prober) martianSrc() (uint64, error) {
	var v uint64
	err := p.env.Do(func() error {
		var err error
		v, err = kernel.ReadStatColumn(kernel.ProcRTCache, "in_martian_src")
		return err
	})
	return v, err
}

func (p *prober) martianDelta(before uint64, berr error) (uint64, error) {
	if berr != nil {
		return 0, berr
	}
	now, err := p.martianSrc()
	if err != nil {
		return 0, err
	}
	return now - before, nil
}

// sourceSysctls reads what source validation on D depends on: accept_local is on if "all"
// or D's is (the kernel ORs them), rp_filter is the larger of "all" and D's. -1 when unreadable.
func (p *prober) sourceSysctls() (acceptLocal, rpFilter int, ev map[string]string) {
	ev = map[string]string{}
	get := func(dev, name string) int {
		key := "net.ipv4.conf." + dev + "." + name
		v, err := p.env.GetSysctl(key)
		if err != nil {
			ev[key] = "unreadable: " + err.Error()
			return -1
		}
		ev[key] = v
		return kernel.ParseSysctlInt(strings.TrimSpace(v))
	}
	acceptLocal = kernel.EffectiveAcceptLocal(get("all", "accept_local"), get(p.dst.nic, "accept_local"))
	rpFilter = kernel.EffectiveRPFilter(get("all", "rp_filter"), get(p.dst.nic, "rp_filter"))
	return acceptLocal, rpFilter, ev
}

func (p *prober) linkName(index int) string {
	if l, err := p.env.NL.LinkByIndex(index); err == nil {
		return l.Attrs().Name
	}
	return "ifindex " + strconv.Itoa(index)
}

func (p *prober) backDev(r *netlink.Route) string {
	if r == nil {
		return "?"
	}
	return p.linkName(r.LinkIndex)
}

// routeString renders a route like `ip route get` does.
func (p *prober) routeString(r netlink.Route) string {
	var b strings.Builder
	b.WriteString(kernel.RouteTypeName(r.Type))
	if r.Dst != nil {
		b.WriteString(" " + r.Dst.String())
	}
	if r.Gw != nil {
		b.WriteString(" via " + r.Gw.String())
	}
	if r.LinkIndex > 0 {
		b.WriteString(" dev " + p.linkName(r.LinkIndex))
	}
	if r.Src != nil {
		b.WriteString(" src " + r.Src.String())
	}
	if r.Table > 0 {
		b.WriteString(" table " + kernel.TableName(r.Table))
	}
	return b.String()
}

func probeSockaddr(ip net.IP, port int) unix.Sockaddr {
	if v4 := ip.To4(); v4 != nil {
		sa := &unix.SockaddrInet4{Port: port}
		copy(sa.Addr[:], v4)
		return sa
	}
	sa := &unix.SockaddrInet6{Port: port}
	copy(sa.Addr[:], ip.To16())
	return sa
}

func probeSockaddrIP(sa unix.Sockaddr) net.IP {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return net.IP(a.Addr[:])
	case *unix.SockaddrInet6:
		return net.IP(a.Addr[:])
	}
	return nil
}

func probeSleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
