// Command write puts every hostile scenario shape (package hostile) into a directory, one
// NAME.yaml each, for hostile-report.sh to run `rocebed validate` on.
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/rocebed/rocebed/testbed/scenario/internal/hostile"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: write DIR")
		os.Exit(2)
	}
	for _, s := range hostile.Shapes(hostile.Size) {
		if err := os.WriteFile(filepath.Join(os.Args[1], s.Name+".yaml"), s.Data, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
}
