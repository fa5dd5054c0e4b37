//go:build linux && cgo

package verbs

// This is the only file of the package that imports "C": the C preamble, every call into
// libibverbs, and every conversion between Go and C values. No C type leaves this file;
// handles travel through the rest of the package as unsafe.Pointer.
//
// Two error conventions meet here (see the RETURN VALUE sections of the man pages):
// constructors and ibv_query_gid/ibv_close_device return NULL or -1 and set errno, read with
// cgo's two-result call form; ibv_post_*, ibv_modify_qp, ibv_query_port and the destroy calls
// return the errno value itself. errnoError and rcError turn both into *Error.

/*
#cgo LDFLAGS: -libverbs

// None of the data path's calls calls back into Go (nocallback), and rb_post_send_list keeps
// no pointer to its arrays (noescape: they stay on the Go stack instead of the heap).
#cgo nocallback rb_poll_cq
#cgo nocallback rb_post_recv
#cgo nocallback rb_post_send
#cgo noescape rb_post_send_list
#cgo nocallback rb_post_send_list
#cgo noescape rb_pp_run
#cgo nocallback rb_pp_run
#cgo noescape rb_ss_run
#cgo nocallback rb_ss_run
#cgo nocallback rb_ss_allow
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <infiniband/verbs.h>

// ibv_query_port is a macro around a static inline function whose prototype cgo cannot use
// (it sees struct _compat_ibv_port_attr), so it is called from C.
static int rb_query_port(struct ibv_context *c, uint8_t port, struct ibv_port_attr *a) {
	return ibv_query_port(c, port, a);
}

static int rb_query_gid(struct ibv_context *c, uint8_t port, int index, uint8_t *out) {
	union ibv_gid gid;
	int rc = ibv_query_gid(c, port, index, &gid);
	if (rc == 0)
		memcpy(out, gid.raw, 16);
	return rc;
}

// rb_reg_mr allocates a zeroed, page-aligned buffer in C memory and registers it; mr->addr is
// the buffer. On failure nothing is left allocated and errno says why.
static struct ibv_mr *rb_reg_mr(struct ibv_pd *pd, size_t size, int access) {
	void *buf = NULL;
	long pg = sysconf(_SC_PAGESIZE);
	int rc = posix_memalign(&buf, pg > 0 ? (size_t)pg : 4096, size);
	if (rc != 0) {
		errno = rc;
		return NULL;
	}
	memset(buf, 0, size);
	struct ibv_mr *mr = ibv_reg_mr(pd, buf, size, access);
	if (mr == NULL) {
		int e = errno;
		free(buf);
		errno = e;
	}
	return mr;
}

// rb_dereg_mr frees the buffer only once the device has let go of it.
static int rb_dereg_mr(struct ibv_mr *mr, void *buf) {
	int rc = ibv_dereg_mr(mr);
	if (rc == 0)
		free(buf);
	return rc;
}

// The QP transitions with exactly the attribute masks ibv_modify_qp(3) lists as required.

static int rb_qp_to_init(struct ibv_qp *qp, int ud, uint8_t port, uint32_t qkey) {
	struct ibv_qp_attr a;
	memset(&a, 0, sizeof a);
	a.qp_state = IBV_QPS_INIT;
	a.pkey_index = 0;
	a.port_num = port;
	if (ud) {
		a.qkey = qkey;
		return ibv_modify_qp(qp, &a, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_QKEY);
	}
	a.qp_access_flags = 0; // SEND only: no remote read/write/atomic
	return ibv_modify_qp(qp, &a, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS);
}

static int rb_qp_to_rtr_ud(struct ibv_qp *qp) {
	struct ibv_qp_attr a;
	memset(&a, 0, sizeof a);
	a.qp_state = IBV_QPS_RTR;
	return ibv_modify_qp(qp, &a, IBV_QP_STATE);
}

static void rb_fill_grh_ah(struct ibv_ah_attr *ah, uint8_t port, const uint8_t *dgid,
                           uint8_t sgid_index, uint8_t hop_limit) {
	memset(ah, 0, sizeof *ah);
	ah->is_global = 1; // RoCE: every packet carries a GRH (the IP header)
	memcpy(ah->grh.dgid.raw, dgid, 16);
	ah->grh.sgid_index = sgid_index;
	ah->grh.hop_limit = hop_limit;
	ah->port_num = port;
}

static int rb_qp_to_rtr_rc(struct ibv_qp *qp, uint8_t port, uint32_t dest_qpn, uint32_t rq_psn,
                           const uint8_t *dgid, uint8_t sgid_index, int mtu, uint8_t hop_limit,
                           uint8_t min_rnr_timer) {
	struct ibv_qp_attr a;
	memset(&a, 0, sizeof a);
	a.qp_state = IBV_QPS_RTR;
	a.path_mtu = (enum ibv_mtu)mtu;
	a.dest_qp_num = dest_qpn;
	a.rq_psn = rq_psn;
	a.max_dest_rd_atomic = 1;
	a.min_rnr_timer = min_rnr_timer;
	rb_fill_grh_ah(&a.ah_attr, port, dgid, sgid_index, hop_limit);
	return ibv_modify_qp(qp, &a, IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN |
	                             IBV_QP_RQ_PSN | IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER);
}

static int rb_qp_to_rts(struct ibv_qp *qp, int ud, uint32_t sq_psn, uint8_t timeout,
                        uint8_t retry_cnt, uint8_t rnr_retry) {
	struct ibv_qp_attr a;
	memset(&a, 0, sizeof a);
	a.qp_state = IBV_QPS_RTS;
	a.sq_psn = sq_psn;
	if (ud)
		return ibv_modify_qp(qp, &a, IBV_QP_STATE | IBV_QP_SQ_PSN);
	a.timeout = timeout;
	a.retry_cnt = retry_cnt;
	a.rnr_retry = rnr_retry;
	a.max_rd_atomic = 1;
	return ibv_modify_qp(qp, &a, IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT |
	                             IBV_QP_RNR_RETRY | IBV_QP_SQ_PSN | IBV_QP_MAX_QP_RD_ATOMIC);
}

static struct ibv_ah *rb_create_ah(struct ibv_pd *pd, uint8_t port, const uint8_t *dgid,
                                   uint8_t sgid_index, uint8_t hop_limit) {
	struct ibv_ah_attr a;
	rb_fill_grh_ah(&a, port, dgid, sgid_index, hop_limit);
	return ibv_create_ah(pd, &a);
}

// Work requests have unions (ibv_post_send(3)); they are built here from scalars. The data
// path's functions take their handles and buffer addresses (all C memory) as integers: a
// pointer argument costs a cgo pointer check on every call, which under TCG is a good part
// of a poll.

static int rb_post_recv(uintptr_t qp, uintptr_t addr, uint32_t len, uint32_t lkey, uint64_t wr_id) {
	struct ibv_sge sge = { .addr = addr, .length = len, .lkey = lkey };
	struct ibv_recv_wr wr, *bad = NULL;
	memset(&wr, 0, sizeof wr);
	wr.wr_id = wr_id;
	wr.sg_list = &sge;
	wr.num_sge = 1;
	return ibv_post_recv((struct ibv_qp *)qp, &wr, &bad);
}

static int rb_post_send(uintptr_t qp, uintptr_t addr, uint32_t len, uint32_t lkey, uint64_t wr_id,
                        unsigned int flags, uintptr_t ah, uint32_t remote_qpn, uint32_t remote_qkey) {
	struct ibv_sge sge = { .addr = addr, .length = len, .lkey = lkey };
	struct ibv_send_wr wr, *bad = NULL;
	memset(&wr, 0, sizeof wr);
	wr.wr_id = wr_id;
	wr.sg_list = &sge;
	wr.num_sge = len > 0 ? 1 : 0;
	wr.opcode = IBV_WR_SEND;
	wr.send_flags = flags;
	if (ah != 0) {
		wr.wr.ud.ah = (struct ibv_ah *)ah;
		wr.wr.ud.remote_qpn = remote_qpn;
		wr.wr.ud.remote_qkey = remote_qkey;
	}
	return ibv_post_send((struct ibv_qp *)qp, &wr, &bad);
}

// RB_MAX_LIST bounds one rb_post_send_list call's work requests (built on the C stack).
#define RB_MAX_LIST 64

// rb_post_send_list posts n RC SENDs from base in one ibv_post_send call, linked in order;
// on failure *bad is the index of the first one not posted.
static int rb_post_send_list(uintptr_t qp, uintptr_t base, uint32_t lkey, int n, const uint64_t *offs,
                             const uint32_t *lens, const uint64_t *ids, const uint32_t *flags, int *bad) {
	struct ibv_sge sge[RB_MAX_LIST];
	struct ibv_send_wr wr[RB_MAX_LIST], *bad_wr = NULL;
	if (n < 1 || n > RB_MAX_LIST)
		return EINVAL;
	memset(wr, 0, sizeof(wr[0]) * n);
	for (int i = 0; i < n; i++) {
		sge[i].addr = (uintptr_t)(base + offs[i]);
		sge[i].length = lens[i];
		sge[i].lkey = lkey;
		wr[i].wr_id = ids[i];
		wr[i].sg_list = &sge[i];
		wr[i].num_sge = lens[i] > 0 ? 1 : 0;
		wr[i].opcode = IBV_WR_SEND;
		wr[i].send_flags = flags[i];
		wr[i].next = i + 1 < n ? &wr[i + 1] : NULL;
	}
	int rc = ibv_post_send((struct ibv_qp *)qp, wr, &bad_wr);
	*bad = rc == 0 ? n : (bad_wr != NULL ? (int)(bad_wr - wr) : 0);
	return rc;
}

// rb_wc is struct ibv_wc without its union, so Go never touches the union.
struct rb_wc {
	uint64_t wr_id;
	uint32_t status, opcode, vendor_err, byte_len, imm_host, qp_num, src_qp, wc_flags;
};

// rb_poll_cq polls up to n completions into out; it returns the count or ibv_poll_cq's
// negative failure value.
static int rb_poll_cq(uintptr_t cq, int n, struct rb_wc *out) {
	struct ibv_wc wc[16];
	int total = 0;
	while (total < n) {
		int want = n - total < 16 ? n - total : 16;
		int got = ibv_poll_cq((struct ibv_cq *)cq, want, wc);
		if (got < 0)
			return got;
		for (int i = 0; i < got; i++) {
			struct rb_wc *o = &out[total + i];
			o->wr_id = wc[i].wr_id;
			o->status = wc[i].status;
			o->opcode = wc[i].opcode;
			o->vendor_err = wc[i].vendor_err;
			o->byte_len = wc[i].byte_len;
			o->imm_host = (wc[i].wc_flags & IBV_WC_WITH_IMM) ? ntohl(wc[i].imm_data) : 0;
			o->qp_num = wc[i].qp_num;
			o->src_qp = wc[i].src_qp;
			o->wc_flags = wc[i].wc_flags;
		}
		total += got;
		if (got < want)
			break;
	}
	return total;
}

// ---- Ping-pong (pingpong.go): ib_send_lat's loop, run here so that no Go code runs between
// an echo arriving and the next message going out.

#include <time.h>

static uint64_t rb_now_ns(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

// rb_pace paces a C loop whose polls find nothing: it keeps polling for spin_ns after the last
// completion, then sleeps, backing off from min_wait_ns to max_wait_ns.
struct rb_pace {
	uint64_t spin_ns, min_wait_ns, max_wait_ns;
	uint64_t last, wait; // when polls started finding nothing (0: the last one moved), the last sleep
};

static void rb_pace(struct rb_pace *p, int moved) {
	if (moved) {
		p->wait = 0;
		p->last = 0;
		return;
	}
	uint64_t now = rb_now_ns();
	if (p->last == 0)
		p->last = now;
	if (now - p->last < p->spin_ns)
		return;
	p->wait = p->wait * 2 < p->min_wait_ns ? p->min_wait_ns : p->wait * 2;
	if (p->wait > p->max_wait_ns)
		p->wait = p->max_wait_ns;
	struct timespec ts = { .tv_sec = (time_t)(p->wait / 1000000000ull), .tv_nsec = (long)(p->wait % 1000000000ull) };
	nanosleep(&ts, NULL);
}

enum { RB_PING = 0, RB_PONG = 1 };

// Why a role's part of rb_pp_run ended (PingPongStop).
enum { RB_PP_RUNNING = 0, RB_PP_LIMIT, RB_PP_FULL, RB_PP_FAILED, RB_PP_PEER_ENDED, RB_PP_STOPPED, RB_PP_IDLE, RB_PP_POLL_FAILED };

struct rb_pp_rec {
	struct rb_wc wc;
	uint64_t at_ns; // when the poll that returned it returned, CLOCK_MONOTONIC
};

// rb_pp_end is one end: the pinger sends messages and receives their echoes, the ponger
// receives messages and sends the echoes.
struct rb_pp_end {
	uintptr_t qp, cq, base; // base: the MR's buffer
	uint32_t lkey, inline_max;
	uint64_t send_off;      // its send slots: send_off + (k % slots) * size
	uint32_t slots;
	int64_t posted;    // SENDs posted (ping: messages, pong: echoes)
	int64_t send_done; // SEND completions, ok or not
	int64_t arrived;   // RECV completions, ok or not (ping: echoes, pong: messages)
	int64_t owed;      // pong: messages that arrived intact enough to go back (successful RECVs)
	int failed;        // it sends no more: a completion in error or a failed post
	int post_rc;       // the failed post's errno (0: none), and which SEND it was
	int64_t post_k;
	int poll_rc;       // ibv_poll_cq's negative value, when polling failed
	struct rb_pp_rec *recs;
	int nrecs, cap;
};

struct rb_pp {
	struct rb_pp_end e[2];
	uint32_t size;
	int64_t messages;
	int sendq;              // SENDs an end may have outstanding
	uint64_t echo_flag;     // set in the WR IDs of echoes (the ponger's SENDs, the pinger's RECVs)
	uint64_t *post_ns;      // when message k was posted
	struct rb_pace pace;
	uint64_t grace_ns;
	int stop;               // rb_pp_stop was called (atomic)
	int64_t pong_limit;     // messages the ponger has receives posted and polls for (atomic)
	int pong_failed;        // the ponger sends no more echoes (atomic)
	uint64_t ping_ended_ns; // when the pinger stopped for good, +1; 0 while it runs (atomic)
};

static struct rb_pp *rb_pp_new(int cap_ping, int cap_pong, int64_t messages) {
	struct rb_pp *pp = calloc(1, sizeof *pp);
	if (pp == NULL)
		return NULL;
	pp->e[RB_PING].recs = calloc((size_t)cap_ping, sizeof(struct rb_pp_rec));
	pp->e[RB_PONG].recs = calloc((size_t)cap_pong, sizeof(struct rb_pp_rec));
	pp->post_ns = calloc((size_t)(messages > 0 ? messages : 1), sizeof(uint64_t));
	if (pp->e[RB_PING].recs == NULL || pp->e[RB_PONG].recs == NULL || pp->post_ns == NULL) {
		free(pp->e[RB_PING].recs);
		free(pp->e[RB_PONG].recs);
		free(pp->post_ns);
		free(pp);
		return NULL;
	}
	pp->e[RB_PING].cap = cap_ping;
	pp->e[RB_PONG].cap = cap_pong;
	pp->messages = messages;
	return pp;
}

static void rb_pp_free(struct rb_pp *pp) {
	free(pp->e[RB_PING].recs);
	free(pp->e[RB_PONG].recs);
	free(pp->post_ns);
	free(pp);
}

static void rb_pp_stop(uintptr_t pp) { __atomic_store_n(&((struct rb_pp *)pp)->stop, 1, __ATOMIC_RELEASE); }
static void rb_pp_end_ping(uintptr_t pp) { __atomic_store_n(&((struct rb_pp *)pp)->ping_ended_ns, rb_now_ns() + 1, __ATOMIC_RELEASE); }
static void rb_pp_end_pong(uintptr_t pp) { __atomic_store_n(&((struct rb_pp *)pp)->pong_failed, 1, __ATOMIC_RELEASE); }

// rb_pp_send posts SEND k of end e from its slot, signalled, inline when it fits; a failed
// post stops the end from sending.
static void rb_pp_send(struct rb_pp *pp, struct rb_pp_end *e, int64_t k, uint64_t wr_id) {
	uint64_t off = e->send_off + (uint64_t)(k % e->slots) * pp->size;
	unsigned int flags = IBV_SEND_SIGNALED;
	if (pp->size > 0 && pp->size <= e->inline_max)
		flags |= IBV_SEND_INLINE;
	int rc = rb_post_send(e->qp, e->base + off, pp->size, e->lkey, wr_id, flags, 0, 0, 0);
	if (rc != 0) {
		e->failed = 1;
		e->post_rc = rc;
		e->post_k = k;
		return;
	}
	e->posted++;
}

// rb_poll_recs polls up to max (at most 16) completions of cq into recs, each stamped with
// the time the poll returned; it returns how many, or ibv_poll_cq's negative value.
static int rb_poll_recs(uintptr_t cq, struct rb_pp_rec *recs, int max) {
	struct rb_wc w[16];
	int n = rb_poll_cq(cq, max < 16 ? max : 16, w);
	if (n <= 0)
		return n;
	uint64_t now = rb_now_ns();
	for (int i = 0; i < n; i++) {
		recs[i].wc = w[i];
		recs[i].at_ns = now;
	}
	return n;
}

// rb_pp_poll polls end e into its records; it returns how many, or -1 (why set) when the
// records are full or polling failed.
static int rb_pp_poll(struct rb_pp_end *e, int *why) {
	if (e->cap - e->nrecs < 16) {
		*why = RB_PP_FULL;
		return -1;
	}
	int n = rb_poll_recs(e->cq, &e->recs[e->nrecs], 16);
	if (n < 0) {
		e->poll_rc = n;
		*why = RB_PP_POLL_FAILED;
		return -1;
	}
	return n;
}

// rb_pp_ping_may_post posts message e->posted if every earlier one came back (echoes of them
// in), the send queue has room, and the ponger has its receive posted and is polling for it.
static void rb_pp_ping_post(struct rb_pp *pp, int64_t limit, int64_t echoes) {
	struct rb_pp_end *e = &pp->e[RB_PING];
	int64_t k = e->posted;
	if (e->failed || k >= limit || k != echoes || k - e->send_done >= pp->sendq ||
	    __atomic_load_n(&pp->pong_failed, __ATOMIC_ACQUIRE) ||
	    k >= __atomic_load_n(&pp->pong_limit, __ATOMIC_ACQUIRE))
		return;
	pp->post_ns[k] = rb_now_ns();
	rb_pp_send(pp, e, k, (uint64_t)k);
}

// rb_pp_ping_step is one poll of the pinger: the next message goes out as soon as the echo it
// waits for is polled (before the completions are recorded), unless one of them failed.
// It returns how many completions it took; *why is set once the pinger's part ends.
static int rb_pp_ping_step(struct rb_pp *pp, int64_t limit, int *why) {
	struct rb_pp_end *e = &pp->e[RB_PING];
	if (__atomic_load_n(&pp->stop, __ATOMIC_ACQUIRE)) {
		*why = RB_PP_STOPPED;
		return 0;
	}
	int n = rb_pp_poll(e, why);
	if (n < 0)
		return 0;
	struct rb_pp_rec *r = &e->recs[e->nrecs];
	int ok = 1, echoes = 0;
	for (int i = 0; i < n; i++) {
		if (r[i].wc.status != IBV_WC_SUCCESS)
			ok = 0;
		else if (r[i].wc.wr_id & pp->echo_flag)
			echoes++;
	}
	if (n > 0 && ok)
		rb_pp_ping_post(pp, limit, e->arrived + echoes);
	for (int i = 0; i < n; i++) {
		if (r[i].wc.wr_id & pp->echo_flag)
			e->arrived++;
		else
			e->send_done++;
		if (r[i].wc.status != IBV_WC_SUCCESS)
			e->failed = 1; // the QP is in error: what is posted flushes
	}
	e->nrecs += n;
	rb_pp_ping_post(pp, limit, e->arrived); // the first message, or one that waited
	int peer_ended = __atomic_load_n(&pp->pong_failed, __ATOMIC_ACQUIRE);
	if ((e->failed || peer_ended) && e->send_done == e->posted)
		*why = e->failed ? RB_PP_FAILED : RB_PP_PEER_ENDED;
	else if (e->posted == limit && e->arrived >= limit && e->send_done == e->posted)
		*why = RB_PP_LIMIT;
	return n;
}

// rb_pp_pong_post sends back, in order, every message that arrived and has not gone back,
// as far as the send queue allows.
static void rb_pp_pong_post(struct rb_pp *pp) {
	struct rb_pp_end *e = &pp->e[RB_PONG];
	while (!e->failed && e->posted < e->owed && e->posted - e->send_done < pp->sendq)
		rb_pp_send(pp, e, e->posted, pp->echo_flag | (uint64_t)e->posted);
	if (e->failed)
		__atomic_store_n(&pp->pong_failed, 1, __ATOMIC_RELEASE);
}

// rb_pp_pong_step is one poll of the ponger: every message that arrived goes back before the
// completions are recorded. Its part ends when every message up to limit arrived and every
// echo it posted completed, when it stayed idle for grace_ns after the pinger ended, or on
// rb_pp_stop.
static int rb_pp_pong_step(struct rb_pp *pp, int64_t limit, int *why) {
	struct rb_pp_end *e = &pp->e[RB_PONG];
	if (__atomic_load_n(&pp->stop, __ATOMIC_ACQUIRE)) {
		*why = RB_PP_STOPPED;
		return 0;
	}
	int n = rb_pp_poll(e, why);
	if (n < 0) {
		if (*why == RB_PP_POLL_FAILED)
			__atomic_store_n(&pp->pong_failed, 1, __ATOMIC_RELEASE);
		return 0;
	}
	struct rb_pp_rec *r = &e->recs[e->nrecs];
	for (int i = 0; i < n; i++)
		if (!(r[i].wc.wr_id & pp->echo_flag) && r[i].wc.status == IBV_WC_SUCCESS)
			e->owed++;
	rb_pp_pong_post(pp);
	for (int i = 0; i < n; i++) {
		if (r[i].wc.wr_id & pp->echo_flag)
			e->send_done++;
		else
			e->arrived++;
		if (r[i].wc.status != IBV_WC_SUCCESS)
			e->failed = 1;
	}
	e->nrecs += n;
	rb_pp_pong_post(pp); // those that waited for the send queue; publishes a failure
	if (e->arrived >= limit && e->send_done == e->posted && (e->posted == e->owed || e->failed)) {
		*why = RB_PP_LIMIT;
		return n;
	}
	if (n == 0) {
		uint64_t ended = __atomic_load_n(&pp->ping_ended_ns, __ATOMIC_ACQUIRE);
		if (ended != 0 && rb_now_ns() - (ended - 1) > pp->grace_ns)
			*why = RB_PP_IDLE;
	}
	return n;
}

// rb_pp_run serves the roles in mask (1 << RB_PING, 1 << RB_PONG) until one of them ends its
// part: the pinger has every message below ping_limit back, the ponger every message below
// pong_limit, or see the RB_PP_ values. Between polls that find nothing it spins for spin_ns
// after the last completion, then sleeps, backing off from min_wait_ns to max_wait_ns.
static void rb_pp_run(uintptr_t h, int mask, int64_t ping_limit, int64_t pong_limit, int *why_ping, int *why_pong) {
	struct rb_pp *pp = (struct rb_pp *)h;
	int ping = mask & (1 << RB_PING), pong = mask & (1 << RB_PONG);
	*why_ping = *why_pong = RB_PP_RUNNING;
	if (pong)
		__atomic_store_n(&pp->pong_limit, pong_limit, __ATOMIC_RELEASE);
	pp->pace.last = pp->pace.wait = 0;
	for (;;) {
		int moved = 0;
		if (ping)
			moved += rb_pp_ping_step(pp, ping_limit, why_ping);
		if (pong)
			moved += rb_pp_pong_step(pp, pong_limit, why_pong);
		if (*why_ping != RB_PP_RUNNING || *why_pong != RB_PP_RUNNING)
			return;
		rb_pace(&pp->pace, moved > 0);
	}
}

// ---- Send stream (stream.go): ib_send_bw's sending loop, run here so that the CPU that rings
// the doorbells (in whose system calls 6.1's rxe runs the requester and, over a veth, the rest
// of the transfer) runs no Go code between them.

// Why rb_ss_run ended (SendStreamStop).
enum { RB_SS_RUNNING = 0, RB_SS_LIMIT, RB_SS_FULL, RB_SS_FAILED, RB_SS_STOPPED, RB_SS_POLL_FAILED };

struct rb_ss {
	uintptr_t qp, cq, base;  // base: the MR's buffer
	uint32_t lkey, inline_max, size, list;
	uint64_t off;            // message k's slot: off + (k % slots) * size
	uint32_t slots;
	int64_t messages, queue; // SENDs in all, SENDs outstanding at most
	int64_t posted, done;    // SENDs posted, SEND completions (ok or not)
	int failed;              // it posts no more: a completion in error or a failed post
	int post_rc, poll_rc;    // the failed post's errno and which SEND it was; ibv_poll_cq's value
	int64_t post_k;
	uint64_t *post_ns;       // when message k was posted
	struct rb_pp_rec *recs;
	int64_t nrecs, cap;
	struct rb_pace pace;
	int64_t allowed;         // messages below it may go: their receives are posted (atomic)
	int stop;                // rb_ss_stop was called (atomic)
};

static struct rb_ss *rb_ss_new(int64_t messages, int64_t cap) {
	struct rb_ss *ss = calloc(1, sizeof *ss);
	if (ss == NULL)
		return NULL;
	ss->recs = calloc((size_t)cap, sizeof(struct rb_pp_rec));
	ss->post_ns = calloc((size_t)messages, sizeof(uint64_t));
	if (ss->recs == NULL || ss->post_ns == NULL) {
		free(ss->recs);
		free(ss->post_ns);
		free(ss);
		return NULL;
	}
	ss->cap = cap;
	ss->messages = messages;
	return ss;
}

static void rb_ss_free(struct rb_ss *ss) {
	free(ss->recs);
	free(ss->post_ns);
	free(ss);
}

static void rb_ss_stop(uintptr_t ss) { __atomic_store_n(&((struct rb_ss *)ss)->stop, 1, __ATOMIC_RELEASE); }

static void rb_ss_allow(uintptr_t h, int64_t n) {
	struct rb_ss *ss = (struct rb_ss *)h;
	if (n > __atomic_load_n(&ss->allowed, __ATOMIC_RELAXED))
		__atomic_store_n(&ss->allowed, n, __ATOMIC_RELEASE);
}

// rb_ss_post posts, as one list (one doorbell), up to ss->list of the next SENDs below limit
// that the queue and the receives allow, each signalled; it returns how many went.
static int rb_ss_post(struct rb_ss *ss, int64_t limit) {
	uint64_t offs[RB_MAX_LIST], ids[RB_MAX_LIST];
	uint32_t lens[RB_MAX_LIST], flags[RB_MAX_LIST];
	int64_t n = limit;
	int64_t allowed = __atomic_load_n(&ss->allowed, __ATOMIC_ACQUIRE);
	if (allowed < n)
		n = allowed;
	if (ss->done + ss->queue < n)
		n = ss->done + ss->queue;
	n -= ss->posted;
	if (n > ss->list)
		n = ss->list;
	if (ss->failed || n <= 0)
		return 0;
	uint32_t flag = IBV_SEND_SIGNALED;
	if (ss->size > 0 && ss->size <= ss->inline_max)
		flag |= IBV_SEND_INLINE;
	for (int i = 0; i < n; i++) {
		int64_t k = ss->posted + i;
		offs[i] = ss->off + (uint64_t)(k % ss->slots) * ss->size;
		lens[i] = ss->size;
		ids[i] = (uint64_t)k;
		flags[i] = flag;
	}
	uint64_t now = rb_now_ns();
	int went;
	int rc = rb_post_send_list(ss->qp, ss->base, ss->lkey, (int)n, offs, lens, ids, flags, &went);
	for (int i = 0; i < went; i++)
		ss->post_ns[ss->posted + i] = now;
	ss->posted += went;
	if (rc != 0) {
		ss->failed = 1;
		ss->post_rc = rc;
		ss->post_k = ss->posted;
	}
	return went;
}

// rb_ss_poll polls the send CQ into the records; it returns how many, or -1 (why set) when
// the records are full or polling failed.
static int rb_ss_poll(struct rb_ss *ss, int *why) {
	int64_t room = ss->cap - ss->nrecs;
	if (room <= 0) {
		*why = RB_SS_FULL;
		return -1;
	}
	struct rb_pp_rec *r = &ss->recs[ss->nrecs];
	int n = rb_poll_recs(ss->cq, r, room < 16 ? (int)room : 16);
	if (n < 0) {
		ss->poll_rc = n;
		*why = RB_SS_POLL_FAILED;
		return -1;
	}
	for (int i = 0; i < n; i++)
		if (r[i].wc.status != IBV_WC_SUCCESS)
			ss->failed = 1; // the QP is in error: what is posted flushes
	ss->nrecs += n;
	ss->done += n;
	return n;
}

// rb_ss_run polls and posts until every SEND below limit went and completed, a failure's
// posted SENDs all completed, the records are full, polling failed, or rb_ss_stop; *why says
// which.
static void rb_ss_run(uintptr_t h, int64_t limit, int *why) {
	struct rb_ss *ss = (struct rb_ss *)h;
	*why = RB_SS_RUNNING;
	ss->pace.last = ss->pace.wait = 0;
	for (;;) {
		if (__atomic_load_n(&ss->stop, __ATOMIC_ACQUIRE)) {
			*why = RB_SS_STOPPED;
			return;
		}
		int n = rb_ss_poll(ss, why);
		if (n < 0)
			return;
		n += rb_ss_post(ss, limit);
		if (ss->failed && ss->done == ss->posted) {
			*why = RB_SS_FAILED;
			return;
		}
		if (ss->posted >= limit && ss->done == ss->posted) {
			*why = RB_SS_LIMIT;
			return;
		}
		rb_pace(&ss->pace, n > 0);
	}
}
*/
import "C"

