package testbed

import (
	"github.com/rocebed/rocebed/internal/preflight"
)

// PreflightError says that something the lab needs is missing from this host, what it is, and
// how to get it. Nothing has been changed on the host when it is returned. Exit code 3.
type PreflightError = preflight.Error
