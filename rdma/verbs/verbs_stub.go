//go:build !(linux && cgo)

package verbs

// Without cgo (or off Linux) there is no libibverbs: every call fails with an error that
// matches ErrNoVerbs and says how to rebuild.

import "unsafe"

func noVerbs(op string) error { return &Error{Op: op, Err: errNoCgo} }

func libStatusString(WCStatus) string { return "" }

func sysListDevices() ([]string, error) { return nil, noVerbs("list rdma devices") }

func sysOpenDevice(name string) (unsafe.Pointer, error) {
	return nil, noVerbs("open rdma device " + name)
}

func sysCloseDevice(op string, _ unsafe.Pointer) error { return noVerbs(op) }

func sysQueryPort(op string, _ unsafe.Pointer, _ int) (PortAttr, error) {
	return PortAttr{}, noVerbs(op)
}

func sysQueryGID(op string, _ unsafe.Pointer, _, _ int) (GID, error) { return GID{}, noVerbs(op) }

func sysAllocPD(op string, _ unsafe.Pointer) (unsafe.Pointer, error) { return nil, noVerbs(op) }

func sysDeallocPD(op string, _ unsafe.Pointer) error { return noVerbs(op) }

func sysRegMR(op string, _ unsafe.Pointer, _ int) (regMR, error) { return regMR{}, noVerbs(op) }

func sysDeregMR(op string, _, _ unsafe.Pointer) error { return noVerbs(op) }

func sysCreateCQ(op string, _ unsafe.Pointer, _ int) (unsafe.Pointer, error) {
	return nil, noVerbs(op)
}

func sysDestroyCQ(op string, _ unsafe.Pointer) error { return noVerbs(op) }

func sysCreateQP(op string, _, _, _ unsafe.Pointer, _ QPConfig) (createdQP, error) {
	return createdQP{}, noVerbs(op)
}

func sysDestroyQP(op string, _ unsafe.Pointer) error { return noVerbs(op) }

func sysQPToInit(op string, _ unsafe.Pointer, _ QPType, _ int, _ uint32) error { return noVerbs(op) }

func sysQPToRTR(op string, _ unsafe.Pointer, _ QPType, _ RTRConfig) error { return noVerbs(op) }

func sysQPToRTS(op string, _ unsafe.Pointer, _ QPType, _ RTSConfig) error { return noVerbs(op) }

func sysCreateAH(op string, _ unsafe.Pointer, _ int, _ GID, _ int, _ uint8) (unsafe.Pointer, error) {
	return nil, noVerbs(op)
}

func sysDestroyAH(op string, _ unsafe.Pointer) error { return noVerbs(op) }

func sysPostRecv(op string, _, _ unsafe.Pointer, _ int, _ uint32, _ uint64) error { return noVerbs(op) }

func sysPostSend(op string, _, _ unsafe.Pointer, _ int, _ uint32, _ uint64, _, _ bool, _ unsafe.Pointer, _, _ uint32) error {
	return noVerbs(op)
}

func newPollScratch() unsafe.Pointer { return nil }

func sysPollCQ(op string, _, _ unsafe.Pointer, _ []Completion) (int, error) { return 0, noVerbs(op) }

const maxSendList = 64

func sysPostSendList(op string, _, _ unsafe.Pointer, _ uint32, _ []SendWR, _ int) (int, error) {
	return 0, noVerbs(op)
}

func sysNewPingPong(op string, _ [2]loopEnd, _, _, _, _ int, _ uint64, _ pingPongPace) (unsafe.Pointer, error) {
	return nil, noVerbs(op)
}

func sysFreePingPong(unsafe.Pointer) {}

func sysNowNS() uint64 { return 0 }

func sysRunPingPong(unsafe.Pointer, int, int, int) (PingPongStop, PingPongStop) {
	return PingPongPollFailed, PingPongPollFailed
}

func sysStopPingPong(unsafe.Pointer) {}
func sysEndPing(unsafe.Pointer)      {}
func sysEndPong(unsafe.Pointer)      {}

func sysPingPostedNS(unsafe.Pointer, int) uint64 { return 0 }

func sysTakePingPong(_ unsafe.Pointer, _ PingPongRole, _ uint64, dst []TimedCompletion) []TimedCompletion {
	return dst
}

func sysPingPongProgress(unsafe.Pointer, PingPongRole) PingPongProgress {
	return PingPongProgress{PollErr: noVerbs("read ping-pong progress"), Failed: true}
}

func sysNewSendStream(op string, _ loopEnd, _ SendStreamConfig, _ int) (unsafe.Pointer, error) {
	return nil, noVerbs(op)
}

func sysFreeSendStream(unsafe.Pointer)                    {}
func sysRunSendStream(unsafe.Pointer, int) SendStreamStop { return SendStreamPollFailed }
func sysStopSendStream(unsafe.Pointer)                    {}
func sysAllowSendStream(unsafe.Pointer, int)              {}
func sysSendPostedNS(unsafe.Pointer, int) uint64          { return 0 }

func sysTakeSendStream(_ unsafe.Pointer, _ uint64, dst []TimedCompletion) []TimedCompletion {
	return dst
}

func sysSendStreamProgress(unsafe.Pointer) SendStreamProgress {
	return SendStreamProgress{PollErr: noVerbs("read send stream progress"), Failed: true}
}
