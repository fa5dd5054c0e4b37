// Package scenarios holds the scenarios shipped with rocebed, embedded in the binary so that
// `rocebed run same-host` works from any directory.
package scenarios

import (
	"embed"
	"io/fs"
	"sort"
	"strings"
)

//go:embed *.yaml
var files embed.FS

// Default is the scenario the README's quick start runs.
const Default = "same-host"

// FS returns the embedded scenario files, one NAME.yaml per scenario.
func FS() fs.FS { return files }

// Names lists the embedded scenarios, without the .yaml suffix, sorted.
func Names() []string {
	entries, _ := fs.ReadDir(files, ".")
	var names []string
	for _, e := range entries {
		if n, ok := strings.CutSuffix(e.Name(), ".yaml"); ok {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names
}

// Read returns the embedded scenario NAME (without .yaml).
func Read(name string) ([]byte, error) { return fs.ReadFile(files, name+".yaml") }
