package lab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"time"

	"github.com/rocebed/rocebed/internal/host"
	"github.com/rocebed/rocebed/internal/kernel"
	"github.com/rocebed/rocebed/rdma"
	"github.com/rocebed/rocebed/testbed/scenario"
	"github.com/vishvananda/netlink"
)

// EndpointDevice names the RDMA device of an endpoint: its rxe link, its named device, or for
// `device: auto` the device bound to its NIC (looked up in the NIC's namespace).
func EndpointDevice(env *host.Env, s *scenario.Scenario, ep scenario.Endpoint) (string, error) {
	switch {
	case ep.RXE != "":
		return ep.RXE, nil
	case ep.Device != "" && ep.Device != "auto":
		return ep.Device, nil
	}
	nsName := ""
	if nic, ok := s.NIC(ep.NIC); ok {
		nsName = nic.Netns
	}
	var dev string
	err := env.DoIn(nsName, func() error {
		var err error
		dev, err = rdma.HostDeviceForNetdev(ep.NIC)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("endpoint on %s (device: auto): %w", ep.NIC, err)
	}
	return dev, nil
}

// Endpoint is what a lab that is up has at one end: the NIC, the RDMA device on it, the
// address its GID comes from, and that RoCE v2 GID. The traffic engine, the probe, `rocebed
// env` and testbed.Lab all learn the endpoints here.
type Endpoint struct {
	Side   string // "a" or "b"
	NIC    string
	Netns  string // the NIC's named namespace; "" when it is the lab's own
	Device string // the RDMA device
	Addr   netip.Addr
	GID    rdma.GID // the RoCE v2 GID of Addr on port RDMAPort
}

// RDMAPort is the RDMA port rocebed uses: rxe devices have one, port 1.
const RDMAPort = 1

// EndpointAddr is the address an endpoint's GID comes from: the scenario's (its own, or its
// NIC's declared addresses, see scenario.EndpointAddr), else the first address the kernel has
// on the NIC (IPv4 first) — an existing NIC the scenario gives no address.
func EndpointAddr(env *host.Env, s *scenario.Scenario, ep scenario.Endpoint) (netip.Addr, error) {
	return EndpointAddrIn(env, s, ep, "")
}

// EndpointAddrIn is EndpointAddr in family f ("" for the endpoint's own): the scenario's
// address of that family (scenario.EndpointAddrIn), else the first one the kernel has on the
// NIC, link-local addresses left out.
func EndpointAddrIn(env *host.Env, s *scenario.Scenario, ep scenario.Endpoint, f scenario.Family) (netip.Addr, error) {
	if a, ok := s.EndpointAddrIn(ep, f); ok {
		return a.Unmap(), nil
	}
	if ep.Address != "" && f == "" {
		return netip.Addr{}, fmt.Errorf("endpoint on %s: address %q is not an IP address", ep.NIC, ep.Address)
	}
	nsName := ""
	if nic, ok := s.NIC(ep.NIC); ok {
		nsName = nic.Netns
	}
	h, done, err := env.NetlinkIn(nsName)
	if err != nil {
		return netip.Addr{}, err
	}
	defer done()
	l, err := h.LinkByName(ep.NIC)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("endpoint on %s: %w", ep.NIC, err)
	}
	fams := []int{netlink.FAMILY_V4, netlink.FAMILY_V6}
	switch f {
	case scenario.FamilyIPv4:
		fams = fams[:1]
	case scenario.FamilyIPv6:
		fams = fams[1:]
	}
	for _, fam := range fams {
		addrs, err := kernel.Dump(func() ([]netlink.Addr, error) { return h.AddrList(l, fam) })
		if err != nil {
			return netip.Addr{}, fmt.Errorf("addresses of %s: %w", ep.NIC, err)
		}
		for _, a := range addrs {
			if ip, ok := netip.AddrFromSlice(a.IP); ok && !ip.IsLinkLocalUnicast() {
				return ip.Unmap(), nil
			}
		}
	}
	if f != "" {
		return netip.Addr{}, fmt.Errorf("endpoint on %s: no %s address: add one to the NIC's addresses", ep.NIC, f)
	}
	return netip.Addr{}, fmt.Errorf("endpoint on %s: no address: set endpoints.*.address, or give the NIC an address", ep.NIC)
}

// EndpointError says an endpoint of a lab is not ready to carry RDMA traffic.
type EndpointError struct {
	Side, NIC string
	Err       error
}

