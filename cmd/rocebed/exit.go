package main

import (
	"errors"
	"strings"

	"github.com/rocebed/rocebed/internal/preflight"
	"github.com/rocebed/rocebed/testbed/scenario"
	"github.com/rocebed/rocebed/testbed/traffic"
)

// Exit codes by class, so scripts and CI can tell a failed expectation from a broken host.
const (
	exitOK          = 0 // everything held
	exitExpectation = 1 // the lab ran; the scenario's expectation did not hold
	exitUsage       = 2 // invalid scenario, flag or argument
	exitEnvironment = 3 // something the lab needs is missing; nothing was changed
	exitKernel      = 4 // the kernel refused a change, or another internal error
)

// exitError carries an explicit exit code through cobra.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// withExit wraps err so that it leaves rocebed with code.
func withExit(code int, err error) error {
	if err == nil {
		return nil
	}
	return &exitError{code: code, err: err}
}

// usageError marks err as a usage problem (exit 2).
func usageError(err error) error { return withExit(exitUsage, err) }

// exitCode maps an error to its class.
func exitCode(err error) int {
	var ee *exitError
	var pe *preflight.Error
	var xe *traffic.ExpectationError
	switch {
	case errors.As(err, &ee):
		return ee.code
	case strings.HasPrefix(err.Error(), "unknown command"), strings.HasPrefix(err.Error(), "unknown flag"):
		return exitUsage // cobra's own usage errors
	case scenario.IsScenarioError(err):
		return exitUsage
	case errors.As(err, &pe):
		return exitEnvironment
	case errors.As(err, &xe):
		return exitExpectation
	default:
		return exitKernel
	}
}
