package testbed

import (
	"errors"
	"os"
	"path/filepath"
)

// preflight checks, before anything is changed, that the host can carry out the plan: the
// kernel features its steps need. Missing features are *PreflightError (exit code 3).
func preflight(env *Env, p *Plan) error {
	needRXE := false
	for _, st := range p.Steps {
		if st.Kind == StepRXE {
			needRXE = true
		}
	}
	if !needRXE {
		return nil
	}
	if _, err := env.RDMA(); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(env.SysfsRoot, "module/rdma_rxe")); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return &PreflightError{Check: "rdma_rxe", Need: "the rdma_rxe kernel module", Have: "not loaded", Err: err,
				Hint: "run `modprobe rdma_rxe` (package linux-modules-extra on Ubuntu), run the lab in a VM with `rocebed vm run`, or pass --skip-rdma"}
		}
		return err
	}
	return nil
}
