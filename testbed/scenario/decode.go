package scenario

import (
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/token"
)

// This file turns a YAML AST into the spec structs. It exists instead of a plain yaml.Unmarshal
// because a scenario error must say where it is (line:column and field path) for every value,
// must report every problem at once, and must reject unknown keys, duplicate keys and wrong
// types instead of guessing.

// decoder walks one document. Every decoded value's position goes into pos; every problem
// becomes a *FieldError in errs.
type decoder struct {
	file  string
	pos   map[string]Position
	errs  []error
	subst func(path string, at Position, s string) string // ${param} replacement; nil: none
	// skipParams: the top-level params were decoded first (their values feed subst).
	skipParams bool
}

func (d *decoder) errAt(at Position, path, format string, args ...any) {
	switch {
	case len(d.errs) < MaxErrors:
		d.errs = append(d.errs, &FieldError{File: d.file, Pos: at, Path: path, Msg: fmt.Sprintf(format, args...)})
	case len(d.errs) == MaxErrors:
		d.errs = append(d.errs, &FieldError{File: d.file, Pos: at, Path: path, Msg: fmt.Sprintf("more than %d problems: stopped looking", MaxErrors)})
	}
}

// full reports whether the decoder has stopped collecting problems; the walk stops too.
func (d *decoder) full() bool { return len(d.errs) > MaxErrors }

