package probe

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rocebed/rocebed/internal/host"
	"github.com/rocebed/rocebed/internal/nsutil"
	"github.com/rocebed/rocebed/internal/testenv"
	"github.com/rocebed/rocebed/testbed/scenario"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// probeSampleReport is a report as Run builds it for the no-fix lab.
func probeSampleReport() *Report {
	fail := LayerResult{Layer: LayerNeighbor, Status: Fail,
		Detail:   "ARP request from vA's address 10.10.0.1 dropped by vB as a martian source (in_martian_src +1)",
		Fix:      "add the policy-routing fix",
		Evidence: map[string]string{"state": "INCOMPLETE", "in_martian_src_delta": "1"},
		Duration: 1500 * time.Millisecond}
	dir := func(name, from, to string, layers ...LayerResult) DirectionReport {
		return DirectionReport{Name: name, From: from, To: to, Layers: layers}
	}
	link := LayerResult{Layer: LayerLink, Status: Pass, Detail: "vA and vB up with carrier", Evidence: map[string]string{"vA.oper_state": "up"}}
	skip := func(l Layer) LayerResult {
		return LayerResult{Layer: l, Status: Skipped, Detail: "skipped: neighbor failed"}
	}
	return &Report{Lab: "same-host-nofix", Directions: []DirectionReport{
		dir("a->b", "a (vA 10.10.0.1)", "b (vB 10.10.0.2)", link, fail, skip(LayerRouteOut), skip(LayerRouteIn), skip(LayerUDP)),
		dir("b->a", "b (vB 10.10.0.2)", "a (vA 10.10.0.1)", link, fail, skip(LayerRouteOut), skip(LayerRouteIn), skip(LayerUDP)),
	}}
}

func TestProbeReportText(t *testing.T) {
	r := probeSampleReport()
	var b bytes.Buffer
	require.NoError(t, r.WriteText(&b))
	want := `probe lab same-host-nofix
a->b: a (vA 10.10.0.1) -> b (vB 10.10.0.2)
  ✓ link      vA and vB up with carrier
  ✗ neighbor  ARP request from vA's address 10.10.0.1 dropped by vB as a martian source (in_martian_src +1)
      in_martian_src_delta: 1
      state: INCOMPLETE
  - route-out skipped: neighbor failed
  - route-in  skipped: neighbor failed
  - udp       skipped: neighbor failed
b->a: b (vB 10.10.0.2) -> a (vA 10.10.0.1)
  ✓ link      vA and vB up with carrier
  ✗ neighbor  ARP request from vA's address 10.10.0.1 dropped by vB as a martian source (in_martian_src +1)
      in_martian_src_delta: 1
      state: INCOMPLETE
  - route-out skipped: neighbor failed
  - route-in  skipped: neighbor failed
  - udp       skipped: neighbor failed
FAIL at a->b neighbor: ARP request from vA's address 10.10.0.1 dropped by vB as a martian source (in_martian_src +1)
fix: add the policy-routing fix
`
	assert.Equal(t, want, b.String())

	d, l := r.FirstFailure()
	require.NotNil(t, l)
	assert.Equal(t, "a->b", d.Name)
	assert.Equal(t, LayerNeighbor, l.Layer)
	assert.Equal(t, "fail at a->b neighbor: "+l.Detail, r.Summary())

	// A passing report prints the pass line and no fix.
	for i := range r.Directions {
		for j := range r.Directions[i].Layers {
			r.Directions[i].Layers[j].Status = Pass
		}
	}
	r.Passed = true
	b.Reset()
	require.NoError(t, r.WriteText(&b))
	assert.True(t, strings.HasSuffix(b.String(), "PASS: both directions cross the cable\n"), b.String())
	assert.NotContains(t, b.String(), "fix:")
	d, l = r.FirstFailure()
	assert.Nil(t, d)
	assert.Nil(t, l)
	assert.Equal(t, "pass", r.Summary())
}

