package lab

import (
	"errors"
	"fmt"

	"github.com/rocebed/rocebed/internal/host"
	"github.com/rocebed/rocebed/internal/preflight"
	"github.com/rocebed/rocebed/rdma"
	"github.com/rocebed/rocebed/testbed/plan"
	"github.com/rocebed/rocebed/testbed/scenario"
)

// preflight checks, before anything is changed, that the host can carry out the plan: the
// kernel features its steps need, and the hardware RDMA devices its endpoints name. Missing
// pieces are *PreflightError (exit code 3).
func checkHost(env *host.Env, s *scenario.Scenario, p *plan.Plan, skipRDMA bool) error {
	for _, st := range p.Steps {
		if st.Kind() == plan.KindRXE {
			if err := CheckRDMA(env); err != nil {
				return err
			}
			break
		}
	}
	if skipRDMA {
		return nil
	}
	var errs []error
	for _, ep := range s.LocalEndpoints() {
		if ep.Device != "" {
			if err := hardwareDevicePreflight(env, ep.Endpoint); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// hardwareDevicePreflight checks that an endpoint's hardware RDMA device exists on its NIC:
// "auto" finds it from sysfs (rdmamap), a name must be a device bound to that NIC.
func hardwareDevicePreflight(env *host.Env, ep scenario.Endpoint) error {
	missing := func(have string, err error) error {
		return &preflight.Error{Check: "rdma device on " + ep.NIC, Err: err,
			Need: "a hardware RDMA (RoCE) device on " + ep.NIC, Have: have,
			Hint: "run this scenario on a host whose " + ep.NIC + " is a RoCE NIC (`rdma link show`), or name the right NIC with --set"}
	}
	err := env.Do(func() error {
		if ep.Device == "auto" {
			_, err := rdma.HostDeviceForNetdev(ep.NIC)
			return err
		}
		nd, err := rdma.Sysfs{Root: env.SysfsRoot}.PortNetdev(ep.Device, 1)
		if err != nil {
			return err
		}
		if nd != ep.NIC {
			return fmt.Errorf("device %s is bound to %s, not %s", ep.Device, nd, ep.NIC)
		}
		return nil
	})
	if err != nil {
		return missing("none usable ("+err.Error()+")", err)
	}
	return nil
}

// CheckRDMA checks for the RDMA core and rdma_rxe (loading it with a fixed `modprobe
// rdma_rxe` if it can) and opens the lab's RDMA netlink handle.
func CheckRDMA(env *host.Env) error {
	if err := rdma.Preflight(); err != nil {
		var me *rdma.MissingError
		if errors.As(err, &me) {
			return &preflight.Error{Check: me.Check, Need: me.Need, Have: me.Have, Err: me.Err,
				Hint: me.Hint}
		}
		return err
	}
	_, err := env.RDMA()
	return err
}
