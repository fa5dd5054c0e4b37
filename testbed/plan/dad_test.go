package plan

import (
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rocebed/rocebed/testbed/scenario"
	"github.com/stretchr/testify/assert"
)

// sysctlView is a HostView with sysctls only.
type sysctlView struct {
	HostView
	vals map[string]string
}

func (v sysctlView) Sysctl(key string) (string, error) {
	if x, ok := v.vals[key]; ok {
		return x, nil
	}
	return "", fmt.Errorf("sysctl %s: %w", key, os.ErrNotExist)
}

func TestDADTimeout(t *testing.T) {
	// Kernel defaults (or unreadable): 1 s delay + 1 probe × 1 s → 3 × 2 s + 2 s.
	assert.Equal(t, 8*time.Second, DADTimeout(sysctlView{}, "eth1"))
	slow := sysctlView{vals: map[string]string{
		"net.ipv6.conf.eth1/10.router_solicitation_delay": "2",
		"net.ipv6.conf.eth1/10.dad_transmits":             "3",
		"net.ipv6.neigh.eth1/10.retrans_time_ms":          "2000",
	}}
	assert.Equal(t, 3*(2+3*2)*time.Second+2*time.Second, DADTimeout(slow, "eth1.10"))
	fast := sysctlView{vals: map[string]string{
		"net.ipv6.conf.eth1.router_solicitation_delay": "0",
		"net.ipv6.conf.eth1.dad_transmits":             "1",
		"net.ipv6.neigh.eth1.retrans_time_ms":          "100",
	}}
	assert.Equal(t, 5*time.Second, DADTimeout(fast, "eth1"), "at least 5 s")
}

func TestAddrAndDADCommands(t *testing.T) {
	assert.Equal(t, "ip addr add fd00::1/64 dev vA nodad", (&Addr{Link: "vA", Addr: "fd00::1/64", NoDAD: true}).Command())
	assert.Equal(t, "ip -6 addr flush dev vA to fd00::1/128", (&Addr{Link: "vA", Addr: "fd00::1/64"}).UndoCommand())
	assert.Equal(t, "ip addr add 10.10.0.1/24 brd + dev vA", (&Addr{Link: "vA", Addr: "10.10.0.1/24"}).Command())
	assert.Equal(t, "ip addr del 10.10.0.1/24 dev vA", (&Addr{Link: "vA", Addr: "10.10.0.1/24"}).UndoCommand())
	w := &DADWait{Link: "eth1", TimeoutMS: 7500}
	assert.Equal(t, `timeout 8 sh -c 'while ip -6 addr show dev eth1 tentative | grep -q inet6; do sleep 0.05; done'`, w.Command())
	assert.True(t, strings.HasPrefix(w.UndoCommand(), "("), "a wait has nothing to undo")
}

// TestPolicyRoutingChanges6 pins the IPv6 rules: no source on the unbound rules (IPv6 rules
// with a source never match a lookup without one), and the oif rules rdma_cm's check needs.
func TestPolicyRoutingChanges6(t *testing.T) {
	var got []string
	for _, c := range PolicyRoutingChanges(netip.MustParseAddr("fd00::1"), netip.MustParseAddr("fd00::2"), "vA", "vB", scenario.PolicyRouting{}) {
		got = append(got, c.Command())
	}
	assert.Equal(t, []string{
		"ip -6 rule add pref 100 lookup local",
		"ip -6 rule del pref 0 lookup local",
		"ip route add fd00::2/128 dev vA src fd00::1 table 100",
		"ip -6 rule add pref 10 iif lo from fd00::1/128 to fd00::2/128 lookup 100",
		"ip route add fd00::1/128 dev vB src fd00::2 table 101",
		"ip -6 rule add pref 11 iif lo from fd00::2/128 to fd00::1/128 lookup 101",
		"ip -6 rule add pref 12 iif lo to fd00::2/128 lookup 100",
		"ip -6 rule add pref 13 iif lo to fd00::1/128 lookup 101",
		"ip -6 rule add pref 14 oif vA from fd00::1/128 to fd00::2/128 lookup 100",
		"ip -6 rule add pref 15 oif vB from fd00::2/128 to fd00::1/128 lookup 101",
	}, got)
	assert.Len(t, got, 4+scenario.PolicyRoutingRulesIPv6)
	v4 := PolicyRoutingChanges(netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), "vA", "vB", scenario.PolicyRouting{})
	assert.Len(t, v4, 4+scenario.PolicyRoutingRules)
}
