package vm

import (
	"fmt"
	"go/ast"
	"go/build"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// TestsCalling lists the top-level tests (Test, Fuzz and Example functions) of the package in
// dir whose code calls one of marks, directly or through the package's own functions,
// methods and variables. This is how the guest tier runs only what needs the guest's kernel:
// the rest already ran in the host tier, ten times faster than under TCG.
//
// A mark is pkg.Func or pkg.*, pkg being the name the code imports the package as
// (testenv.RequireRXE, testlab.*); in package pkg itself, the plain name matches. The reading
// is syntactic and errs towards running a test: a method call counts as a call of every method
// of that name, and a local variable that shadows a function's name still counts as the
// function. The files are those `go test` would build here (build constraints and _GOOS
// suffixes apply).
func TestsCalling(dir string, marks []string) ([]string, error) {
	qualified, err := parseMarks(marks)
	if err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	g := callGraph{uses: map[string][]string{}, marked: map[string]bool{}}
	var tests []string
	fset := token.NewFileSet()
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".go") {
			continue
		}
		if ok, err := build.Default.MatchFile(dir, name); err != nil || !ok {
			if err != nil {
				return nil, err
			}
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, name), nil, parser.SkipObjectResolution)
		if err != nil {
			return nil, err
		}
		self := marksIn{qualified: qualified, pkg: f.Name.Name}
		imports := map[string]bool{}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			n := filepath.Base(p)
			if imp.Name != nil {
				n = imp.Name.Name
			}
			imports[n] = true
		}
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				node := d.Name.Name
				if d.Recv != nil {
					node = "." + node
				} else if strings.HasSuffix(name, "_test.go") && isTopLevelTest(node) {
					tests = append(tests, node)
				}
				if d.Body != nil { // nil for a function written in assembly
					g.read(node, d.Body, imports, self)
				}
			case *ast.GenDecl:
				for _, s := range d.Specs {
					if v, ok := s.(*ast.ValueSpec); ok {
						for i, n := range v.Names {
							if i < len(v.Values) {
								g.read(n.Name, v.Values[i], imports, self)
							}
						}
					}
				}
			}
		}
	}
	g.spread()
	var out []string
	for _, t := range tests {
		if g.marked[t] && !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	slices.Sort(out)
	return out, nil
}

func parseMarks(marks []string) (map[string]bool, error) {
	qualified := map[string]bool{}
	for _, m := range marks {
		pkg, name, ok := strings.Cut(m, ".")
		if !ok || !token.IsIdentifier(pkg) || name != "*" && !token.IsIdentifier(name) {
			return nil, fmt.Errorf("mark %q: want pkg.Func or pkg.*", m)
		}
		qualified[m] = true
	}
	return qualified, nil
}

// RunExactly is the -test.run pattern for exactly these top-level tests (and their subtests).
func RunExactly(tests []string) string {
	quoted := make([]string, len(tests))
	for i, t := range tests {
		quoted[i] = regexp.QuoteMeta(t)
	}
	return "^(" + strings.Join(quoted, "|") + ")$"
}

// isTopLevelTest is go test's rule: TestXxx, FuzzXxx or ExampleXxx where Xxx does not start
// with a lower-case letter; TestMain is not a test.
func isTopLevelTest(name string) bool {
	for _, prefix := range []string{"Test", "Fuzz", "Example"} {
		rest, ok := strings.CutPrefix(name, prefix)
		if !ok || name == "TestMain" {
			continue
		}
		r, _ := utf8.DecodeRuneInString(rest)
		return rest == "" || !unicode.IsLower(r)
	}
	return false
}

// callGraph: uses maps a package-level name (a function, a variable, or ".Method" for every
// method of that name) to the package-level names its code mentions.
type callGraph struct {
	uses   map[string][]string
	marked map[string]bool
}

// marksIn are the marks as seen from one file of package pkg.
type marksIn struct {
	qualified map[string]bool
	pkg       string
}

func (m marksIn) match(pkg, name string) bool {
	return m.qualified[pkg+"."+name] || m.qualified[pkg+".*"]
}

func (g *callGraph) read(node string, body ast.Node, imports map[string]bool, marks marksIn) {
	var visit func(n ast.Node) bool
	visit = func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.SelectorExpr:
			if x, ok := n.X.(*ast.Ident); ok && imports[x.Name] {
				if marks.match(x.Name, n.Sel.Name) {
					g.marked[node] = true
				}
				return false
			}
			g.uses[node] = append(g.uses[node], "."+n.Sel.Name)
			ast.Inspect(n.X, visit) // not n.Sel: a field or method is not the function of that name
			return false
		case *ast.Ident:
			if marks.match(marks.pkg, n.Name) {
				g.marked[node] = true
			}
			g.uses[node] = append(g.uses[node], n.Name)
		}
		return true
	}
	ast.Inspect(body, visit)
}

// spread marks every name that uses a marked one, until nothing changes.
func (g *callGraph) spread() {
	for changed := true; changed; {
		changed = false
		for node, uses := range g.uses {
			if g.marked[node] {
				continue
			}
			for _, u := range uses {
				if g.marked[u] {
					g.marked[node], changed = true, true
					break
				}
			}
		}
	}
}
