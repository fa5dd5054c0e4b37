// Package sysctl reads and writes kernel parameters under /proc/sys (or another root, for
// tests), and restores them exactly.
//
// /proc/sys/net is per network namespace: the namespace is the one of the thread that opens the
// file. Callers that work on another namespace wrap calls in nsutil.Do.
package sysctl

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// DefaultRoot is where the kernel exposes its parameters.
const DefaultRoot = "/proc/sys"

// Sysctl reads and writes parameters below Root ("" means DefaultRoot).
type Sysctl struct {
	Root string
}

// ifaceSections are the key prefixes whose fourth component is an interface name, which may
// itself contain dots (VLAN names like "eth0.100").
var ifaceSections = []string{"net.ipv4.conf.", "net.ipv6.conf.", "net.ipv4.neigh.", "net.ipv6.neigh."}

// Split breaks a dotted key into its path components, keeping an interface name with dots in
// one piece: "net.ipv4.conf.eth0.100.rp_filter" → [net ipv4 conf eth0.100 rp_filter].
func Split(key string) ([]string, error) {
	if key == "" || strings.ContainsAny(key, "/\x00 \t\n") || strings.HasPrefix(key, ".") || strings.HasSuffix(key, ".") {
		return nil, fmt.Errorf("invalid sysctl key %q", key)
	}
	for _, p := range ifaceSections {
		if rest, ok := strings.CutPrefix(key, p); ok {
			i := strings.LastIndexByte(rest, '.')
			if i <= 0 {
				return nil, fmt.Errorf("invalid sysctl key %q: want %sIFACE.PARAM", key, p)
			}
			return append(strings.Split(strings.TrimSuffix(p, "."), "."), rest[:i], rest[i+1:]), nil
		}
	}
	parts := strings.Split(key, ".")
	for _, s := range parts {
		if s == "" || s == ".." {
			return nil, fmt.Errorf("invalid sysctl key %q", key)
		}
	}
	return parts, nil
}

// Interface returns the interface a key configures ("vA" for net.ipv4.conf.vA.rp_filter), or
// "" for keys that are not per interface.
func Interface(key string) string {
	for _, p := range ifaceSections {
		if rest, ok := strings.CutPrefix(key, p); ok {
			if i := strings.LastIndexByte(rest, '.'); i > 0 {
				return rest[:i]
			}
		}
	}
	return ""
}

// Param returns the parameter a key names, its last component ("rp_filter" for
// net.ipv4.conf.vA.rp_filter).
func Param(key string) string { return key[strings.LastIndexByte(key, '.')+1:] }

// Path returns the file behind key.
func (s Sysctl) Path(key string) (string, error) {
	parts, err := Split(key)
	if err != nil {
		return "", err
	}
	root := s.Root
	if root == "" {
		root = DefaultRoot
	}
	return filepath.Join(append([]string{root}, parts...)...), nil
}

// Get returns the value of key without its trailing newline (`sysctl -n KEY`).
func (s Sysctl) Get(key string) (string, error) {
	p, err := s.Path(key)
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return "", fmt.Errorf("read sysctl %s: %w", key, err)
	}
	return strings.TrimSuffix(string(b), "\n"), nil
}

// ErrReadBack means the kernel accepted a write but reports another value.
var ErrReadBack = errors.New("value read back differs")

// Set writes value to key (`sysctl -w KEY=VALUE`) and reads it back: the kernel may clamp or
// ignore a value without an error.
func (s Sysctl) Set(key, value string) error {
	p, err := s.Path(key)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return fmt.Errorf("write sysctl %s=%s: %w", key, value, err)
	}
	_, werr := f.WriteString(value + "\n")
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		return fmt.Errorf("write sysctl %s=%s: %w", key, value, err)
	}
	got, err := s.Get(key)
	if err != nil {
		return err
	}
	if !Equal(got, value) {
		return fmt.Errorf("write sysctl %s=%s: %w: %q", key, value, ErrReadBack, got)
	}
	return nil
}

// Equal compares two sysctl values the way the kernel prints them: multi-value parameters are
// separated by tabs when read and may be written with spaces.
func Equal(a, b string) bool {
	fa, fb := strings.Fields(a), strings.Fields(b)
	if len(fa) != len(fb) {
		return false
	}
	for i := range fa {
		if fa[i] != fb[i] {
			return false
		}
	}
	return true
}
