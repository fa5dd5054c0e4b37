package scenario

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite testdata/bad/*.err from the current output")

// fieldErrors flattens an errors.Join tree into its *FieldErrors; it fails the test if any
// leaf is something else.
func fieldErrors(t testing.TB, err error) []*FieldError {
	t.Helper()
	var out []*FieldError
	var walk func(error)
	walk = func(e error) {
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
			return
		}
		fe, ok := e.(*FieldError)
		if !ok {
			t.Fatalf("error %q (%T) is not a *FieldError", e, e)
		}
		out = append(out, fe)
	}
	if err != nil {
		walk(err)
	}
	return out
}

// readSets reads NAME.args next to a corpus file: one --set NAME=VALUE per line.
func readSets(t *testing.T, yamlPath string) []string {
	data, err := os.ReadFile(strings.TrimSuffix(yamlPath, ".yaml") + ".args")
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	require.NoError(t, err)
	return strings.Fields(string(data))
}

// TestBadCorpus parses every testdata/bad/NAME.yaml and compares the full error text with
// NAME.err (go test -run TestBadCorpus -update rewrites them).
func TestBadCorpus(t *testing.T) {
	files, err := filepath.Glob("testdata/bad/*.yaml")
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(files), 18)
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".yaml")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(file)
			require.NoError(t, err)
			s, err := Parse(file, data, readSets(t, file))
			require.Error(t, err, "a bad scenario parsed")
			assert.Nil(t, s)
			assert.True(t, IsScenarioError(err))
			for _, fe := range fieldErrors(t, err) {
				assert.Equal(t, file, fe.File)
				assert.Positive(t, fe.Pos.Line, "error without a line: %s", fe)
				assert.Positive(t, fe.Pos.Column, "error without a column: %s", fe)
			}
			got := err.Error() + "\n"
			golden := strings.TrimSuffix(file, ".yaml") + ".err"
			if *update {
				require.NoError(t, os.WriteFile(golden, []byte(got), 0o644))
			}
			want, err := os.ReadFile(golden)
			require.NoError(t, err, "no golden file; run go test ./testbed -run TestBadCorpus -update and review it")
			assert.Equal(t, string(want), got)
		})
	}
}

// TestGoodCorpus loads every testdata/good scenario without error.
func TestGoodCorpus(t *testing.T) {
	files, err := filepath.Glob("testdata/good/*.yaml")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			s, err := Load(file, nil)
			require.NoError(t, err)
			assert.Equal(t, file, s.File)
		})
	}
}

func TestLoadRefs(t *testing.T) {
	s, err := Load("same-host", nil)
	require.NoError(t, err)
	assert.Equal(t, "builtin:same-host", s.File)
	assert.Equal(t, "same-host", s.Name)

	s, err = Load("builtin:seed", nil)
	require.NoError(t, err)
	assert.Equal(t, "builtin:seed", s.File)

	_, err = Load("builtin:nope", nil)
	require.ErrorContains(t, err, `no builtin scenario "nope"`)
	assert.ErrorContains(t, err, "same-host")

	_, err = Load("no-such-lab", nil)
	require.ErrorContains(t, err, `no scenario "no-such-lab": no such file and no builtin of that name`)

	_, err = Load("testdata/none.yaml", nil)
	require.ErrorIs(t, err, os.ErrNotExist)
	assert.False(t, IsScenarioError(err))

	// A path is a path even when a builtin has the same base name.
	dir := t.TempDir()
	data, err := os.ReadFile("testdata/good/ipv6.yaml")
	require.NoError(t, err)
	p := filepath.Join(dir, "same-host.yaml")
	require.NoError(t, os.WriteFile(p, data, 0o644))
	s, err = Load(p, nil)
	require.NoError(t, err)
	assert.Equal(t, p, s.File)
	assert.Equal(t, "ipv6", s.Name)

	// A bare name that is not a builtin but is a file in the working directory.
	t.Chdir(dir)
	s, err = Load("same-host.yaml", nil)
	require.NoError(t, err)
	assert.Equal(t, "ipv6", s.Name)
}

const paramScenario = `version: 1
name: params
params:
  - name: nic_a
    default: eth1
  - name: nic_b
    default: eth2
  - name: addr
    default: 10.1.0.1/24
nics:
  - name: ${nic_a}
    kind: existing
    addresses: ["${addr}"]
  - name: x-${nic_b}-$${lit}
    kind: existing
    addresses: [10.1.0.2/24]
endpoints:
  a: {nic: "${nic_a}", device: auto}
  b: {nic: "x-${nic_b}-$${lit}", rxe: rxe0}
expect:
  result: pass
`

func TestParams(t *testing.T) {
	s, err := Parse("p.yaml", []byte(paramScenario), nil)
	require.NoError(t, err)
	assert.Equal(t, "eth1", s.NICs[0].Name)
	assert.Equal(t, []string{"10.1.0.1/24"}, s.NICs[0].Addresses)
	assert.Equal(t, "x-eth2-${lit}", s.NICs[1].Name, "$${ is a literal ${")
	assert.Equal(t, "eth1", s.Endpoints.A.NIC)
	assert.Equal(t, "10.1.0.1", s.Endpoints.A.Address)
	assert.Equal(t, "eth2", s.Params[1].Default, "params themselves are not substituted")
	assert.Equal(t, Position{Line: 11, Column: 11}, s.Where("nics[0].name"), "substitution keeps positions")

	s, err = Parse("p.yaml", []byte(paramScenario), []string{"nic_a=ens1f0", "addr=10.9.0.1/24", "nic_a=ens1f1"})
	require.NoError(t, err)
	assert.Equal(t, "ens1f1", s.NICs[0].Name, "the last --set wins")
	assert.Equal(t, "ens1f1", s.Endpoints.A.NIC)
	assert.Equal(t, "10.9.0.1", s.Endpoints.A.Address)

	// A value with '=' in it is kept whole.
	_, err = Parse("p.yaml", []byte(paramScenario), []string{"addr=a=b"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), `p.yaml:13:17: nics[0].addresses[0]: "a=b" is not an address in CIDR form`)

	for _, tc := range []struct{ set, want string }{
		{"bogus", `p.yaml:4:3: params: --set "bogus": want NAME=VALUE`},
		{"=x", `p.yaml:4:3: params: --set "=x": want NAME=VALUE`},
		{"nic_c=eth3", `p.yaml:4:3: params: --set nic_c=eth3: the scenario has no parameter "nic_c" (declared: addr, nic_a, nic_b)`},
	} {
		_, err := Parse("p.yaml", []byte(paramScenario), []string{tc.set})
		require.Error(t, err, tc.set)
		assert.Equal(t, tc.want, err.Error())
	}

	// Without params, an unknown --set points at the document.
	data, err := os.ReadFile("testdata/good/ipv6.yaml")
	require.NoError(t, err)
	_, err = Parse("g.yaml", data, []string{"x=1"})
	require.Error(t, err)
	assert.Regexp(t, `^g\.yaml:\d+:1: params: --set x=1: the scenario has no parameter "x" \(it declares none\)$`, err.Error())
}

func TestSubstitute(t *testing.T) {
	vals := map[string]string{"a": "A", "long_name": "L"}
	for _, tc := range []struct {
		in, out string
		bad     string // the undefined name; "}" for unterminated
	}{
		{"plain", "plain", ""},
		{"${a}", "A", ""},
		{"x${a}y${long_name}z", "xAyLz", ""},
		{"$a {a}", "$a {a}", ""},
		{"$${a}", "${a}", ""},
		{"$$${a}", "$${a}", ""},
		{"${b}", "${b}", "b"},
		{"${}", "${}", ""},
		{"${a", "${a", "}"},
	} {
		out, err := substitute(tc.in, vals, MaxSize)
		switch {
		case tc.in == "${}":
			require.NotNil(t, err, tc.in)
			assert.Equal(t, "", err.name)
		case tc.bad == "}":
			require.NotNil(t, err, tc.in)
			assert.True(t, err.unterminated)
		case tc.bad != "":
			require.NotNil(t, err, tc.in)
			assert.Equal(t, tc.bad, err.name)
		default:
			assert.Nil(t, err, tc.in)
			assert.Equal(t, tc.out, out, tc.in)
		}
	}
}

func TestPositions(t *testing.T) {
	s, err := Load("same-host", nil)
	require.NoError(t, err)
	// Line/column of values in scenarios/same-host.yaml.
	for path, want := range map[string]Position{
		"":                        {3, 1},
		"version":                 {3, 10},
		"nics":                    {10, 3},
		"nics[1]":                 {14, 5},
		"nics[1].addresses[0]":    {17, 17},
		"endpoints.a":             {19, 6},
		"endpoints.a.nic":         {19, 12},
		"fixes[0].policy_routing": {24, 21},
		"traffic[0].size":         {30, 11},
		"expect.result":           {32, 11},
		// Defaults and missing values point at the nearest ancestor.
		"fixes[0].policy_routing.table_a": {24, 21},
		"traffic[0].rc.timeout":           {26, 5},
		"endpoints.b.address":             {20, 6},
	} {
		assert.Equal(t, want, s.Where(path), path)
	}
}

func TestDefaults(t *testing.T) {
	s, err := Load("same-host", nil)
	require.NoError(t, err)
	pr := s.Fixes[0].PolicyRouting
	require.NotNil(t, pr, "policy_routing: {} must be set")
	assert.Equal(t, PolicyRouting{LocalRulePriority: 100, RulePriority: 10, TableA: 100, TableB: 101}, *pr)
	rc := s.Traffic[0].RC
	require.NotNil(t, rc)
	assert.Equal(t, 12, *rc.Timeout)
	assert.Equal(t, 2, *rc.RetryCount)
	assert.Equal(t, 7, *rc.RNRRetry)
	assert.Equal(t, 30000, s.Traffic[0].DeadlineMS)
	assert.Equal(t, "10.10.0.1", s.Endpoints.A.Address)
	assert.Equal(t, "10.10.0.2", s.Endpoints.B.Address)

	ud, err := Load("same-host-ud", nil)
	require.NoError(t, err)
	assert.Nil(t, ud.Traffic[0].RC, "UD traffic gets no RC timers")

	// Unset RC fields are filled one by one; set ones (even 0) are kept.
	zero, five := 0, 5
	sc := &Scenario{
		NICs:    []NIC{{Name: "a", Addresses: []string{"fd00::1/64", "10.0.0.1/24", "10.0.0.9/24"}}, {Name: "b", Addresses: []string{"fd00::2/64"}}},
		Traffic: []Traffic{{Transport: TransportRC, RC: &RCParams{Timeout: &zero, RNRRetry: &five}, DeadlineMS: 5}},
		Fixes:   []Fix{{PolicyRouting: &PolicyRouting{TableB: 7}}},
	}
	sc.Endpoints.A.NIC, sc.Endpoints.B.NIC = "a", "b"
	sc.SetDefaults()
	assert.Equal(t, 0, *sc.Traffic[0].RC.Timeout)
	assert.Equal(t, 2, *sc.Traffic[0].RC.RetryCount)
	assert.Equal(t, 5, *sc.Traffic[0].RC.RNRRetry)
	assert.Equal(t, 5, sc.Traffic[0].DeadlineMS)
	assert.Equal(t, 7, sc.Fixes[0].PolicyRouting.TableB)
	assert.Equal(t, 100, sc.Fixes[0].PolicyRouting.TableA)
	assert.Equal(t, "10.0.0.1", sc.Endpoints.A.Address, "first IPv4 address")
	assert.Equal(t, "fd00::2", sc.Endpoints.B.Address, "first address when none is IPv4")
}

// TestDecode covers the YAML walker's type and structure errors one by one.
func TestDecode(t *testing.T) {
	const head = "version: 1\nname: lab\n"
	for _, tc := range []struct {
		name, yaml string
		want       string // exact error text, or "" for a decode that must reach validation
	}{
		{"string for int", head + "nics:\n  - {name: a, kind: veth, mtu: abc}\n", `t.yaml:4:32: nics[0].mtu: want integer, got string "abc"`},
		{"param for int", head + "nics:\n  - {name: a, kind: veth, mtu: \"${m}\"}\n", `t.yaml:4:32: nics[0].mtu: want integer, got string "${m}" (parameters are substituted into strings only)`},
		{"float for int", head + "nics:\n  - {name: a, kind: veth, mtu: 1.5}\n", `t.yaml:4:32: nics[0].mtu: want integer, got float 1.5`},
		{"bool for int", head + "nics:\n  - {name: a, kind: veth, mtu: true}\n", `t.yaml:4:32: nics[0].mtu: want integer, got boolean true`},
		{"quoted int", "version: \"1\"\n", `t.yaml:1:10: version: want integer, got string "1"`},
		{"str tag for int", "version: !!str 1\n", `t.yaml:1:10: version: want integer, got integer 1`},
		{"huge int", "version: 99999999999999999999999\n", `t.yaml:1:10: version: integer 99999999999999999999999 is out of range`},
		{"mapping for string", "name: {a: 1}\n", `t.yaml:1:7: name: want string, got mapping`},
		{"sequence for string", "name: [a]\n", `t.yaml:1:7: name: want string, got sequence`},
		{"string for bool", head + "nics:\n  - {name: a, kind: existing, allow_default_route: yes}\n", `t.yaml:4:52: nics[0].allow_default_route: want boolean (true or false), got string "yes"`},
		{"mapping for sequence", head + "nics: {name: a}\n", `t.yaml:3:7: nics: want sequence, got mapping`},
		{"scalar for struct", head + "expect: pass\n", `t.yaml:3:9: expect: want mapping, got string "pass"`},
		{"null pointer struct", head + "fixes:\n  - name: f\n    policy_routing: ~\n", "t.yaml:5:5: fixes[0].policy_routing: want mapping, got null: write `policy_routing: {}` to take every default"},
		{"unknown nested", head + "expect: {result: pass, verdict: x}\n", `t.yaml:3:24: expect.verdict: unknown key "verdict" (known keys: result, failure)`},
		{"misspelt", head + "expect: {reslt: pass}\n", `t.yaml:3:10: expect.reslt: unknown key "reslt", did you mean "result"? (known keys: result, failure)` + "\n" + `t.yaml:3:9: expect: missing required key "result"`},
		{"duplicate", head + "name: again\n", `t.yaml:3:1: name: duplicate key "name" (first at line 2 column 1)`},
		{"merge key", head + "expect:\n  <<: {result: pass}\n", "t.yaml:4:3: expect: merge keys (<<) are not supported in scenarios: write the keys out\nt.yaml:4:3: expect: missing required key \"result\""},
		{"alias", head + "description: &d x\nexpect: {result: *d}\n", `t.yaml:4:18: expect.result: aliases (*name) are not supported in scenarios: write the value out`},
		{"empty", "", `t.yaml:1:1: empty document: want a scenario (version: 1, name: ..., nics: ...)`},
		{"only separator", "---\n", `t.yaml:1:1: empty document: want a scenario (version: 1, name: ..., nics: ...)`},
		{"two documents", "a: 1\n---\nb: 2\n", `t.yaml:3:1: 2 documents: a scenario file holds exactly one`},
		{"scalar document", "hello\n", `t.yaml:1:1: want a mapping (version: 1, name: ...), got string "hello"`},
		{"syntax", "a: [1\n", `t.yaml:1:4: yaml syntax error: sequence end token ']' not found`},
		{"tab indent", "a:\n\tb: 1\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("t.yaml", []byte(tc.yaml), nil)
			require.Error(t, err)
			for _, fe := range fieldErrors(t, err) {
				assert.Positive(t, fe.Pos.Line)
			}
			// The snippets are not whole scenarios: the missing top-level keys follow.
			if tc.want != "" && !strings.HasPrefix(err.Error(), tc.want+"\n") {
				assert.Equal(t, tc.want, err.Error())
			}
		})
	}
}

// TestDecodeValues checks values that decode, including the lenient corners.
func TestDecodeValues(t *testing.T) {
	data := `version: 0x1
name: !!str lab
description: 12
nics:
  - name: a
    kind: veth
    peer: b
    mtu: 9000
    mac: 02:00:00:00:00:0a
    addresses: [10.0.0.1/24, "fd00::1/64"]
    netns:
  - {name: b, kind: veth, peer: a, addresses: [10.0.0.2/24]}
endpoints:
  a: {nic: a, rxe: r0, address: 10.0.0.1}
  b: {nic: b, rxe: r1}
fixes:
  - name: arp
    arp: [{nic: a, ignore: 1, announce: 2}]
traffic:
  - {name: t, transport: rc, direction: a->b, messages: 1, size: 1, rc: {retry_cnt: 0}}
expect:
  result: &r pass
`
	s, err := Parse("v.yaml", []byte(data), nil)
	require.NoError(t, err)
	assert.Equal(t, 1, s.Version)
	assert.Equal(t, "lab", s.Name)
	assert.Equal(t, "12", s.Description)
	assert.Equal(t, 9000, s.NICs[0].MTU)
	assert.Equal(t, "02:00:00:00:00:0a", s.NICs[0].MAC)
	assert.Equal(t, []string{"10.0.0.1/24", "fd00::1/64"}, s.NICs[0].Addresses)
	assert.Equal(t, "", s.NICs[0].Netns)
	require.NotNil(t, s.Fixes[0].ARP[0].Ignore)
	assert.Equal(t, 1, *s.Fixes[0].ARP[0].Ignore)
	assert.Equal(t, 2, *s.Fixes[0].ARP[0].Announce)
	assert.Nil(t, s.Fixes[0].ARP[0].Filter)
	assert.Equal(t, 0, *s.Traffic[0].RC.RetryCount)
	assert.Equal(t, 12, *s.Traffic[0].RC.Timeout)
	assert.Equal(t, ResultPass, s.Expect.Result)
	assert.Equal(t, Position{Line: 11, Column: 5}, s.Where("nics[0].netns"), "an empty value is placed at its key")
}
