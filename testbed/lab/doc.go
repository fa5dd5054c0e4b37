// Package lab builds and tears down labs. Up plans a scenario (package plan), checks that the
// host has what the plan needs, and makes each change journaled first — the journal and the
// lock live in the state directory — rolling everything back on failure; Down undoes a
// journal newest first; StatusOf reads it. ResolveEndpoints tells what a lab that is up has at
// each end: NIC, RDMA device, address and RoCE v2 GID.
package lab
