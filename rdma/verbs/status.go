package verbs

import "strconv"

// WCStatus is the status of a work completion (enum ibv_wc_status). A non-success status is
// data about the work request, not an error of the poll call: callers judge it.
//
// The values are fixed here rather than read from the header so that the type, its names and
// its tests exist without cgo. They are part of the libibverbs ABI (the enum is sequential and
// has only grown at the end since libibverbs 1.0); verbs_cgo.go checks each one against the C
// constant at compile time, so a header that ever disagreed would fail the build.
type WCStatus uint32

// Work completion statuses, in the order of enum ibv_wc_status.
const (
	WCSuccess          WCStatus = 0  // IBV_WC_SUCCESS
	WCLocLenErr        WCStatus = 1  // IBV_WC_LOC_LEN_ERR
	WCLocQPOpErr       WCStatus = 2  // IBV_WC_LOC_QP_OP_ERR
	WCLocEECOpErr      WCStatus = 3  // IBV_WC_LOC_EEC_OP_ERR
	WCLocProtErr       WCStatus = 4  // IBV_WC_LOC_PROT_ERR
	WCWRFlushErr       WCStatus = 5  // IBV_WC_WR_FLUSH_ERR
	WCMWBindErr        WCStatus = 6  // IBV_WC_MW_BIND_ERR
	WCBadRespErr       WCStatus = 7  // IBV_WC_BAD_RESP_ERR
	WCLocAccessErr     WCStatus = 8  // IBV_WC_LOC_ACCESS_ERR
	WCRemInvReqErr     WCStatus = 9  // IBV_WC_REM_INV_REQ_ERR
	WCRemAccessErr     WCStatus = 10 // IBV_WC_REM_ACCESS_ERR
	WCRemOpErr         WCStatus = 11 // IBV_WC_REM_OP_ERR
	WCRetryExcErr      WCStatus = 12 // IBV_WC_RETRY_EXC_ERR: no ACK after retry_cnt retransmissions
	WCRNRRetryExcErr   WCStatus = 13 // IBV_WC_RNR_RETRY_EXC_ERR: the receiver had no receive posted
	WCLocRDDViolErr    WCStatus = 14 // IBV_WC_LOC_RDD_VIOL_ERR
	WCRemInvRDReqErr   WCStatus = 15 // IBV_WC_REM_INV_RD_REQ_ERR
	WCRemAbortErr      WCStatus = 16 // IBV_WC_REM_ABORT_ERR
	WCInvEECNErr       WCStatus = 17 // IBV_WC_INV_EECN_ERR
	WCInvEECStateErr   WCStatus = 18 // IBV_WC_INV_EEC_STATE_ERR
	WCFatalErr         WCStatus = 19 // IBV_WC_FATAL_ERR
	WCRespTimeoutErr   WCStatus = 20 // IBV_WC_RESP_TIMEOUT_ERR
	WCGeneralErr       WCStatus = 21 // IBV_WC_GENERAL_ERR
	WCTMErr            WCStatus = 22 // IBV_WC_TM_ERR
	WCTMRndvIncomplete WCStatus = 23 // IBV_WC_TM_RNDV_INCOMPLETE
	numWCStatus                 = 24
)

// wcStatusInfo holds, per status, the C constant name and the text of ibv_wc_status_str(3)
// (libibverbs enum_strs.c, including its odd capitalisation of the flush error).
var wcStatusInfo = [numWCStatus]struct{ cname, text string }{
	{"IBV_WC_SUCCESS", "success"},
	{"IBV_WC_LOC_LEN_ERR", "local length error"},
	{"IBV_WC_LOC_QP_OP_ERR", "local QP operation error"},
	{"IBV_WC_LOC_EEC_OP_ERR", "local EE context operation error"},
	{"IBV_WC_LOC_PROT_ERR", "local protection error"},
	{"IBV_WC_WR_FLUSH_ERR", "Work Request Flushed Error"},
	{"IBV_WC_MW_BIND_ERR", "memory management operation error"},
	{"IBV_WC_BAD_RESP_ERR", "bad response error"},
	{"IBV_WC_LOC_ACCESS_ERR", "local access error"},
	{"IBV_WC_REM_INV_REQ_ERR", "remote invalid request error"},
	{"IBV_WC_REM_ACCESS_ERR", "remote access error"},
	{"IBV_WC_REM_OP_ERR", "remote operation error"},
	{"IBV_WC_RETRY_EXC_ERR", "transport retry counter exceeded"},
	{"IBV_WC_RNR_RETRY_EXC_ERR", "RNR retry counter exceeded"},
	{"IBV_WC_LOC_RDD_VIOL_ERR", "local RDD violation error"},
	{"IBV_WC_REM_INV_RD_REQ_ERR", "remote invalid RD request"},
	{"IBV_WC_REM_ABORT_ERR", "aborted error"},
	{"IBV_WC_INV_EECN_ERR", "invalid EE context number"},
	{"IBV_WC_INV_EEC_STATE_ERR", "invalid EE context state"},
	{"IBV_WC_FATAL_ERR", "fatal error"},
	{"IBV_WC_RESP_TIMEOUT_ERR", "response timeout error"},
	{"IBV_WC_GENERAL_ERR", "general error"},
	{"IBV_WC_TM_ERR", "TM error"},
	{"IBV_WC_TM_RNDV_INCOMPLETE", "TM software rendezvous"},
}

