package testbed

import (
	"fmt"

	"github.com/rocebed/rocebed/internal/preflight"
)

// PreflightError says that something the lab needs is missing from this host, what it is, and
// how to get it. Nothing has been changed on the host when it is returned. Exit code 3.
type PreflightError = preflight.Error

// ExpectationError says the lab ran but the scenario's expectation did not hold. Exit code 1.
type ExpectationError struct {
	Lab string
	Msg string
}

func (e *ExpectationError) Error() string { return fmt.Sprintf("lab %q: %s", e.Lab, e.Msg) }
