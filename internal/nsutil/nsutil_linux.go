// Package nsutil runs code inside a network namespace. Netlink work should use a namespace-bound
// netlink.Handle instead; this is for what has no handle: /proc/sys/net (per namespace of the
// thread that opens it), /proc/net files, and sockets.
package nsutil

import (
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
)

// Do runs fn with the calling goroutine's OS thread in ns. An unset ns (netns.None()) runs fn
// where it is. If the thread cannot be switched back it stays locked, so the Go runtime discards
// it instead of reusing a thread in the wrong namespace.
func Do(ns netns.NsHandle, fn func() error) error {
	if !ns.IsOpen() {
		return fn()
	}
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("get current netns: %w", err)
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter netns: %w", err)
	}
	fnErr := fn()
	if err := netns.Set(orig); err != nil {
		// Leave the thread locked: it dies with the goroutine.
		return fmt.Errorf("return to original netns: %w (after: %v)", err, fnErr)
	}
	runtime.UnlockOSThread()
	return fnErr
}
