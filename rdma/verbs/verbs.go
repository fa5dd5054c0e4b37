// Package verbs is a small ibverbs binding for SEND-only RDMA traffic (RC and UD) between
// local RDMA devices, e.g. two rdma_rxe devices on the ends of a veth pair in one process.
//
// All C lives in verbs_cgo.go (the only file with `import "C"`, built with linux && cgo);
// without cgo every call returns an error that matches ErrNoVerbs, so the package builds and
// its pure parts test everywhere.
//
// # Lifetime
//
// Every object has an explicit, idempotent Close; there are no finalizers. Objects must be
// closed children first, the order libibverbs requires:
//
//	QP, AH, MR  →  CQ, PD  →  Context
//
// A parent's Close fails with EBUSY (and leaves the parent usable) while objects made from it
// are open, instead of freeing memory that a child still points at. Methods of a closed
// object return ErrClosed. All methods are safe for concurrent use; Close waits for calls in
// flight on the same object.
//
// # Errors
//
// Failed calls return *Error{Op, Err} with Err a syscall.Errno where libibverbs gave one, so
// errors.Is(err, syscall.ETIMEDOUT) works (e.g. modify-to-RTR when the peer's MAC cannot be
// resolved). A completion with a non-success WCStatus is not an error of Poll: it is data.
package verbs

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/rocebed/rocebed/rdma"
)

// GRHLen is the size of the Global Routing Header that precedes every UD receive: a UD
// receive buffer must be GRHLen bytes longer than the largest message, and the payload
// starts at offset GRHLen.
const GRHLen = 40

// PortState is the logical state of a port (enum ibv_port_state): the same enum sysfs shows in
// ports/N/state, so it is rdma's type.
type PortState = rdma.PortState

// Port states; a port carries traffic only when PortActive.
const (
	PortNOP         = rdma.PortNop
	PortDown        = rdma.PortDown
	PortInit        = rdma.PortInit
	PortArmed       = rdma.PortArmed
	PortActive      = rdma.PortActive
	PortActiveDefer = rdma.PortActiveDefer
)

// MTU is an IB path MTU (enum ibv_mtu). RoCE uses the largest value that fits the netdev MTU
// minus headers: 1024 on a 1500-byte veth.
type MTU uint32

// Path MTUs.
const (
	MTU256  MTU = 1
	MTU512  MTU = 2
	MTU1024 MTU = 3
	MTU2048 MTU = 4
	MTU4096 MTU = 5
)

// Bytes returns the MTU in bytes, or 0 for an invalid value.
func (m MTU) Bytes() int {
	if m < MTU256 || m > MTU4096 {
		return 0
	}
	return 128 << m
}

// String returns the MTU in bytes ("1024").
func (m MTU) String() string {
	if b := m.Bytes(); b != 0 {
		return strconv.Itoa(b)
	}
	return "MTU(" + strconv.FormatUint(uint64(m), 10) + ")"
}

// MTUFromBytes converts 256, 512, 1024, 2048 or 4096 to an MTU.
func MTUFromBytes(n int) (MTU, error) {
	for m := MTU256; m <= MTU4096; m++ {
		if m.Bytes() == n {
			return m, nil
		}
	}
	return 0, fmt.Errorf("path mtu %d is not one of 256, 512, 1024, 2048, 4096: %w", n, syscall.EINVAL)
}

// LinkLayer is the link layer of a port (IBV_LINK_LAYER_*); rxe ports are Ethernet (RoCE).
type LinkLayer uint8

// Link layers.
const (
	LinkLayerUnspecified LinkLayer = 0
	LinkLayerInfiniBand  LinkLayer = 1
	LinkLayerEthernet    LinkLayer = 2
)

// String returns "InfiniBand", "Ethernet" or "unspecified".
func (l LinkLayer) String() string {
	switch l {
	case LinkLayerUnspecified:
		return "unspecified"
	case LinkLayerInfiniBand:
		return "InfiniBand"
	case LinkLayerEthernet:
		return "Ethernet"
	}
	return "LinkLayer(" + strconv.FormatUint(uint64(l), 10) + ")"
}

// PortAttr is the part of struct ibv_port_attr that a RoCE testbed needs.
type PortAttr struct {
	State       PortState
	MaxMTU      MTU
	ActiveMTU   MTU
	GIDTableLen int
	LinkLayer   LinkLayer
}

// GID is a 16-byte port GID; for RoCE v2 over IPv4 it is the IPv4-mapped IPv6 address.
type GID [16]byte