import (
	"fmt"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// Compile-time checks that the Go enums (fixed in status.go and verbs.go so that they exist
// without cgo) equal the C constants: a mismatch makes an index out of range or a negative
// constant overflow, and the build fails.
var (
	_ = [1]struct{}{}[WCSuccess-C.IBV_WC_SUCCESS]
	_ = [1]struct{}{}[WCLocLenErr-C.IBV_WC_LOC_LEN_ERR]
	_ = [1]struct{}{}[WCLocQPOpErr-C.IBV_WC_LOC_QP_OP_ERR]
	_ = [1]struct{}{}[WCLocEECOpErr-C.IBV_WC_LOC_EEC_OP_ERR]
	_ = [1]struct{}{}[WCLocProtErr-C.IBV_WC_LOC_PROT_ERR]
	_ = [1]struct{}{}[WCWRFlushErr-C.IBV_WC_WR_FLUSH_ERR]
	_ = [1]struct{}{}[WCMWBindErr-C.IBV_WC_MW_BIND_ERR]
	_ = [1]struct{}{}[WCBadRespErr-C.IBV_WC_BAD_RESP_ERR]
	_ = [1]struct{}{}[WCLocAccessErr-C.IBV_WC_LOC_ACCESS_ERR]
	_ = [1]struct{}{}[WCRemInvReqErr-C.IBV_WC_REM_INV_REQ_ERR]
	_ = [1]struct{}{}[WCRemAccessErr-C.IBV_WC_REM_ACCESS_ERR]
	_ = [1]struct{}{}[WCRemOpErr-C.IBV_WC_REM_OP_ERR]
	_ = [1]struct{}{}[WCRetryExcErr-C.IBV_WC_RETRY_EXC_ERR]
	_ = [1]struct{}{}[WCRNRRetryExcErr-C.IBV_WC_RNR_RETRY_EXC_ERR]
	_ = [1]struct{}{}[WCLocRDDViolErr-C.IBV_WC_LOC_RDD_VIOL_ERR]
	_ = [1]struct{}{}[WCRemInvRDReqErr-C.IBV_WC_REM_INV_RD_REQ_ERR]
	_ = [1]struct{}{}[WCRemAbortErr-C.IBV_WC_REM_ABORT_ERR]
	_ = [1]struct{}{}[WCInvEECNErr-C.IBV_WC_INV_EECN_ERR]
	_ = [1]struct{}{}[WCInvEECStateErr-C.IBV_WC_INV_EEC_STATE_ERR]
	_ = [1]struct{}{}[WCFatalErr-C.IBV_WC_FATAL_ERR]
	_ = [1]struct{}{}[WCRespTimeoutErr-C.IBV_WC_RESP_TIMEOUT_ERR]
	_ = [1]struct{}{}[WCGeneralErr-C.IBV_WC_GENERAL_ERR]
	_ = [1]struct{}{}[WCTMErr-C.IBV_WC_TM_ERR]
	_ = [1]struct{}{}[WCTMRndvIncomplete-C.IBV_WC_TM_RNDV_INCOMPLETE]

	_ = [1]struct{}{}[WCSend-C.IBV_WC_SEND]
	_ = [1]struct{}{}[WCRDMAWrite-C.IBV_WC_RDMA_WRITE]
	_ = [1]struct{}{}[WCRDMARead-C.IBV_WC_RDMA_READ]
	_ = [1]struct{}{}[WCCompSwap-C.IBV_WC_COMP_SWAP]
	_ = [1]struct{}{}[WCFetchAdd-C.IBV_WC_FETCH_ADD]
	_ = [1]struct{}{}[WCBindMW-C.IBV_WC_BIND_MW]
	_ = [1]struct{}{}[WCLocalInv-C.IBV_WC_LOCAL_INV]
	_ = [1]struct{}{}[WCTSO-C.IBV_WC_TSO]
	_ = [1]struct{}{}[WCAtomicWrite-C.IBV_WC_ATOMIC_WRITE]
	_ = [1]struct{}{}[WCRecv-C.IBV_WC_RECV]
	_ = [1]struct{}{}[WCRecvRDMAWithImm-C.IBV_WC_RECV_RDMA_WITH_IMM]

	_ = [1]struct{}{}[WCFlagGRH-C.IBV_WC_GRH]
	_ = [1]struct{}{}[WCFlagWithImm-C.IBV_WC_WITH_IMM]

	_ = [1]struct{}{}[PortNOP-C.IBV_PORT_NOP]
	_ = [1]struct{}{}[PortDown-C.IBV_PORT_DOWN]
	_ = [1]struct{}{}[PortInit-C.IBV_PORT_INIT]
	_ = [1]struct{}{}[PortArmed-C.IBV_PORT_ARMED]
	_ = [1]struct{}{}[PortActive-C.IBV_PORT_ACTIVE]
	_ = [1]struct{}{}[PortActiveDefer-C.IBV_PORT_ACTIVE_DEFER]

	_ = [1]struct{}{}[MTU256-C.IBV_MTU_256]
	_ = [1]struct{}{}[MTU512-C.IBV_MTU_512]
	_ = [1]struct{}{}[MTU1024-C.IBV_MTU_1024]
	_ = [1]struct{}{}[MTU2048-C.IBV_MTU_2048]
	_ = [1]struct{}{}[MTU4096-C.IBV_MTU_4096]

	_ = [1]struct{}{}[LinkLayerUnspecified-C.IBV_LINK_LAYER_UNSPECIFIED]
	_ = [1]struct{}{}[LinkLayerInfiniBand-C.IBV_LINK_LAYER_INFINIBAND]
	_ = [1]struct{}{}[LinkLayerEthernet-C.IBV_LINK_LAYER_ETHERNET]

	_ = [1]struct{}{}[QPTypeRC-C.IBV_QPT_RC]
	_ = [1]struct{}{}[QPTypeUD-C.IBV_QPT_UD]

	_ = [1]struct{}{}[GRHLen-C.sizeof_struct_ibv_grh]
)

// libStatusString is ibv_wc_status_str(3), for the test that String matches the library.
func libStatusString(s WCStatus) string {
	return C.GoString(C.ibv_wc_status_str(C.enum_ibv_wc_status(s)))
}

// deviceList returns the devices and a func that frees the list. ENOSYS (no kernel uverbs:
// the list is NULL, not empty) becomes ErrNoVerbs.
func deviceList(op string) ([]*C.struct_ibv_device, func(), error) {
	var n C.int
	list, errno := C.ibv_get_device_list(&n)
	if list == nil {
		if errno == syscall.ENOSYS {
			return nil, nil, &Error{Op: op, Err: errNoUverbs}
		}
		return nil, nil, errnoError(op, errnoOf(errno))
	}
	free := func() { C.ibv_free_device_list(list) }
	if n <= 0 {
		return nil, free, nil
	}
	return unsafe.Slice(list, int(n)), free, nil
}

// errnoOf turns the error of a two-result cgo call into an Errno (0 if none was set).
func errnoOf(err error) syscall.Errno {
	if e, ok := err.(syscall.Errno); ok {
		return e
	}
	return 0
}

func sysListDevices() ([]string, error) {
	devs, free, err := deviceList("list rdma devices")
	if err != nil {
		return nil, err
	}
	defer free()
	names := make([]string, 0, len(devs))
	for _, d := range devs {
		names = append(names, C.GoString(C.ibv_get_device_name(d)))
	}
	return names, nil
}

func sysOpenDevice(name string) (unsafe.Pointer, error) {
	op := "open rdma device " + name
	devs, free, err := deviceList(op)
	if err != nil {
		return nil, err
	}
	defer free()
	var have []string
	for _, d := range devs {
		n := C.GoString(C.ibv_get_device_name(d))
		if n != name {
			have = append(have, n)
			continue
		}
		ctx, errno := C.ibv_open_device(d)
		if ctx == nil {
			return nil, errnoError(op, errnoOf(errno))
		}
		return unsafe.Pointer(ctx), nil
	}
	list := "none"
	if len(have) > 0 {
		list = strings.Join(have, ", ")
	}
	return nil, &Error{Op: op, Err: fmt.Errorf("%w (devices: %s); create it with `rdma link add %s type rxe netdev DEV`", ErrDeviceNotFound, list, name)}
}

func sysCloseDevice(op string, h unsafe.Pointer) error {
	rc, errno := C.ibv_close_device((*C.struct_ibv_context)(h))
	if rc != 0 {
		return errnoError(op, errnoOf(errno))
	}
	return nil
}

func sysQueryPort(op string, h unsafe.Pointer, port int) (PortAttr, error) {
	var a C.struct_ibv_port_attr
	if rc := C.rb_query_port((*C.struct_ibv_context)(h), C.uint8_t(port), &a); rc != 0 {
		return PortAttr{}, rcError(op, int(rc))
	}
	return PortAttr{
		State:       PortState(a.state),
		MaxMTU:      MTU(a.max_mtu),
		ActiveMTU:   MTU(a.active_mtu),
		GIDTableLen: int(a.gid_tbl_len),
		LinkLayer:   LinkLayer(a.link_layer),
	}, nil
}

func sysQueryGID(op string, h unsafe.Pointer, port, index int) (GID, error) {
	var g GID
	rc, errno := C.rb_query_gid((*C.struct_ibv_context)(h), C.uint8_t(port), C.int(index), (*C.uint8_t)(unsafe.Pointer(&g[0])))
	if rc != 0 {
		return GID{}, errnoError(op, errnoOf(errno))
	}
	return g, nil
}

func sysAllocPD(op string, h unsafe.Pointer) (unsafe.Pointer, error) {
	pd, errno := C.ibv_alloc_pd((*C.struct_ibv_context)(h))
	if pd == nil {
		return nil, errnoError(op, errnoOf(errno))
	}
	return unsafe.Pointer(pd), nil
}

func sysDeallocPD(op string, h unsafe.Pointer) error {
	return rcError(op, int(C.ibv_dealloc_pd((*C.struct_ibv_pd)(h))))
}

func sysRegMR(op string, h unsafe.Pointer, size int) (regMR, error) {
	mr, errno := C.rb_reg_mr((*C.struct_ibv_pd)(h), C.size_t(size), C.IBV_ACCESS_LOCAL_WRITE)
	if mr == nil {
		return regMR{}, errnoError(op, errnoOf(errno))
	}
	return regMR{mr: unsafe.Pointer(mr), buf: mr.addr, lkey: uint32(mr.lkey), rkey: uint32(mr.rkey)}, nil
}

func sysDeregMR(op string, h, buf unsafe.Pointer) error {
	return rcError(op, int(C.rb_dereg_mr((*C.struct_ibv_mr)(h), buf)))
}

func sysCreateCQ(op string, h unsafe.Pointer, depth int) (unsafe.Pointer, error) {
	cq, errno := C.ibv_create_cq((*C.struct_ibv_context)(h), C.int(depth), nil, nil, 0)
	if cq == nil {
		return nil, errnoError(op, errnoOf(errno))
	}
	return unsafe.Pointer(cq), nil
}

func sysDestroyCQ(op string, h unsafe.Pointer) error {
	return rcError(op, int(C.ibv_destroy_cq((*C.struct_ibv_cq)(h))))
}

func sysCreateQP(op string, pd, sendCQ, recvCQ unsafe.Pointer, cfg QPConfig) (createdQP, error) {
	var a C.struct_ibv_qp_init_attr
	a.send_cq = (*C.struct_ibv_cq)(sendCQ)
	a.recv_cq = (*C.struct_ibv_cq)(recvCQ)
	a.qp_type = C.enum_ibv_qp_type(cfg.Type)
	a.sq_sig_all = 0
	a.cap.max_send_wr = C.uint32_t(cfg.MaxSend)
	a.cap.max_recv_wr = C.uint32_t(cfg.MaxRecv)
	a.cap.max_send_sge = C.uint32_t(cfg.MaxSGE)
	a.cap.max_recv_sge = C.uint32_t(cfg.MaxSGE)
	a.cap.max_inline_data = C.uint32_t(cfg.MaxInline)
	qp, errno := C.ibv_create_qp((*C.struct_ibv_pd)(pd), &a)
	if qp == nil {
		return createdQP{}, errnoError(op, errnoOf(errno))
	}
	return createdQP{
		qp:  unsafe.Pointer(qp),
		qpn: uint32(qp.qp_num),
		caps: QPCaps{
			MaxSend:    int(a.cap.max_send_wr),
			MaxRecv:    int(a.cap.max_recv_wr),
			MaxSendSGE: int(a.cap.max_send_sge),
			MaxRecvSGE: int(a.cap.max_recv_sge),
			MaxInline:  int(a.cap.max_inline_data),
		},
	}, nil
}

func sysDestroyQP(op string, h unsafe.Pointer) error {
	return rcError(op, int(C.ibv_destroy_qp((*C.struct_ibv_qp)(h))))
}

func boolInt(b bool) C.int {
	if b {
		return 1
	}
	return 0
}

func sysQPToInit(op string, h unsafe.Pointer, typ QPType, port int, qkey uint32) error {
	rc := C.rb_qp_to_init((*C.struct_ibv_qp)(h), boolInt(typ == QPTypeUD), C.uint8_t(port), C.uint32_t(qkey))
	return rcError(op, int(rc))
}

func sysQPToRTR(op string, h unsafe.Pointer, typ QPType, cfg RTRConfig) error {
	qp := (*C.struct_ibv_qp)(h)
	if typ == QPTypeUD {
		return rcError(op, int(C.rb_qp_to_rtr_ud(qp)))
	}
	dgid := cfg.DestGID
	rc := C.rb_qp_to_rtr_rc(qp, C.uint8_t(cfg.Port), C.uint32_t(cfg.RemoteQPN), C.uint32_t(cfg.RemotePSN),
		(*C.uint8_t)(unsafe.Pointer(&dgid[0])), C.uint8_t(cfg.SGIDIndex), C.int(cfg.PathMTU), C.uint8_t(cfg.HopLimit),
		C.uint8_t(cfg.MinRNRTimer))
	return rcError(op, int(rc))
}

func sysQPToRTS(op string, h unsafe.Pointer, typ QPType, cfg RTSConfig) error {
	rc := C.rb_qp_to_rts((*C.struct_ibv_qp)(h), boolInt(typ == QPTypeUD), C.uint32_t(cfg.PSN),
		C.uint8_t(cfg.Timeout), C.uint8_t(cfg.RetryCnt), C.uint8_t(cfg.RNRRetry))
	return rcError(op, int(rc))
}

func sysCreateAH(op string, pd unsafe.Pointer, port int, dgid GID, sgidIndex int, hopLimit uint8) (unsafe.Pointer, error) {
	ah, errno := C.rb_create_ah((*C.struct_ibv_pd)(pd), C.uint8_t(port), (*C.uint8_t)(unsafe.Pointer(&dgid[0])),
		C.uint8_t(sgidIndex), C.uint8_t(hopLimit))
	if ah == nil {
		return nil, errnoError(op, errnoOf(errno))
	}
	return unsafe.Pointer(ah), nil
}

func sysDestroyAH(op string, h unsafe.Pointer) error {
	return rcError(op, int(C.ibv_destroy_ah((*C.struct_ibv_ah)(h))))
}

func sysPostRecv(op string, qp, addr unsafe.Pointer, length int, lkey uint32, wrID uint64) error {
	rc := C.rb_post_recv(cAddr(qp), cAddr(addr), C.uint32_t(length), C.uint32_t(lkey), C.uint64_t(wrID))
	return rcError(op, int(rc))
}

func sysPostSend(op string, qp, addr unsafe.Pointer, length int, lkey uint32, wrID uint64, signaled, inline bool,
	ah unsafe.Pointer, remoteQPN, remoteQKey uint32) error {
	var flags C.uint
	if signaled {
		flags |= C.IBV_SEND_SIGNALED
	}
	if inline {
		flags |= C.IBV_SEND_INLINE
	}
	rc := C.rb_post_send(cAddr(qp), cAddr(addr), C.uint32_t(length), C.uint32_t(lkey), C.uint64_t(wrID),
		flags, cAddr(ah), C.uint32_t(remoteQPN), C.uint32_t(remoteQKey))
	return rcError(op, int(rc))
}

// maxSendList is how many work requests one rb_post_send_list call takes.
const maxSendList = C.RB_MAX_LIST

// sysPostSendList posts wrs (at most maxSendList) from base as one list; it returns how many
// were posted.
func sysPostSendList(op string, qp, base unsafe.Pointer, lkey uint32, wrs []SendWR, maxInline int) (int, error) {
	var offs, ids [maxSendList]C.uint64_t
	var lens, flags [maxSendList]C.uint32_t
	for i, w := range wrs {
		offs[i], lens[i], ids[i] = C.uint64_t(w.Offset), C.uint32_t(w.Length), C.uint64_t(w.WRID)
		if w.Signaled {
			flags[i] |= C.IBV_SEND_SIGNALED
		}
		if w.Length > 0 && w.Length <= maxInline {
			flags[i] |= C.IBV_SEND_INLINE
		}
	}
	var bad C.int
	rc := C.rb_post_send_list(cAddr(qp), cAddr(base), C.uint32_t(lkey), C.int(len(wrs)),
		&offs[0], &lens[0], &ids[0], &flags[0], &bad)
	return int(bad), rcError(op, int(rc))
}

// cAddr passes a handle or an address in C memory to the data path's C functions as an
// integer (see rb_post_recv). Only C memory: a Go pointer passed as an integer would be hidden
// from the garbage collector.
func cAddr(p unsafe.Pointer) C.uintptr_t { return C.uintptr_t(uintptr(p)) }

// pollScratch is what one rb_poll_cq call fills, in C's layout (no Go pointers, so C may
// write it). Each CQ has one (newPollScratch) for its poller; a second goroutine polling at the
// same time takes one from the pool.
type pollScratch [PollBatch]C.struct_rb_wc

var pollScratchPool = sync.Pool{New: func() any { return new(pollScratch) }}

func newPollScratch() unsafe.Pointer { return unsafe.Pointer(new(pollScratch)) }

// sysPollCQ polls into dst through scratch (from newPollScratch), or through a pooled one if
// scratch is nil.
func sysPollCQ(op string, h, scratch unsafe.Pointer, dst []Completion) (int, error) {
	out := (*pollScratch)(scratch)
	if out == nil {
		out = pollScratchPool.Get().(*pollScratch)
		defer pollScratchPool.Put(out)
	}
	n := C.rb_poll_cq(cAddr(h), C.int(len(dst)), &out[0])
	if n < 0 {
		// ibv_poll_cq(3) promises only "a negative value", not an errno.
		return 0, &Error{Op: op, Err: fmt.Errorf("ibv_poll_cq failed with %d: %w", int(n), syscall.EIO)}
	}
	for i := range int(n) {
		w := &out[i]
		dst[i] = Completion{
			WRID:      uint64(w.wr_id),
			Status:    WCStatus(w.status),
			Opcode:    WCOpcode(w.opcode),
			ByteLen:   uint32(w.byte_len),
			QPN:       uint32(w.qp_num),
			SrcQP:     uint32(w.src_qp),
			Flags:     WCFlags(w.wc_flags),
			VendorErr: uint32(w.vendor_err),
			ImmData:   uint32(w.imm_host),
		}
	}
	return int(n), nil
}

// sysNewPingPong allocates the C state of a ping-pong (rb_pp) with room for recs records per
// role.
func sysNewPingPong(op string, ends [2]loopEnd, size, messages, sendQueue, recs int, echoWRID uint64, pace pingPongPace) (unsafe.Pointer, error) {
	pp := C.rb_pp_new(C.int(recs), C.int(recs), C.int64_t(messages))
	if pp == nil {
		return nil, &Error{Op: op, Err: syscall.ENOMEM}
	}
	for i, e := range ends {
		c := &pp.e[i]
		c.qp, c.cq, c.base = cAddr(e.qp), cAddr(e.cq), cAddr(e.buf)
		c.lkey, c.inline_max = C.uint32_t(e.lkey), C.uint32_t(e.inlineMax)
		c.send_off, c.slots = C.uint64_t(e.sendOff), C.uint32_t(e.slots)
	}
	pp.size, pp.sendq, pp.echo_flag = C.uint32_t(size), C.int(sendQueue), C.uint64_t(echoWRID)
	pp.pace = cPace(pace.spin, pace.minWait, pace.maxWait)
	pp.grace_ns = C.uint64_t(pace.idleGrace)
	return unsafe.Pointer(pp), nil
}

func sysFreePingPong(h unsafe.Pointer) { C.rb_pp_free((*C.struct_rb_pp)(h)) }

func sysNowNS() uint64 { return uint64(C.rb_now_ns()) }

// sysRunPingPong runs rb_pp_run for the roles in mask (1<<Ping, 1<<Pong).
func sysRunPingPong(h unsafe.Pointer, mask int, pingLimit, pongLimit int) (ping, pong PingPongStop) {
	var a, b C.int
	C.rb_pp_run(cAddr(h), C.int(mask), C.int64_t(pingLimit), C.int64_t(pongLimit), &a, &b)
	return PingPongStop(a), PingPongStop(b)
}

func sysStopPingPong(h unsafe.Pointer) { C.rb_pp_stop(cAddr(h)) }
func sysEndPing(h unsafe.Pointer)      { C.rb_pp_end_ping(cAddr(h)) }
func sysEndPong(h unsafe.Pointer)      { C.rb_pp_end_pong(cAddr(h)) }
func sysPingPostedNS(h unsafe.Pointer, k int) uint64 {
	return uint64(unsafe.Slice((*C.struct_rb_pp)(h).post_ns, k+1)[k])
}

// sysTakePingPong appends role's records to dst, their times since t0ns, and empties them.
func sysTakePingPong(h unsafe.Pointer, role PingPongRole, t0ns uint64, dst []TimedCompletion) []TimedCompletion {
	e := &(*C.struct_rb_pp)(h).e[role]
	dst = appendRecords(dst, e.recs, int(e.nrecs), t0ns)
	e.nrecs = 0
	return dst
}

// appendRecords appends n C completion records to dst, their times since t0ns.
func appendRecords(dst []TimedCompletion, recs *C.struct_rb_pp_rec, n int, t0ns uint64) []TimedCompletion {
	for _, r := range unsafe.Slice(recs, n) {
		w := &r.wc
		dst = append(dst, TimedCompletion{
			Completion: Completion{
				WRID: uint64(w.wr_id), Status: WCStatus(w.status), Opcode: WCOpcode(w.opcode), ByteLen: uint32(w.byte_len),
				QPN: uint32(w.qp_num), SrcQP: uint32(w.src_qp), Flags: WCFlags(w.wc_flags), VendorErr: uint32(w.vendor_err),
				ImmData: uint32(w.imm_host),
			},
			At: time.Duration(uint64(r.at_ns) - t0ns),
		})
	}
	return dst
}

func cPace(spin, minWait, maxWait time.Duration) C.struct_rb_pace {
	return C.struct_rb_pace{spin_ns: C.uint64_t(spin), min_wait_ns: C.uint64_t(minWait), max_wait_ns: C.uint64_t(maxWait)}
}

// sysNewSendStream allocates the C state of a send stream (rb_ss) with room for recs records.
func sysNewSendStream(op string, e loopEnd, cfg SendStreamConfig, recs int) (unsafe.Pointer, error) {
	ss := C.rb_ss_new(C.int64_t(cfg.Messages), C.int64_t(recs))
	if ss == nil {
		return nil, &Error{Op: op, Err: syscall.ENOMEM}
	}
	ss.qp, ss.cq, ss.base = cAddr(e.qp), cAddr(e.cq), cAddr(e.buf)
	ss.lkey, ss.inline_max = C.uint32_t(e.lkey), C.uint32_t(e.inlineMax)
	ss.size, ss.list = C.uint32_t(cfg.Size), C.uint32_t(cfg.List)
	ss.off, ss.slots = C.uint64_t(e.sendOff), C.uint32_t(e.slots)
	ss.queue = C.int64_t(cfg.Queue)
	ss.pace = cPace(cfg.Spin, cfg.MinWait, cfg.MaxWait)
	return unsafe.Pointer(ss), nil
}

func sysFreeSendStream(h unsafe.Pointer) { C.rb_ss_free((*C.struct_rb_ss)(h)) }

func sysRunSendStream(h unsafe.Pointer, limit int) SendStreamStop {
	var why C.int
	C.rb_ss_run(cAddr(h), C.int64_t(limit), &why)
	return SendStreamStop(why)
}

func sysStopSendStream(h unsafe.Pointer)         { C.rb_ss_stop(cAddr(h)) }
func sysAllowSendStream(h unsafe.Pointer, n int) { C.rb_ss_allow(cAddr(h), C.int64_t(n)) }

func sysSendPostedNS(h unsafe.Pointer, k int) uint64 {
	return uint64(unsafe.Slice((*C.struct_rb_ss)(h).post_ns, k+1)[k])
}

// sysTakeSendStream appends the stream's records to dst, their times since t0ns, and empties
// them.
func sysTakeSendStream(h unsafe.Pointer, t0ns uint64, dst []TimedCompletion) []TimedCompletion {
	ss := (*C.struct_rb_ss)(h)
	dst = appendRecords(dst, ss.recs, int(ss.nrecs), t0ns)
	ss.nrecs = 0
	return dst
}

func sysSendStreamProgress(h unsafe.Pointer) SendStreamProgress {
	ss := (*C.struct_rb_ss)(h)
	p := SendStreamProgress{Posted: int(ss.posted), Done: int(ss.done), Failed: ss.failed != 0}
	p.PostErr, p.PollErr = loopErrors(ss.post_rc, ss.post_k, ss.poll_rc)
	return p
}

// sysPingPongProgress reads role's counters.
func sysPingPongProgress(h unsafe.Pointer, role PingPongRole) PingPongProgress {
	e := &(*C.struct_rb_pp)(h).e[role]
	p := PingPongProgress{Posted: int(e.posted), SendsDone: int(e.send_done), Arrived: int(e.arrived), Failed: e.failed != 0}
	p.PostErr, p.PollErr = loopErrors(e.post_rc, e.post_k, e.poll_rc)
	return p
}

// loopErrors says what a C loop recorded: a failed post's errno (rc) and which SEND it was
// (k), and ibv_poll_cq's negative value; nil where nothing failed.
func loopErrors(rc C.int, k C.int64_t, pollRC C.int) (postErr, pollErr error) {
	if rc != 0 {
		postErr = fmt.Errorf("post send %d: %w", int64(k), syscall.Errno(rc))
	}
	if pollRC != 0 {
		// ibv_poll_cq(3) promises only "a negative value", not an errno.
		pollErr = fmt.Errorf("ibv_poll_cq failed with %d: %w", int(pollRC), syscall.EIO)
	}
	return postErr, pollErr
}
