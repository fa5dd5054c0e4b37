// Package left is a fixture for the VM harness's own tests: with the rendezvous/right package
// it passes only when the two run at once in two different guests (vm test --guests 2).
package left

import (
	"testing"

	"github.com/rocebed/rocebed/vm/testdata/rendezvous"
)

func TestMeetsTheOtherGuest(t *testing.T) { rendezvous.Meet(t, "left", "right") }
