//go:build linux

package traffic

// Real-kernel traffic tests: the shipped scenarios brought up with Up, their traffic run with
// Run, and Down. rxe works only in the initial network namespace, so these tests
// change the current namespace: they run in the throwaway rocebed VM (`rocebed vm exec`,
// `make test-vm`), or where ROCEBED_ALLOW_HOST_CHANGES=1 says the host may be changed.

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/rocebed/rocebed/internal/host"
	"github.com/rocebed/rocebed/internal/testenv"
	"github.com/rocebed/rocebed/internal/testlab"
	"github.com/rocebed/rocebed/rdma/verbs"
	"github.com/rocebed/rocebed/testbed/counters"
	"github.com/rocebed/rocebed/testbed/lab"
	"github.com/rocebed/rocebed/testbed/scenario"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// runLab brings a shipped scenario up in the current namespace, runs its traffic, and takes
// it down again, checking that nothing of the lab is left.
func runLab(t *testing.T, name string) *Report {
	t.Helper()
	return runLabWith(t, name, nil)
}

// runLabWith is runLab with the loaded scenario changed by edit first.
func runLabWith(t *testing.T, name string, edit func(*scenario.Scenario)) *Report {
	t.Helper()
	l := testlab.UpRXE(t, name, edit)
	rep, err := Run(context.Background(), l.Env, l.Scenario)
	l.Down(t)
	require.NoError(t, err)
	require.NotNil(t, rep)
	var sb strings.Builder
	require.NoError(t, rep.WriteText(&sb))
	t.Logf("%s:\n%s", name, sb.String())
	return rep
}

// completions counts a batch's completions by role, opcode and status.
func completions(b *BatchResult, role string, op verbs.WCOpcode, st verbs.WCStatus) int {
	n := 0
	for _, c := range b.Completions {
		if c.Role == role && c.Status == st && (st != verbs.WCSuccess || c.Opcode == op) {
			n++
		}
	}
	return n
}

func TestTrafficRXESameHostPasses(t *testing.T) {
	for _, name := range []string{"same-host", "same-host-sysctl", "same-host-ud"} {
		t.Run(name, func(t *testing.T) {
			rep := runLab(t, name)
			assert.True(t, rep.Pass, rep.Verdict)
			assert.True(t, rep.ExpectationMet, rep.Verdict)
			require.Len(t, rep.Batches, 2, "direction both is two batches")
			for _, b := range rep.Batches {
				assert.Equal(t, b.Messages, completions(b, RoleSender, verbs.WCSend, verbs.WCSuccess), "%s: sends", b.Name())
				assert.Equal(t, b.Messages, completions(b, RoleReceiver, verbs.WCRecv, verbs.WCSuccess), "%s: receives", b.Name())
				wantLen := uint32(b.Size)
				if b.Transport == scenario.TransportUD {
					wantLen += verbs.GRHLen
				}
				for _, c := range b.Completions {
					if c.Role == RoleReceiver {
						assert.Equal(t, wantLen, c.ByteLen)
						assert.Equal(t, "ok", c.Payload)
						assert.Equal(t, b.Receiver.QPN, c.QPN)
						if b.Transport == scenario.TransportUD {
							assert.Equal(t, b.Sender.QPN, c.SrcQP)
						}
					}
				}
				// The cable was crossed: both devices and both NICs moved, lo did not.
				n := uint64(b.Messages)
				sent, _ := b.Counters.RDMACounter(b.Sender.Device, "sent_pkts")
				rcvd, _ := b.Counters.RDMACounter(b.Receiver.Device, "rcvd_pkts")
				assert.GreaterOrEqual(t, sent, n, "%s sent_pkts", b.Sender.Device)
				assert.GreaterOrEqual(t, rcvd, n, "%s rcvd_pkts", b.Receiver.Device)
				tx, _ := b.Counters.Link(b.Sender.NIC)
				rx, _ := b.Counters.Link(b.Receiver.NIC)
				lo, _ := b.Counters.Link("lo")
				assert.GreaterOrEqual(t, tx.TxPackets, n, "%s tx", b.Sender.NIC)
				assert.GreaterOrEqual(t, rx.RxPackets, n, "%s rx", b.Receiver.NIC)
				assert.Less(t, lo.TxPackets, n, "lo tx")
				martian, ok := b.Counters.KernelCounter(counters.CounterMartianSrc)
				assert.True(t, ok)
				assert.Zero(t, martian, "in_martian_src moved on a fixed lab")
			}
		})
	}
}

