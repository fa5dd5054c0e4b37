package scenario

import (
	"fmt"
	"regexp"
)

// The names a scenario gives to host objects, and the rules every other entry point (the
// command line, the journal) checks the same names against. A name rocebed accepts is a name
// the kernel keeps exactly as written: it never expands, truncates or refuses it later.

// MaxIfNameLen is the longest interface name the kernel accepts (IFNAMSIZ - 1).
const MaxIfNameLen = 15

var (
	labNameRe  = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)
	netnsRe    = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)
	rdmaNameRe = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,63}$`)
)

// LabNameProblem says what is wrong with a lab name, or "". A lab name names a directory
// under the state directory, so it is 1 to 32 lowercase letters, digits and '-', starting
// with a letter or digit (never "." or "..").
func LabNameProblem(name string) string {
	if labNameRe.MatchString(name) {
		return ""
	}
	return fmt.Sprintf("%q is not a lab name: want 1 to 32 lowercase letters, digits and '-', starting with a letter or digit", name)
}

// NetnsNameProblem says what is wrong with the name of a named network namespace
// (/run/netns/NAME), or "": 1 to 64 letters, digits, '_', '.' and '-', and not "." or "..".
func NetnsNameProblem(name string) string {
	if netnsRe.MatchString(name) && name != "." && name != ".." {
		return ""
	}
	return fmt.Sprintf("%q is not a namespace name: want 1 to 64 letters, digits, '_', '.' and '-'", name)
}

// RDMANameProblem says what is wrong with an RDMA device name, or "".
func RDMANameProblem(name string) string {
	if rdmaNameRe.MatchString(name) && name != "." && name != ".." {
		return ""
	}
	return fmt.Sprintf("%q is not an RDMA device name: want 1 to 63 letters, digits, '_', '.' and '-'", name)
}

// IfNameProblem says what is wrong with an interface name, or "". It accepts exactly the names
// the kernel keeps as written: 1 to 15 bytes of printable ASCII, without '/', ':' (refused by
// dev_valid_name) or '%' (dev_alloc_name expands "v%dA" to "v0A"), and not "." or "..".
// Whitespace — the kernel's, which includes the Latin-1 no-break space — control characters,
// NUL and other non-ASCII bytes are refused too.
func IfNameProblem(name string) string {
	switch {
	case name == "":
		return "name is required"
	case len(name) > MaxIfNameLen:
		return fmt.Sprintf("%q is %d bytes: interface names are at most %d", name, len(name), MaxIfNameLen)
	case name == "." || name == "..":
		return fmt.Sprintf("%q is not a usable interface name", name)
	}
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case c == '/' || c == ':' || c == '%' || c <= ' ' || c == 0x7f:
			return fmt.Sprintf("%q contains %q: %s", name, c, ifNameRule)
		case c >= 0x80:
			return fmt.Sprintf("%q contains the non-ASCII byte %#02x: %s", name, c, ifNameRule)
		}
	}
	return ""
}

const ifNameRule = "interface names are printable ASCII without '/', ':', '%' or whitespace (the kernel refuses or rewrites them)"