// GIDFromIP returns the GID of ip (IPv4 addresses become ::ffff:a.b.c.d), or an error for an
// invalid address.
func GIDFromIP(ip net.IP) (GID, error) {
	var g GID
	ip16 := ip.To16()
	if ip16 == nil {
		return g, fmt.Errorf("gid from ip %q: not an IP address: %w", ip.String(), syscall.EINVAL)
	}
	copy(g[:], ip16)
	return g, nil
}

// String formats the GID as an IPv6 address ("::ffff:10.98.0.1").
func (g GID) String() string { return net.IP(g[:]).String() }

// QPType is a transport service type (enum ibv_qp_type).
type QPType uint32

// Supported QP types.
const (
	QPTypeRC QPType = 2 // IBV_QPT_RC, reliable connected
	QPTypeUD QPType = 4 // IBV_QPT_UD, unreliable datagram
)

// String returns "RC" or "UD".
func (t QPType) String() string {
	switch t {
	case QPTypeRC:
		return "RC"
	case QPTypeUD:
		return "UD"
	}
	return "QPType(" + strconv.FormatUint(uint64(t), 10) + ")"
}

// QPConfig describes a QP to create (struct ibv_qp_init_attr). Zero limits default to
// MaxSend 16, MaxRecv 16, MaxSGE 1; MaxInline 0 means no inline sends.
type QPConfig struct {
	Type      QPType
	SendCQ    *CQ
	RecvCQ    *CQ
	MaxSend   int
	MaxRecv   int
	MaxSGE    int
	MaxInline int
}

// QPCaps are the limits the device actually granted (ibv_create_qp updates the request).
type QPCaps struct {
	MaxSend, MaxRecv, MaxSendSGE, MaxRecvSGE, MaxInline int
}

// RTRConfig are the attributes of the INIT → RTR transition. For an RC QP it names the
// remote end (ibv_modify_qp(3): STATE|AV|PATH_MTU|DEST_QPN|RQ_PSN|MAX_DEST_RD_ATOMIC|
// MIN_RNR_TIMER); a UD QP moves with STATE only and ignores every field.
type RTRConfig struct {
	Port        int    // local port, 1 on rxe
	RemoteQPN   uint32 // the peer QP's number
	RemotePSN   uint32 // the peer's send PSN: our receive PSN (24 bits)
	DestGID     GID    // the peer port's GID (RoCE v2: ::ffff:<peer IPv4>)
	SGIDIndex   int    // index of our own GID to send from (the RoCE v2 one of our address)
	PathMTU     MTU    // at most the port's active MTU
	HopLimit    uint8  // GRH hop limit / IP TTL; 0 means 64
	MinRNRTimer uint8  // 5-bit RNR NAK timer code the peer waits before resending to us
}

// RTSConfig are the attributes of the RTR → RTS transition. RC uses all of them
// (STATE|TIMEOUT|RETRY_CNT|RNR_RETRY|SQ_PSN|MAX_QP_RD_ATOMIC); UD only PSN (STATE|SQ_PSN).
type RTSConfig struct {
	PSN      uint32 // our first send PSN (24 bits)
	Timeout  uint8  // local ACK timeout, 4.096 µs × 2^Timeout (5 bits; 0 = infinite)
	RetryCnt uint8  // retransmissions before IBV_WC_RETRY_EXC_ERR (3 bits); 7 makes rxe retry for a very long time
	RNRRetry uint8  // RNR NAK retries (3 bits; 7 = infinite)
}

// Completion is one polled work completion (struct ibv_wc).
type Completion struct {
	WRID      uint64
	Status    WCStatus
	Opcode    WCOpcode // valid only when Status is WCSuccess (ibv_poll_cq(3))
	ByteLen   uint32   // receive: bytes written, including the 40-byte GRH on UD
	QPN       uint32   // the local QP
	SrcQP     uint32   // UD receive: the sender's QP
	Flags     WCFlags
	VendorErr uint32
	ImmData   uint32 // host order; valid when Flags has WCFlagWithImm
}

// String renders a completion for logs: `wr 3 send success len=1024 qp=0x11`. A failed
// completion omits the opcode, which is undefined then: `wr 1 transport retry counter
// exceeded qp=0x11 vendor_err=0x0`.
func (c Completion) String() string {
	if c.Status != WCSuccess {
		return fmt.Sprintf("wr %d %s qp=%#x vendor_err=%#x", c.WRID, c.Status, c.QPN, c.VendorErr)
	}
	return fmt.Sprintf("wr %d %s %s len=%d qp=%#x", c.WRID, c.Opcode, c.Status, c.ByteLen, c.QPN)
}

