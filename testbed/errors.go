package testbed

import (
	"errors"
	"fmt"
)

// FieldError is one problem in a scenario, located by file, line, column and field path, so an
// editor can jump to it. Loading and validation return every FieldError at once (errors.Join).
type FieldError struct {
	File string
	Pos  Position
	Path string // "nics[1].addresses[0]"; empty for the document as a whole
	Msg  string
}

func (e *FieldError) Error() string {
	where := fmt.Sprintf("%s:%d:%d", e.File, e.Pos.Line, e.Pos.Column)
	if e.Path == "" {
		return where + ": " + e.Msg
	}
	return where + ": " + e.Path + ": " + e.Msg
}

// fieldErr builds a FieldError located at path in s.
func (s *Scenario) fieldErr(path, format string, args ...any) *FieldError {
	return &FieldError{File: s.File, Pos: s.Where(path), Path: path, Msg: fmt.Sprintf(format, args...)}
}

// IsScenarioError reports whether err is (or wraps) a problem with the scenario itself rather
// than with the host: the CLI maps it to exit code 2.
func IsScenarioError(err error) bool {
	var fe *FieldError
	return errors.As(err, &fe)
}

// PreflightError says that something the lab needs is missing from this host, what it is, and
// how to get it. Nothing has been changed on the host when it is returned. Exit code 3.
type PreflightError struct {
	Check string // "rdma_rxe"
	Need  string // "the rdma_rxe kernel module"
	Have  string // "not loaded, and this kernel has no loadable modules"
	Hint  string // "run `modprobe rdma_rxe`, or use `rocebed vm run`"
	Err   error  // the underlying error, if any
}

func (e *PreflightError) Error() string {
	msg := fmt.Sprintf("%s: need %s, have %s", e.Check, e.Need, e.Have)
	if e.Hint != "" {
		msg += ": " + e.Hint
	}
	return msg
}

func (e *PreflightError) Unwrap() error { return e.Err }

// ExpectationError says the lab ran but the scenario's expectation did not hold. Exit code 1.
type ExpectationError struct {
	Lab string
	Msg string
}

func (e *ExpectationError) Error() string { return fmt.Sprintf("lab %q: %s", e.Lab, e.Msg) }
