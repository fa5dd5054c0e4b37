package selection_test

import (
	"testing"

	"github.com/rocebed/rocebed/vm/testdata/selection"
)

func TestExternal(t *testing.T)      { selection.NeedsKernel(t) }
func TestExternalPlain(t *testing.T) {}
