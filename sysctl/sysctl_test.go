package sysctl

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSplitKeepsDottedInterfaceNames(t *testing.T) {
	for key, want := range map[string][]string{
		"net.ipv4.conf.vA.rp_filter":       {"net", "ipv4", "conf", "vA", "rp_filter"},
		"net.ipv4.conf.eth0.100.rp_filter": {"net", "ipv4", "conf", "eth0.100", "rp_filter"},
		"net.ipv6.neigh.vB.base_reachable": {"net", "ipv6", "neigh", "vB", "base_reachable"},
		"net.ipv4.ip_forward":              {"net", "ipv4", "ip_forward"},
	} {
		got, err := Split(key)
		require.NoError(t, err, key)
		assert.Equal(t, want, got, key)
	}
	for _, bad := range []string{"", "net..x", "net/ipv4", ".net", "net.", "net.ipv4.conf.rp_filter", "net.a b"} {
		_, err := Split(bad)
		assert.Error(t, err, bad)
	}
	assert.Equal(t, "eth0.100", Interface("net.ipv4.conf.eth0.100.accept_local"))
	assert.Equal(t, "", Interface("net.ipv4.ip_forward"))
}

// fakeRoot builds a /proc/sys-like tree with the given files.
func fakeRoot(t *testing.T, files map[string]string) Sysctl {
	root := t.TempDir()
	for key, v := range files {
		parts, err := Split(key)
		require.NoError(t, err)
		p := filepath.Join(append([]string{root}, parts...)...)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(v+"\n"), 0o644))
	}
	return Sysctl{Root: root}
}

func TestApplyRestoreExact(t *testing.T) {
	s := fakeRoot(t, map[string]string{
		"net.ipv4.conf.all.rp_filter":    "1",
		"net.ipv4.conf.all.accept_local": "0",
		"net.ipv4.tcp_rmem":              "4096\t131072\t6291456",
	})
	saved, err := s.Apply([]Setting{
		{"net.ipv4.conf.all.rp_filter", "2"},
		{"net.ipv4.conf.all.accept_local", "1"},
		{"net.ipv4.tcp_rmem", "4096 87380 6291456"},
		{"net.ipv4.conf.all.rp_filter", "0"}, // set twice: restore must end at the first old value
	})
	require.NoError(t, err)
	v, _ := s.Get("net.ipv4.conf.all.rp_filter")
	assert.Equal(t, "0", v)
	v, _ = s.Get("net.ipv4.tcp_rmem")
	assert.Equal(t, "4096 87380 6291456", v)

	require.NoError(t, s.Restore(saved))
	for key, want := range map[string]string{
		"net.ipv4.conf.all.rp_filter":    "1",
		"net.ipv4.conf.all.accept_local": "0",
		"net.ipv4.tcp_rmem":              "4096 131072 6291456",
	} {
		got, err := s.Get(key)
		require.NoError(t, err)
		assert.True(t, Equal(got, want), "%s: got %q want %q", key, got, want)
	}
}

func TestApplyRollsBackOnFailure(t *testing.T) {
	s := fakeRoot(t, map[string]string{"net.ipv4.conf.all.rp_filter": "1"})
	_, err := s.Apply([]Setting{
		{"net.ipv4.conf.all.rp_filter", "2"},
		{"net.ipv4.conf.vZ.rp_filter", "2"}, // no such file
	})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "net.ipv4.conf.vZ.rp_filter")
	v, _ := s.Get("net.ipv4.conf.all.rp_filter")
	assert.Equal(t, "1", v, "the first change must be rolled back")
}
