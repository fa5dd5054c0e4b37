package kernel

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// Per-namespace /proc/net files. /proc/net is /proc/self/net: the namespace of the process's
// main thread. Code that entered a namespace on its own thread (host.Env.Do) must read
// /proc/thread-self/net to see that namespace.
const (
	ProcRTCache = "/proc/thread-self/net/stat/rt_cache" // martian and rp_filter drops, per CPU
	ProcSNMP    = "/proc/thread-self/net/snmp"          // Ip, Icmp, Udp, … counters
	ProcNetstat = "/proc/thread-self/net/netstat"       // TcpExt, IpExt counters
	// ProcDevSNMP6 holds one file per interface with its IPv6 counters (Ip6InReceives, …).
	ProcDevSNMP6 = "/proc/thread-self/net/dev_snmp6"
)

// ReadStatColumn sums one column of a /proc/net/stat file over all CPUs.
func ReadStatColumn(path, column string) (uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	v, err := SumStatColumn(f, column)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
	return v, nil
}

// SumStatColumn parses a /proc/net/stat file: a header line of names, then one row of hex
// numbers per CPU; it returns the sum of column over the rows.
func SumStatColumn(r io.Reader, column string) (uint64, error) {
	sc := bufio.NewScanner(r)
	if !sc.Scan() {
		return 0, errors.New("empty file")
	}
	col := -1
	for i, name := range strings.Fields(sc.Text()) {
		if name == column {
			col = i
		}
	}
	if col < 0 {
		return 0, fmt.Errorf("no column %q", column)
	}
	var sum uint64
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) <= col {
			return 0, fmt.Errorf("short row %q", sc.Text())
		}
		v, err := strconv.ParseUint(f[col], 16, 64)
		if err != nil {
			return 0, fmt.Errorf("column %s: %w", column, err)
		}
		sum += v
	}
	return sum, sc.Err()
}

// ReadProcNetCounters reads /proc/net/snmp or /proc/net/netstat into "Group.Name" → value.
func ReadProcNetCounters(path string) (map[string]uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	m, err := ParseProcNetCounters(f)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return m, nil
}

// ParseProcNetCounters parses pairs of lines "Group: names" and "Group: values". Negative
// values (Tcp.MaxConn is -1) are left out.
func ParseProcNetCounters(r io.Reader) (map[string]uint64, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	out := map[string]uint64{}
	first := func(s []string) string {
		if len(s) == 0 {
			return ""
		}
		return s[0]
	}
	for sc.Scan() {
		names := strings.Fields(sc.Text())
		if !sc.Scan() {
			return nil, fmt.Errorf("group %q has names but no values", first(names))
		}
		vals := strings.Fields(sc.Text())
		if len(names) == 0 || len(names) != len(vals) || names[0] != vals[0] {
			return nil, fmt.Errorf("mismatched lines %q and %q", first(names), first(vals))
		}
		group := strings.TrimSuffix(names[0], ":")
		for i := 1; i < len(names); i++ {
			v, err := strconv.ParseInt(vals[i], 10, 64)
			if err != nil || v < 0 {
				continue
			}
			out[group+"."+names[i]] = uint64(v)
		}
	}
	return out, sc.Err()
}

// ReadDevSNMP6 reads the IPv6 counters of one interface (/proc/net/dev_snmp6/IFACE). An
// interface without IPv6 has no file: the error wraps os.ErrNotExist.
func ReadDevSNMP6(iface string) (map[string]uint64, error) {
	path := ProcDevSNMP6 + "/" + iface
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	m, err := ParseNameValue(f)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return m, nil
}

// ParseNameValue parses lines "Name value" (/proc/net/snmp6, /proc/net/dev_snmp6/IFACE).
func ParseNameValue(r io.Reader) (map[string]uint64, error) {
	sc := bufio.NewScanner(r)
	out := map[string]uint64{}
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if len(f) != 2 {
			return nil, fmt.Errorf("line %q is not \"name value\"", sc.Text())
		}
		v, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f[0], err)
		}
		out[f[0]] = v
	}
	return out, sc.Err()
}
