package scenario

import (
	"net/netip"
	"strings"

	"github.com/rocebed/rocebed/sysctl"
)

// Defaults a scenario may leave out. Parse applies them before validation (SetDefaults), so
// the planner and the traffic runner never see a zero that means "default".
const (
	// DefaultLocalRulePriority is where the generated policy-routing fix moves the `local`
	// rule (from 0), below the per-endpoint `iif lo` rules.
	DefaultLocalRulePriority = 100
	// DefaultRulePriority is the first of the two per-endpoint rules (10 and 11).
	DefaultRulePriority = 10
	// DefaultTableA and DefaultTableB are the routing tables of endpoint a and b.
	DefaultTableA = 100
	DefaultTableB = 101

	// DefaultRCTimeout, DefaultRCRetryCount and DefaultRCRNRRetry give a bounded verdict on a
	// broken path: 4.096 µs × 2^12 ≈ 17 ms per try, 3 tries (measured ~58 ms to
	// IBV_WC_RETRY_EXC_ERR). The kernel-verbs default retry_cnt 7 retries forever on rxe.
	DefaultRCTimeout    = 12
	DefaultRCRetryCount = 2
	DefaultRCRNRRetry   = 7

	// MaxWindow is the most SENDs a batch keeps in flight.
	MaxWindow = 128
	// DefaultDeadlineMS bounds one traffic batch, connect included.
	DefaultDeadlineMS = 30000
)

// SetDefaults fills every field the scenario left at "default": the policy-routing knobs, the
// RC timers of RC traffic (each unset one individually), traffic deadlines, and each
// endpoint's address (its NIC's first IPv4 address, or first address if it has no IPv4 one).
// Parse calls it; call it on a scenario built in Go before Validate.
func (s *Scenario) SetDefaults() {
	for i := range s.Fixes {
		// Sysctl keys in their canonical form (net.ipv4.conf.eth0/100.x → net.ipv4.conf.eth0.100.x),
		// the one the planner and the journal use; a key that does not parse is left for Validate.
		for j, kv := range s.Fixes[i].Sysctls {
			if k, v, ok := strings.Cut(kv, "="); ok {
				if c, err := sysctl.Canonical(k); err == nil {
					s.Fixes[i].Sysctls[j] = c + "=" + v
				}
			}
		}
		if pr := s.Fixes[i].PolicyRouting; pr != nil {
			*pr = pr.WithDefaults()
		}
	}
	for i := range s.Traffic {
		t := &s.Traffic[i]
		if t.Transport == TransportRC {
			if t.RC == nil {
				t.RC = &RCParams{}
			}
			setIntDefault(&t.RC.Timeout, DefaultRCTimeout)
			setIntDefault(&t.RC.RetryCount, DefaultRCRetryCount)
			setIntDefault(&t.RC.RNRRetry, DefaultRCRNRRetry)
		}
		if t.DeadlineMS == 0 {
			t.DeadlineMS = DefaultDeadlineMS
		}
	}
	if s.TwoHost() {
		s.Endpoints.A.Host, s.Endpoints.B.Host = HostA, HostB
	}
	s.Endpoints.A.Address = s.endpointAddress("a", s.Endpoints.A)
	s.Endpoints.B.Address = s.endpointAddress("b", s.Endpoints.B)
}

func setIntDefault(p **int, v int) {
	if *p == nil {
		*p = &v
	}
}

// withDefaults returns p with each zero knob replaced by its default.
func (p PolicyRouting) WithDefaults() PolicyRouting {
	if p.LocalRulePriority == 0 {
		p.LocalRulePriority = DefaultLocalRulePriority
	}
	if p.RulePriority == 0 {
		p.RulePriority = DefaultRulePriority
	}
	if p.TableA == 0 {
		p.TableA = DefaultTableA
	}
	if p.TableB == 0 {
		p.TableB = DefaultTableB
	}
	return p
}

// EndpointAddr is the address an endpoint uses — its GID is derived from it: its own, or its
// NIC's first IPv4 address (first address if none is IPv4). ok is false when neither exists.
// Every layer that needs an endpoint's address asks here.
func (s *Scenario) EndpointAddr(ep Endpoint) (addr netip.Addr, ok bool) {
	if ep.Address != "" {
		if a, err := netip.ParseAddr(ep.Address); err == nil {
			return a, true
		}
		if p, err := netip.ParsePrefix(ep.Address); err == nil {
			return p.Addr(), true
		}
		return netip.Addr{}, false
	}
	nic, ok := s.EndpointNIC(ep)
	if !ok {
		return netip.Addr{}, false
	}
	return firstAddr(nic)
}

// firstAddr is a NIC's first declared IPv4 address, else its first address.
func firstAddr(nic *NIC) (netip.Addr, bool) {
	var first netip.Addr
	for _, a := range nic.Addresses {
		p, err := netip.ParsePrefix(a)
		if err != nil {
			continue
		}
		if p.Addr().Is4() {
			return p.Addr(), true
		}
		if !first.IsValid() {
			first = p.Addr()
		}
	}
	return first, first.IsValid()
}

// endpointAddress is EndpointAddr of endpoint side as text, "" when there is none; in a
// two-host lab the NIC is the one on the endpoint's own host.
func (s *Scenario) endpointAddress(side string, ep Endpoint) string {
	if ep.Address != "" {
		return ep.Address
	}
	nic, ok := s.nicOn(side, ep.NIC)
	if !ok {
		return ""
	}
	if a, ok := firstAddr(nic); ok {
		return a.String()
	}
	return ""
}
