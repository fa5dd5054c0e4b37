package verbs

import (
	"errors"
	"net"
	"strings"
	"syscall"
	"testing"
)

func TestGIDFromIP(t *testing.T) {
	g, err := GIDFromIP(net.ParseIP("10.98.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	want := GID{10: 0xff, 11: 0xff, 12: 10, 13: 98, 14: 0, 15: 1}
	if g != want {
		t.Errorf("GIDFromIP(10.98.0.1) = % x, want % x", g[:], want[:])
	}
	if g.String() != "10.98.0.1" && g.String() != "::ffff:10.98.0.1" {
		t.Errorf("String() = %q", g.String())
	}
	if _, err := GIDFromIP(nil); !errors.Is(err, syscall.EINVAL) {
		t.Errorf("GIDFromIP(nil) = %v, want EINVAL", err)
	}
}

func TestCheckRTR(t *testing.T) {
	good := RTRConfig{Port: 1, RemoteQPN: 0x11, RemotePSN: 0x123456, DestGID: GID{15: 1}, SGIDIndex: 1, PathMTU: MTU1024, MinRNRTimer: 12}
	if err := checkRTR("rtr", good); err != nil {
		t.Fatalf("valid config rejected: %v", err)
	}
	cases := []struct {
		name string
		mod  func(*RTRConfig)
		msg  string
	}{
		{"port 0", func(c *RTRConfig) { c.Port = 0 }, "port 0 out of range"},
		{"qpn 0", func(c *RTRConfig) { c.RemoteQPN = 0 }, "remote qpn 0x0"},
		{"psn 25 bits", func(c *RTRConfig) { c.RemotePSN = 1 << 24 }, "remote psn 0x1000000 does not fit in 24 bits"},
		{"mtu 1500", func(c *RTRConfig) { c.PathMTU = 1500 }, "path mtu 1500"},
		{"zero gid", func(c *RTRConfig) { c.DestGID = GID{} }, "destination gid is zero"},
		{"rnr timer", func(c *RTRConfig) { c.MinRNRTimer = 32 }, "min rnr timer 32"},
	}
	for _, c := range cases {
		cfg := good
		c.mod(&cfg)
		err := checkRTR("modify qp to RTR", cfg)
		if !errors.Is(err, syscall.EINVAL) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: %v, want EINVAL mentioning %q", c.name, err, c.msg)
		}
	}
}

func TestCheckRTS(t *testing.T) {
	if err := checkRTS("rts", QPTypeRC, RTSConfig{PSN: 1, Timeout: 12, RetryCnt: 2, RNRRetry: 7}); err != nil {
		t.Fatalf("valid config rejected: %v", err)
	}
	// UD ignores the RC-only fields but still checks the PSN.
	if err := checkRTS("rts", QPTypeUD, RTSConfig{PSN: 1, RetryCnt: 99}); err != nil {
		t.Errorf("UD with RC-only garbage rejected: %v", err)
	}
	for _, cfg := range []RTSConfig{{PSN: 1 << 24}, {Timeout: 32}, {RetryCnt: 8}, {RNRRetry: 8}} {
		if err := checkRTS("rts", QPTypeRC, cfg); !errors.Is(err, syscall.EINVAL) {
			t.Errorf("%+v: %v, want EINVAL", cfg, err)
		}
	}
}

// TestClosedAndBusy exercises the lifetime rules on nodes without any device: a closed object
// refuses use, a parent with open children refuses Close and stays usable, Close is idempotent.
func TestClosedAndBusy(t *testing.T) {
	var destroyed []string
	fake := func(name string) func(string, unsafePointer) error {
		return func(string, unsafePointer) error { destroyed = append(destroyed, name); return nil }
	}
	parent, child := &node{}, &node{}
	parent.adopt(fakeHandle(1))
	child.adopt(fakeHandle(2), parent)

	err := parent.close("close parent", fake("parent"))
	if !errors.Is(err, syscall.EBUSY) || !strings.Contains(err.Error(), "1 objects made from it are still open") {
		t.Fatalf("close with open child = %v, want EBUSY", err)
	}
	if _, err := parent.acquire("use parent"); err != nil {
		t.Fatalf("parent unusable after refused close: %v", err)
	}
	parent.mu.RUnlock()

	if err := child.close("close child", fake("child")); err != nil {
		t.Fatal(err)
	}
	if err := child.close("close child", fake("child again")); err != nil {
		t.Fatalf("second close = %v, want nil", err)
	}
	if _, err := child.acquire("use child"); !errors.Is(err, ErrClosed) {
		t.Errorf("use after close = %v, want ErrClosed", err)
	}
	if err := parent.close("close parent", fake("parent")); err != nil {
		t.Fatalf("close after children = %v", err)
	}
	if got := strings.Join(destroyed, ","); got != "child,parent" {
		t.Errorf("destroyed %s, want child,parent exactly once each", got)
	}

	// A failed destroy keeps the handle so Close can be retried.
	n := &node{}
	n.adopt(fakeHandle(3))
	if err := n.close("close", func(string, unsafePointer) error { return syscall.EIO }); !errors.Is(err, syscall.EIO) {
		t.Fatalf("failed destroy = %v", err)
	}
	if _, err := n.acquire("use"); err != nil {
		t.Errorf("handle lost after failed destroy: %v", err)
	}
	n.mu.RUnlock()
}

func TestPostRangeChecked(t *testing.T) {
	ctx := &Context{name: "fake0"}
	mr := &MR{pd: &PD{ctx: ctx}, size: 100}
	qp := &QP{ctx: ctx, typ: QPTypeRC, qpn: 0x11}
	for _, r := range [][2]int{{-1, 10}, {0, 101}, {90, 11}, {101, 0}, {5, -1}} {
		err := qp.PostSend(mr, r[0], r[1], 1, true)
		if !errors.Is(err, syscall.EINVAL) || !strings.Contains(err.Error(), "outside the 100-byte memory region") {
			t.Errorf("PostSend(offset %d, len %d) = %v, want EINVAL range error", r[0], r[1], err)
		}
	}
	other := &MR{pd: &PD{ctx: &Context{name: "fake1"}}, size: 100}
	if err := qp.PostRecv(other, 0, 10, 1); !errors.Is(err, syscall.EINVAL) || !strings.Contains(err.Error(), "registered on fake1") {
		t.Errorf("PostRecv with another device's MR = %v", err)
	}
	if err := qp.PostSendUD(mr, 0, 10, 1, &AH{}, 1, 1); !errors.Is(err, syscall.EINVAL) {
		t.Errorf("PostSendUD on RC = %v, want EINVAL", err)
	}
	// In range, but the QP has no handle: ErrClosed, not a crash.
	if err := qp.PostSend(mr, 0, 100, 1, true); !errors.Is(err, ErrClosed) {
		t.Errorf("PostSend on a closed QP = %v, want ErrClosed", err)
	}
}

// One goroutine at a time polls through the CQ's own buffer; another polling meanwhile gets
// none (and polls through a pooled one) instead of sharing it.
func TestPollScratchOnePollerAtATime(t *testing.T) {
	cq := &CQ{scratch: fakeHandle(1)}
	first := cq.claimScratch()
	if first != cq.scratch {
		t.Fatalf("first claim = %p, want the CQ's buffer %p", first, cq.scratch)
	}
	if second := cq.claimScratch(); second != nil {
		t.Fatalf("claim while the buffer is in use = %p, want nil", second)
	}
	cq.polling.Store(false)
	if again := cq.claimScratch(); again != cq.scratch {
		t.Fatalf("claim after release = %p, want the CQ's buffer", again)
	}
}

// TestNewPingPongRefusesBadConfig: a ping-pong is checked before any C state exists.
func TestNewPingPongRefusesBadConfig(t *testing.T) {
	good := PingPongConfig{Size: 64, Messages: 10, SendQueue: 4, Window: 10, EchoWRID: 1 << 62}
	for _, tc := range []struct {
		name string
		edit func(*PingPongConfig)
		want string
	}{
		{"no size", func(c *PingPongConfig) { c.Size = 0 }, "must be positive"},
		{"echo id of two bits", func(c *PingPongConfig) { c.EchoWRID = 3 << 40 }, "one bit above every message number"},
		{"echo id among the messages", func(c *PingPongConfig) { c.EchoWRID = 8 }, "one bit above every message number"},
		{"no QP", func(c *PingPongConfig) {}, "the pinger needs a QP, a CQ and an MR"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good
			tc.edit(&cfg)
			pp, err := NewPingPong(cfg)
			if pp != nil || !errors.Is(err, syscall.EINVAL) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewPingPong = %v, %v; want EINVAL saying %q", pp, err, tc.want)
			}
		})
	}
}

// TestNewSendStreamRefusesBadConfig: a send stream is checked before any C state exists.
func TestNewSendStreamRefusesBadConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  SendStreamConfig
		want string
	}{
		{"no QP", SendStreamConfig{Size: 64, Messages: 10, Slots: 10, Queue: 4, List: 4}, "needs a QP, a CQ and an MR"},
		{"UD", SendStreamConfig{QP: &QP{typ: QPTypeUD}, CQ: &CQ{}, MR: &MR{pd: &PD{}}}, "a send stream is RC"},
		{"no messages", SendStreamConfig{QP: &QP{typ: QPTypeRC}, CQ: &CQ{}, MR: &MR{pd: &PD{}}, Size: 64, Slots: 1, Queue: 1, List: 1}, "must be positive"},
		{"list too long", SendStreamConfig{QP: &QP{typ: QPTypeRC}, CQ: &CQ{}, MR: &MR{pd: &PD{}}, Size: 64, Messages: 1, Slots: 1, Queue: 1, List: 65}, "list 65 outside 1..64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := NewSendStream(tc.cfg)
			if st != nil || !errors.Is(err, syscall.EINVAL) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewSendStream = %v, %v; want EINVAL saying %q", st, err, tc.want)
			}
		})
	}
}
