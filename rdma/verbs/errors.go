package verbs

import (
	"errors"
	"fmt"
	"syscall"
)

// ErrNoVerbs reports that RDMA verbs cannot be used at all in this process: the binary was built
// without cgo, or the kernel has no ib_uverbs (ibv_get_device_list fails with ENOSYS). Test with
// errors.Is; the wrapping error says which of the two and what to do.
var ErrNoVerbs = errors.New("rdma verbs unavailable")

// ErrDeviceNotFound reports that OpenDevice found no device of that name.
var ErrDeviceNotFound = errors.New("rdma device not found")

// ErrClosed reports use of an object after its Close.
var ErrClosed = errors.New("verbs object already closed")

// errNoUverbs is what ENOSYS from ibv_get_device_list means: the kernel has no uverbs at all.
var errNoUverbs = fmt.Errorf("%w: no RDMA devices: kernel has no ib_uverbs/rdma_rxe; use `rocebed vm run` (%w)",
	ErrNoVerbs, syscall.ENOSYS)

// errNoCgo is returned by every call of a binary built without cgo.
var errNoCgo = fmt.Errorf("%w: rocebed was built without cgo: rebuild with CGO_ENABLED=1 and libibverbs-dev installed", ErrNoVerbs)

// Error is the error of one verbs call. Err is a syscall.Errno when libibverbs reported an errno
// (both conventions: NULL plus errno from constructors, the errno returned by post and modify
// calls), so errors.Is(err, syscall.ETIMEDOUT) works.
type Error struct {
	Op  string // what was attempted, e.g. `modify QP 0x11 to RTR`
	Err error
}

func (e *Error) Error() string { return e.Op + ": " + e.Err.Error() }

func (e *Error) Unwrap() error { return e.Err }

// opError wraps err for op, leaving nil as nil.
func opError(op string, err error) error {
	if err == nil {
		return nil
	}
	return &Error{Op: op, Err: err}
}

// errnoError maps an errno value from libibverbs to an *Error. A zero errno after a failure
// (libibverbs did not set one) becomes EIO rather than a misleading "success".
func errnoError(op string, errno syscall.Errno) error {
	if errno == 0 {
		errno = syscall.EIO
	}
	return &Error{Op: op, Err: errno}
}

// rcError maps the "returns 0 or the value of errno" convention (ibv_post_send(3),
// ibv_modify_qp(3), ibv_dealloc_pd(3)...) to nil or an *Error.
func rcError(op string, rc int) error {
	if rc == 0 {
		return nil
	}
	if rc < 0 { // some providers return -errno
		rc = -rc
	}
	return &Error{Op: op, Err: syscall.Errno(rc)}
}
