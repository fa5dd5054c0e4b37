package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/rocebed/rocebed/internal/host"
	"github.com/rocebed/rocebed/testbed/lab"
	"github.com/rocebed/rocebed/testbed/scenario"
)

// loadScenario reads, parses and validates a scenario with the --set overrides.
func loadScenario(o *options, ref string) (*scenario.Scenario, []byte, error) {
	file, src, err := scenario.Read(ref)
	if err != nil {
		return nil, nil, usageError(err)
	}
	s, err := scenario.Parse(file, src, o.sets)
	if err != nil {
		return nil, nil, err
	}
	return s, src, nil
}

// openScenario loads a scenario — of a two-host lab, the part of the host --side names — and
// opens the environment it is to be built in (--netns, or the current namespace). The caller
// closes the environment.
func openScenario(o *options, ref string) (*scenario.Scenario, []byte, *host.Env, error) {
	s, src, err := loadScenario(o, ref)
	if err != nil {
		return nil, nil, nil, err
	}
	if err := checkNetnsFlag(o); err != nil {
		return nil, nil, nil, err
	}
	if s, err = s.ForHost(scenario.HostName(o.side)); err != nil {
		return nil, nil, nil, usageError(err)
	}
	env, err := host.Open(o.netns)
	if err != nil {
		return nil, nil, nil, withExit(exitEnvironment, err)
	}
	return s, src, env, nil
}

// checkNetnsFlag refuses a --netns that is not a namespace name: it names a file under
// /run/netns, so a path ("../../proc/1/ns/net") must never reach it.
func checkNetnsFlag(o *options) error {
	if o.netns == "" {
		return nil
	}
	if msg := scenario.NetnsNameProblem(o.netns); msg != "" {
		return usageError(fmt.Errorf("--netns %s", msg))
	}
	return nil
}

// labName turns a LAB argument (a lab name, a built-in scenario, or a scenario path) into the
// lab's name. A name must be a valid lab name — it names a directory in the state directory,
// so ".." and the like are refused — unless it is a scenario reference (builtin:NAME).
func labName(o *options, ref string) (string, error) {
	if scenario.LooksLikeName(ref) && !strings.HasPrefix(ref, scenario.BuiltinPrefix) {
		if msg := scenario.LabNameProblem(ref); msg != "" {
			return "", usageError(fmt.Errorf("%s (and not a scenario file: a path has a '/' or ends in .yaml)", msg))
		}
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
	s, h, err := lab.OpenScenario(o.stateDir, name)
	switch {
	case scenario.IsScenarioError(err):
		return nil, nil, err
	case err != nil:
		return nil, nil, withExit(exitEnvironment, fmt.Errorf("%w: bring it up with `rocebed up %s`", err, ref))
	}
	if s.TwoHost() {
		return nil, nil, usageError(fmt.Errorf("lab %s spans two hosts and this command needs both endpoints on this host: a two-host lab's traffic runs with `rocebed run %s --side %s --listen|--connect ADDR:PORT`", s.Name, ref, s.Host))
	}
	env, err := host.Open(h.Netns)
	if err != nil {
		return nil, nil, err
	}
	return s, env, nil
}
