package verbs

import (
	"errors"
	"strings"
	"syscall"
	"testing"
)

func TestErrorMapping(t *testing.T) {
	// The "returns the errno value" convention (ibv_post_send(3), ibv_modify_qp(3)).
	err := rcError("modify RC qp 0x11 on rxe0 to RTR", int(syscall.ETIMEDOUT))
	if !errors.Is(err, syscall.ETIMEDOUT) {
		t.Errorf("errors.Is(%v, ETIMEDOUT) = false", err)
	}
	var ve *Error
	if !errors.As(err, &ve) || ve.Op != "modify RC qp 0x11 on rxe0 to RTR" {
		t.Errorf("errors.As(*Error) failed or wrong op: %#v", ve)
	}
	if got, want := err.Error(), "modify RC qp 0x11 on rxe0 to RTR: connection timed out"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if rcError("x", 0) != nil {
		t.Error("rcError(0) is not nil")
	}
	// Some providers return -errno.
	if err := rcError("post send", -int(syscall.ENOMEM)); !errors.Is(err, syscall.ENOMEM) {
		t.Errorf("rcError(-ENOMEM) = %v", err)
	}

	// The "NULL and errno" convention of constructors.
	if err := errnoError("create cq", syscall.EINVAL); !errors.Is(err, syscall.EINVAL) {
		t.Errorf("errnoError(EINVAL) = %v", err)
	}
	if err := errnoError("create cq", 0); !errors.Is(err, syscall.EIO) {
		t.Errorf("errnoError(0) = %v, want EIO instead of a success errno", err)
	}
	if opError("x", nil) != nil {
		t.Error("opError(nil) is not nil")
	}
}

func TestNoVerbsErrors(t *testing.T) {
	for _, e := range []error{&Error{Op: "list rdma devices", Err: errNoUverbs}, &Error{Op: "x", Err: errNoCgo}} {
		if !errors.Is(e, ErrNoVerbs) {
			t.Errorf("%v does not match ErrNoVerbs", e)
		}
	}
	e := &Error{Op: "list rdma devices", Err: errNoUverbs}
	if !errors.Is(e, syscall.ENOSYS) {
		t.Errorf("%v does not keep ENOSYS", e)
	}
	if !strings.Contains(e.Error(), "no RDMA devices: kernel has no ib_uverbs/rdma_rxe; use `rocebed vm run`") {
		t.Errorf("message lacks the hint: %q", e)
	}
}

// TestListDevicesHere runs on any machine: either libibverbs lists devices, or the error says
// why not and matches ErrNoVerbs (this dev machine: no uverbs, or no cgo).
func TestListDevicesHere(t *testing.T) {
	names, err := ListDevices()
	if err != nil {
		if !errors.Is(err, ErrNoVerbs) {
			t.Fatalf("ListDevices: %v (an error that is not ErrNoVerbs)", err)
		}
		t.Logf("no verbs here: %v", err)
		return
	}
	t.Logf("devices: %v", names)
	for _, n := range names {
		if n == "" {
			t.Errorf("empty device name in %q", names)
		}
	}
}

func TestOpenDeviceMissing(t *testing.T) {
	_, err := OpenDevice("rocebed-no-such-device")
	if !errors.Is(err, ErrNoVerbs) && !errors.Is(err, ErrDeviceNotFound) {
		t.Fatalf("OpenDevice(missing) = %v, want ErrNoVerbs or ErrDeviceNotFound", err)
	}
	var ve *Error
	if !errors.As(err, &ve) || !strings.Contains(ve.Op, "rocebed-no-such-device") {
		t.Errorf("error does not name the device: %v", err)
	}
}
