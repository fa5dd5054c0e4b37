package kernel

import (
	"context"
	"errors"
	"time"

	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// ChangeWatch tells a wait for the kernel (DAD, linkwatch, addrconf) when a namespace's links,
// addresses or routes changed, from rtnetlink's notifications, so that it looks again when
// something happened rather than every few milliseconds: each look is three netlink dumps and
// some sysctl reads, which under TCG cost milliseconds of CPU, and a DAD wait lasts a second.
type ChangeWatch struct {
	sock *nl.NetlinkSocket
	buf  []byte
}

// watchedGroups are the rtnetlink groups whose messages SettleState depends on.
var watchedGroups = []uint{
	unix.RTNLGRP_LINK,
	unix.RTNLGRP_IPV4_IFADDR, unix.RTNLGRP_IPV6_IFADDR,
	unix.RTNLGRP_IPV4_ROUTE, unix.RTNLGRP_IPV6_ROUTE,
}

// unwatchedPoll is how often Wait returns without a watch (the subscription failed): the
// fixed poll every wait used before there was one.
const unwatchedPoll = 20 * time.Millisecond

// WatchChanges subscribes to ns's link, address and route notifications (an unset ns: the
// calling thread's namespace). Subscribe before reading the state that is waited on, so that
// no change between the read and the Wait is missed.
func WatchChanges(ns netns.NsHandle) (*ChangeWatch, error) {
	cur := netns.None()
	if !ns.IsOpen() {
		ns = netns.None()
	}
	sock, err := nl.SubscribeAt(ns, cur, unix.NETLINK_ROUTE, watchedGroups...)
	if err != nil {
		return nil, err
	}
	return &ChangeWatch{sock: sock, buf: make([]byte, 64<<10)}, nil
}

// Close ends the subscription; a nil watch is fine.
func (w *ChangeWatch) Close() {
	if w != nil && w.sock != nil {
		w.sock.Close()
	}
}

// Wait returns once a notification has arrived since the previous Wait, after at most
// fallback (a change that sends none, such as a sysctl write, is seen then), or at ctx's
// deadline. It reports whether a notification arrived. On a nil watch it sleeps unwatchedPoll.
func (w *ChangeWatch) Wait(ctx context.Context, fallback time.Duration) bool {
	if w == nil || w.sock == nil {
		select {
		case <-ctx.Done():
		case <-time.After(unwatchedPoll):
		}
		return false
	}
	d := fallback
	if dl, ok := ctx.Deadline(); ok {
		d = min(d, time.Until(dl))
	}
	if d <= 0 || ctx.Err() != nil {
		return w.drain()
	}
	fds := []unix.PollFd{{Fd: int32(w.sock.GetFd()), Events: unix.POLLIN}}
	ms := int((d + time.Millisecond - 1) / time.Millisecond)
	for {
		n, err := unix.Poll(fds, ms)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || n == 0 {
			return w.drain()
		}
		break
	}
	w.drain()
	return true
}

// drain reads every queued notification without blocking and reports whether there was one.
// An overflowed socket (ENOBUFS: notifications were lost) counts as a change.
func (w *ChangeWatch) drain() bool {
	got := false
	for {
		n, _, err := unix.Recvfrom(w.sock.GetFd(), w.buf, unix.MSG_DONTWAIT)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.ENOBUFS):
			got = true
			continue
		case err != nil:
			return got
		case n > 0:
			got = true
		default:
			return got
		}
	}
}
