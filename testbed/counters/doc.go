// Package counters reads what moved while traffic ran: the RDMA devices' hw_counters, the
// NICs' and lo's packet counts and the kernel's drop counters (rt_cache's in_martian_src,
// /proc/net/snmp and netstat), as snapshots and deltas. Crossed is the one check that a batch
// of packets really crossed the lab's cable.
package counters