// node is the lifetime bookkeeping shared by all verbs objects: the C handle (nil once
// closed), a lock that Close takes exclusively, and the count of open children.
type node struct {
	mu      sync.RWMutex
	h       unsafe.Pointer
	kids    atomic.Int32
	parents []*node
}

// acquire read-locks n and returns its handle, or ErrClosed. Callers release with n.mu.RUnlock
// only when err is nil.
func (n *node) acquire(op string) (unsafe.Pointer, error) {
	n.mu.RLock()
	if n.h == nil {
		n.mu.RUnlock()
		return nil, &Error{Op: op, Err: ErrClosed}
	}
	return n.h, nil
}

// adopt records a freshly created child under parents.
func (n *node) adopt(h unsafe.Pointer, parents ...*node) {
	n.h = h
	n.parents = parents
	for _, p := range parents {
		p.kids.Add(1)
	}
}

// close runs destroy once: a no-op when already closed, EBUSY while children are open, and
// the handle stays valid if destroy fails so that Close can be retried.
func (n *node) close(op string, destroy func(op string, h unsafe.Pointer) error) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.h == nil {
		return nil
	}
	if k := n.kids.Load(); k > 0 {
		return &Error{Op: op, Err: fmt.Errorf("%d objects made from it are still open; close QPs, AHs and MRs before CQs and PDs, and those before the context (%w)", k, syscall.EBUSY)}
	}
	if err := destroy(op, n.h); err != nil {
		return err
	}
	n.h = nil
	for _, p := range n.parents {
		p.kids.Add(-1)
	}
	return nil
}

// ListDevices returns the names of the RDMA devices libibverbs sees (`ibv_devices`). Without
// kernel uverbs it returns an error matching ErrNoVerbs; with uverbs but no device, an empty list.
func ListDevices() ([]string, error) { return sysListDevices() }

// Context is an open device (struct ibv_context).
type Context struct {
	node
	name string
}

// OpenDevice opens the RDMA device called name (e.g. "rxe0"). The error matches ErrNoVerbs
// when the kernel has no uverbs and ErrDeviceNotFound when no device has that name.
func OpenDevice(name string) (*Context, error) {
	h, err := sysOpenDevice(name)
	if err != nil {
		return nil, err
	}
	c := &Context{name: name}
	c.adopt(h)
	return c, nil
}

// Name returns the device name given to OpenDevice.
func (c *Context) Name() string { return c.name }

// Close closes the device. PDs and CQs made from it must be closed first.
func (c *Context) Close() error {
	return c.close("close device "+c.name, sysCloseDevice)
}

// QueryPort returns the attributes of port (1 on rxe).
func (c *Context) QueryPort(port int) (PortAttr, error) {
	op := fmt.Sprintf("query port %d of %s", port, c.name)
	if err := checkPort(op, port); err != nil {
		return PortAttr{}, err
	}
	h, err := c.acquire(op)
	if err != nil {
		return PortAttr{}, err
	}
	defer c.mu.RUnlock()
	return sysQueryPort(op, h, port)
}

// QueryGID returns entry index of the GID table of port. RoCE devices fill the table from the
// netdev's addresses; an unused entry is all zeros.
func (c *Context) QueryGID(port, index int) (GID, error) {
	op := fmt.Sprintf("query gid %d of %s port %d", index, c.name, port)
	if err := checkPort(op, port); err != nil {
		return GID{}, err
	}
	if index < 0 || index > 0xffff {
		return GID{}, &Error{Op: op, Err: fmt.Errorf("gid index %d out of range: %w", index, syscall.EINVAL)}
	}
	h, err := c.acquire(op)
	if err != nil {
		return GID{}, err
	}
	defer c.mu.RUnlock()
	return sysQueryGID(op, h, port, index)
}

// PD is a protection domain (struct ibv_pd).
type PD struct {
	node
	ctx *Context
}

// AllocPD allocates a protection domain.
func (c *Context) AllocPD() (*PD, error) {
	op := "alloc pd on " + c.name
	h, err := c.acquire(op)
	if err != nil {
		return nil, err
	}
	defer c.mu.RUnlock()
	p, err := sysAllocPD(op, h)
	if err != nil {
		return nil, err
	}
	pd := &PD{ctx: c}
	pd.adopt(p, &c.node)
	return pd, nil
}

