package selection

import (
	"strings"
	"testing"
)

func helper(t *testing.T) { viaNonTest(t) }

type fixture struct{}

func (fixture) setUp(t *testing.T) { NeedsKernel(t) }

var check = func(t *testing.T) { NeedsKernel(t) }

func subtest(t *testing.T) { NeedsKernel(t) }

func TestDirect(t *testing.T)        { NeedsKernel(t) }
func TestThroughHelper(t *testing.T) { helper(t) }
func TestThroughMethod(t *testing.T) { var f fixture; f.setUp(t) }
func TestThroughVar(t *testing.T)    { check(t) }
func TestFuncValue(t *testing.T)     { t.Run("sub", subtest) }
func TestPlain(t *testing.T)         { _ = strings.ToUpper("no kernel") }
func TestDirectly(t *testing.T)      {} // TestDirect's pattern must not run it
