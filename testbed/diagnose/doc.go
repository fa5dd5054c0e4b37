// Package diagnose says where a lab's RoCE packets die, why, and what to change.
//
// It owns three things:
//
//   - the evidence model (Evidence and its parts, evidence.go and evidence_values.go): what
//     the kernel showed about a lab, as plain typed data that records to JSON and replays
//     (testdata/*.json are evidence recorded on real kernels);
//   - the diagnosis rules (rules*.go): typed functions of the evidence, one rule or a small
//     group per file, each returning at most one Finding with a stable FindingCode, its
//     evidence lines and a fix; Conclude orders them causally and adds what each evidence
//     layer concluded;
//   - collecting the evidence on Linux (collect_linux.go, trace_linux.go) and `diagnose --fix`
//     (FixLab).
//
// The kernel's own facts (route types, neighbour states, effective sysctls, the source-address
// check) come from internal/kernel; the did-it-cross-the-cable check from
// (*counters.Snapshot).Crossed; traffic batches from package traffic. Everything but collection
// is pure, so the rules are tested on recorded evidence without root.
package diagnose