// Close deallocates the PD. Its QPs, AHs and MRs must be closed first.
func (pd *PD) Close() error {
	return pd.close("dealloc pd on "+pd.ctx.name, sysDeallocPD)
}

// MR is a registered memory region whose buffer libibverbs allocated in C memory (page
// aligned, zeroed), so the device may read and write it while Go's garbage collector moves
// Go memory around.
type MR struct {
	node
	pd         *PD
	buf        unsafe.Pointer
	size       int
	lkey, rkey uint32
}

// RegMR allocates a zeroed buffer of size bytes and registers it with local write access
// (needed to receive into it). The buffer is freed by Close, after deregistration.
func (pd *PD) RegMR(size int) (*MR, error) {
	op := fmt.Sprintf("register mr of %d bytes on %s", size, pd.ctx.name)
	if size <= 0 {
		return nil, &Error{Op: op, Err: fmt.Errorf("size must be positive: %w", syscall.EINVAL)}
	}
	h, err := pd.acquire(op)
	if err != nil {
		return nil, err
	}
	defer pd.mu.RUnlock()
	r, err := sysRegMR(op, h, size)
	if err != nil {
		return nil, err
	}
	mr := &MR{pd: pd, buf: r.buf, size: size, lkey: r.lkey, rkey: r.rkey}
	mr.adopt(r.mr, &pd.node)
	return mr, nil
}

// Bytes returns the registered buffer. The slice aliases C memory: it is valid only until
// Close, after which it must not be touched (Bytes then returns nil). Do not write a region
// that a posted, not yet completed work request uses.
func (mr *MR) Bytes() []byte {
	mr.mu.RLock()
	defer mr.mu.RUnlock()
	if mr.h == nil {
		return nil
	}
	return unsafe.Slice((*byte)(mr.buf), mr.size)
}

// Len returns the size of the buffer in bytes.
func (mr *MR) Len() int { return mr.size }

// LKey returns the local key used in scatter/gather entries.
func (mr *MR) LKey() uint32 { return mr.lkey }

// RKey returns the remote key (unused by SEND, reported for diagnostics).
func (mr *MR) RKey() uint32 { return mr.rkey }

// Close deregisters the region and frees its buffer.
func (mr *MR) Close() error {
	return mr.close("deregister mr", func(op string, h unsafe.Pointer) error { return sysDeregMR(op, h, mr.buf) })
}

// CQ is a completion queue (struct ibv_cq), polled without a completion channel.
type CQ struct {
	node
	ctx     *Context
	pollOp  string         // the error prefix of Poll, made once: polling must not allocate
	scratch unsafe.Pointer // what a poll fills, for one poller at a time (polling)
	polling atomic.Bool
}

// CreateCQ creates a completion queue for at least depth completions.
func (c *Context) CreateCQ(depth int) (*CQ, error) {
	op := fmt.Sprintf("create cq of depth %d on %s", depth, c.name)
	if depth <= 0 {
		return nil, &Error{Op: op, Err: fmt.Errorf("depth must be positive: %w", syscall.EINVAL)}
	}
	h, err := c.acquire(op)
	if err != nil {
		return nil, err
	}
	defer c.mu.RUnlock()
	p, err := sysCreateCQ(op, h, depth)
	if err != nil {
		return nil, err
	}
	cq := &CQ{ctx: c, pollOp: "poll cq on " + c.name, scratch: newPollScratch()}
	cq.adopt(p, &c.node)
	return cq, nil
}

// Close destroys the CQ. QPs that use it must be closed first.
func (cq *CQ) Close() error {
	return cq.close("destroy cq on "+cq.ctx.name, sysDestroyCQ)
}

// Poll returns up to max completions that are ready now (ibv_poll_cq), possibly none.
func (cq *CQ) Poll(max int) ([]Completion, error) {
	if max <= 0 {
		return nil, &Error{Op: cq.pollOp, Err: fmt.Errorf("max must be positive: %w", syscall.EINVAL)}
	}
	got := make([]Completion, 0, min(max, PollBatch))
	for len(got) < max {
		var buf [PollBatch]Completion
		want := min(max-len(got), PollBatch)
		n, err := cq.PollInto(buf[:want])
		got = append(got, buf[:n]...)
		if err != nil || n < want {
			return got, err
		}
	}
	return got, nil
}

// PollBatch is the most completions one PollInto returns.
const PollBatch = 64

// PollInto polls up to len(dst) (at most PollBatch) completions that are ready now into dst
// and returns how many it wrote. It allocates nothing, so a loop that polls continuously makes
// no garbage.
func (cq *CQ) PollInto(dst []Completion) (int, error) {
	if len(dst) == 0 {
		return 0, &Error{Op: cq.pollOp, Err: fmt.Errorf("no room for completions: %w", syscall.EINVAL)}
	}
	h, err := cq.acquire(cq.pollOp)
	if err != nil {
		return 0, err
	}
	defer cq.mu.RUnlock()
	scratch := cq.claimScratch()
	if scratch != nil {
		defer cq.polling.Store(false)
	}
	return sysPollCQ(cq.pollOp, h, scratch, dst[:min(len(dst), PollBatch)])
}

// claimScratch returns the CQ's own poll buffer, which the caller releases by clearing
// cq.polling, or nil while another goroutine has it (sysPollCQ then takes a pooled one).
func (cq *CQ) claimScratch() unsafe.Pointer {
	if cq.polling.CompareAndSwap(false, true) {
		return cq.scratch
	}
	return nil
}

// PollUntil polls until n completions have arrived or ctx is done. It sleeps between empty
// polls (50 µs doubling to 1 ms) instead of spinning. When ctx ends first it returns the
// completions it has together with an *Error wrapping ctx.Err(), so callers can tell
// "fewer than expected" from a failed poll and still judge what did arrive.
func (cq *CQ) PollUntil(ctx context.Context, n int) ([]Completion, error) {
	var got []Completion
	const minWait, maxWait = 50 * time.Microsecond, time.Millisecond
	wait := minWait
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for len(got) < n {
		batch, err := cq.Poll(n - len(got))
		if err != nil {
			return got, err
		}
		got = append(got, batch...)
		if len(batch) > 0 {
			wait = minWait
			continue
		}
		if timer == nil {
			timer = time.NewTimer(wait)
		} else {
			timer.Reset(wait)
		}
		select {
		case <-ctx.Done():
			return got, &Error{Op: fmt.Sprintf("poll cq on %s: %d of %d completions", cq.ctx.name, len(got), n), Err: ctx.Err()}
		case <-timer.C:
		}
		wait = min(2*wait, maxWait)
	}
	return got, nil
}

// AH is an address handle (struct ibv_ah) naming the destination of UD sends.
type AH struct {
	node
	dgid GID
}

// CreateAH creates a RoCE v2 address handle for dgid: is_global=1 with grh.dgid,
// grh.sgid_index and grh.hop_limit (0 means 64). libibverbs resolves the destination MAC here,
// so on a cold neighbour this blocks up to about a second and fails with ETIMEDOUT when the
// neighbour cannot be resolved.
func (pd *PD) CreateAH(port int, dgid GID, sgidIndex int, hopLimit uint8) (*AH, error) {
	op := fmt.Sprintf("create ah to %s on %s", dgid, pd.ctx.name)
	if err := checkPort(op, port); err != nil {
		return nil, err
	}
	if sgidIndex < 0 || sgidIndex > 0xff {
		return nil, &Error{Op: op, Err: fmt.Errorf("sgid index %d out of range 0..255: %w", sgidIndex, syscall.EINVAL)}
	}
	if hopLimit == 0 {
		hopLimit = 64
	}
	h, err := pd.acquire(op)
	if err != nil {
		return nil, err
	}
	defer pd.mu.RUnlock()
	p, err := sysCreateAH(op, h, port, dgid, sgidIndex, hopLimit)
	if err != nil {
		return nil, err
	}
	ah := &AH{dgid: dgid}
	ah.adopt(p, &pd.node)
	return ah, nil
}

// Close destroys the address handle.
func (ah *AH) Close() error {
	return ah.close("destroy ah to "+ah.dgid.String(), sysDestroyAH)
}

// QP is a queue pair (struct ibv_qp).
type QP struct {
	node
	ctx  *Context
	typ  QPType
	qpn  uint32
	caps QPCaps
	// The error prefixes of the posts, made once: posting must not allocate.
	sendOp, recvOp string
}

// CreateQP creates a QP in state RESET. Only explicitly signalled sends complete on the send
// CQ (sq_sig_all = 0); receives always complete.
func (pd *PD) CreateQP(cfg QPConfig) (*QP, error) {
	op := fmt.Sprintf("create %s qp on %s", cfg.Type, pd.ctx.name)
	if cfg.Type != QPTypeRC && cfg.Type != QPTypeUD {
		return nil, &Error{Op: op, Err: fmt.Errorf("qp type must be RC or UD: %w", syscall.EINVAL)}
	}
	if cfg.SendCQ == nil || cfg.RecvCQ == nil {
		return nil, &Error{Op: op, Err: fmt.Errorf("send and receive CQ are required: %w", syscall.EINVAL)}
	}
	if cfg.SendCQ.ctx != pd.ctx || cfg.RecvCQ.ctx != pd.ctx {
		return nil, &Error{Op: op, Err: fmt.Errorf("CQs belong to another device: %w", syscall.EINVAL)}
	}
	if cfg.MaxSend < 0 || cfg.MaxRecv < 0 || cfg.MaxSGE < 0 || cfg.MaxInline < 0 {
		return nil, &Error{Op: op, Err: fmt.Errorf("negative limit: %w", syscall.EINVAL)}
	}
	if cfg.MaxSend == 0 {
		cfg.MaxSend = 16
	}
	if cfg.MaxRecv == 0 {
		cfg.MaxRecv = 16
	}
	if cfg.MaxSGE == 0 {
		cfg.MaxSGE = 1
	}
	h, err := pd.acquire(op)
	if err != nil {
		return nil, err
	}
	defer pd.mu.RUnlock()
	scq, err := cfg.SendCQ.acquire(op)
	if err != nil {
		return nil, err
	}
	defer cfg.SendCQ.mu.RUnlock()
	rcq := scq
	if cfg.RecvCQ != cfg.SendCQ { // never read-lock one mutex twice: a waiting Close would deadlock it
		if rcq, err = cfg.RecvCQ.acquire(op); err != nil {
			return nil, err
		}
		defer cfg.RecvCQ.mu.RUnlock()
	}
	r, err := sysCreateQP(op, h, scq, rcq, cfg)
	if err != nil {
		return nil, err
	}
	qp := &QP{ctx: pd.ctx, typ: cfg.Type, qpn: r.qpn, caps: r.caps,
		sendOp: fmt.Sprintf("post send on qp %#x on %s", r.qpn, pd.ctx.name),
		recvOp: fmt.Sprintf("post recv on qp %#x on %s", r.qpn, pd.ctx.name)}
	qp.adopt(r.qp, &pd.node, &cfg.SendCQ.node, &cfg.RecvCQ.node)
	return qp, nil
}

// QPN returns the QP number the peer needs.
func (qp *QP) QPN() uint32 { return qp.qpn }

// Type returns RC or UD.
func (qp *QP) Type() QPType { return qp.typ }

// Caps returns the limits the device granted.
func (qp *QP) Caps() QPCaps { return qp.caps }

// Close destroys the QP; outstanding work requests are dropped without completions.
func (qp *QP) Close() error {
	return qp.close(fmt.Sprintf("destroy qp %#x on %s", qp.qpn, qp.ctx.name), sysDestroyQP)
}

// ToInit moves the QP from RESET to INIT on port with P_Key index 0. RC: STATE|PKEY_INDEX|
// PORT|ACCESS_FLAGS (no remote access: SEND only). UD: STATE|PKEY_INDEX|PORT|QKEY with qkey,
// which senders must name in PostSendUD; qkey is ignored for RC.
func (qp *QP) ToInit(port int, qkey uint32) error {
	op := fmt.Sprintf("modify %s qp %#x on %s to INIT", qp.typ, qp.qpn, qp.ctx.name)
	if err := checkPort(op, port); err != nil {
		return err
	}
	h, err := qp.acquire(op)
	if err != nil {
		return err
	}
	defer qp.mu.RUnlock()
	return sysQPToInit(op, h, qp.typ, port, qkey)
}

// ToRTR moves the QP from INIT to RTR (see RTRConfig). For RC the RDMA core resolves the
// destination MAC here: with a cold neighbour this takes about a second, and it fails with
// ETIMEDOUT when the peer does not answer ARP.
func (qp *QP) ToRTR(cfg RTRConfig) error {
	op := fmt.Sprintf("modify %s qp %#x on %s to RTR", qp.typ, qp.qpn, qp.ctx.name)
	if qp.typ == QPTypeRC {
		if err := checkRTR(op, cfg); err != nil {
			return err
		}
		if cfg.HopLimit == 0 {
			cfg.HopLimit = 64
		}
	}
	h, err := qp.acquire(op)
	if err != nil {
		return err
	}
	defer qp.mu.RUnlock()
	return sysQPToRTR(op, h, qp.typ, cfg)
}

