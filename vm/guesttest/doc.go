// Package guesttest holds real-kernel tests that `make test-vm` runs inside the QEMU guest,
// where Debian's kernel provides rdma_rxe. On other hosts they skip unless
// ROCEBED_REQUIRE_RXE=1, which makes a missing rdma_rxe a failure.
package guesttest
