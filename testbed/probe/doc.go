// Package probe checks the path between a lab's two NICs layer by layer, in each direction,
// without RDMA: link and carrier, neighbour resolution, the output route the RoCE stack takes,
// the input route (the kernel's source check), and a UDP datagram to port 4791 across the
// cable. The first failing layer says where a RoCE packet would die, with the evidence.
package probe
