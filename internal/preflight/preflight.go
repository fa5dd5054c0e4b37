// Package preflight holds the error that says something a lab needs is missing from the host,
// what it is and how to get it. Every layer that checks the host before changing it returns
// one; the CLI maps it to exit code 3. It depends on nothing, so the VM harness can use it
// without linking the rest of rocebed.
package preflight

import "fmt"

// Error says that something the lab needs is missing from this host, what it is, and how to
// get it. Nothing has been changed on the host when it is returned.
type Error struct {
	Check string // "rdma_rxe"
	Need  string // "the rdma_rxe kernel module"
	Have  string // "not loaded, and this kernel has no loadable modules"
	Hint  string // "run `modprobe rdma_rxe`, or use `rocebed vm run`"
	Err   error  // the underlying error, if any
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("%s: need %s, have %s", e.Check, e.Need, e.Have)
	if e.Hint != "" {
		msg += ": " + e.Hint
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }
