package diagnose

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"github.com/rocebed/rocebed/internal/kernel"
	"github.com/rocebed/rocebed/testbed/scenario"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// The path evidence of each direction: the sending NIC's neighbour entry for the peer, and
// how the kernel routes the packets out, in, and back for the source check.

// collectDirections asks the kernel, for a->b and b->a in each family both endpoints have an
// address in, for the neighbour entry and the output, input and reverse routes (`ip neigh`,
// `ip route get ... oif|iif`, `ip route get fibmatch`), and adds the probe's first failing
// layer of that direction.
func (c *collector) collectDirections() {
	fams := c.s.Families()
	if len(fams) == 0 {
		fams = []scenario.Family{""}
	}
	for _, f := range fams {
		addr := func(ep scenario.Endpoint) string {
			if a, ok := c.s.EndpointAddrIn(ep, f); ok {
				return a.String()
			}
			return ep.Address
		}
		for _, d := range []struct {
			name     scenario.Direction
			src, dst scenario.Endpoint
		}{{scenario.DirectionAToB, c.s.Endpoints.A, c.s.Endpoints.B}, {scenario.DirectionBToA, c.s.Endpoints.B, c.s.Endpoints.A}} {
			de := DirectionEvidence{Name: d.name, SrcNIC: d.src.NIC, DstNIC: d.dst.NIC, SrcAddr: addr(d.src), DstAddr: addr(d.dst)}
			if a, err := netip.ParseAddr(de.SrcAddr); err == nil {
				de.Family = scenario.FamilyOf(a)
			}
			if c.probe != nil {
				for _, pd := range c.probe.Directions {
					if pd.Name != string(d.name) || (pd.Family != "" && pd.Family != de.Family) {
						continue
					}
					if l := pd.FirstFailure(); l != nil {
						lc := *l
						de.Probe = &lc
					}
					de.ProbePassed = pd.Passed()
				}
			}
			c.direction(&de)
			c.ev.Directions = append(c.ev.Directions, de)
		}
	}
}

func (c *collector) direction(de *DirectionEvidence) {
	src, dst := net.ParseIP(de.SrcAddr), net.ParseIP(de.DstAddr)
	if src == nil || dst == nil {
		c.note("%s: endpoint addresses %q, %q are not IP addresses", de.Name, de.SrcAddr, de.DstAddr)
		return
	}
	sn, dn := c.nicEvidence(de.SrcNIC), c.nicEvidence(de.DstNIC)
	if dn != nil {
		de.Neighbor.PeerMAC = dn.MAC
	}
	de.Neighbor.State = NeighborState{Lookup: NeighborUnknown}
	de.RouteOut.Query = fmt.Sprintf("ip route get %s from %s oif %s", dst, src, de.SrcNIC)
	de.RouteIn.Query = fmt.Sprintf("ip route get %s from %s iif %s", dst, src, de.DstNIC)
	de.RouteBack.Query = fmt.Sprintf("ip route get fibmatch %s from %s", src, dst)
	if sn != nil && sn.Found {
		h, closeH, err := c.env.NetlinkIn(sn.Netns)
		if err == nil {
			if l, err := h.LinkByName(de.SrcNIC); err == nil {
				de.Neighbor = neighborOf(h, l, dst, de.Neighbor.PeerMAC)
				rs, err := h.RouteGetWithOptions(dst, &netlink.RouteGetOptions{SrcAddr: src, OifIndex: l.Attrs().Index})
				de.RouteOut = routeAnswer(h, de.RouteOut.Query, rs, err)
			}
			closeH()
		}
	}
	if dn != nil && dn.Found {
		h, closeH, err := c.env.NetlinkIn(dn.Netns)
		if err == nil {
			if l, err := h.LinkByName(de.DstNIC); err == nil {
				rs, err := h.RouteGetWithOptions(dst, &netlink.RouteGetOptions{SrcAddr: src, IifIndex: l.Attrs().Index})
				de.RouteIn = routeAnswer(h, de.RouteIn.Query, rs, err)
			}
			rs, err := h.RouteGetWithOptions(src, &netlink.RouteGetOptions{SrcAddr: dst, FIBMatch: true})
			de.RouteBack = routeAnswer(h, de.RouteBack.Query, rs, err)
			closeH()
		}
	}
}

func neighborOf(h *netlink.Handle, l netlink.Link, ip net.IP, peerMAC string) NeighborEvidence {
	n := NeighborEvidence{State: NeighborState{Lookup: NeighborAbsent}, PeerMAC: peerMAC}
	list, err := kernel.Dump(func() ([]netlink.Neigh, error) { return h.NeighList(l.Attrs().Index, kernel.FamilyOf(ip)) })
	if err != nil {
		n.State = NeighborState{Lookup: NeighborUnreadable, Err: err.Error()}
		return n
	}
	for _, x := range list {
		if x.IP.Equal(ip) {
			n.State = NeighborEntryState(x.State)
			if len(x.HardwareAddr) > 0 {
				n.LLAddr = x.HardwareAddr.String()
			}
		}
	}
	return n
}

func routeAnswer(h *netlink.Handle, query string, rs []netlink.Route, err error) RouteAnswer {
	a := RouteAnswer{Query: query}
	if err != nil {
		a.Error = err.Error()
		var en syscall.Errno
		if errors.As(err, &en) && unix.ErrnoName(en) != "" {
			a.Errno = Errno(en)
		}
		return a
	}
	if len(rs) == 0 {
		a.Error = "no route returned"
		return a
	}
	r := rs[0]
	a.Type = RouteType(r.Type)
	if r.LinkIndex > 0 {
		if l, err := h.LinkByIndex(r.LinkIndex); err == nil {
			a.Dev = l.Attrs().Name
		} else {
			a.Dev = fmt.Sprintf("ifindex %d", r.LinkIndex)
		}
	}
	if r.Src != nil {
		a.Src = r.Src.String()
	}
	if r.Table > 0 {
		a.Table = kernel.TableName(r.Table)
	}
	return a
}
