package vm

import (
	"strings"
	"testing"
)

func TestPairNICs(t *testing.T) {
	a, b, err := PairNICs()
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != 2 || len(b) != 2 || a[0].Name != "eth0" || a[1].Name != "eth1" || b[1].Name != "eth1" {
		t.Fatalf("nics a %+v b %+v", a, b)
	}
	for i := range a {
		if a[i].LocalPort == 0 || a[i].LocalPort != b[i].RemotePort || b[i].LocalPort != a[i].RemotePort {
			t.Errorf("guest a's %s is not cabled to guest b's: %+v %+v", a[i].Name, a[i], b[i])
		}
		if a[i].MAC.String() == b[i].MAC.String() {
			t.Errorf("guests a and b share MAC %s", a[i].MAC)
		}
	}
	if a[1].Addr.IsValid() || b[1].Addr.IsValid() {
		t.Errorf("the lab's cable must be left unaddressed: %v %v", a[1].Addr, b[1].Addr)
	}
	script := nicRenameScript(a)
	for _, want := range []string{
		"ip addr add 192.168.100.1/24 dev 'eth0'\nip link set dev 'eth0' up\n",
		"ip neigh replace 192.168.100.2 lladdr 52:54:00:ab:02:00 dev 'eth0' nud permanent\n",
	} {
		if !strings.Contains(script, want) {
			t.Errorf("guest a's setup lacks %q:\n%s", want, script)
		}
	}
	if strings.Contains(script, "dev 'eth1'") && strings.Contains(script, "ip addr add 192.168.100.1/24 dev 'eth1'") {
		t.Errorf("eth1 addressed:\n%s", script)
	}
	if !strings.Contains(nicRenameScript(b), "ip addr add 192.168.100.2/24 dev 'eth0'") {
		t.Errorf("guest b's setup:\n%s", nicRenameScript(b))
	}
}
