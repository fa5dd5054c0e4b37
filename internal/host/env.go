// Package host is where a lab lives: one network namespace, reached through handles bound to
// it (NETLINK_ROUTE, NETLINK_RDMA, /proc/sys/net). Every package that reads or changes the
// lab's network goes through an Env, so tests can point it at a throwaway namespace.
package host

import (
	"errors"
	"fmt"

	"github.com/rocebed/rocebed/internal/nsutil"
	"github.com/rocebed/rocebed/internal/preflight"
	"github.com/rocebed/rocebed/sysctl"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Env is where a lab lives: one network namespace, with a netlink handle bound to it. It is
// "the host" for rocebed; tests point it at a throwaway namespace.
type Env struct {
	// NetnsName is the named namespace (/run/netns/NAME), or "" for the caller's own.
	NetnsName string
	// NS is the namespace handle; netns.None() for the caller's own namespace.
	NS netns.NsHandle
	// NL is a NETLINK_ROUTE handle bound to NS.
	NL *netlink.Handle
	// Sysctl reads and writes parameters; calls go through Do so they hit NS.
	Sysctl sysctl.Sysctl
	// SysfsRoot is where RDMA devices are read from ("/sys").
	SysfsRoot string

	rdma *netlink.Handle
}

// Open opens the environment for the named namespace, or the current one for "".
func Open(netnsName string) (*Env, error) {
	e := &Env{NetnsName: netnsName, NS: netns.None(), SysfsRoot: "/sys"}
	if netnsName != "" {
		h, err := netns.GetFromName(netnsName)
		if err != nil {
			return nil, fmt.Errorf("open netns %q: %w: create it with `ip netns add %s`, or use the current namespace", netnsName, err, netnsName)
		}
		e.NS = h
	}
	var err error
	if e.NS.IsOpen() {
		e.NL, err = netlink.NewHandleAt(e.NS)
	} else {
		e.NL, err = netlink.NewHandle()
	}
	if err != nil {
		e.Close()
		return nil, fmt.Errorf("open netlink in %s: %w", e, err)
	}
	return e, nil
}

// String names the namespace for messages.
func (e *Env) String() string {
	if e.NetnsName == "" {
		return "the current network namespace"
	}
	return fmt.Sprintf("netns %q", e.NetnsName)
}

// Do runs fn inside the environment's namespace (for /proc/sys/net, /proc/net and sockets).
func (e *Env) Do(fn func() error) error { return nsutil.Do(e.NS, fn) }

// NetlinkIn returns a NETLINK_ROUTE handle for the named namespace nsName, which the lab may
// name for a NIC that lives elsewhere ("" or the Env's own: NL itself), and its closer.
func (e *Env) NetlinkIn(nsName string) (*netlink.Handle, func(), error) {
	if nsName == "" || nsName == e.NetnsName {
		return e.NL, func() {}, nil
	}
	ns, err := netns.GetFromName(nsName)
	if err != nil {
		return nil, nil, fmt.Errorf("open netns %q: %w", nsName, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, nil, fmt.Errorf("open netlink in netns %q: %w", nsName, err)
	}
	return h, h.Close, nil
}

// DoIn runs fn in the named namespace nsName, or in the Env's own for "".
func (e *Env) DoIn(nsName string, fn func() error) error {
	if nsName == "" || nsName == e.NetnsName {
		return e.Do(fn)
	}
	ns, err := netns.GetFromName(nsName)
	if err != nil {
		return fmt.Errorf("open netns %q: %w", nsName, err)
	}
	defer ns.Close()
	return nsutil.Do(ns, fn)
}

// RDMA returns a NETLINK_RDMA handle bound to the namespace. It is separate from NL because a
// kernel without an RDMA core refuses the whole handle (EPROTONOSUPPORT).
func (e *Env) RDMA() (*netlink.Handle, error) {
	if e.rdma != nil {
		return e.rdma, nil
	}
	var h *netlink.Handle
	var err error
	if e.NS.IsOpen() {
		h, err = netlink.NewHandleAt(e.NS, unix.NETLINK_RDMA)
	} else {
		h, err = netlink.NewHandle(unix.NETLINK_RDMA)
	}
	if err != nil {
		if errors.Is(err, unix.EPROTONOSUPPORT) {
			return nil, &preflight.Error{Check: "rdma", Need: "a kernel with the RDMA core (NETLINK_RDMA)", Have: "none", Err: err,
				Hint: "use a kernel with RDMA support and `modprobe rdma_rxe`, or, on a kernel without it, use `rocebed vm run`"}
		}
		return nil, fmt.Errorf("open rdma netlink in %s: %w", e, err)
	}
	e.rdma = h
	return h, nil
}

// GetSysctl reads a parameter inside the namespace.
func (e *Env) GetSysctl(key string) (v string, err error) {
	err = e.Do(func() error { v, err = e.Sysctl.Get(key); return err })
	return v, err
}

// SetSysctl writes a parameter inside the namespace.
func (e *Env) SetSysctl(key, value string) error {
	return e.Do(func() error { return e.Sysctl.Set(key, value) })
}

// Close releases the handles. It is safe to call more than once.
func (e *Env) Close() {
	if e.rdma != nil {
		e.rdma.Close()
		e.rdma = nil
	}
	if e.NL != nil {
		e.NL.Close()
		e.NL = nil
	}
	if e.NS.IsOpen() {
		e.NS.Close()
		e.NS = netns.None()
	}
}
