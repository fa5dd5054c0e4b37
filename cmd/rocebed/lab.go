package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/rocebed/rocebed/internal/host"
	"github.com/rocebed/rocebed/scenarios"
	"github.com/rocebed/rocebed/testbed/lab"
	"github.com/rocebed/rocebed/testbed/scenario"
)

// readScenario reads a scenario by embedded name ("same-host") or path, returning where it came
// from and its text.
func readScenario(ref string) (file string, src []byte, err error) {
	if isBuiltinRef(ref) {
		src, err := scenarios.Read(ref)
		return "builtin:" + ref, src, err
	}
	src, err = os.ReadFile(ref)
	if err != nil {
		return "", nil, usageError(fmt.Errorf("read scenario %s: %w (built-in scenarios: %s)", ref, err, strings.Join(scenarios.Names(), ", ")))
	}
	return ref, src, nil
}

func isBuiltinRef(ref string) bool {
	if strings.ContainsRune(ref, '/') || strings.HasSuffix(ref, ".yaml") || strings.HasSuffix(ref, ".yml") {
		return false
	}
	_, err := scenarios.Read(ref)
	return err == nil
}

// loadScenario reads, parses and validates a scenario with the --set overrides.
func loadScenario(o *options, ref string) (*scenario.Scenario, []byte, error) {
	file, src, err := readScenario(ref)
	if err != nil {
		return nil, nil, err
	}
	s, err := scenario.Parse(file, src, o.sets)
	if err != nil {
		return nil, nil, err
	}
	return s, src, nil
}

// openScenario loads a scenario and opens the environment it is to be built in (--netns, or
// the current namespace). The caller closes the environment.
func openScenario(o *options, ref string) (*scenario.Scenario, []byte, *host.Env, error) {
	s, src, err := loadScenario(o, ref)
	if err != nil {
		return nil, nil, nil, err
	}
	env, err := host.Open(o.netns)
	if err != nil {
		return nil, nil, nil, withExit(exitEnvironment, err)
	}
	return s, src, env, nil
}

// labName turns a LAB argument (a lab name, a built-in scenario, or a scenario path) into the
// lab's name.
func labName(o *options, ref string) (string, error) {
	if isBuiltinRef(ref) || (!strings.ContainsRune(ref, '/') && !strings.HasSuffix(ref, ".yaml") && !strings.HasSuffix(ref, ".yml")) {
		return ref, nil
	}
	s, _, err := loadScenario(o, ref)
	if err != nil {
		return "", err
	}
	return s.Name, nil
}

// openLab returns the scenario of a lab that is up, as it was brought up, and its environment.
// The caller closes the environment.
func openLab(ctx context.Context, o *options, ref string) (*scenario.Scenario, *host.Env, error) {
	name, err := labName(o, ref)
	if err != nil {
		return nil, nil, err
	}
	j, err := lab.OpenJournal(o.stateDir, name)
	if err != nil {
		return nil, nil, withExit(exitEnvironment, fmt.Errorf("%w: bring it up with `rocebed up %s`", err, ref))
	}
	h := j.Header
	j.Close()
	s, err := scenario.Parse(h.File, h.Source, h.Sets)
	if err != nil {
		return nil, nil, fmt.Errorf("lab %q: the journal's scenario no longer parses: %w", name, err)
	}
	env, err := host.Open(h.Netns)
	if err != nil {
		return nil, nil, err
	}
	return s, env, nil
}
