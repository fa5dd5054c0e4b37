package verbs

import (
	"errors"
	"strings"
	"testing"
)

func TestPayloadRoundTrip(t *testing.T) {
	for _, n := range []int{PayloadHeaderLen, PayloadHeaderLen + 1, 1024, 4099} {
		for _, d := range []Direction{AToB, BToA} {
			buf := make([]byte, n)
			FillPayload(buf, d, 7)
			if err := VerifyPayload(buf, d, 7); err != nil {
				t.Errorf("len %d %s: %v", n, d, err)
			}
			gd, gs, ok := ParsePayloadHeader(buf)
			if !ok || gd != d || gs != 7 {
				t.Errorf("len %d: ParsePayloadHeader = %s %d %v, want %s 7 true", n, gd, gs, ok, d)
			}
		}
	}
}

func TestPayloadDependsOnDirectionAndSeq(t *testing.T) {
	a, b, c := make([]byte, 256), make([]byte, 256), make([]byte, 256)
	FillPayload(a, AToB, 1)
	FillPayload(b, BToA, 1)
	FillPayload(c, AToB, 2)
	same := func(x, y []byte) int {
		n := 0
		for i := PayloadHeaderLen; i < len(x); i++ {
			if x[i] == y[i] {
				n++
			}
		}
		return n
	}
	// Unrelated pseudo-random bodies agree on about 1 byte in 256, never on most of them.
	if n := same(a, b); n > 16 {
		t.Errorf("directions share %d of 240 body bytes", n)
	}
	if n := same(a, c); n > 16 {
		t.Errorf("seq 1 and 2 share %d of 240 body bytes", n)
	}
}

func TestVerifyPayloadNamesTheOffset(t *testing.T) {
	cases := []struct {
		name    string
		mutate  func(b []byte)
		dir     Direction
		seq     uint32
		offset  int
		field   string
		differ  int
		message string
	}{
		{"body byte", func(b []byte) { b[517] ^= 0xff }, AToB, 3, 517, "body", 1,
			"payload a->b seq 3 (1024 bytes): body byte at offset 517 is"},
		{"two body bytes", func(b []byte) { b[100] ^= 1; b[900] ^= 1 }, AToB, 3, 100, "body", 2, "(2 bytes differ)"},
		{"last byte", func(b []byte) { b[1023]++ }, AToB, 3, 1023, "body", 1, "offset 1023"},
		{"magic", func(b []byte) { b[0] = 'X' }, AToB, 3, 0, "magic", 1, "magic byte at offset 0"},
		{"checksum", func(b []byte) { b[15] ^= 0x80 }, AToB, 3, 15, "checksum", 1, "checksum byte at offset 15"},
		{"wrong seq", nil, AToB, 4, 11, "seq", 0, "the header says a->b seq 3"},
		{"wrong direction", nil, BToA, 3, 4, "direction", 0, "the header says a->b seq 3"},
		{"zeroed", func(b []byte) { clear(b) }, AToB, 3, 0, "magic", 0, "is 0x00, want 0x52"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			buf := make([]byte, 1024)
			FillPayload(buf, AToB, 3)
			if c.mutate != nil {
				c.mutate(buf)
			}
			err := VerifyPayload(buf, c.dir, c.seq)
			var pe *PayloadError
			if !errors.As(err, &pe) {
				t.Fatalf("VerifyPayload = %v, want *PayloadError", err)
			}
			if pe.Offset != c.offset || pe.Field != c.field {
				t.Errorf("offset %d field %q, want %d %q (%v)", pe.Offset, pe.Field, c.offset, c.field, err)
			}
			if c.differ != 0 && pe.Differ != c.differ {
				t.Errorf("differ %d, want %d", pe.Differ, c.differ)
			}
			if pe.Got != buf[pe.Offset] || pe.Got == pe.Want {
				t.Errorf("got %#x want %#x at %d: inconsistent with the buffer", pe.Got, pe.Want, pe.Offset)
			}
			if !strings.Contains(err.Error(), c.message) {
				t.Errorf("message %q does not contain %q", err, c.message)
			}
		})
	}
}

func TestVerifyPayloadShort(t *testing.T) {
	err := VerifyPayload(make([]byte, 5), AToB, 1)
	var pe *PayloadError
	if !errors.As(err, &pe) || pe.Offset != -1 {
		t.Fatalf("VerifyPayload(5 bytes) = %v, want a short-buffer *PayloadError", err)
	}
	if !strings.Contains(err.Error(), "shorter than the 16-byte header") {
		t.Errorf("message %q", err)
	}
}

func TestParsePayloadHeaderDetectsCorruptBody(t *testing.T) {
	buf := make([]byte, 64)
	FillPayload(buf, BToA, 9)
	buf[40] ^= 4
	if d, seq, ok := ParsePayloadHeader(buf); ok || d != BToA || seq != 9 {
		t.Errorf("ParsePayloadHeader = %s %d %v, want b->a 9 false", d, seq, ok)
	}
	if _, _, ok := ParsePayloadHeader(make([]byte, 64)); ok {
		t.Error("zero buffer parsed as a payload")
	}
}

// BenchmarkFillPayload and BenchmarkVerifyPayload measure the per-message payload work of the
// traffic engine (4 KiB, the size of the rate benchmark).
func BenchmarkFillPayload(b *testing.B) {
	buf := make([]byte, 4096)
	b.SetBytes(int64(len(buf)))
	for i := 0; b.Loop(); i++ {
		FillPayload(buf, AToB, uint32(i))
	}
}

func BenchmarkVerifyPayload(b *testing.B) {
	buf := make([]byte, 4096)
	FillPayload(buf, AToB, 5)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		if err := VerifyPayload(buf, AToB, 5); err != nil {
			b.Fatal(err)
		}
	}
}
