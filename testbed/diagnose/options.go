package diagnose

import "github.com/rocebed/rocebed/testbed/traffic"

// TraceWarning is why the kfree_skb layer is opt-in.
const TraceWarning = "--trace turns it on; off by default because on the Debian 6.1 test kernel under QEMU TCG, setting up or removing the tracefs instance soft-locked a CPU in about 1 of 5 diagnoses"

// Options control Run.
type Options struct {
	// Traffic is the report of traffic that already ran (a failed `run`): Run then runs
	// none and takes the counters from the report's batches.
	Traffic *traffic.Report
	// NoTraffic diagnoses from configuration, routes and the probe alone.
	NoTraffic bool
	// Trace adds the skb:kfree_skb layer (TraceWarning says why it is off by default).
	Trace bool
	// NoProbe leaves out Probe.
	NoProbe bool
}