func TestTrafficRXESameHostNofixConnectTimeout(t *testing.T) {
	rep := runLab(t, "same-host-nofix")
	require.Len(t, rep.Batches, 1)
	b := rep.Batches[0]
	assert.False(t, rep.Pass)
	assert.True(t, rep.ExpectationMet, b.Expectation)
	assert.Equal(t, ClassConnectTimeout, b.Class)
	assert.True(t, b.ConnectTimedOut)
	assert.Contains(t, b.ConnectError, "RTR")
	assert.Empty(t, b.Completions, "nothing was posted")
	assert.Less(t, b.ConnectMS, float64(b.DeadlineMS), "the connect failure must come before the deadline")
	m, _ := b.Counters.KernelCounter(counters.CounterMartianSrc)
	assert.NotZero(t, m, "the ARP must have been dropped as a martian")
	for _, dev := range []string{b.Sender.Device, b.Receiver.Device} {
		sent, ok := b.Counters.RDMACounter(dev, "sent_pkts")
		assert.True(t, ok)
		assert.Zero(t, sent, "%s sent RoCE packets", dev)
	}
	t.Logf("connect failed after %.1f ms: %s", b.ConnectMS, b.ConnectError)
}

// TestTrafficRXESeedRetryExceeded runs the seed's RC batch with the workers the CPUs allow,
// then with two (the SENDs going from the C send stream, on one CPU too): the first SEND
// fails with retry exceeded and the rest flush.
func TestTrafficRXESeedRetryExceeded(t *testing.T) {
	for _, forced := range []int{0, 2} {
		t.Run(map[int]string{0: "workers-by-cpus", 2: "two-workers"}[forced], func(t *testing.T) {
			if forced != 0 {
				workers = forced
				t.Cleanup(func() { workers = 0 })
			}
			seedRetryExceeded(t)
		})
	}
}

func seedRetryExceeded(t *testing.T) {
	rep := runLab(t, "seed")
	require.Len(t, rep.Batches, 1)
	b := rep.Batches[0]
	assert.False(t, rep.Pass)
	assert.True(t, rep.ExpectationMet, b.Expectation)
	assert.Equal(t, ClassRetryExceeded, b.Class)
	assert.Empty(t, b.ConnectError)
	require.NotEmpty(t, b.Completions)
	first := b.Completions[0]
	assert.Equal(t, RoleSender, first.Role)
	assert.Equal(t, verbs.WCRetryExcErr, first.Status)
	for _, c := range b.Completions {
		assert.Equal(t, RoleSender, c.Role, "the responder must see no completion")
		if c != first {
			assert.Equal(t, verbs.WCWRFlushErr, c.Status, "after the retry error the rest flush")
		}
	}
	assert.Equal(t, b.Posted, len(b.Completions), "every posted send completes (error or flush)")
	assert.Less(t, first.AtMS, float64(b.DeadlineMS))
	sent, _ := b.Counters.RDMACounter(b.Sender.Device, "sent_pkts")
	rcvd, _ := b.Counters.RDMACounter(b.Receiver.Device, "rcvd_pkts")
	m, _ := b.Counters.KernelCounter(counters.CounterMartianSrc)
	assert.NotZero(t, sent)
	assert.Zero(t, rcvd)
	assert.GreaterOrEqual(t, m, sent, "every RoCE packet dropped as a martian source")
	t.Logf("IBV_WC_RETRY_EXC_ERR %.1f ms after the first send; %s sent_pkts +%d, in_martian_src +%d", first.AtMS, b.Sender.Device, sent, m)
}

