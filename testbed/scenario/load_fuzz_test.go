package scenario

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/rocebed/rocebed/scenarios"
	"github.com/rocebed/rocebed/testbed/scenario/internal/hostile"
)

// FuzzParse: Parse never panics, and every error it returns is made of *FieldErrors that
// point into the file, so the CLI always maps a bad scenario to exit code 2.
func FuzzParse(f *testing.F) {
	for _, n := range scenarios.Names() {
		data, err := fs.ReadFile(scenarios.FS(), n+".yaml")
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data, "")
	}
	corpus, err := filepath.Glob("testdata/*/*.yaml")
	if err != nil {
		f.Fatal(err)
	}
	for _, file := range corpus {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data, "")
	}
	for _, s := range hostile.Shapes(4096) { // every hostile shape, small
		f.Add(s.Data, "")
	}
	f.Add([]byte(paramScenario), "nic_a=${nic_b}")
	f.Add([]byte(baseScenario), "p=1")

	f.Fuzz(func(t *testing.T, data []byte, set string) {
		var sets []string
		if set != "" {
			sets = []string{set}
		}
		s, err := Parse("fuzz.yaml", data, sets)
		if err == nil {
			if s == nil {
				t.Fatal("nil scenario without an error")
			}
			// A scenario that parsed must validate again unchanged.
			if err := s.Validate(); err != nil {
				t.Fatalf("parsed scenario fails Validate: %v", err)
			}
			return
		}
		if s != nil {
			t.Fatal("scenario returned with an error")
		}
		if !IsScenarioError(err) {
			t.Fatalf("error is not a scenario error: %v", err)
		}
		var walk func(error)
		walk = func(e error) {
			if j, ok := e.(interface{ Unwrap() []error }); ok {
				for _, x := range j.Unwrap() {
					walk(x)
				}
				return
			}
			var fe *FieldError
			if !errors.As(e, &fe) || fe != e {
				t.Fatalf("leaf error %q (%T) is not a *FieldError", e, e)
			}
			if fe.File != "fuzz.yaml" || fe.Pos.Line < 1 || fe.Pos.Column < 1 {
				t.Fatalf("error without a place in the file: %#v", fe)
			}
		}
		walk(err)
	})
}
