package scenario

import (
	"errors"
	"fmt"
	"io/fs"
	"reflect"
	"regexp"
	"sort"
	"strings"

	yaml "github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/lexer"
	"github.com/goccy/go-yaml/parser"

	"github.com/rocebed/rocebed/scenarios"
)

// BuiltinPrefix marks an embedded scenario in Scenario.File and in a Load reference.
const BuiltinPrefix = "builtin:"

// LooksLikeName reports whether ref reads as a name (an embedded scenario's, or a lab's)
// rather than a file path: no '/', and no .yaml or .yml suffix.
func LooksLikeName(ref string) bool {
	return !strings.Contains(ref, "/") && !strings.HasSuffix(ref, ".yaml") && !strings.HasSuffix(ref, ".yml")
}

// Read returns a scenario's text by reference, and where it came from ("builtin:NAME" for an
// embedded one, else the path): an embedded scenario's name ("same-host", or
// "builtin:same-host") when it LooksLikeName and such a scenario is embedded, otherwise a
// file path.
func Read(ref string) (file string, data []byte, err error) {
	if name, ok := strings.CutPrefix(ref, BuiltinPrefix); ok {
		data, err := scenarios.Read(name)
		if err != nil {
			return "", nil, fmt.Errorf("no builtin scenario %q (builtins: %s)", name, strings.Join(scenarios.Names(), ", "))
		}
		return ref, data, nil
	}
	if LooksLikeName(ref) {
		if data, err := scenarios.Read(ref); err == nil {
			return BuiltinPrefix + ref, data, nil
		}
	}
	data, err = ReadFile(ref)
	if err != nil {
		if LooksLikeName(ref) && errors.Is(err, fs.ErrNotExist) {
			return "", nil, fmt.Errorf("no scenario %q: no such file and no builtin of that name (builtins: %s)",
				ref, strings.Join(scenarios.Names(), ", "))
		}
		return "", nil, fmt.Errorf("read scenario: %w (built-in scenarios: %s)", err, strings.Join(scenarios.Names(), ", "))
	}
	return ref, data, nil
}

// Load reads a scenario by reference (see Read) and parses it (see Parse). sets are
// NAME=VALUE parameter overrides.
func Load(ref string, sets []string) (*Scenario, error) {
	file, data, err := Read(ref)
	if err != nil {
		return nil, err
	}
	return Parse(file, data, sets)
}

// Parse decodes a scenario strictly (unknown keys, duplicate keys and wrong types are errors),
// substitutes ${param} references in string values (sets override the defaults), applies the
// defaults (SetDefaults) and validates the result (Validate). file names the source in error
// messages. Every problem found is returned at once, each a *FieldError, joined with
// errors.Join.
func Parse(file string, data []byte, sets []string) (*Scenario, error) {
	body, err := parseDocument(file, data)
	if err != nil {
		return nil, err
	}
	s := &Scenario{File: file}
	d := &decoder{file: file, pos: map[string]Position{}}
	root, ok := body.(*ast.MappingNode)
	if !ok {
		return nil, &FieldError{File: file, Pos: nodePos(body), Msg: "want a mapping (version: 1, name: ...), got " + kindName(body)}
	}

	// Parameters first: their values are needed while decoding the rest.
	var paramsNode ast.Node
	for _, kv := range root.Values {
		if kv != nil && kv.Key != nil && kv.Key.GetToken() != nil && kv.Key.GetToken().Value == "params" {
			paramsNode = kv.Value
			break // a duplicate "params" key is reported by the main walk
		}
	}
	if paramsNode != nil {
		d.value("params", paramsNode, reflect.ValueOf(&s.Params).Elem())
	}
	d.pos[""] = nodePos(root)
	values, setErrs := paramValues(s, d.pos, sets)
	d.errs = append(d.errs, setErrs...)
	expanded := 0 // bytes substitution added, all strings together
	d.subst = func(path string, at Position, text string) string {
		if path == "params" || strings.HasPrefix(path, "params[") {
			return text // parameters do not refer to each other
		}
		if expanded > maxExpanded {
			return text // reported once, below
		}
		out, err := substitute(text, values, maxExpanded-expanded)
		if err != nil {
			d.errAt(at, path, "%s", err.Msg(s.Params))
			return text
		}
		if expanded += len(out) - len(text); expanded > maxExpanded {
			d.errAt(at, path, "substituting parameters makes the scenario more than %d bytes larger: a scenario is at most 1 MiB", maxExpanded)
		}
		return out
	}
	d.skipParams = true
	d.value("", root, reflect.ValueOf(s).Elem())
	s.positions = d.pos
	if len(d.errs) > 0 {
		return nil, errors.Join(d.errs...)
	}
	s.SetDefaults()
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return s, nil
}

