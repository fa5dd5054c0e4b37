package scenario

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	yaml "github.com/goccy/go-yaml"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rocebed/rocebed/scenarios"
)

func loadSchema(t *testing.T) map[string]any {
	t.Helper()
	data, err := JSONSchema()
	require.NoError(t, err)
	var schema map[string]any
	require.NoError(t, json.Unmarshal(data, &schema), "the schema is not valid JSON")
	return schema
}

// TestSchemaCoversSpec walks the spec types itself (reading the yaml tags directly, not
// through the generator's helper) and checks that each struct's schema lists exactly its
// keys, marks the ones without omitempty required and forbids others.
func TestSchemaCoversSpec(t *testing.T) {
	schema := loadSchema(t)
	assert.Equal(t, "https://json-schema.org/draft/2020-12/schema", schema["$schema"])
	defs, _ := schema["$defs"].(map[string]any)
	require.NotNil(t, defs)

	seen := map[reflect.Type]bool{}
	var walk func(reflect.Type)
	walk = func(typ reflect.Type) {
		for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice {
			typ = typ.Elem()
		}
		if typ.Kind() != reflect.Struct || seen[typ] {
			return
		}
		seen[typ] = true
		obj := schema
		if typ != reflect.TypeFor[Scenario]() {
			obj, _ = defs[typ.Name()].(map[string]any)
			require.NotNil(t, obj, "no $defs entry for %s", typ.Name())
		}
		assert.Equal(t, "object", obj["type"], typ.Name())
		assert.Equal(t, false, obj["additionalProperties"], typ.Name())
		props, _ := obj["properties"].(map[string]any)
		var keys, required []string
		for i := range typ.NumField() {
			f := typ.Field(i)
			tag := f.Tag.Get("yaml")
			if !f.IsExported() || tag == "-" {
				continue
			}
			name, opts, _ := strings.Cut(tag, ",")
			keys = append(keys, name)
			assert.Contains(t, props, name, "%s.%s (yaml %q) is missing from the schema", typ.Name(), f.Name, name)
			if !strings.Contains(opts, "omitempty") {
				required = append(required, name)
			}
			walk(f.Type)
		}
		assert.Len(t, props, len(keys), "%s: the schema has keys the type does not", typ.Name())
		var gotRequired []string
		if r, ok := obj["required"].([]any); ok {
			for _, x := range r {
				gotRequired = append(gotRequired, x.(string))
			}
		}
		assert.Equal(t, required, gotRequired, "%s required keys", typ.Name())
	}
	walk(reflect.TypeFor[Scenario]())
	assert.Len(t, defs, len(seen)-1, "the schema defines types the spec does not use")
}

func TestSchemaEnums(t *testing.T) {
	schema := loadSchema(t)
	defs := schema["$defs"].(map[string]any)
	enum := func(def, key string) []string {
		p := defs[def].(map[string]any)["properties"].(map[string]any)[key].(map[string]any)
		var out []string
		for _, v := range p["enum"].([]any) {
			out = append(out, v.(string))
		}
		return out
	}
	assert.Equal(t, []string{"veth", "existing"}, enum("NIC", "kind"))
	assert.Equal(t, []string{"rc", "ud"}, enum("Traffic", "transport"))
	assert.Equal(t, []string{"a->b", "b->a", "both"}, enum("Traffic", "direction"))
	assert.Equal(t, []string{"pass", "fail"}, enum("Expect", "result"))
	assert.Equal(t, strs(KnownFailures), enum("Expect", "failure"))
}

// checkSchema is a small structural JSON Schema check: $ref, type, properties, required,
// additionalProperties false, items and enum, which is all the generator emits.
func checkSchema(root, node map[string]any, v any, path string) []string {
	if ref, ok := node["$ref"].(string); ok {
		name := strings.TrimPrefix(ref, "#/$defs/")
		return checkSchema(root, root["$defs"].(map[string]any)[name].(map[string]any), v, path)
	}
	var errs []string
	switch node["type"] {
	case "object":
		m, ok := v.(map[string]any)
		if !ok {
			return []string{fmt.Sprintf("%s: want object, got %T", path, v)}
		}
		props := node["properties"].(map[string]any)
		if r, ok := node["required"].([]any); ok {
			for _, k := range r {
				if _, ok := m[k.(string)]; !ok {
					errs = append(errs, fmt.Sprintf("%s: missing %s", path, k))
				}
			}
		}
		for k, x := range m {
			p, ok := props[k].(map[string]any)
			if !ok {
				errs = append(errs, fmt.Sprintf("%s: additional property %s", path, k))
				continue
			}
			errs = append(errs, checkSchema(root, p, x, path+"."+k)...)
		}
	case "array":
		a, ok := v.([]any)
		if !ok {
			return []string{fmt.Sprintf("%s: want array, got %T", path, v)}
		}
		for i, x := range a {
			errs = append(errs, checkSchema(root, node["items"].(map[string]any), x, fmt.Sprintf("%s[%d]", path, i))...)
		}
	case "string":
		s, ok := v.(string)
		if !ok {
			return []string{fmt.Sprintf("%s: want string, got %T", path, v)}
		}
		if e, ok := node["enum"].([]any); ok && !slices.Contains(e, any(s)) {
			errs = append(errs, fmt.Sprintf("%s: %q not in enum", path, s))
		}
	case "integer":
		switch v.(type) {
		case int, int64, uint64:
		default:
			errs = append(errs, fmt.Sprintf("%s: want integer, got %T", path, v))
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			errs = append(errs, fmt.Sprintf("%s: want boolean, got %T", path, v))
		}
	}
	return errs
}

// TestSchemaAcceptsScenarios checks every shipped and good scenario against the schema, and
// that it rejects a scenario with an unknown key.
func TestSchemaAcceptsScenarios(t *testing.T) {
	schema := loadSchema(t)
	docs := map[string][]byte{}
	for _, n := range scenarios.Names() {
		data, err := fs.ReadFile(scenarios.FS(), n+".yaml")
		require.NoError(t, err)
		docs["builtin:"+n] = data
	}
	good, err := filepath.Glob("testdata/good/*.yaml")
	require.NoError(t, err)
	for _, f := range good {
		data, err := os.ReadFile(f)
		require.NoError(t, err)
		docs[f] = data
	}
	for name, data := range docs {
		var v any
		if err := yaml.Unmarshal(data, &v); err != nil {
			t.Errorf("%s: not YAML: %v", name, err)
			continue
		}
		assert.Empty(t, checkSchema(schema, schema, v, name), name)
	}

	bad, err := os.ReadFile("testdata/bad/unknown-key.yaml")
	require.NoError(t, err)
	var v any
	require.NoError(t, yaml.Unmarshal(bad, &v))
	assert.Equal(t, []string{"bad: additional property owner"}, checkSchema(schema, schema, v, "bad"))
}
