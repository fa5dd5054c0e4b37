package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/rocebed/rocebed/testbed/scenario"
	"github.com/spf13/cobra"
)

func init() { register(newValidateCmd) }

func newValidateCmd(o *options) *cobra.Command {
	return readOnlyCommand(&cobra.Command{
		Use:   "validate SCENARIO...",
		Short: "Check scenarios (files or built-in names) without touching the host; needs no root",
		Long: `validate parses each scenario strictly (unknown keys, wrong types and duplicate keys are
errors), substitutes --set parameters and checks its meaning. It prints one line per valid
scenario and every problem of an invalid one as FILE:LINE:COLUMN: PATH: MESSAGE, and exits 2
if any scenario is invalid. It changes nothing and reads nothing from the host.`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageError(errors.New("validate needs at least one scenario: a file or a built-in name"))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			results := make([]validateResult, 0, len(args))
			bad := 0
			for _, ref := range args {
				r := validateOne(ref, o.sets)
				if !r.OK {
					bad++
				}
				results = append(results, r)
			}
			if o.json {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				enc.SetEscapeHTML(false) // "a->b", not "a-\u003eb"
				if err := enc.Encode(results); err != nil {
					return err
				}
			} else {
				writeValidateText(cmd.OutOrStdout(), results)
			}
			if bad > 0 {
				return usageError(fmt.Errorf("%d of %d scenarios invalid", bad, len(args)))
			}
			return nil
		},
	})
}

// validateResult is one scenario's verdict; its JSON form is what `validate --json` prints.
type validateResult struct {
	File   string          `json:"file"`
	Lab    string          `json:"lab"`
	OK     bool            `json:"ok"`
	Errors []validateError `json:"errors"`

	nics, fixes, traffic int
}

type validateError struct {
	File    string `json:"file"`
	Line    int    `json:"line"`
	Column  int    `json:"column"`
	Path    string `json:"path"`
	Message string `json:"message"`
}

// validateOne loads one scenario and flattens its errors.
func validateOne(ref string, sets []string) validateResult {
	s, err := scenario.Load(ref, sets)
	if err == nil {
		return validateResult{File: s.File, Lab: s.Name, OK: true, Errors: []validateError{},
			nics: len(s.NICs), fixes: len(s.Fixes), traffic: len(s.Traffic)}
	}
	r := validateResult{File: ref, Errors: []validateError{}}
	for _, e := range leafErrors(err) {
		var fe *scenario.FieldError
		if errors.As(e, &fe) {
			r.File = fe.File
			r.Errors = append(r.Errors, validateError{File: fe.File, Line: fe.Pos.Line, Column: fe.Pos.Column, Path: fe.Path, Message: fe.Msg})
			continue
		}
		// Not a problem inside the file: it could not be read at all.
		r.Errors = append(r.Errors, validateError{File: ref, Message: e.Error()})
	}
	return r
}

// leafErrors flattens an errors.Join tree.
func leafErrors(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, leafErrors(e)...)
		}
		return out
	}
	return []error{err}
}

// writeValidateText prints each result on its own line(s), made safe for a terminal: file
// names and messages may carry anything a hostile file or argument put there.
func writeValidateText(w io.Writer, results []validateResult) {
	for _, r := range results {
		if r.OK {
			fmt.Fprint(w, termSafe(fmt.Sprintf("ok %s: lab %s: %s, %s, %s", r.File, r.Lab,
				plural(r.nics, "NIC", "NICs"), plural(r.fixes, "fix", "fixes"), plural(r.traffic, "traffic", "traffic")))+"\n")
			continue
		}
		for _, e := range r.Errors {
			var line string
			switch {
			case e.Line == 0:
				line = fmt.Sprintf("%s: %s", e.File, e.Message)
			case e.Path == "":
				line = fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Column, e.Message)
			default:
				line = fmt.Sprintf("%s:%d:%d: %s: %s", e.File, e.Line, e.Column, e.Path, e.Message)
			}
			fmt.Fprint(w, termSafe(line)+"\n")
		}
	}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, one)
	}
	return fmt.Sprintf("%d %s", n, many)
}
