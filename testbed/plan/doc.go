// Package plan turns a validated scenario into the ordered host changes that build its lab.
// Each kind of change is one type (Veth, MTU, Addr, Sysctl, LinkUp, RuleAdd, RuleDel, Route,
// Neighbor, RXE, Resolve) that knows its command text, the value it replaces, how it is made
// and how it is undone. Planning reads the host through HostView and changes nothing;
// applying, journaling and rolling back are package lab's.
package plan
