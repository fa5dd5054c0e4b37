// Package traffic runs a lab's SEND-only RDMA traffic (RC and UD) between its two endpoints
// through rdma/verbs — both ends in one process (Run), or in a two-host lab one end per host
// (RunSide), the two processes exchanging what a QP needs of its peer and their halves of each
// batch (peer.go) — records every completion on both sides and the counters around each batch,
// judges each batch (passed, or which failure class and why) against the scenario's
// expectation, and writes the report as text, JSON or JUnit.
package traffic