// ToRTS moves the QP from RTR to RTS (see RTSConfig).
func (qp *QP) ToRTS(cfg RTSConfig) error {
	op := fmt.Sprintf("modify %s qp %#x on %s to RTS", qp.typ, qp.qpn, qp.ctx.name)
	if err := checkRTS(op, qp.typ, cfg); err != nil {
		return err
	}
	h, err := qp.acquire(op)
	if err != nil {
		return err
	}
	defer qp.mu.RUnlock()
	return sysQPToRTS(op, h, qp.typ, cfg)
}

// PostRecv posts one receive of mr[offset:offset+length] with id wrID. UD receives need
// GRHLen extra bytes in front of the payload.
func (qp *QP) PostRecv(mr *MR, offset, length int, wrID uint64) error {
	op := qp.recvOp
	return qp.post(op, mr, offset, length, func(h, addr unsafe.Pointer) error {
		return sysPostRecv(op, h, addr, length, mr.lkey, wrID)
	})
}

// PostSend posts one SEND of mr[offset:offset+length] on an RC QP. Only signalled sends
// produce a completion; a QP's send queue fills up unless some are signalled. Messages no
// longer than the granted MaxInline are sent inline.
func (qp *QP) PostSend(mr *MR, offset, length int, wrID uint64, signaled bool) error {
	op := qp.sendOp
	if qp.typ != QPTypeRC {
		return &Error{Op: op, Err: fmt.Errorf("PostSend is for RC QPs; use PostSendUD: %w", syscall.EINVAL)}
	}
	inline := length > 0 && length <= qp.caps.MaxInline
	return qp.post(op, mr, offset, length, func(h, addr unsafe.Pointer) error {
		return sysPostSend(op, h, addr, length, mr.lkey, wrID, signaled, inline, nil, 0, 0)
	})
}

// SendWR is one SEND of a PostSends list: mr[Offset:Offset+Length] with id WRID.
type SendWR struct {
	Offset, Length int
	WRID           uint64
	Signaled       bool
}

// PostSends posts the SENDs of wrs on an RC QP, in order, as work-request lists: one
// ibv_post_send call — one doorbell, which for rxe is one system call that runs the requester
// — for up to 64 of them instead of one each. It returns how many were posted; after an error
// the rest were not.
func (qp *QP) PostSends(mr *MR, wrs []SendWR) (int, error) {
	op := qp.sendOp
	if qp.typ != QPTypeRC {
		return 0, &Error{Op: op, Err: fmt.Errorf("PostSends is for RC QPs: %w", syscall.EINVAL)}
	}
	if mr == nil {
		return 0, qp.post(op, nil, 0, 0, nil) // the missing region's error
	}
	for _, w := range wrs {
		if err := mr.checkRange(op, w.Offset, w.Length); err != nil {
			return 0, err
		}
	}
	posted := 0
	err := qp.post(op, mr, 0, 0, func(h, base unsafe.Pointer) error {
		for posted < len(wrs) {
			list := wrs[posted:min(len(wrs), posted+maxSendList)]
			n, err := sysPostSendList(op, h, base, mr.lkey, list, qp.caps.MaxInline)
			posted += n
			if err != nil {
				return err
			}
		}
		return nil
	})
	return posted, err
}

// PostSendUD posts one signalled SEND of mr[offset:offset+length] on a UD QP to remoteQPN
// behind ah, which must accept remoteQKey. length must not exceed the path MTU.
func (qp *QP) PostSendUD(mr *MR, offset, length int, wrID uint64, ah *AH, remoteQPN, remoteQKey uint32) error {
	op := fmt.Sprintf("post ud send on qp %#x on %s to qp %#x", qp.qpn, qp.ctx.name, remoteQPN)
	if qp.typ != QPTypeUD {
		return &Error{Op: op, Err: fmt.Errorf("PostSendUD is for UD QPs; use PostSend: %w", syscall.EINVAL)}
	}
	if ah == nil {
		return &Error{Op: op, Err: fmt.Errorf("address handle is required: %w", syscall.EINVAL)}
	}
	inline := length > 0 && length <= qp.caps.MaxInline
	return qp.post(op, mr, offset, length, func(h, addr unsafe.Pointer) error {
		ahh, err := ah.acquire(op)
		if err != nil {
			return err
		}
		defer ah.mu.RUnlock()
		return sysPostSend(op, h, addr, length, mr.lkey, wrID, true, inline, ahh, remoteQPN, remoteQKey)
	})
}

