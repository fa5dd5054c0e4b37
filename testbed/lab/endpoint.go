package lab

import (
	"fmt"

	"github.com/rocebed/rocebed/internal/host"
	"github.com/rocebed/rocebed/rdma"
	"github.com/rocebed/rocebed/testbed/scenario"
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
