// Package traffic runs a lab's SEND-only RDMA traffic (RC and UD) between its two endpoints in
// one process through rdma/verbs, records every completion on both sides and the counters
// around each batch, judges each batch (passed, or which failure class and why) against the
// scenario's expectation, and writes the report as text, JSON or JUnit.
package traffic
