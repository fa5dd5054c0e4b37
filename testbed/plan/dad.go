package plan

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/rocebed/rocebed/internal/host"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// DADWait waits until duplicate address detection (DAD) of an IPv6 address on an existing NIC
// is over. Until then the address is tentative: the kernel sends nothing from it and refuses
// it as a route's source (`ip route add … src ADDR`: "Invalid source address"), so the lab's
// routes and traffic must wait. It changes nothing; undo has nothing to do. The veths rocebed
// creates get their addresses with nodad instead (Addr.NoDAD).
type DADWait struct {
	Link string `json:"link"`
	Addr string `json:"addr"` // CIDR
	// TimeoutMS bounds the wait (DADTimeout).
	TimeoutMS int `json:"timeout_ms"`
}

func (*DADWait) Kind() Kind               { return KindDAD }
func (*DADWait) Transition() string       { return "" }
func (*DADWait) Prepare(*host.Env) error  { return nil }
func (*DADWait) UndoCommand() string      { return "(nothing to undo)" }
func (*DADWait) Undo(env *host.Env) error { return nil }

func (c *DADWait) Command() string {
	return fmt.Sprintf("timeout %d sh -c 'while ip -6 addr show dev %s tentative | grep -q \"inet6 %s \"; do sleep 0.05; done'",
		(c.TimeoutMS+999)/1000, c.Link, c.Addr)
}

// dadPoll is how often Apply looks at the address again.
const dadPoll = 20 * time.Millisecond

func (c *DADWait) Apply(env *host.Env) error {
	want, err := netip.ParsePrefix(c.Addr)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(time.Duration(c.TimeoutMS) * time.Millisecond)
	for {
		l, err := env.NL.LinkByName(c.Link)
		if err != nil {
			return fmt.Errorf("look up %s: %w", c.Link, err)
		}
		addrs, err := env.NL.AddrList(l, netlink.FAMILY_V6)
		if err != nil {
			return fmt.Errorf("list addresses of %s: %w", c.Link, err)
		}
		var found *netlink.Addr
		for i := range addrs {
			if p, ok := ipNetToPrefix(addrs[i].IPNet); ok && p == want {
				found = &addrs[i]
			}
		}
		switch {
		case found == nil:
			return fmt.Errorf("address %s is not on %s: something removed it while the lab came up", c.Addr, c.Link)
		case found.Flags&unix.IFA_F_DADFAILED != 0:
			return fmt.Errorf("address %s on %s failed duplicate address detection: %w: another node on %s's link answers for it; choose another address in the scenario",
				c.Addr, c.Link, ErrDADFailed, c.Link)
		case found.Flags&unix.IFA_F_TENTATIVE == 0:
			return nil
		case time.Now().After(deadline):
			return fmt.Errorf("address %s on %s is still tentative after %s: %w: DAD runs only on a link that is up with carrier (`ip link show %s`); check the cable, or set net.ipv6.conf.%s.accept_dad=0 if the link needs no DAD",
				c.Addr, c.Link, time.Duration(c.TimeoutMS)*time.Millisecond, ErrDADTimeout, c.Link, strings.ReplaceAll(c.Link, ".", "/"))
		}
		time.Sleep(dadPoll)
	}
}

var (
	// ErrDADFailed: duplicate address detection found the address in use on the link.
	ErrDADFailed = errors.New("duplicate address")
	// ErrDADTimeout: duplicate address detection did not finish in time.
	ErrDADTimeout = errors.New("duplicate address detection did not finish")
)

// DADTimeout bounds the wait for DAD on a NIC from its sysctls: DAD starts after a random delay
// of up to router_solicitation_delay seconds and sends dad_transmits probes retrans_time_ms
// apart, so it takes at most their sum; three times that plus 2 s leaves room for a loaded
// host, and 5 s is the least. Values that cannot be read take the kernel's defaults (1 s, 1,
// 1000 ms).
func DADTimeout(h HostView, link string) time.Duration {
	get := func(key string, def int) int {
		v, err := h.Sysctl(key)
		if err != nil {
			return def
		}
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 0 {
			return def
		}
		return n
	}
	ifc := strings.ReplaceAll(link, ".", "/")
	delay := time.Duration(get("net.ipv6.conf."+ifc+".router_solicitation_delay", 1)) * time.Second
	probes := get("net.ipv6.conf."+ifc+".dad_transmits", 1)
	retrans := time.Duration(get("net.ipv6.neigh."+ifc+".retrans_time_ms", 1000)) * time.Millisecond
	return max(3*(delay+time.Duration(probes)*retrans)+2*time.Second, 5*time.Second)
}