// post checks the region and holds the QP and MR open while fn posts from address addr.
func (qp *QP) post(op string, mr *MR, offset, length int, fn func(h, addr unsafe.Pointer) error) error {
	if mr == nil {
		return &Error{Op: op, Err: fmt.Errorf("memory region is required: %w", syscall.EINVAL)}
	}
	if mr.pd.ctx != qp.ctx {
		return &Error{Op: op, Err: fmt.Errorf("memory region is registered on %s, not on the QP's device: %w", mr.pd.ctx.name, syscall.EINVAL)}
	}
	if err := mr.checkRange(op, offset, length); err != nil {
		return err
	}
	h, err := qp.acquire(op)
	if err != nil {
		return err
	}
	defer qp.mu.RUnlock()
	if _, err := mr.acquire(op); err != nil {
		return err
	}
	defer mr.mu.RUnlock()
	return fn(h, unsafe.Add(mr.buf, offset))
}

// checkRange refuses a range [offset, offset+length) that is not inside the region.
func (mr *MR) checkRange(op string, offset, length int) error {
	if offset < 0 || length < 0 || offset > mr.size || length > mr.size-offset {
		return &Error{Op: op, Err: fmt.Errorf("range [%d, %d) outside the %d-byte memory region: %w", offset, offset+length, mr.size, syscall.EINVAL)}
	}
	return nil
}

func checkPort(op string, port int) error {
	if port < 1 || port > 0xff {
		return &Error{Op: op, Err: fmt.Errorf("port %d out of range 1..255: %w", port, syscall.EINVAL)}
	}
	return nil
}

const maxPSN = 1<<24 - 1

func checkRTR(op string, cfg RTRConfig) error {
	var bad string
	switch {
	case cfg.Port < 1 || cfg.Port > 0xff:
		bad = fmt.Sprintf("port %d out of range 1..255", cfg.Port)
	case cfg.RemoteQPN == 0 || cfg.RemoteQPN > maxPSN:
		bad = fmt.Sprintf("remote qpn %#x is not a 24-bit QP number", cfg.RemoteQPN)
	case cfg.RemotePSN > maxPSN:
		bad = fmt.Sprintf("remote psn %#x does not fit in 24 bits", cfg.RemotePSN)
	case cfg.PathMTU.Bytes() == 0:
		bad = fmt.Sprintf("path mtu %d is not an ibv_mtu value (use MTU1024 etc.)", cfg.PathMTU)
	case cfg.SGIDIndex < 0 || cfg.SGIDIndex > 0xff:
		bad = fmt.Sprintf("sgid index %d out of range 0..255", cfg.SGIDIndex)
	case cfg.DestGID == GID{}:
		bad = "destination gid is zero"
	case cfg.MinRNRTimer > 31:
		bad = fmt.Sprintf("min rnr timer %d does not fit in 5 bits", cfg.MinRNRTimer)
	default:
		return nil
	}
	return &Error{Op: op, Err: fmt.Errorf("%s: %w", bad, syscall.EINVAL)}
}

func checkRTS(op string, typ QPType, cfg RTSConfig) error {
	var bad string
	switch {
	case cfg.PSN > maxPSN:
		bad = fmt.Sprintf("psn %#x does not fit in 24 bits", cfg.PSN)
	case typ != QPTypeRC:
		return nil
	case cfg.Timeout > 31:
		bad = fmt.Sprintf("timeout %d does not fit in 5 bits", cfg.Timeout)
	case cfg.RetryCnt > 7:
		bad = fmt.Sprintf("retry count %d does not fit in 3 bits", cfg.RetryCnt)
	case cfg.RNRRetry > 7:
		bad = fmt.Sprintf("rnr retry %d does not fit in 3 bits", cfg.RNRRetry)
	default:
		return nil
	}
	return &Error{Op: op, Err: fmt.Errorf("%s: %w", bad, syscall.EINVAL)}
}

// regMR is what sysRegMR returns.
type regMR struct {
	mr, buf    unsafe.Pointer
	lkey, rkey uint32
}

// createdQP is what sysCreateQP returns.
type createdQP struct {
	qp   unsafe.Pointer
	qpn  uint32
	caps QPCaps
}