// TestTrafficRXESendStream runs 300 RC messages of 4 KiB each way on same-host with two
// workers (the SENDs going from the C send stream, on one CPU too): with receive windows of
// 16, so that the stream waits for the receiver's reposts, and with every receive posted at
// once, so that the receiver naps between bursts. Either way every message completes on both
// sides, in order, intact, each SEND after it was posted.
func TestTrafficRXESendStream(t *testing.T) {
	const n = 300
	for _, tc := range []struct {
		name    string
		recvWin int  // maxRecvWindow
		naps    bool // the receiver naps between bursts
	}{
		// 16 receives: the stream waits on each repost, and the receiver never naps.
		{name: "reposts", recvWin: 16, naps: false},
		// Every receive posted at once: the receiver polls in bursts and naps between them.
		{name: "bursts", recvWin: maxRecvWindow, naps: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			recvWin := maxRecvWindow
			workers, maxRecvWindow = 2, tc.recvWin
			t.Cleanup(func() { workers, maxRecvWindow = 0, recvWin })
			napsBefore := streamNaps.Load()
			rep := runLabWith(t, "same-host", func(s *scenario.Scenario) {
				s.Traffic = []scenario.Traffic{{Name: "stream", Transport: scenario.TransportRC, Direction: scenario.DirectionBoth, Messages: n, Size: 4096}}
			})
			naps := streamNaps.Load() - napsBefore
			assert.True(t, rep.Pass, rep.Verdict)
			require.Len(t, rep.Batches, 2)
			for _, b := range rep.Batches {
				assert.Equal(t, n, b.Posted, b.Name())
				var sends, recvs uint64
				for _, c := range b.Completions {
					require.Equal(t, verbs.WCSuccess, c.Status, "%s: %+v", b.Name(), c)
					switch c.Role {
					case RoleSender:
						require.Equal(t, sends, c.WRID, "%s: SEND completions out of order", b.Name())
						sends++
					case RoleReceiver:
						require.Equal(t, recvs, c.WRID, "%s: RECV completions out of order", b.Name())
						assert.Equal(t, "ok", c.Payload, "%s: message %d", b.Name(), c.WRID)
						recvs++
					}
				}
				assert.Equal(t, uint64(n), sends, b.Name())
				assert.Equal(t, uint64(n), recvs, b.Name())
				assert.Positive(t, b.MeanLatencyUS, "%s: each SEND polled after it was posted", b.Name())
				require.NotNil(t, b.OneWayUS, b.Name())
				assert.Equal(t, n, b.OneWayUS.N, b.Name())
				assert.Positive(t, b.OneWayUS.Min, "%s: each message arrived after it was posted", b.Name())
				t.Logf("%s: %.0f msg/s, one-way median %.1f µs", b.Name(), b.MsgPerSec, b.OneWayUS.Median)
			}
			if tc.naps {
				assert.Positive(t, naps, "the receivers napped between bursts")
			} else {
				assert.Zero(t, naps, "no receiver napped with %d receives posted", tc.recvWin)
			}
			t.Logf("receiver naps: %d", naps)
		})
	}
}

// TestTrafficRXESeedUD is the seed with UD SENDs: no ACKs, so the requester's sends all
// complete and the receives are simply missing; every packet died as a martian source.
func TestTrafficRXESeedUD(t *testing.T) {
	rep := runLabWith(t, "seed", func(s *scenario.Scenario) {
		s.Traffic[0].Transport, s.Traffic[0].RC, s.Traffic[0].Name = scenario.TransportUD, nil, "ud-a-to-b"
	})
	require.Len(t, rep.Batches, 1)
	b := rep.Batches[0]
	assert.True(t, rep.ExpectationMet, b.Expectation)
	assert.Equal(t, ClassMissingCompletions, b.Class)
	assert.Equal(t, b.Messages, completions(b, RoleSender, verbs.WCSend, verbs.WCSuccess))
	assert.Zero(t, completions(b, RoleReceiver, verbs.WCRecv, verbs.WCSuccess))
	sent, _ := b.Counters.RDMACounter(b.Sender.Device, "sent_pkts")
	m, _ := b.Counters.KernelCounter(counters.CounterMartianSrc)
	assert.EqualValues(t, b.Messages, sent, "UD sends one packet per message, no retries")
	assert.GreaterOrEqual(t, m, sent)
	t.Logf("%s", b.Verdict)
}

