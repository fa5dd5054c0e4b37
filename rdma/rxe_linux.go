package rdma

import (
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strings"

	"github.com/rocebed/rocebed/internal/kernel"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// maxDevName is the longest RDMA device name the kernel takes (IB_DEVICE_NAME_MAX is 64 with
// the NUL).
const maxDevName = 63

func noRDMA(err error) error {
	return &MissingError{
		Check: "rdma",
		Need:  "a kernel with the RDMA core (the NETLINK_RDMA family of ib_core)",
		Have:  fmt.Sprintf("opening a NETLINK_RDMA socket fails (%v)", err),
		Hint:  "load it with `modprobe rdma_rxe` (which pulls in ib_core), or, on a kernel without RDMA, use `rocebed vm run`",
		Err:   fmt.Errorf("%w: %w", ErrNoRDMA, err),
	}
}

// mapNoRDMA turns "protocol not supported" on a NETLINK_RDMA socket into ErrNoRDMA.
func mapNoRDMA(err error) error {
	if errors.Is(err, unix.EPROTONOSUPPORT) {
		return noRDMA(err)
	}
	return err
}

// OpenHandle opens a netlink handle for the RDMA family in ns (netns.None(): the calling
// thread's namespace). Open it apart from the ROUTE handle: a handle made by plain
// NewHandleAt(ns) has no RDMA socket and would quietly open one in the calling thread's
// namespace instead of ns. On a kernel without RDMA it fails with ErrNoRDMA.
func OpenHandle(ns netns.NsHandle) (*netlink.Handle, error) {
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_RDMA)
	if err != nil {
		return nil, fmt.Errorf("open rdma netlink socket: %w", mapNoRDMA(err))
	}
	return h, nil
}

// handle makes nil mean "a fresh socket per call in the calling thread's namespace", as the
// package-level netlink functions do.
func handle(h *netlink.Handle) *netlink.Handle {
	if h == nil {
		return &netlink.Handle{}
	}
	return h
}

// Preflight checks that this kernel can host rxe devices: the RDMA netlink family exists and
// rdma_rxe is loaded. If rdma_rxe is not loaded and a modprobe exists, it runs the fixed
// command `modprobe rdma_rxe` once and checks again. Failures are *MissingError wrapping
// ErrNoRDMA or ErrNoRXE.
func Preflight() error {
	return preflight(Sysfs{}, modprobeRXE, probeNetlinkRDMA)
}

func preflight(s Sysfs, load func() error, probe func() error) error {
	var loadErr error
	if !s.RXELoaded() {
		loadErr = load()
	}
	if err := probe(); err != nil {
		if !errors.Is(err, unix.EPROTONOSUPPORT) {
			return fmt.Errorf("probe rdma netlink: %w", err)
		}
		me := noRDMA(err).(*MissingError)
		if loadErr != nil {
			me.Have += fmt.Sprintf(", and rdma_rxe could not be loaded (%v)", loadErr)
			me.Err = errors.Join(me.Err, loadErr)
		}
		return me
	}
	if s.RXELoaded() {
		return nil
	}
	have := "not loaded"
	if loadErr != nil {
		have = fmt.Sprintf("not loaded and could not be loaded (%v)", loadErr)
	}
	return &MissingError{
		Check: "rdma_rxe",
		Need:  "the rdma_rxe (soft-RoCE) kernel module",
		Have:  have,
		Hint:  "run `modprobe rdma_rxe`, or, on a kernel without it, use `rocebed vm run`",
		Err:   errors.Join(ErrNoRXE, loadErr),
	}
}

// probeNetlinkRDMA opens and closes a NETLINK_RDMA socket in the calling thread's namespace.
func probeNetlinkRDMA() error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_RDMA)
	if err != nil {
		return fmt.Errorf("socket(AF_NETLINK, NETLINK_RDMA): %w", err)
	}
	return unix.Close(fd)
}

