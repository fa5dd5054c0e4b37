// Package kernel is rocebed's model of the Linux networking state it reads: what counts as
// settled after a change (DAD, addrconf, linkwatch), and the facts the other packages decide on.
// It reads the kernel through namespace-bound netlink handles and /proc; it changes nothing.
package kernel