// BenchmarkTrafficRXESameHost measures RC SEND throughput over the same-host lab (one warm
// batch of 1000 × 1 KiB per iteration, a->b), reporting msg/s and the connect time.
func BenchmarkTrafficRXESameHost(b *testing.B) {
	testenv.RequireRXE(b)
	env, err := host.Open("")
	require.NoError(b, err)
	b.Cleanup(env.Close)
	s, err := scenario.Load("same-host", nil)
	require.NoError(b, err)
	s.Traffic[0].Direction, s.Traffic[0].Messages = scenario.DirectionAToB, 1000
	state := b.TempDir()
	_, err = lab.Up(context.Background(), env, s, lab.UpOptions{StateDir: state})
	require.NoError(b, err)
	b.Cleanup(func() { assert.NoError(b, lab.Down(context.Background(), state, s.Name)) })
	// A first batch outside the figures: its page faults and allocations.
	_, err = Run(context.Background(), env, s)
	require.NoError(b, err)
	var rate, connect float64
	b.ResetTimer()
	for b.Loop() {
		rep, err := Run(context.Background(), env, s)
		require.NoError(b, err)
		require.True(b, rep.Pass, rep.Verdict)
		rate += rep.Batches[0].MsgPerSec
		connect += rep.Batches[0].ConnectMS
	}
	b.ReportMetric(rate/float64(b.N), "msg/s")
	b.ReportMetric(connect/float64(b.N), "connect-ms")
}

