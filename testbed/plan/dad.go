package plan

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/rocebed/rocebed/internal/host"
	"github.com/rocebed/rocebed/internal/kernel"
)

// DADWait waits until duplicate address detection (DAD) of an existing NIC's IPv6 addresses is
// over — the lab's own and the link-local one the kernel gives the link when it comes up.
// Until then an address is tentative: the kernel sends nothing from it and refuses it as a
// route's source (`ip route add … src ADDR`: "Invalid source address"), and while the
// link-local address is tentative, neighbour discovery that no packet triggered — the RDMA
// core's, when an RC QP goes to RTR — sends no solicitation at all (ndisc_send_ns wants a
// usable link-local source), so the connection times out. It changes nothing; undo has
// nothing to do. The veths rocebed creates skip DAD instead (Addr.NoDAD, accept_dad=0).
type DADWait struct {
	Link string `json:"link"`
	// TimeoutMS bounds the wait (DADTimeout).
	TimeoutMS int `json:"timeout_ms"`
}

func (*DADWait) Kind() Kind               { return KindDAD }
func (*DADWait) Transition() string       { return "" }
func (*DADWait) Prepare(*host.Env) error  { return nil }
func (*DADWait) UndoCommand() string      { return "(nothing to undo)" }
func (*DADWait) Undo(env *host.Env) error { return nil }

func (c *DADWait) Check() error {
	if err := checkIfName(c.Link); err != nil {
		return err
	}
	if c.TimeoutMS <= 0 || c.TimeoutMS > 10*60*1000 {
		return fmt.Errorf("timeout_ms %d: want 1 to 600000", c.TimeoutMS)
	}
	return nil
}

func (c *DADWait) Command() string {
	return fmt.Sprintf("timeout %d sh -c %s",
		(c.TimeoutMS+999)/1000, Quote("while ip -6 addr show dev "+Quote(c.Link)+" tentative | grep -q inet6; do sleep 0.05; done"))
}

// dadFallback is how long Apply waits for an address or link notification before it looks
// again anyway (it looks at once on each: kernel.ChangeWatch).
const dadFallback = 250 * time.Millisecond

func (c *DADWait) Apply(env *host.Env) error {
	deadline := time.Now().Add(time.Duration(c.TimeoutMS) * time.Millisecond)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	watch, _ := kernel.WatchChanges(env.NS) // nil when the subscription fails: Wait then polls every 20 ms
	defer watch.Close()
	for {
		st, err := kernel.ReadSettleState(env.NL, env.NS)
		if err != nil {
			return err
		}
		idx := -1
		for _, l := range st.Links {
			if l.Name == c.Link {
				idx = l.Index
			}
		}
		if idx < 0 {
			return fmt.Errorf("look up %s: no such interface", c.Link)
		}
		// Pending: linkwatch not done, the link-local address not added yet, an address
		// tentative, or its local route missing (kernel.SettleState.Unsettled) — and a
		// tentative address on a link without carrier, where DAD cannot even start.
		var pending []string
		for _, line := range st.Unsettled() {
			if rest, ok := strings.CutPrefix(line, c.Link+": "); ok {
				pending = append(pending, rest)
			}
		}
		for _, a := range st.Addrs {
			if a.LinkIndex != idx || !a.Addr.Is6() {
				continue
			}
			if a.DADFailed {
				return fmt.Errorf("address %s on %s failed duplicate address detection: %w: another node on %s's link answers for it; choose another address in the scenario (for a link-local address: another NIC on the link has the same MAC)",
					a.Addr, c.Link, ErrDADFailed, c.Link)
			}
			if a.Tentative && len(pending) == 0 {
				pending = append(pending, a.Addr.String()+" is tentative and the link has no carrier, so DAD cannot run")
			}
		}
		if len(pending) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s: %s: %w: DAD runs only on a link that is up with carrier (`ip link show %s`); check the cable, or set net.ipv6.conf.%s.accept_dad=0 if the link needs no DAD",
				c.Link, time.Duration(c.TimeoutMS)*time.Millisecond, strings.Join(pending, "; "), ErrDADTimeout, c.Link, strings.ReplaceAll(c.Link, ".", "/"))
		}
		watch.Wait(ctx, dadFallback)
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
