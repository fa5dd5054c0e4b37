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
	"unicode"
	"unicode/utf8"
)

// DefaultRoot is where the kernel exposes its parameters.
const DefaultRoot = "/proc/sys"

// Sysctl reads and writes parameters below Root ("" means DefaultRoot).
type Sysctl struct {
	Root string
}

// ifaceSections are the key prefixes whose next component is an interface name, which may
// itself contain dots (VLAN names like "eth0.100").
var ifaceSections = []string{"net.ipv4.conf.", "net.ipv6.conf.", "net.ipv4.neigh.", "net.ipv6.neigh."}

// maxIfName is the longest interface name the kernel accepts (IFNAMSIZ - 1).
const maxIfName = 15

// KeyError says why a string is not a sysctl key rocebed can read or write.
type KeyError struct {
	Key string
	Msg string
}

func (e *KeyError) Error() string { return fmt.Sprintf("sysctl %q %s", e.Key, e.Msg) }

// Key is a parsed sysctl key.
type Key struct {
	// Parts are the path components under /proc/sys.
	Parts []string
	// Iface is the interface a per-interface key configures ("" for other keys), with the
	// dots of its name restored.
	Iface string
	// Section is the per-interface prefix ("net.ipv4.conf"), "" for other keys.
	Section string
}

// ParseKey is the one reading of a dotted sysctl key in rocebed: the scenario validator, the
// planner and the writer all use it, so the key validation accepts is the file that gets
// written.
//
// In the per-interface sections (net.ipv4.conf, net.ipv6.conf, net.ipv4.neigh and
// net.ipv6.neigh) the interface is everything between the section and the last dot, because
// interface names may contain dots ("eth0.100") and the parameters there never do; sysctl(8)'s
// spelling with '/' for such a dot (net.ipv4.conf.eth0/100.rp_filter) means the same. The
// interface must be a name the kernel could have (not "." or "..", at most 15 bytes). Every
// other component is letters, digits, '_' and '-'.
func ParseKey(key string) (Key, error) {
	bad := func(format string, args ...any) (Key, error) {
		return Key{}, &KeyError{Key: key, Msg: fmt.Sprintf(format, args...)}
	}
	if key == "" {
		return bad("is empty")
	}
	for _, r := range key {
		if r <= ' ' || r == 0x7f || r == utf8.RuneError || !unicode.IsPrint(r) {
			return bad("contains %q: a key is letters, digits, '_', '-' and dots", r)
		}
	}
	for _, p := range ifaceSections {
		rest, ok := strings.CutPrefix(key, p)
		if !ok {
			continue
		}
		section := strings.TrimSuffix(p, ".")
		i := strings.LastIndexByte(rest, '.')
		if i <= 0 {
			return bad("is incomplete: want %s.INTERFACE.NAME", section)
		}
		ifc, param := strings.ReplaceAll(rest[:i], "/", "."), rest[i+1:]
		switch {
		case ifc == "." || ifc == ".." || len(ifc) > maxIfName:
			return bad("names interface %q, which no interface can be called", ifc)
		case !validPart(param):
			return bad("has a bad component %q: want letters, digits, '_' and '-' between dots", param)
		}
		return Key{Parts: append(strings.Split(section, "."), ifc, param), Iface: ifc, Section: section}, nil
	}
	parts := strings.Split(key, ".")
	for _, s := range parts {
		if !validPart(s) {
			return bad("has a bad component %q: want letters, digits, '_' and '-' between dots", s)
		}
	}
	return Key{Parts: parts}, nil
}

// validPart reports whether s is a plain key component: [A-Za-z0-9_-]+.
func validPart(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// String is the key in its canonical dotted form: an interface name keeps its own dots.
func (k Key) String() string { return strings.Join(k.Parts, ".") }

// WithIface is the same parameter of another interface ("default", say); k must be a
// per-interface key.
func (k Key) WithIface(ifc string) Key {
	parts := append(strings.Split(k.Section, "."), ifc, k.Parts[len(k.Parts)-1])
	return Key{Parts: parts, Iface: ifc, Section: k.Section}
}

// IfaceKey builds the per-interface key SECTION.IFACE.PARAM ("net.ipv4.conf", "vA",
// "arp_ignore").
func IfaceKey(section, ifc, param string) string { return section + "." + ifc + "." + param }

// Split breaks a dotted key into its path components (see ParseKey):
// "net.ipv4.conf.eth0.100.rp_filter" → [net ipv4 conf eth0.100 rp_filter].
func Split(key string) ([]string, error) {
	k, err := ParseKey(key)
	if err != nil {
		return nil, err
	}
	return k.Parts, nil
}

// Canonical returns key in its canonical form (see Key.String).
func Canonical(key string) (string, error) {
	k, err := ParseKey(key)
	if err != nil {
		return "", err
	}
	return k.String(), nil
}

// Interface returns the interface a key configures ("vA" for net.ipv4.conf.vA.rp_filter,
// "eth0.100" for net.ipv4.conf.eth0/100.rp_filter), or "" for keys that are not per
// interface or not keys at all.
func Interface(key string) string {
	k, err := ParseKey(key)
	if err != nil {
		return ""
	}
	return k.Iface
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