func TestProbeReportJSON(t *testing.T) {
	r := probeSampleReport()
	raw, err := json.Marshal(r)
	require.NoError(t, err)
	var got map[string]any
	require.NoError(t, json.Unmarshal(raw, &got))
	assert.Equal(t, "same-host-nofix", got["lab"])
	assert.Equal(t, false, got["passed"])
	dirs := got["directions"].([]any)
	require.Len(t, dirs, 2)
	d0 := dirs[0].(map[string]any)
	assert.Equal(t, "a->b", d0["name"])
	assert.Equal(t, "a (vA 10.10.0.1)", d0["from"])
	layers := d0["layers"].([]any)
	require.Len(t, layers, len(Layers))
	for i, l := range layers {
		assert.Equal(t, string(Layers[i]), l.(map[string]any)["layer"])
	}
	n := layers[1].(map[string]any)
	assert.Equal(t, "fail", n["status"])
	assert.Equal(t, "add the policy-routing fix", n["fix"])
	assert.Equal(t, float64(1500*time.Millisecond), n["duration_ns"])
	assert.Equal(t, map[string]any{"state": "INCOMPLETE", "in_martian_src_delta": "1"}, n["evidence"])
	// Empty fix and evidence are left out.
	skipped := layers[2].(map[string]any)
	assert.NotContains(t, skipped, "fix")
	assert.NotContains(t, skipped, "evidence")

	// The JSON reads back into the same report.
	var back Report
	require.NoError(t, json.Unmarshal(raw, &back))
	assert.Equal(t, r, &back)
}

func TestProbeArguments(t *testing.T) {
	s := fixScenario()
	s.Endpoints.B.Address = "not-an-ip"
	_, err := Run(context.Background(), nil, s)
	assert.ErrorContains(t, err, `endpoint b: address "not-an-ip" is not an IP address`)

	// A cancelled context stops the probe before it touches the environment.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = Run(ctx, nil, fixScenario())
	assert.ErrorIs(t, err, context.Canceled)

	// CIDR form is accepted.
	e, err := newProbeEnd(nil, fixScenario(), "a", scenario.Endpoint{NIC: "vA", Address: "10.10.0.1/24"}, "")
	require.NoError(t, err)
	assert.Equal(t, "a (vA 10.10.0.1)", e.String())
}

// TestProbeUDPMartian runs the udp layer on its own on the seed's failure (static neighbours,
// no fix): the datagrams cross the cable and the receiving NIC drops every one as a martian.
func TestProbeUDPMartian(t *testing.T) {
	testenv.RequireRoot(t)
	lab := newFixLab(t)
	lab.sysctls(t, "accept_local", "0")
	lab.sysctls(t, "rp_filter", "0")
	lab.staticNeighbors(t)
	s := fixScenario()
	a, err := newProbeEnd(nil, s, "a", s.Endpoints.A, "")
	require.NoError(t, err)
	b, err := newProbeEnd(nil, s, "b", s.Endpoints.B, "")
	require.NoError(t, err)
	p := &prober{env: lab.env(t), src: a, dst: b, listener: -1}
	ctx := context.Background()
	res, err := p.checkLink(ctx)
	require.NoError(t, err)
	require.Equal(t, Pass, res.Status, res.Detail)
	p.openListener()
	require.GreaterOrEqual(t, p.listener, 0, p.listenerNote)
	defer unix.Close(p.listener)

	res, err = p.checkUDP(ctx)
	require.NoError(t, err)
	t.Logf("%s: %v", res.Detail, res.Evidence)
	assert.Equal(t, Fail, res.Status)
	assert.Contains(t, res.Detail, "dropped there as martian sources")
	sent := evidenceUint(t, res, "sent")
	assert.GreaterOrEqual(t, evidenceUint(t, res, "vB.rx_packets_delta"), sent, "the datagrams must cross the cable")
	assert.GreaterOrEqual(t, evidenceUint(t, res, "in_martian_src_delta"), sent, "every datagram is a martian on vB")
	assert.Equal(t, uint64(0), evidenceUint(t, res, "received"))
	assert.Equal(t, uint64(0), evidenceUint(t, res, "lo.rx_packets_delta"))
}

// TestProbePortTaken: when UDP 4791 is held (as an rxe device holds it), the udp layer cannot
// listen and judges by the counters alone.
func TestProbePortTaken(t *testing.T) {
	testenv.RequireRoot(t)
	lab := newFixLab(t)
	lab.sysctls(t, "accept_local", "1")
	lab.sysctls(t, "rp_filter", "2")
	var holder int
	require.NoError(t, nsutil.Do(lab.ns.Handle, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		holder = fd
		return unix.Bind(fd, &unix.SockaddrInet4{Port: probePort})
	}))
	defer unix.Close(holder)

	rep, err := Run(context.Background(), lab.env(t), fixScenario())
	require.NoError(t, err)
	require.True(t, rep.Passed, rep.Summary())
	for _, d := range rep.Directions {
		u := d.Layers[4]
		assert.Contains(t, u.Evidence["listener"], "address already in use")
		assert.NotContains(t, u.Evidence, "received")
		dst := "vB"
		if d.Name == "b->a" {
			dst = "vA"
		}
		assert.GreaterOrEqual(t, evidenceUint(t, u, dst+".rx_packets_delta"), uint64(probeDatagrams))
		assert.Equal(t, uint64(0), evidenceUint(t, u, "lo.rx_packets_delta"))
	}
	// The holder got every datagram: 1 neighbour trigger and probeDatagrams per direction.
	got := 0
	buf := make([]byte, 64)
	for {
		if _, _, err := unix.Recvfrom(holder, buf, unix.MSG_DONTWAIT); err != nil {
			break
		}
		got++
	}
	assert.Equal(t, 2*(1+probeDatagrams), got)
}

