// Package pairtest holds the guest side of the two-host test: TestPairSide runs in both guests
// of a pair (vm.ExecPair), started by TestVMPair in cmd/rocebed, which `make test-vm` runs.
// Each guest runs its host's part of two-host labs with the rocebed binary, as a user would on
// two machines, and checks the reports and that its host is restored. Anywhere else it skips:
// it needs the other guest.
package pairtest

// EnvRocebed names the rocebed binary the guests run (TestVMPair puts it in each work share).
const EnvRocebed = "ROCEBED_PAIR_ROCEBED"
