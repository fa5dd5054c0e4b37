package sysctl

import (
	"errors"
	"testing"

	"github.com/rocebed/rocebed/internal/nsutil"
	"github.com/rocebed/rocebed/internal/testenv"
	"github.com/stretchr/testify/require"
)

// TestKernelReadBackInNetns writes real kernel parameters in a throwaway namespace: the kernel
// rejects an invalid value, and restore returns the exact previous value.
func TestKernelReadBackInNetns(t *testing.T) {
	ns := testenv.NewNetNS(t)
	var s Sysctl
	require.NoError(t, nsutil.Do(ns.Handle, func() error {
		before, err := s.Get("net.ipv4.conf.lo.rp_filter")
		if err != nil {
			return err
		}
		saved, err := s.Apply([]Setting{{"net.ipv4.conf.lo.rp_filter", "2"}, {"net.ipv4.conf.lo.accept_local", "1"}})
		if err != nil {
			return err
		}
		if v, _ := s.Get("net.ipv4.conf.lo.rp_filter"); v != "2" {
			return errors.New("rp_filter not applied: " + v)
		}
		// A reversed port range is invalid: the kernel must refuse it and the error must say so.
		if err := s.Set("net.ipv4.ip_local_port_range", "60000 1024"); err == nil {
			return errors.New("kernel accepted a reversed ip_local_port_range")
		}
		if err := s.Restore(saved); err != nil {
			return err
		}
		after, _ := s.Get("net.ipv4.conf.lo.rp_filter")
		if after != before {
			return errors.New("not restored: " + before + " → " + after)
		}
		return nil
	}))
}