// modprobeRXE runs `modprobe rdma_rxe` (fixed argv) if a modprobe is installed.
func modprobeRXE() error {
	path, err := exec.LookPath("modprobe")
	if err != nil {
		return errors.New("there is no modprobe to load it")
	}
	out, err := exec.Command(path, "rdma_rxe").CombinedOutput()
	if err != nil {
		msg := strings.TrimSpace(string(out))
		if msg == "" {
			return fmt.Errorf("`modprobe rdma_rxe`: %w", err)
		}
		return fmt.Errorf("`modprobe rdma_rxe`: %w: %s", err, msg)
	}
	return nil
}

// AddRXE creates the soft-RoCE device name on netdev:
//
//	rdma link add NAME type rxe netdev NETDEV
//
// h must be an RDMA handle (OpenHandle, i.e. NewHandleAt(ns, unix.NETLINK_RDMA)); nil uses
// the calling thread's namespace. The netdev is looked up in the handle's namespace. On
// Linux ≤ 6.12 rxe works only in the initial namespace (its UDP socket lives there).
func AddRXE(h *netlink.Handle, name, netdev string) error {
	if name == "" || len(name) > maxDevName || strings.ContainsAny(name, "/ \t\n%") {
		return fmt.Errorf("rdma link add %q: invalid device name: use 1..%d characters without '/', '%%' or spaces", name, maxDevName)
	}
	if netdev == "" {
		return fmt.Errorf("rdma link add %s: no netdev given", name)
	}
	err := handle(h).RdmaLinkAdd(name, "rxe", netdev)
	if err == nil {
		return nil
	}
	err = mapNoRDMA(err)
	cmd := fmt.Sprintf("rdma link add %s type rxe netdev %s", name, netdev)
	switch {
	case errors.Is(err, unix.ENODEV):
		return fmt.Errorf("%s: %w: netdev %s does not exist in the handle's namespace", cmd, err, netdev)
	case errors.Is(err, unix.EEXIST):
		return fmt.Errorf("%s: %w: the name %s is taken or %s already has an rxe device (`rdma link show`)", cmd, err, name, netdev)
	case errors.Is(err, unix.EINVAL) && !(Sysfs{}).RXELoaded():
		return fmt.Errorf("%s: %w: %w: run `modprobe rdma_rxe`", cmd, err, ErrNoRXE)
	}
	return fmt.Errorf("%s: %w", cmd, err)
}

// listRDMA lists RDMA links, retrying a dump the kernel interrupted.
func listRDMA(h *netlink.Handle) ([]*netlink.RdmaLink, error) {
	links, err := kernel.Dump(func() ([]*netlink.RdmaLink, error) { return handle(h).RdmaLinkList() })
	if errors.Is(err, netlink.ErrDumpInterrupted) {
		return nil, err
	}
	return links, mapNoRDMA(err)
}

// RXEExists reports whether an RDMA device called name exists (`rdma dev show NAME`).
func RXEExists(h *netlink.Handle, name string) (bool, error) {
	links, err := listRDMA(h)
	if err != nil {
		return false, fmt.Errorf("rdma dev show: %w", err)
	}
	return slices.ContainsFunc(links, func(l *netlink.RdmaLink) bool { return l.Attrs.Name == name }), nil
}

// DelRXE deletes the RDMA device name:
//
//	rdma link delete NAME
//
// A device that is not there (or a kernel with no RDMA at all, where it cannot be) is not an
// error, so an undo can run twice.
func DelRXE(h *netlink.Handle, name string) error {
	exists, err := RXEExists(h, name)
	if errors.Is(err, ErrNoRDMA) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("rdma link delete %s: %w", name, err)
	}
	if !exists {
		return nil
	}
	if err := handle(h).RdmaLinkDel(name); err != nil {
		// RdmaLinkDel looks the name up again; it may have gone in between.
		if still, lerr := RXEExists(h, name); lerr == nil && !still {
			return nil
		}
		return fmt.Errorf("rdma link delete %s: %w", name, err)
	}
	return nil
}

// NetnsMode is the RDMA subsystem's namespace mode, "shared" or "exclusive" (`rdma system
// show`). In shared mode every namespace sees every RDMA device.
func NetnsMode(h *netlink.Handle) (string, error) {
	mode, err := handle(h).RdmaSystemGetNetnsMode()
	if err != nil {
		return "", fmt.Errorf("rdma system show: %w", mapNoRDMA(err))
	}
	return mode, nil
}