// String returns the text ibv_wc_status_str(3) gives, e.g. "transport retry counter exceeded".
func (s WCStatus) String() string {
	if s < numWCStatus {
		return wcStatusInfo[s].text
	}
	return "WCStatus(" + strconv.FormatUint(uint64(s), 10) + ")"
}

// CName returns the C constant name, e.g. "IBV_WC_RETRY_EXC_ERR", the form that man pages and
// kernel traces use.
func (s WCStatus) CName() string {
	if s < numWCStatus {
		return wcStatusInfo[s].cname
	}
	return "IBV_WC_STATUS_" + strconv.FormatUint(uint64(s), 10)
}

// WCOpcode is the opcode of a work completion (enum ibv_wc_opcode). Receive opcodes have bit 7
// set (IBV_WC_RECV = 1<<7), so IsRecv needs no table. Values are fixed per the ABI like WCStatus.
type WCOpcode uint32

// Work completion opcodes (enum ibv_wc_opcode; only the non-tag-matching ones).
const (
	WCSend            WCOpcode = 0   // IBV_WC_SEND
	WCRDMAWrite       WCOpcode = 1   // IBV_WC_RDMA_WRITE
	WCRDMARead        WCOpcode = 2   // IBV_WC_RDMA_READ
	WCCompSwap        WCOpcode = 3   // IBV_WC_COMP_SWAP
	WCFetchAdd        WCOpcode = 4   // IBV_WC_FETCH_ADD
	WCBindMW          WCOpcode = 5   // IBV_WC_BIND_MW
	WCLocalInv        WCOpcode = 6   // IBV_WC_LOCAL_INV
	WCTSO             WCOpcode = 7   // IBV_WC_TSO
	WCAtomicWrite     WCOpcode = 9   // IBV_WC_ATOMIC_WRITE
	WCRecv            WCOpcode = 128 // IBV_WC_RECV
	WCRecvRDMAWithImm WCOpcode = 129 // IBV_WC_RECV_RDMA_WITH_IMM
)

var wcOpcodeInfo = map[WCOpcode]struct{ cname, text string }{
	WCSend:            {"IBV_WC_SEND", "send"},
	WCRDMAWrite:       {"IBV_WC_RDMA_WRITE", "rdma write"},
	WCRDMARead:        {"IBV_WC_RDMA_READ", "rdma read"},
	WCCompSwap:        {"IBV_WC_COMP_SWAP", "compare and swap"},
	WCFetchAdd:        {"IBV_WC_FETCH_ADD", "fetch and add"},
	WCBindMW:          {"IBV_WC_BIND_MW", "bind mw"},
	WCLocalInv:        {"IBV_WC_LOCAL_INV", "local invalidate"},
	WCTSO:             {"IBV_WC_TSO", "tso"},
	WCAtomicWrite:     {"IBV_WC_ATOMIC_WRITE", "atomic write"},
	WCRecv:            {"IBV_WC_RECV", "recv"},
	WCRecvRDMAWithImm: {"IBV_WC_RECV_RDMA_WITH_IMM", "recv rdma with imm"},
}

// String returns a short lowercase name ("send", "recv"); libibverbs has no opcode-to-string call.
// Note: per ibv_poll_cq(3) the opcode is only valid when the status is success.
func (o WCOpcode) String() string {
	if i, ok := wcOpcodeInfo[o]; ok {
		return i.text
	}
	return "WCOpcode(" + strconv.FormatUint(uint64(o), 10) + ")"
}

// CName returns the C constant name, e.g. "IBV_WC_RECV".
func (o WCOpcode) CName() string {
	if i, ok := wcOpcodeInfo[o]; ok {
		return i.cname
	}
	return "IBV_WC_OPCODE_" + strconv.FormatUint(uint64(o), 10)
}

// IsRecv reports whether the opcode is a receive-side completion.
func (o WCOpcode) IsRecv() bool { return o&WCRecv != 0 }

// WCFlags are the wc_flags of a completion (enum ibv_wc_flags).
type WCFlags uint32

const (
	// WCFlagGRH: the first 40 bytes of a UD receive buffer hold the GRH (IBV_WC_GRH).
	WCFlagGRH WCFlags = 1 << 0
	// WCFlagWithImm: ImmData is valid (IBV_WC_WITH_IMM).
	WCFlagWithImm WCFlags = 1 << 1
)