// parseDocument checks the text against the format's limits (checkText, checkTokens), runs
// the YAML parser and returns the one document's body.
func parseDocument(file string, data []byte) (body ast.Node, err error) {
	defer func() {
		// The YAML library must not take the CLI down on hostile input; report it as the
		// file's problem instead.
		if r := recover(); r != nil {
			body, err = nil, &FieldError{File: file, Pos: Position{Line: 1, Column: 1}, Msg: fmt.Sprintf("yaml parser failed on this input: %v", r)}
		}
	}()
	if fe := checkText(file, data); fe != nil {
		return nil, fe
	}
	tokens := lexer.Tokenize(string(data))
	if fe := checkTokens(file, tokens); fe != nil {
		return nil, fe
	}
	f, perr := parser.Parse(tokens, 0, parser.AllowDuplicateMapKey())
	if perr != nil {
		fe := &FieldError{File: file, Pos: Position{Line: 1, Column: 1}, Msg: "yaml syntax error: " + perr.Error()}
		var ye yaml.Error
		if errors.As(perr, &ye) {
			fe.Msg = "yaml syntax error: " + ye.GetMessage()
			if tk := ye.GetToken(); tk != nil && tk.Position != nil && tk.Position.Line > 0 && tk.Position.Column > 0 {
				fe.Pos = Position{Line: tk.Position.Line, Column: tk.Position.Column}
			}
		}
		fe.Msg += paramQuoteHint(data, fe.Pos.Line)
		return nil, fe
	}
	var docs []ast.Node
	for _, doc := range f.Docs {
		if doc != nil && doc.Body != nil {
			docs = append(docs, doc.Body)
		}
	}
	switch len(docs) {
	case 0:
		return nil, &FieldError{File: file, Pos: Position{Line: 1, Column: 1}, Msg: "empty document: want a scenario (version: 1, name: ..., nics: ...)"}
	case 1:
		return docs[0], nil
	default:
		return nil, &FieldError{File: file, Pos: nodePos(docs[1]), Msg: fmt.Sprintf("%d documents: a scenario file holds exactly one", len(docs))}
	}
}

// paramQuoteHint explains the commonest syntax error in a scenario: an unquoted ${param}
// inside [ ] or { }, where '{' starts a flow mapping.
func paramQuoteHint(data []byte, line int) string {
	lines := strings.Split(string(data), "\n")
	if line < 1 || line > len(lines) {
		return ""
	}
	ref := paramRefRe.FindString(lines[line-1])
	if ref == "" {
		return ""
	}
	return fmt.Sprintf(" (inside [ ] or { }, quote a parameter: %q)", ref)
}

var paramRefRe = regexp.MustCompile(`\$\{[^}]*\}?`)

// paramRe is the form of a parameter name.
var paramRe = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)

// paramValues returns each declared parameter's value: its default, or the --set override.
func paramValues(s *Scenario, pos map[string]Position, sets []string) (map[string]string, []error) {
	values := map[string]string{}
	for _, p := range s.Params {
		if _, dup := values[p.Name]; !dup { // a duplicate name is reported by Validate
			values[p.Name] = p.Default
		}
	}
	var errs []error
	at := pos["params"]
	if _, ok := pos["params"]; !ok {
		at = pos[""]
	}
	for _, kv := range sets {
		name, value, ok := strings.Cut(kv, "=")
		switch {
		case !ok || name == "":
			errs = append(errs, &FieldError{File: s.File, Pos: at, Path: "params", Msg: fmt.Sprintf("--set %q: want NAME=VALUE", kv)})
		case !hasKey(values, name):
			errs = append(errs, &FieldError{File: s.File, Pos: at, Path: "params",
				Msg: fmt.Sprintf("--set %s: the scenario has no parameter %q (%s)", kv, name, declaredList(s.Params))})
		default:
			values[name] = value
		}
	}
	return values, errs
}

func hasKey(m map[string]string, k string) bool {
	_, ok := m[k]
	return ok
}

func declaredList(params []Param) string {
	if len(params) == 0 {
		return "it declares none"
	}
	names := make([]string, 0, len(params))
	for _, p := range params {
		names = append(names, p.Name)
	}
	sort.Strings(names)
	return "declared: " + strings.Join(names, ", ")
}

// substError is a bad ${...} reference in a string.
type substError struct {
	name         string
	unterminated bool
}

func (e *substError) Msg(params []Param) string {
	if e.unterminated {
		return "unterminated ${ (write $${ for a literal ${)"
	}
	return fmt.Sprintf("undefined parameter ${%s} (%s)", e.name, declaredList(params))
}

// substitute replaces every ${name} in text with its value; $${ stands for a literal ${. On a
// bad reference it returns the text unchanged and the first problem. It stops once the result
// is room bytes longer than text (the caller reports that).
func substitute(text string, values map[string]string, room int) (string, *substError) {
	if !strings.Contains(text, "${") {
		return text, nil
	}
	var b strings.Builder
	rest := text
	for {
		i := strings.Index(rest, "${")
		if i < 0 {
			b.WriteString(rest)
			return b.String(), nil
		}
		if i > 0 && rest[i-1] == '$' {
			b.WriteString(rest[:i-1])
			b.WriteString("${")
			rest = rest[i+2:]
			continue
		}
		b.WriteString(rest[:i])
		end := strings.IndexByte(rest[i:], '}')
		if end < 0 {
			return text, &substError{unterminated: true}
		}
		name := rest[i+2 : i+end]
		v, ok := values[name]
		if !ok {
			return text, &substError{name: name}
		}
		b.WriteString(v)
		rest = rest[i+end+1:]
		if b.Len()-len(text) > room {
			return b.String(), nil
		}
	}
}
