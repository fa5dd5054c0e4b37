package sysctl

import (
	"errors"
	"fmt"
)

// Setting is one parameter and its value.
type Setting struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// Saved is a parameter's value from before a change, to write back on restore.
type Saved struct {
	Key string `json:"key"`
	Old string `json:"old"`
}

// Apply writes settings in order, remembering each previous value first. On failure it
// restores what it already changed and returns the error joined with any restore error. The
// returned Saved list, handed to Restore, puts everything back exactly.
func (s Sysctl) Apply(settings []Setting) ([]Saved, error) {
	var saved []Saved
	for _, st := range settings {
		old, err := s.Get(st.Key)
		if err != nil {
			return nil, errors.Join(err, s.Restore(saved))
		}
		saved = append(saved, Saved{Key: st.Key, Old: old})
		if err := s.Set(st.Key, st.Value); err != nil {
			return nil, errors.Join(err, s.Restore(saved))
		}
	}
	return saved, nil
}

// Restore writes the saved values back in reverse order, so a key set twice ends at its first
// value. It keeps going after a failure and returns every error.
func (s Sysctl) Restore(saved []Saved) error {
	var errs []error
	for i := len(saved) - 1; i >= 0; i-- {
		if err := s.Set(saved[i].Key, saved[i].Old); err != nil {
			errs = append(errs, fmt.Errorf("restore: %w", err))
		}
	}
	return errors.Join(errs...)
}