// TestProbePayload pins the datagram rxe must drop harmlessly (see probePayload): longer than
// a BTH, shorter than the shortest RoCE packet, with a UD SEND-only opcode whose headers it
// cannot hold, and the nonce in the PSN.
func TestProbePayload(t *testing.T) {
	b := probePayload([3]byte{0xaa, 0xbb, 0xcc})
	assert.Len(t, b, 15)
	assert.Greater(t, len(b), 12, "a BTH is 12 bytes: shorter takes rxe's crashing drop")
	assert.Less(t, len(b), 16, "BTH + ICRC is the shortest RoCE packet")
	assert.Equal(t, byte(0x64), b[0], "IB_OPCODE_UD_SEND_ONLY")
	assert.Less(t, len(b), 12+8+4, "UD SEND-only needs BTH + DETH + ICRC")
	assert.Equal(t, []byte{0xaa, 0xbb, 0xcc}, b[9:12])
	assert.Equal(t, []byte{0, 0, 0}, b[5:8], "destination QP 0")
}

// TestProbeRXESafe: over IPv6 the probe sends to dB:4791 only when every rxe device on D has dB
// as a RoCE v2 GID (else rxe's early drop would crash the kernel); other devices, and IPv4,
// do not matter.
func TestProbeRXESafe(t *testing.T) {
	root := t.TempDir()
	write := func(rel, v string) {
		t.Helper()
		p := filepath.Join(root, rel)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(v+"\n"), 0o644))
	}
	gid := func(dev string, i int, g string) {
		write(fmt.Sprintf("class/infiniband/%s/ports/1/gids/%d", dev, i), g)
		write(fmt.Sprintf("class/infiniband/%s/ports/1/gid_attrs/types/%d", dev, i), "RoCE v2")
	}
	write("class/infiniband/rxe1/parent", "vB")
	gid("rxe1", 0, "fe80:0000:0000:0000:0000:00ff:fe00:0002")
	write("class/infiniband/rxe0/parent", "vA") // on the other NIC: not in the way
	gid("rxe0", 0, "fe80:0000:0000:0000:0000:00ff:fe00:0001")

	done, cancel := context.WithCancel(context.Background())
	cancel() // look once, do not wait for the GID
	p := &prober{env: &host.Env{SysfsRoot: root}, dst: probeEnd{nic: "vB", addr: net.ParseIP("fd00::2")}}
	msg := p.rxeSafe(done)
	assert.Contains(t, msg, "rxe device rxe1 on vB has no RoCE v2 GID for fd00::2")
	assert.Contains(t, msg, "sends none to port 4791")

	gid("rxe1", 1, "fd00:0000:0000:0000:0000:0000:0000:0002")
	assert.Empty(t, p.rxeSafe(done))

	p.dst.addr = net.ParseIP("10.10.0.9")
	assert.Empty(t, p.rxeSafe(done), "IPv4's drop path is harmless")
	p.dst.addr = net.ParseIP("fd00::2")
	p.env.SysfsRoot = t.TempDir()
	assert.Empty(t, p.rxeSafe(done), "no RDMA: nothing but the probe listens on 4791")
}

// TestProbeReportIPv6Label: an IPv6 direction says so wherever it is named.
func TestProbeReportIPv6Label(t *testing.T) {
	r := &Report{Lab: "seed-v6", Directions: []DirectionReport{{Name: "a->b", Family: scenario.FamilyIPv6, From: "a (vA fd00::1)", To: "b (vB fd00::2)",
		Layers: []LayerResult{{Layer: LayerRouteOut, Status: Fail, Detail: "fd00::1 -> fd00::2 goes to lo as local"}}}}}
	assert.Equal(t, "fail at a->b (ipv6) route-out: fd00::1 -> fd00::2 goes to lo as local", r.Summary())
	var b bytes.Buffer
	require.NoError(t, r.WriteText(&b))
	assert.Contains(t, b.String(), "a->b (ipv6): a (vA fd00::1) -> b (vB fd00::2)\n")
}