// TestTrafficRXEIPv6 runs the IPv6 and dual-stack labs: every batch passes with every
// completion on both sides, and each IPv6 batch's packets were IPv6 packets on the receiving
// NIC (Ip6InReceives), crossed the cable and never touched lo. Up and down leave the initial
// namespace byte-identical, IPv6 rules, routes, sysctls and addresses included.
func TestTrafficRXEIPv6(t *testing.T) {
	testenv.RequireRXE(t)
	ns := testenv.InitialNetNS(t)
	for _, tc := range []struct {
		name       string
		families   map[scenario.Family]int // batches per family
		transports []scenario.Transport
	}{
		{"same-host-v6", map[scenario.Family]int{scenario.FamilyIPv6: 4}, []scenario.Transport{scenario.TransportRC, scenario.TransportUD}},
		{"same-host-dual", map[scenario.Family]int{scenario.FamilyIPv4: 2, scenario.FamilyIPv6: 4}, []scenario.Transport{scenario.TransportRC, scenario.TransportUD}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := ns.Dump(t)
			rep := runLab(t, tc.name)
			testenv.SameState(t, before, ns.Dump(t), "up and down of %s left changes", tc.name)
			assert.True(t, rep.Pass, rep.Verdict)
			assert.True(t, rep.ExpectationMet, rep.Verdict)
			got := map[scenario.Family]int{}
			for _, b := range rep.Batches {
				got[b.Family]++
				n := uint64(b.Messages)
				assert.Equal(t, b.Messages, completions(b, RoleSender, verbs.WCSend, verbs.WCSuccess), "%s: sends", b.Name())
				assert.Equal(t, b.Messages, completions(b, RoleReceiver, verbs.WCRecv, verbs.WCSuccess), "%s: receives", b.Name())
				assert.Equal(t, b.Family == scenario.FamilyIPv6, strings.Contains(b.Sender.Address, ":"), "%s: sender address %s", b.Name(), b.Sender.Address)
				sent, _ := b.Counters.SentPackets(b.Sender.Device)
				rcvd, _ := b.Counters.ReceivedPackets(b.Receiver.Device)
				tx, _ := b.Counters.Link(b.Sender.NIC)
				rx, _ := b.Counters.Link(b.Receiver.NIC)
				lo, _ := b.Counters.Link("lo")
				assert.GreaterOrEqual(t, sent, n, "%s: %s sent_pkts", b.Name(), b.Sender.Device)
				assert.GreaterOrEqual(t, rcvd, n, "%s: %s rcvd_pkts", b.Name(), b.Receiver.Device)
				assert.GreaterOrEqual(t, tx.TxPackets, n, "%s: %s tx", b.Name(), b.Sender.NIC)
				assert.GreaterOrEqual(t, rx.RxPackets, n, "%s: %s rx", b.Name(), b.Receiver.NIC)
				assert.Zero(t, lo.TxPackets+lo.RxPackets, "%s: lo moved", b.Name())
				if b.Family == scenario.FamilyIPv6 {
					assert.GreaterOrEqual(t, rx.IP6InReceives, n, "%s: %s Ip6InReceives", b.Name(), b.Receiver.NIC)
					assert.Zero(t, lo.IP6InReceives, "%s: lo Ip6InReceives", b.Name())
				}
				t.Logf("%s %s %s: %s sent +%d, %s rcvd +%d, %s tx +%d, %s rx +%d (IPv6 in +%d), lo tx +%d rx +%d (IPv6 in +%d)", b.Name(), b.Family, b.Transport,
					b.Sender.Device, sent, b.Receiver.Device, rcvd, b.Sender.NIC, tx.TxPackets, b.Receiver.NIC, rx.RxPackets, rx.IP6InReceives, lo.TxPackets, lo.RxPackets, lo.IP6InReceives)
			}
			assert.Equal(t, tc.families, got)
		})
	}
}

// TestTrafficRXESeedV6LocalRoute is seed-v6: the route to the other NIC's IPv6 address is the
// local one through lo, so rxe loops the RoCE packets back into the sending device and none
// reaches a NIC; the requester exhausts its retries and the expectation (local-route) holds.
func TestTrafficRXESeedV6LocalRoute(t *testing.T) {
	rep := runLab(t, "seed-v6")
	require.Len(t, rep.Batches, 1)
	b := rep.Batches[0]
	assert.False(t, rep.Pass)
	assert.True(t, rep.ExpectationMet, b.Expectation)
	assert.Equal(t, ClassRetryExceeded, b.Class)
	assert.Equal(t, scenario.FamilyIPv6, b.Family)
	sent, _ := b.Counters.RDMACounter(b.Sender.Device, "sent_pkts")
	rcvd, _ := b.Counters.RDMACounter(b.Receiver.Device, "rcvd_pkts")
	lo, _ := b.Counters.Link("lo")
	tx, _ := b.Counters.Link(b.Sender.NIC)
	assert.Positive(t, sent)
	assert.Zero(t, rcvd)
	assert.Less(t, tx.TxPackets, sent, "the packets must not reach the cable")
	assert.Less(t, lo.TxPackets, sent, "nor lo's netdev: rxe loops them back itself")
	t.Logf("%s sent_pkts +%d, lo tx +%d, %s tx +%d: %s", b.Sender.Device, sent, lo.TxPackets, b.Sender.NIC, tx.TxPackets, b.Expectation)
}

