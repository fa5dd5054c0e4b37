//go:build never

package selection

import "testing"

func TestNeverBuilt(t *testing.T) { NeedsKernel(t) }
