package kernel

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
	v, err := SumStatColumn(strings.NewReader(rtCache), "in_martian_src")
	require.NoError(t, err)
	assert.Equal(t, uint64(0x3f+0x35), v)
	_, err = SumStatColumn(strings.NewReader(rtCache), "nope")
	assert.ErrorContains(t, err, `no column "nope"`)
	_, err = SumStatColumn(strings.NewReader(""), "in_martian_src")
	assert.Error(t, err)
	_, err = SumStatColumn(strings.NewReader("a b\n1\n"), "b")
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
	m, err := ParseProcNetCounters(strings.NewReader(snmp))
	require.NoError(t, err)
	assert.Equal(t, uint64(7), m["Ip.InAddrErrors"])
	assert.Equal(t, uint64(3), m["Udp.NoPorts"])
	assert.NotContains(t, m, "Tcp.MaxConn", "negative values are not counters")

	_, err = ParseProcNetCounters(strings.NewReader("Ip: A B\nUdp: 1 2\n"))
	assert.ErrorContains(t, err, "mismatched")
	_, err = ParseProcNetCounters(strings.NewReader("Ip: A B\n"))
	assert.ErrorContains(t, err, "no values")
}

func TestSumStatColumnTwoColumns(t *testing.T) {
	// Two CPUs, as /proc/net/stat/rt_cache prints them (hex, per CPU).
	const stat = `entries  in_hit   in_slow_tot in_slow_mc in_no_route in_brd   in_martian_dst in_martian_src out_hit  out_slow_tot
00000006 00000000 00000003    00000000   00000000    00000000 00000000       0000000a       00000000 00000002
00000006 00000000 00000001    00000000   00000000    00000000 00000000       00000003       00000000 00000003
`
	v, err := SumStatColumn(strings.NewReader(stat), "in_martian_src")
	require.NoError(t, err)
	assert.Equal(t, uint64(13), v)
	v, err = SumStatColumn(strings.NewReader(stat), "out_slow_tot")
	require.NoError(t, err)
	assert.Equal(t, uint64(5), v)

	_, err = SumStatColumn(strings.NewReader(stat), "no_such")
	assert.ErrorContains(t, err, `no column "no_such"`)
	_, err = SumStatColumn(strings.NewReader(""), "in_martian_src")
	assert.Error(t, err)
	_, err = SumStatColumn(strings.NewReader("a in_martian_src\n00 zz\n"), "in_martian_src")
	assert.Error(t, err)
}

func TestParseNameValue(t *testing.T) {
	m, err := ParseNameValue(strings.NewReader("ifIndex                         \t7\nIp6InReceives                   \t34\nIp6OutRequests                  \t13\n"))
	require.NoError(t, err)
	assert.Equal(t, map[string]uint64{"ifIndex": 7, "Ip6InReceives": 34, "Ip6OutRequests": 13}, m)
	_, err = ParseNameValue(strings.NewReader("Ip6InReceives 1 2\n"))
	assert.Error(t, err)
}
