package vm

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// NIC is one virtio-net NIC of a guest. Its cable is a UDP datagram socket pair on the host's
// loopback (QEMU's dgram netdev): the NIC sends to RemotePort and receives on LocalPort, so two
// NICs whose ports are crossed are cabled back to back — in one guest or across two — and
// nothing leaves 127.0.0.1.
type NIC struct {
	Name       string // the name the guest gives it ("eth1")
	MAC        net.HardwareAddr
	LocalPort  int
	RemotePort int
	// Addr, when valid, is set on the NIC and the NIC brought up before the command runs, with
	// a permanent neighbour entry for Peer at PeerMAC: a static management link (PairNICs).
	// Otherwise the NIC is left down and unaddressed, for the lab to configure.
	Addr    netip.Prefix
	Peer    netip.Addr
	PeerMAC net.HardwareAddr
}

// CableNICs returns n NICs (n even) named eth1…ethN, cabled in pairs: eth1–eth2, eth3–eth4, …
// guest distinguishes the MACs of guests that run at once (0–255).
func CableNICs(n int, guest byte) ([]NIC, error) {
	if n < 0 || n%2 != 0 || n > 16 {
		return nil, fmt.Errorf("--nics %d: want an even number up to 16 (NICs are cabled in pairs)", n)
	}
	nics := make([]NIC, n)
	for i := range nics {
		nics[i] = NIC{Name: fmt.Sprintf("eth%d", i+1), MAC: net.HardwareAddr{0x52, 0x54, 0x00, 0xab, guest, byte(i + 1)}}
	}
	for i := 0; i < n; i += 2 {
		if err := Cable(&nics[i], &nics[i+1]); err != nil {
			return nil, err
		}
	}
	return nics, nil
}

// Cable gives a and b a UDP port each on 127.0.0.1 and points each at the other's. Both
// sockets stay open until both ports are known, so the kernel cannot hand out one port twice.
func Cable(a, b *NIC) error {
	ca, err := freeUDPPort()
	if err != nil {
		return err
	}
	defer ca.Close()
	cb, err := freeUDPPort()
	if err != nil {
		return err
	}
	defer cb.Close()
	pa, pb := ca.LocalAddr().(*net.UDPAddr).Port, cb.LocalAddr().(*net.UDPAddr).Port
	a.LocalPort, a.RemotePort = pa, pb
	b.LocalPort, b.RemotePort = pb, pa
	return nil
}

// freeUDPPort binds a free UDP port on 127.0.0.1; the caller closes it before QEMU binds the
// port. Another process could take it in between, and QEMU then fails to start, saying so.
func freeUDPPort() (*net.UDPConn, error) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, fmt.Errorf("find a free UDP port on 127.0.0.1 for a guest NIC: %w", err)
	}
	return c, nil
}

// nicArgs are the QEMU options for the guest's NICs on machine m: virtio-net over PCI on pc
// (without an option ROM: the guest boots by PVH, not from the NIC), over MMIO on microvm.
func nicArgs(m machine, nics []NIC) []string {
	var args []string
	for i, n := range nics {
		id := fmt.Sprintf("nic%d", i)
		dev := fmt.Sprintf("virtio-net-pci,netdev=%s,mac=%s,romfile=", id, n.MAC)
		if m.name == machineMicroVM {
			dev = fmt.Sprintf("virtio-net-device,netdev=%s,mac=%s", id, n.MAC)
		}
		args = append(args,
			"-netdev", fmt.Sprintf("dgram,id=%s,local.type=inet,local.host=127.0.0.1,local.port=%d,remote.type=inet,remote.host=127.0.0.1,remote.port=%d", id, n.LocalPort, n.RemotePort),
			"-device", dev)
	}
	return args
}

// nicRenameScript renames the guest's NICs, found by MAC, to their names: first all to a
// temporary name, so that ethN → ethN+1 cannot collide with a NIC the kernel already named so.
func nicRenameScript(nics []NIC) string {
	if len(nics) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("# the guest's NICs, named by MAC\n")
	b.WriteString("for d in /sys/class/net/*; do\n  case \"$(cat $d/address)\" in\n")
	for i, n := range nics {
		fmt.Fprintf(&b, "  %s) ip link set dev \"${d##*/}\" name rocebednic%d ;;\n", n.MAC, i)
	}
	b.WriteString("  esac\ndone\n")
	for i, n := range nics {
		fmt.Fprintf(&b, "ip link set dev rocebednic%d name %s\n", i, shQuote(n.Name))
	}
	for _, n := range nics {
		if !n.Addr.IsValid() {
			continue
		}
		fmt.Fprintf(&b, "ip addr add %s dev %s\nip link set dev %s up\n", n.Addr, shQuote(n.Name), shQuote(n.Name))
		if n.Peer.IsValid() && len(n.PeerMAC) == 6 {
			fmt.Fprintf(&b, "ip neigh replace %s lladdr %s dev %s nud permanent\n", n.Peer, n.PeerMAC, shQuote(n.Name))
		}
	}
	return b.String()
}
