package kernel

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestUnsettled(t *testing.T) {
	v4 := netip.MustParseAddr("10.10.0.1")
	ll := netip.MustParseAddr("fe80::1")
	up := SettleLink{Name: "vA", Index: 2, Up: true, LowerUp: true, Running: true, AutoLinkLocal: true}
	settled := SettleState{
		Links:       []SettleLink{{Name: "lo", Index: 1, Up: true, Running: true}, up},
		Addrs:       []SettleAddr{{LinkIndex: 2, Addr: v4}, {LinkIndex: 2, Addr: ll}},
		LocalRoutes: map[LocalRoute]bool{{2, v4}: true, {2, ll}: true},
	}
	assert.Empty(t, settled.Unsettled())

	for name, tc := range map[string]struct {
		change func(*SettleState)
		want   []string
	}{
		"linkwatch pending": {func(s *SettleState) { s.Links[1].Running = false },
			[]string{"vA: carrier is up but the operational state is not yet (linkwatch pending)"}},
		"no link-local yet": {func(s *SettleState) { s.Addrs = s.Addrs[:1] },
			[]string{"vA: running, but addrconf has not yet added its IPv6 link-local address"}},
		"DAD running": {func(s *SettleState) { s.Addrs[1].Tentative = true; delete(s.LocalRoutes, LocalRoute{2, ll}) },
			[]string{"vA: fe80::1 is tentative (duplicate address detection running)"}},
		"IPv6 local route missing": {func(s *SettleState) { delete(s.LocalRoutes, LocalRoute{2, ll}) },
			[]string{"vA: no `local fe80::1` route in table local yet"}},
		"IPv4 local route missing": {func(s *SettleState) { delete(s.LocalRoutes, LocalRoute{2, v4}) },
			[]string{"vA: no `local 10.10.0.1` route in table local yet"}},
	} {
		t.Run(name, func(t *testing.T) {
			s := settled
			s.Links = append([]SettleLink(nil), settled.Links...)
			s.Addrs = append([]SettleAddr(nil), settled.Addrs...)
			s.LocalRoutes = map[LocalRoute]bool{}
			for k, v := range settled.LocalRoutes {
				s.LocalRoutes[k] = v
			}
			tc.change(&s)
			assert.Equal(t, tc.want, s.Unsettled())
		})
	}

	// What the kernel leaves alone until something else happens is settled.
	for name, change := range map[string]func(*SettleState){
		"tentative on a link without carrier": func(s *SettleState) {
			s.Links[1].LowerUp, s.Links[1].Running = false, false
			s.Addrs[1].Tentative = true
			delete(s.LocalRoutes, LocalRoute{2, ll})
		},
		"tentative on a link that is down": func(s *SettleState) {
			s.Links[1] = SettleLink{Name: "vA", Index: 2, AutoLinkLocal: true}
			s.Addrs[1].Tentative = true
			delete(s.LocalRoutes, LocalRoute{2, ll})
		},
		"DAD failed": func(s *SettleState) {
			s.Addrs[1].Tentative, s.Addrs[1].DADFailed = true, true
			delete(s.LocalRoutes, LocalRoute{2, ll})
		},
		"no link-local where addrconf gives none": func(s *SettleState) {
			s.Links[1].AutoLinkLocal = false
			s.Addrs = s.Addrs[:1]
		},
	} {
		t.Run(name, func(t *testing.T) {
			s := settled
			s.Links = append([]SettleLink(nil), settled.Links...)
			s.Addrs = append([]SettleAddr(nil), settled.Addrs...)
			s.LocalRoutes = map[LocalRoute]bool{}
			for k, v := range settled.LocalRoutes {
				s.LocalRoutes[k] = v
			}
			change(&s)
			assert.Empty(t, s.Unsettled())
		})
	}
}