// joinPath builds "parent.key"; the document itself is "".
func joinPath(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

// tokenPos is where a node's token stands (goccy's positions are already 1-based).
func tokenPos(n ast.Node) Position {
	if n == nil {
		return Position{}
	}
	tk := n.GetToken()
	if tk == nil || tk.Position == nil {
		return Position{}
	}
	return Position{Line: tk.Position.Line, Column: tk.Position.Column}
}

// nodePos is where a value starts as a reader sees it: a block mapping starts at its first key
// (goccy's mapping token is the first ':'), everything else at its own token.
func nodePos(n ast.Node) Position {
	switch v := n.(type) {
	case *ast.MappingNode:
		if v.IsFlowStyle && v.Start != nil {
			return Position{Line: v.Start.Position.Line, Column: v.Start.Position.Column}
		}
		if len(v.Values) > 0 && v.Values[0].Key != nil {
			return tokenPos(v.Values[0].Key)
		}
	case *ast.SequenceNode:
		if v.Start != nil {
			return Position{Line: v.Start.Position.Line, Column: v.Start.Position.Column}
		}
	}
	return tokenPos(n)
}

// kindName names what a node is in the words of the YAML spec, for "want X, got Y" messages.
func kindName(n ast.Node) string {
	switch v := n.(type) {
	case nil, *ast.NullNode:
		return "null"
	case *ast.MappingNode, *ast.MappingValueNode:
		return "mapping"
	case *ast.SequenceNode:
		return "sequence"
	case *ast.IntegerNode:
		return "integer " + v.GetToken().Value
	case *ast.FloatNode, *ast.InfinityNode, *ast.NanNode:
		return "float " + v.GetToken().Value
	case *ast.BoolNode:
		return "boolean " + v.GetToken().Value
	case *ast.StringNode:
		return "string " + strconv.Quote(v.Value)
	case *ast.LiteralNode:
		return "string " + strconv.Quote(v.Value.Value)
	case *ast.AliasNode:
		return "alias"
	}
	return n.Type().String()
}

// unwrap strips anchors, which carry no meaning in a scenario, and a !!str tag, reporting
// that it asked for the value as text; any other tag is an error.
func (d *decoder) unwrap(path string, n ast.Node) (node ast.Node, forceString, ok bool) {
	for {
		switch v := n.(type) {
		case *ast.AnchorNode:
			n = v.Value
		case *ast.TagNode:
			tag := ""
			if v.Start != nil {
				tag = v.Start.Value
			}
			if tag != "!!str" {
				// A tag the decoder would drop silently changes nothing the user can see but
				// means something to them: refuse it rather than guess.
				d.errAt(tokenPos(v), path, "tag %s is not supported in scenarios: write the value without it (only !!str, to take a value as text, is)", strconv.Quote(tag))
				return nil, false, false
			}
			forceString = true
			n = v.Value
		case *ast.AliasNode:
			d.errAt(tokenPos(v), path, "aliases (*name) are not supported in scenarios: write the value out")
			return nil, false, false
		default:
			return n, forceString, true
		}
	}
}

// value decodes node into v (addressable) and records its position under path.
func (d *decoder) value(path string, n ast.Node, v reflect.Value) {
	at := nodePos(n) // an anchor or tag is where the value's text begins
	n, forceString, ok := d.unwrap(path, n)
	if !ok {
		return
	}
	if n != nil {
		d.pos[path] = at
	}
	if _, isNull := n.(*ast.NullNode); n == nil || isNull {
		if v.Kind() == reflect.Pointer && v.Type().Elem().Kind() == reflect.Struct {
			d.errAt(at, path, "want mapping, got null: write `%s: {}` to take every default", lastKey(path))
			return
		}
		v.SetZero() // an explicit null means "not set"
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		d.value(path, n, p.Elem())
		v.Set(p)
	case reflect.Struct:
		m, ok := n.(*ast.MappingNode)
		if !ok {
			d.errAt(at, path, "want mapping, got %s", kindName(n))
			return
		}
		d.structure(path, m, v)
	case reflect.Slice:
		seq, ok := n.(*ast.SequenceNode)
		if !ok {
			d.errAt(at, path, "want sequence, got %s", kindName(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(seq.Values), len(seq.Values))
		for i, item := range seq.Values {
			if d.full() {
				break
			}
			d.value(fmt.Sprintf("%s[%d]", path, i), item, s.Index(i))
		}
		v.Set(s)
	case reflect.String:
		var text string
		switch sv := n.(type) {
		case *ast.StringNode:
			text = sv.Value
		case *ast.LiteralNode:
			text = sv.Value.Value
		case *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode, *ast.InfinityNode, *ast.NanNode:
			// A number or boolean where text is wanted is taken as written ("mtu: 1500" in a
			// param default, "name: 1a" style names).
			text = sv.GetToken().Value
		default:
			d.errAt(at, path, "want string, got %s%s", kindName(n), unquotedIPv6Hint(n))
			return
		}
		if d.subst != nil {
			text = d.subst(path, at, text)
		}
		v.SetString(text)
	case reflect.Int:
		iv, isInt := n.(*ast.IntegerNode)
		if !isInt || forceString {
			msg := fmt.Sprintf("want integer, got %s", kindName(n))
			if s, isStr := n.(*ast.StringNode); isStr {
				if strings.Contains(s.Value, "${") {
					msg += " (parameters are substituted into strings only)"
				} else if digitsRe.MatchString(s.Value) && s.GetToken().Type != token.DoubleQuoteType && s.GetToken().Type != token.SingleQuoteType {
					msg = fmt.Sprintf("integer %s is out of range", s.Value)
				}
			}
			d.errAt(at, path, "%s", msg)
			return
		}
		var x int64
		switch num := iv.Value.(type) {
		case int64:
			x = num
		case uint64:
			if num > uint64(maxInt) {
				d.errAt(at, path, "integer %s is out of range", iv.GetToken().Value)
				return
			}
			x = int64(num)
		default:
			d.errAt(at, path, "integer %s is out of range", iv.GetToken().Value)
			return
		}
		if int64(int(x)) != x {
			d.errAt(at, path, "integer %s is out of range", iv.GetToken().Value)
			return
		}
		v.SetInt(x)
	case reflect.Bool:
		b, isBool := n.(*ast.BoolNode)
		if !isBool || forceString {
			d.errAt(at, path, "want boolean (true or false), got %s", kindName(n))
			return
		}
		v.SetBool(b.Value)
	default:
		// Only reachable if spec.go grows a field kind this walker does not know.
		d.errAt(at, path, "internal error: cannot decode into %s", v.Type())
	}
}

const maxInt = int(^uint(0) >> 1)

// digitsRe matches an unquoted integer too large for the YAML library, which makes it a string.
var digitsRe = regexp.MustCompile(`^[-+]?[0-9]+$`)

// lastKey is the final key of a path ("fixes[0].policy_routing" → "policy_routing").
func lastKey(path string) string {
	if i := strings.LastIndexByte(path, '.'); i >= 0 {
		return path[i+1:]
	}
	return path
}

// structure decodes a mapping into a struct: unknown and duplicate keys are errors, and so is
// a missing key whose field is not omitempty (the JSON Schema marks the same keys required).
func (d *decoder) structure(path string, m *ast.MappingNode, v reflect.Value) {
	fields := fieldsOf(v.Type())
	seen := map[string]Position{}
	for _, kv := range m.Values {
		if d.full() {
			return
		}
		if kv == nil || kv.Key == nil {
			continue
		}
		keyPos := tokenPos(kv.Key)
		var key string
		switch k := kv.Key.(type) {
		case *ast.StringNode:
			key = k.Value
		case *ast.MergeKeyNode:
			d.errAt(keyPos, path, "merge keys (<<) are not supported in scenarios: write the keys out")
			continue
		case *ast.MappingKeyNode:
			d.errAt(keyPos, path, "complex keys (?) are not supported in scenarios")
			continue
		default:
			if tk := kv.Key.GetToken(); tk != nil {
				key = tk.Value
			}
		}
		kpath := joinPath(path, key)
		if first, dup := seen[key]; dup {
			d.errAt(keyPos, kpath, "duplicate key %s (first at line %d column %d)", quoteShort(key), first.Line, first.Column)
			continue
		}
		seen[key] = keyPos
		if d.skipParams && kpath == "params" {
			continue
		}
		f, known := fields.byName[key]
		if !known {
			d.errAt(keyPos, kpath, "%s", unknownKeyMsg(key, fields.names))
			continue
		}
		if _, isNull := kv.Value.(*ast.NullNode); isNull || kv.Value == nil {
			// `key:` with nothing after it (or ~): not set. Point at the key, since an
			// implicit null has no text of its own.
			d.pos[kpath] = keyPos
			if fv := v.Field(f.index); fv.Kind() == reflect.Pointer && fv.Type().Elem().Kind() == reflect.Struct {
				d.errAt(keyPos, kpath, "want mapping, got null: write `%s: {}` to take every default", key)
			}
			continue
		}
		d.value(kpath, kv.Value, v.Field(f.index))
	}
	for _, f := range fields.list {
		if _, ok := seen[f.name]; !ok && f.required {
			d.errAt(nodePos(m), path, "missing required key %q", f.name)
		}
	}
}

// unknownKeyMsg names the unknown key, the closest known one if it looks misspelt, and all
// known keys.
func unknownKeyMsg(key string, known []string) string {
	msg := fmt.Sprintf("unknown key %s", quoteShort(key))
	best, bestDist := "", -1
	for _, k := range known {
		if len(key) > 2*len(k)+2 {
			continue // too long to be a misspelling of k
		}
		if dist := editDistance(strings.ToLower(key), k); bestDist < 0 || dist < bestDist {
			best, bestDist = k, dist
		}
	}
	if best != "" && bestDist <= max(1, len(best)/3) {
		msg += fmt.Sprintf(", did you mean %q?", best)
	}
	return msg + " (known keys: " + strings.Join(known, ", ") + ")"
}

// quoteShort quotes s for a message, cut to its first 64 bytes: a message names a value, it
// does not repeat a hostile megabyte of it.
func quoteShort(s string) string {
	const max = 64
	if len(s) <= max {
		return strconv.Quote(s)
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strconv.Quote(s[:cut]) + fmt.Sprintf("… (%d bytes)", len(s))
}

// editDistance is the Levenshtein distance between a and b, for spelling suggestions.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// yamlField is one struct field as the scenario format sees it.
type yamlField struct {
	name     string
	index    int
	required bool // no omitempty: the key must be present
}

type structFields struct {
	list   []yamlField
	byName map[string]yamlField
	names  []string // in declaration order, for messages
}

var fieldCache sync.Map // reflect.Type → *structFields

// fieldsOf lists the YAML keys of a struct type from its yaml tags; `yaml:"-"` and unexported
// fields are not keys.
func fieldsOf(t reflect.Type) *structFields {
	if c, ok := fieldCache.Load(t); ok {
		return c.(*structFields)
	}
	fs := &structFields{byName: map[string]yamlField{}}
	for i := range t.NumField() {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(sf.Name)
		}
		f := yamlField{name: name, index: i, required: !hasOpt(opts, "omitempty")}
		fs.list = append(fs.list, f)
		fs.byName[name] = f
		fs.names = append(fs.names, name)
	}
	c, _ := fieldCache.LoadOrStore(t, fs)
	return c.(*structFields)
}

func hasOpt(opts, want string) bool {
	for o := range strings.SplitSeq(opts, ",") {
		if o == want {
			return true
		}
	}
	return false
}
