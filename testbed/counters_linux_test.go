package testbed

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSumStatColumn(t *testing.T) {
	// /proc/net/stat/rt_cache as Linux 6.x prints it: hex, one row per CPU.
	const rtCache = `entries  in_hit   in_slow_tot in_slow_mc in_no_route in_brd   in_martian_dst in_martian_src out_hit
00000008 00000000 00000022    00000000   00000000    00000000 00000000       0000003f       00000000
00000008 00000000 0000001b    00000000   00000000    00000000 00000000       00000035       00000000
`
	v, err := sumStatColumn(strings.NewReader(rtCache), "in_martian_src")
	require.NoError(t, err)
	assert.Equal(t, uint64(0x3f+0x35), v)
	_, err = sumStatColumn(strings.NewReader(rtCache), "nope")
	assert.ErrorContains(t, err, `no column "nope"`)
	_, err = sumStatColumn(strings.NewReader(""), "in_martian_src")
	assert.Error(t, err)
	_, err = sumStatColumn(strings.NewReader("a b\n1\n"), "b")
	assert.ErrorContains(t, err, "short row")
}

func TestParseProcNetCounters(t *testing.T) {
	const snmp = `Ip: Forwarding DefaultTTL InReceives InHdrErrors InAddrErrors
Ip: 1 64 100 0 7
Tcp: RtoAlgorithm MaxConn
Tcp: 1 -1
Udp: InDatagrams NoPorts InErrors
Udp: 12 3 0
`
	m, err := parseProcNetCounters(strings.NewReader(snmp))
	require.NoError(t, err)
	assert.Equal(t, uint64(7), m[CounterIPInAddrErrors])
	assert.Equal(t, uint64(3), m[CounterUDPNoPorts])
	assert.NotContains(t, m, "Tcp.MaxConn", "negative values are not counters")

	_, err = parseProcNetCounters(strings.NewReader("Ip: A B\nUdp: 1 2\n"))
	assert.ErrorContains(t, err, "mismatched")
	_, err = parseProcNetCounters(strings.NewReader("Ip: A B\n"))
	assert.ErrorContains(t, err, "no values")
}
