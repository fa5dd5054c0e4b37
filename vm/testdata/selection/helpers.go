// Package selection is TestsCalling's test subject: tests that reach NeedsKernel in each way
// the reading must follow, and tests that do not.
package selection

import "testing"

// NeedsKernel is the mark.
func NeedsKernel(t testing.TB) { t.Log("needs the kernel") }

// viaNonTest reaches the mark from a non-test file.
func viaNonTest(t testing.TB) { NeedsKernel(t) }