// TestTrafficRXEPingPong runs ping-pongs on same-host: inline 64-byte messages both ways, and
// 8 KiB ones (several packets each, sent from the buffer), with the workers the CPUs allow,
// and then with two (on one CPU too) and with one, each in Runs of 16 messages with messages
// and echoes in rings refilled between them. Every message must have come back: each way's
// SEND and RECV completions, the echoes intact and in order, a half round trip per message,
// and the packets of both ways on the cable.
func TestTrafficRXEPingPong(t *testing.T) {
	for _, forced := range []int{0, 2, 1} {
		t.Run(map[int]string{0: "workers-by-cpus", 2: "two-workers", 1: "one-worker"}[forced], func(t *testing.T) {
			if forced != 0 {
				// Runs of 16 receives, and rings refilled on use (pp-big's 160 KiB do not
				// fit): the other run has one Run each way and everything filled before it.
				prefill, recvWin := maxPrefillBytes, maxRecvWindow
				workers, maxPrefillBytes, maxRecvWindow = forced, 64<<10, 16
				t.Cleanup(func() { workers, maxPrefillBytes, maxRecvWindow = 0, prefill, recvWin })
			}
			rep := runLabWith(t, "same-host", func(s *scenario.Scenario) {
				s.Traffic = []scenario.Traffic{
					{Name: "pp", Transport: scenario.TransportRC, Direction: scenario.DirectionBoth, Messages: 100, Size: 64, Pattern: scenario.PatternPingPong},
					{Name: "pp-big", Transport: scenario.TransportRC, Direction: scenario.DirectionAToB, Messages: 20, Size: 8192, Pattern: scenario.PatternPingPong},
				}
			})
			assert.True(t, rep.Pass, rep.Verdict)
			require.Len(t, rep.Batches, 3)
			for _, b := range rep.Batches {
				n := b.Messages
				assert.Equal(t, scenario.PatternPingPong, b.Pattern)
				assert.Equal(t, n, completions(b, RoleSender, verbs.WCSend, verbs.WCSuccess), "%s: sends", b.Name())
				assert.Equal(t, n, completions(b, RoleReceiver, verbs.WCRecv, verbs.WCSuccess), "%s: receives", b.Name())
				assert.Equal(t, n, completions(b, RoleEcho, verbs.WCSend, verbs.WCSuccess), "%s: echo sends", b.Name())
				assert.Equal(t, n, completions(b, RoleEcho, verbs.WCRecv, verbs.WCSuccess), "%s: echo receives", b.Name())
				recvAt := map[uint64]float64{}
				for _, c := range b.Completions {
					if c.Role == RoleReceiver {
						recvAt[c.WRID] = c.AtMS
					}
				}
				var echoes []uint64
				for _, c := range b.Completions {
					if c.Role != RoleEcho || c.Opcode != verbs.WCRecv {
						continue
					}
					k := c.WRID &^ echoWRID
					echoes = append(echoes, k)
					assert.Equal(t, "ok", c.Payload, "%s: echo %d", b.Name(), k)
					assert.Equal(t, b.Sender.Device, c.Device)
					assert.Equal(t, b.Sender.QPN, c.QPN, "%s: echo %d arrived on the sender's QP", b.Name(), k)
					assert.Greater(t, c.AtMS, recvAt[k], "%s: echo %d polled before message %d arrived", b.Name(), k, k)
				}
				for i, k := range echoes {
					require.Equal(t, uint64(i), k, "%s: echoes out of order", b.Name())
				}
				require.NotNil(t, b.HalfRoundTripUS, b.Name())
				assert.Equal(t, n, b.HalfRoundTripUS.N)
				assert.Positive(t, b.HalfRoundTripUS.Min)
				require.NotNil(t, b.OneWayUS)
				assert.LessOrEqual(t, b.OneWayUS.Median, 2*b.HalfRoundTripUS.Median, "%s: each message arrived before its echo, so the median way there is at most the median round trip", b.Name())
				// The echoes crossed the cable back: the receiver's device sent and the
				// sender's received at least one packet per echo (ACKs come on top).
				sent, _ := b.Counters.RDMACounter(b.Receiver.Device, "sent_pkts")
				rcvd, _ := b.Counters.RDMACounter(b.Sender.Device, "rcvd_pkts")
				assert.GreaterOrEqual(t, sent, uint64(n), "%s sent_pkts", b.Receiver.Device)
				assert.GreaterOrEqual(t, rcvd, uint64(n), "%s rcvd_pkts", b.Sender.Device)
				t.Logf("%s: half round trip median %.1f µs (min %.1f, max %.1f), one-way median %.1f µs",
					b.Name(), b.HalfRoundTripUS.Median, b.HalfRoundTripUS.Min, b.HalfRoundTripUS.Max, b.OneWayUS.Median)
			}
		})
	}
}