func (e *EndpointError) Error() string {
	return fmt.Sprintf("endpoint %s on %s: %v", e.Side, e.NIC, e.Err)
}

func (e *EndpointError) Unwrap() error { return e.Err }

// ResolveEndpoints finds both endpoints of a lab that is up, waiting until ctx ends for each
// port to be ACTIVE and its RoCE v2 GID to appear (both follow `up` by a moment: the port
// follows the netdev's carrier, the GID is added by a kernel work item). A two-host lab has
// one endpoint here: ResolveLocalEndpoints finds it.
func ResolveEndpoints(ctx context.Context, env *host.Env, s *scenario.Scenario) ([2]Endpoint, error) {
	return ResolveEndpointsIn(ctx, env, s, "")
}

// ResolveEndpointsIn is ResolveEndpoints in family f: each endpoint's address of that family
// (EndpointAddrIn) and its RoCE v2 GID. f "" is the endpoints' own family.
func ResolveEndpointsIn(ctx context.Context, env *host.Env, s *scenario.Scenario, f scenario.Family) ([2]Endpoint, error) {
	var ends [2]Endpoint
	if s.TwoHost() {
		return ends, fmt.Errorf("lab %s spans two hosts: this host has endpoint %s only, the other is on host %s", s.Name, s.Host, s.Host.Other())
	}
	local, err := ResolveLocalEndpointsIn(ctx, env, s, f)
	if err != nil {
		return ends, err
	}
	copy(ends[:], local)
	return ends, nil
}

// ResolveLocalEndpoints finds the endpoints this host has (scenario.LocalEndpoints): both of a
// one-host lab, one of a two-host lab, as ResolveEndpoints does.
func ResolveLocalEndpoints(ctx context.Context, env *host.Env, s *scenario.Scenario) ([]Endpoint, error) {
	return ResolveLocalEndpointsIn(ctx, env, s, "")
}

// ResolveLocalEndpointsIn is ResolveLocalEndpoints in family f, as ResolveEndpointsIn.
func ResolveLocalEndpointsIn(ctx context.Context, env *host.Env, s *scenario.Scenario, f scenario.Family) ([]Endpoint, error) {
	var ends []Endpoint
	for _, ep := range s.LocalEndpoints() {
		e, err := resolveEndpoint(ctx, env, s, ep.Side, ep.Endpoint, f)
		if err != nil {
			return nil, err
		}
		ends = append(ends, e)
	}
	return ends, nil
}

func resolveEndpoint(ctx context.Context, env *host.Env, s *scenario.Scenario, side string, ep scenario.Endpoint, f scenario.Family) (Endpoint, error) {
	sys := rdma.Sysfs{Root: env.SysfsRoot}
	e := Endpoint{Side: side, NIC: ep.NIC}
	if nic, ok := s.NIC(ep.NIC); ok {
		e.Netns = nic.Netns
	}
	fail := func(err error) (Endpoint, error) {
		return Endpoint{}, &EndpointError{Side: e.Side, NIC: ep.NIC, Err: err}
	}
	var err error
	if e.Addr, err = EndpointAddrIn(env, s, ep, f); err != nil {
		return fail(err)
	}
	if e.Device, err = EndpointDevice(env, s, ep); err != nil {
		return fail(err)
	}
	if err := sys.WaitActive(ctx, e.Device, RDMAPort); err != nil {
		return fail(err)
	}
	for {
		e.GID, err = sys.FindGID(e.Device, RDMAPort, e.Addr)
		if err == nil || !errors.Is(err, rdma.ErrNotFound) {
			break
		}
		select {
		case <-ctx.Done():
			return fail(err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	if err != nil {
		return fail(err)
	}
	return e, nil
}

// EnvVars describes a lab that is up to a command run on it, as environment variables:
// ROCEBED_LAB, and per endpoint X (A, B) ROCEBED_X_DEVICE, ROCEBED_X_NIC, ROCEBED_X_ADDR and
// ROCEBED_X_GID_INDEX — what a client needs for `-d DEV -x GID`, `-I ADDR` and the like.
func EnvVars(labName string, ends [2]Endpoint) []string {
	vars := []string{"ROCEBED_LAB=" + labName}
	for i, e := range ends {
		x := "ROCEBED_" + string(rune('A'+i)) + "_"
		vars = append(vars,
			x+"DEVICE="+e.Device,
			x+"NIC="+e.NIC,
			x+"ADDR="+e.Addr.String(),
			x+"GID_INDEX="+strconv.Itoa(e.GID.Index),
		)
	}
	return vars
}
