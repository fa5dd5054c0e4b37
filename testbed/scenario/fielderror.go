package scenario

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
func (s *Scenario) FieldErr(path, format string, args ...any) *FieldError {
	return &FieldError{File: s.File, Pos: s.Where(path), Path: path, Msg: fmt.Sprintf(format, args...)}
}

// IsScenarioError reports whether err is (or wraps) a problem with the scenario itself rather
// than with the host: the CLI maps it to exit code 2.
func IsScenarioError(err error) bool {
	var fe *FieldError
	return errors.As(err, &fe)
}
