package verbs

import "testing"

func TestWCStatusString(t *testing.T) {
	cases := []struct {
		s           WCStatus
		text, cname string
	}{
		{WCSuccess, "success", "IBV_WC_SUCCESS"},
		{WCRetryExcErr, "transport retry counter exceeded", "IBV_WC_RETRY_EXC_ERR"},
		{WCRNRRetryExcErr, "RNR retry counter exceeded", "IBV_WC_RNR_RETRY_EXC_ERR"},
		{WCWRFlushErr, "Work Request Flushed Error", "IBV_WC_WR_FLUSH_ERR"},
		{WCLocLenErr, "local length error", "IBV_WC_LOC_LEN_ERR"},
		{WCTMRndvIncomplete, "TM software rendezvous", "IBV_WC_TM_RNDV_INCOMPLETE"},
		{WCStatus(99), "WCStatus(99)", "IBV_WC_STATUS_99"},
	}
	for _, c := range cases {
		if got := c.s.String(); got != c.text {
			t.Errorf("WCStatus(%d).String() = %q, want %q", uint32(c.s), got, c.text)
		}
		if got := c.s.CName(); got != c.cname {
			t.Errorf("WCStatus(%d).CName() = %q, want %q", uint32(c.s), got, c.cname)
		}
	}
}

// TestWCStatusMatchesLibrary compares every name with ibv_wc_status_str of the libibverbs
// this binary links (needs cgo; the function works without any RDMA device).
func TestWCStatusMatchesLibrary(t *testing.T) {
	if libStatusString(WCSuccess) == "" {
		t.Skip("built without cgo: no libibverbs to compare with (run the test with CGO_ENABLED=1)")
	}
	for s := WCStatus(0); s < numWCStatus; s++ {
		if got, want := s.String(), libStatusString(s); got != want {
			t.Errorf("WCStatus(%d).String() = %q, ibv_wc_status_str says %q", uint32(s), got, want)
		}
	}
}

func TestWCOpcode(t *testing.T) {
	cases := []struct {
		o           WCOpcode
		text, cname string
		recv        bool
	}{
		{WCSend, "send", "IBV_WC_SEND", false},
		{WCRecv, "recv", "IBV_WC_RECV", true},
		{WCRecvRDMAWithImm, "recv rdma with imm", "IBV_WC_RECV_RDMA_WITH_IMM", true},
		{WCRDMAWrite, "rdma write", "IBV_WC_RDMA_WRITE", false},
		{WCOpcode(200), "WCOpcode(200)", "IBV_WC_OPCODE_200", true},
	}
	for _, c := range cases {
		if got := c.o.String(); got != c.text {
			t.Errorf("WCOpcode(%d).String() = %q, want %q", uint32(c.o), got, c.text)
		}
		if got := c.o.CName(); got != c.cname {
			t.Errorf("WCOpcode(%d).CName() = %q, want %q", uint32(c.o), got, c.cname)
		}
		if got := c.o.IsRecv(); got != c.recv {
			t.Errorf("WCOpcode(%d).IsRecv() = %v, want %v", uint32(c.o), got, c.recv)
		}
	}
}

func TestEnumStrings(t *testing.T) {
	cases := []struct{ got, want string }{
		{PortActive.String(), "ACTIVE"},
		{PortDown.String(), "DOWN"},
		{PortState(9).String(), "PortState(9)"},
		{MTU1024.String(), "1024"},
		{MTU(0).String(), "MTU(0)"},
		{LinkLayerEthernet.String(), "Ethernet"},
		{QPTypeRC.String(), "RC"},
		{QPTypeUD.String(), "UD"},
		{QPType(3).String(), "QPType(3)"},
		{AToB.String(), "a->b"},
		{BToA.String(), "b->a"},
		{Completion{WRID: 3, Status: WCSuccess, Opcode: WCSend, ByteLen: 1024, QPN: 0x11}.String(), "wr 3 send success len=1024 qp=0x11"},
		{Completion{WRID: 1, Status: WCRetryExcErr, QPN: 0x12, VendorErr: 0x81}.String(), "wr 1 transport retry counter exceeded qp=0x12 vendor_err=0x81"},
	}
	for _, c := range cases {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}

func TestMTU(t *testing.T) {
	for _, n := range []int{256, 512, 1024, 2048, 4096} {
		m, err := MTUFromBytes(n)
		if err != nil {
			t.Fatalf("MTUFromBytes(%d): %v", n, err)
		}
		if m.Bytes() != n {
			t.Errorf("MTUFromBytes(%d).Bytes() = %d", n, m.Bytes())
		}
	}
	if m, _ := MTUFromBytes(1024); m != MTU1024 {
		t.Errorf("MTUFromBytes(1024) = %d, want MTU1024 (%d)", m, MTU1024)
	}
	for _, n := range []int{0, 1500, 9000, -1} {
		if _, err := MTUFromBytes(n); err == nil {
			t.Errorf("MTUFromBytes(%d) succeeded", n)
		}
	}
}
