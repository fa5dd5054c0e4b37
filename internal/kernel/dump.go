package kernel

import (
	"errors"

	"github.com/vishvananda/netlink"
)

// dumpTries bounds Dump's retries: an interrupted dump means a table changed while it was read,
// which stops happening once the change is over.
const dumpTries = 10

// Dump runs a netlink dump (LinkList, AddrList, RouteList, RuleList, NeighList, …) and runs it
// again when the kernel marked it interrupted (NLM_F_DUMP_INTR: the table changed during the
// dump, so the result may be incomplete or inconsistent). The last try's error is returned.
func Dump[T any](list func() (T, error)) (T, error) {
	var v T
	var err error
	for range dumpTries {
		if v, err = list(); !errors.Is(err, netlink.ErrDumpInterrupted) {
			return v, err
		}
	}
	return v, err
}
