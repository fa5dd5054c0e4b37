package testbed

import (
	"errors"

	"github.com/rocebed/rocebed/rdma"
)

// preflight checks, before anything is changed, that the host can carry out the plan: the
// kernel features its steps need. Missing features are *PreflightError (exit code 3).
func preflight(env *Env, p *Plan) error {
	for _, st := range p.Steps {
		if st.Kind == StepRXE {
			return rdmaPreflight(env)
		}
	}
	return nil
}

// rdmaPreflight checks for the RDMA core and rdma_rxe (loading it with a fixed `modprobe
// rdma_rxe` if it can) and opens the lab's RDMA netlink handle.
func rdmaPreflight(env *Env) error {
	if err := rdma.Preflight(); err != nil {
		var me *rdma.MissingError
		if errors.As(err, &me) {
			return &PreflightError{Check: me.Check, Need: me.Need, Have: me.Have, Err: me.Err,
				Hint: me.Hint + ", or pass --skip-rdma to build only the network part"}
		}
		return err
	}
	_, err := env.RDMA()
	return err
}
