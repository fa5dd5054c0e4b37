package rdma

import (
	"errors"
	"fmt"
	"strings"

	"github.com/Mellanox/rdmamap"
	"github.com/vishvananda/netlink"
)

// HostDeviceForNetdev finds the RDMA device of netdev on the real /sys with rdmamap, which
// also handles IPoIB netdevs (by node GUID). It looks the netdev up in the calling thread's
// namespace. `device: auto` on hardware hosts uses it; tests and rxe code use
// Sysfs.DeviceForNetdev, which takes a root.
func HostDeviceForNetdev(netdev string) (string, error) {
	dev, err := rdmamap.GetRdmaDeviceForNetdevice(netdev)
	if err == nil {
		return dev, nil
	}
	var lnf netlink.LinkNotFoundError
	switch {
	case errors.As(err, &lnf):
		return "", fmt.Errorf("rdma device for netdev %s: %w: no such netdev in this namespace (`ip link show`)", netdev, ErrNotFound)
	case strings.Contains(err.Error(), "not found"):
		return "", fmt.Errorf("rdma device for netdev %s: %w (%v): check `rdma link show`", netdev, ErrNotFound, err)
	}
	return "", fmt.Errorf("rdma device for netdev %s: %w", netdev, err)
}