// TestTrafficRXEPingPongOnTheSeedLab: a ping-pong on the broken lab fails as a stream does —
// the first SEND ends in IBV_WC_RETRY_EXC_ERR and the batch stops there, long before its
// deadline, with no echo recorded as arrived.
func TestTrafficRXEPingPongOnTheSeedLab(t *testing.T) {
	rep := runLabWith(t, "seed", func(s *scenario.Scenario) {
		for i := range s.Traffic {
			s.Traffic[i].Pattern = scenario.PatternPingPong
		}
	})
	assert.False(t, rep.Pass)
	assert.True(t, rep.ExpectationMet, rep.Verdict)
	require.Len(t, rep.Batches, 1)
	b := rep.Batches[0]
	assert.Equal(t, ClassRetryExceeded, b.Class, b.Verdict)
	assert.Equal(t, 1, b.Posted, "the next message waits for an echo that never came")
	assert.Zero(t, completions(b, RoleEcho, verbs.WCRecv, verbs.WCSuccess))
	assert.Nil(t, b.HalfRoundTripUS)
	assert.Less(t, b.ElapsedMS, float64(b.DeadlineMS)/2, "the error completion must end the batch")
}

// TestTrafficRXEPingPongEnds: a ping-pong far longer than its deadline stops at the deadline,
// and one whose run is cancelled stops at once with the cancellation — in both, the loop in C
// is told (verbs.PingPong.Stop) and what it polled before is still recorded. (The deadline
// counts from before the connect and the filling of every message: 16-byte messages fill
// fast.)
func TestTrafficRXEPingPongEnds(t *testing.T) {
	long := scenario.Traffic{Name: "long", Transport: scenario.TransportRC, Direction: scenario.DirectionAToB,
		Messages: 100000, Size: 16, Pattern: scenario.PatternPingPong, DeadlineMS: 1000}
	l := testlab.UpRXE(t, "same-host", func(s *scenario.Scenario) { s.Traffic = []scenario.Traffic{long} })
	defer l.Down(t)
	check := func(b *BatchResult, stop string) {
		t.Helper()
		assert.Equal(t, stop, b.StopReason)
		assert.Positive(t, b.Posted)
		assert.Less(t, b.Posted, b.Messages)
		echoes := completions(b, RoleEcho, verbs.WCRecv, verbs.WCSuccess)
		assert.Positive(t, echoes, "the echoes polled before the stop are recorded")
		assert.LessOrEqual(t, echoes, b.Posted)
		assert.GreaterOrEqual(t, completions(b, RoleReceiver, verbs.WCRecv, verbs.WCSuccess), echoes)
		t.Logf("%s: %d of %d posted, %d echoes back, stopped: %s", b.Name(), b.Posted, b.Messages, echoes, b.StopReason)
	}

	rep, err := Run(context.Background(), l.Env, l.Scenario)
	require.NoError(t, err)
	require.Len(t, rep.Batches, 1)
	assert.False(t, rep.Pass)
	check(rep.Batches[0], "deadline 1000 ms reached")

	l.Scenario.Traffic[0].DeadlineMS = 60000
	ctx, cancel := context.WithCancel(context.Background())
	stop := time.AfterFunc(time.Second, cancel)
	defer stop.Stop()
	rep, err = Run(ctx, l.Env, l.Scenario)
	require.ErrorIs(t, err, context.Canceled)
	require.NotNil(t, rep)
	require.Len(t, rep.Batches, 1)
	check(rep.Batches[0], "cancelled")
}
