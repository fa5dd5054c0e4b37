package scenario

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
)

// SchemaID is the $id of the scenario JSON Schema.
const SchemaID = "https://github.com/rocebed/rocebed/scenario-v1.schema.json"

// enumValues lists, per enumerated string type, the values it accepts; they are the
// validator's own lists, so the schema cannot disagree with Validate.
func enumValues() map[reflect.Type][]string {
	return map[reflect.Type][]string{
		reflect.TypeFor[NICKind]():   strs(nicKinds),
		reflect.TypeFor[Transport](): strs(transports),
		reflect.TypeFor[Direction](): strs(directions),
		reflect.TypeFor[Pattern]():   strs(patterns),
		reflect.TypeFor[Family]():    strs(families),
		reflect.TypeFor[Result]():    strs(results),
		reflect.TypeFor[Failure]():   strs(KnownFailures),
		reflect.TypeFor[HostName]():  strs(hostNames),
	}
}

func strs[T ~string](vs []T) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = string(v)
	}
	return out
}

// JSONSchema returns a JSON Schema (draft 2020-12) of the scenario format, generated from the
// spec types by reflection: every yaml key, the keys without omitempty as required, enums for
// kind, transport, direction, result and failure, no additional properties. It describes the
// structure only; Validate's semantic checks (ranges, references between fields) are not in
// it, and a string holding ${param} is only checked after substitution.
func JSONSchema() ([]byte, error) {
	g := &schemaGen{defs: map[string]any{}, enums: enumValues()}
	root := g.object(reflect.TypeFor[Scenario]())
	root["$schema"] = "https://json-schema.org/draft/2020-12/schema"
	root["$id"] = SchemaID
	root["title"] = "rocebed scenario, format version 1"
	root["$defs"] = g.defs
	if g.err != nil {
		return nil, g.err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false) // "a->b", not "a-\u003eb"
	if err := enc.Encode(root); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

type schemaGen struct {
	defs  map[string]any
	enums map[reflect.Type][]string
	err   error
}

// typeSchema is the schema of one Go type; named structs go to $defs and are referenced.
func (g *schemaGen) typeSchema(t reflect.Type) map[string]any {
	if vals, ok := g.enums[t]; ok {
		return map[string]any{"type": "string", "enum": vals}
	}
	switch t.Kind() {
	case reflect.Pointer:
		return g.typeSchema(t.Elem())
	case reflect.Struct:
		if _, ok := g.defs[t.Name()]; !ok {
			g.defs[t.Name()] = nil // placeholder against recursion
			g.defs[t.Name()] = g.object(t)
		}
		return map[string]any{"$ref": "#/$defs/" + t.Name()}
	case reflect.Slice:
		return map[string]any{"type": "array", "items": g.typeSchema(t.Elem())}
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Int:
		return map[string]any{"type": "integer"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	}
	if g.err == nil {
		g.err = fmt.Errorf("schema: no JSON type for Go type %s", t)
	}
	return map[string]any{}
}

// object is the schema of a struct: its yaml keys, exactly as the decoder knows them.
func (g *schemaGen) object(t reflect.Type) map[string]any {
	props := map[string]any{}
	var required []string
	fs := fieldsOf(t)
	for _, f := range fs.list {
		props[f.name] = g.typeSchema(t.Field(f.index).Type)
		if f.required {
			required = append(required, f.name)
		}
	}
	obj := map[string]any{
		"type":                 "object",
		"properties":           props,
		"additionalProperties": false,
	}
	if len(required) > 0 {
		obj["required"] = required
	}
	if doc := typeDocs[t.Name()]; doc != "" {
		obj["description"] = doc
	}
	return obj
}

// typeDocs are short descriptions for editors that show them.
var typeDocs = map[string]string{
	"Scenario":      "A lab: two NICs of one host (or one on each of two hosts), an RDMA endpoint on each, fixes, traffic and the expected verdict.",
	"Param":         "A named value referred to as ${name} in any string; --set name=value overrides the default.",
	"NIC":           "A network interface of the lab: a veth end rocebed creates, or an existing NIC.",
	"Endpoints":     "The two RDMA ends of the lab; traffic directions are named after them (a->b).",
	"Endpoint":      "An RDMA device (rxe that rocebed adds, or an existing device) and the NIC it is bound to.",
	"Fix":           "A named group of host changes, applied and removed together.",
	"PolicyRouting": "The generated policy-routing fix; {} takes the measured defaults.",
	"ARPSetting":    "net.ipv4.conf.<nic>.arp_* sysctls of one NIC.",
	"Neighbor":      "A permanent neighbour entry; mac: peer means the other end of the NIC's veth cable.",
	"Rule":          "A policy-routing rule (ip rule add pref P iif I from F to T lookup TABLE).",
	"Route":         "A route (ip route add TO dev DEV src SRC via VIA table TABLE).",
	"Traffic":       "One batch of SEND-only messages between the endpoints.",
	"RCParams":      "RC QP timers: timeout exponent, retry_cnt, rnr_retry.",
	"Expect":        "The verdict the scenario must produce.",
}
