package verbs

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"strconv"
)

// Direction says which end sent a message, so a message delivered to the wrong end, or a
// stale buffer, does not pass Verify.
type Direction uint8

// Directions of a two-device testbed.
const (
	AToB Direction = 1
	BToA Direction = 2
)

// String returns "a->b" or "b->a".
func (d Direction) String() string {
	switch d {
	case AToB:
		return "a->b"
	case BToA:
		return "b->a"
	}
	return "Direction(" + strconv.Itoa(int(d)) + ")"
}

// PayloadHeaderLen is the size of the header every payload starts with:
//
//	[0:4]   magic "RBPL"
//	[4]     direction
//	[5:8]   zero
//	[8:12]  sequence number, big endian
//	[12:16] CRC-32C of the body, big endian
//	[16:]   body: a pseudo-random pattern derived from (direction, seq): xorshift64 words,
//	        little endian
//
// The pattern makes every byte position depend on (direction, seq), so a dropped, duplicated,
// reordered or partially written message is caught at the first wrong byte.
const PayloadHeaderLen = 16

var (
	payloadMagic = [4]byte{'R', 'B', 'P', 'L'}
	castagnoli   = crc32.MakeTable(crc32.Castagnoli)
)

// FillPayload writes message seq of direction d into buf (the whole slice). It panics if buf is
// shorter than PayloadHeaderLen, a programming error.
func FillPayload(buf []byte, d Direction, seq uint32) {
	if len(buf) < PayloadHeaderLen {
		panic(fmt.Sprintf("verbs: payload buffer of %d bytes is shorter than its %d-byte header", len(buf), PayloadHeaderLen))
	}
	copy(buf[0:4], payloadMagic[:])
	buf[4] = byte(d)
	buf[5], buf[6], buf[7] = 0, 0, 0
	binary.BigEndian.PutUint32(buf[8:12], seq)
	body := buf[PayloadHeaderLen:]
	fillPattern(body, d, seq)
	binary.BigEndian.PutUint32(buf[12:16], crc32.Checksum(body, castagnoli))
}

// fillPattern fills b from a xorshift64 stream seeded by (d, seq), eight bytes per step
// (little endian), so that filling and checking a message costs a few instructions per word.
func fillPattern(b []byte, d Direction, seq uint32) {
	x := patternSeed(d, seq)
	for len(b) >= 8 {
		x = xorshift64(x)
		binary.LittleEndian.PutUint64(b, x)
		b = b[8:]
	}
	if len(b) > 0 {
		var tail [8]byte
		binary.LittleEndian.PutUint64(tail[:], xorshift64(x))
		copy(b, tail[:])
	}
}

// patternMatches reports whether b is exactly fillPattern's output for (d, seq), without
// writing the pattern anywhere.
func patternMatches(b []byte, d Direction, seq uint32) bool {
	x := patternSeed(d, seq)
	for len(b) >= 8 {
		x = xorshift64(x)
		if binary.LittleEndian.Uint64(b) != x {
			return false
		}
		b = b[8:]
	}
	if len(b) > 0 {
		var tail [8]byte
		binary.LittleEndian.PutUint64(tail[:], xorshift64(x))
		return string(b) == string(tail[:len(b)])
	}
	return true
}

// patternSeed mixes (d, seq) with splitmix64's finaliser, so that neighbouring sequence
// numbers and the two directions start unrelated streams.
func patternSeed(d Direction, seq uint32) uint64 {
	x := uint64(seq) | uint64(d)<<32
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	x ^= x >> 31
	if x == 0 {
		x = 1
	}
	return x
}

func xorshift64(x uint64) uint64 {
	x ^= x << 13
	x ^= x >> 7
	x ^= x << 17
	return x
}

// PayloadError says exactly where a received message differs from the one expected.
type PayloadError struct {
	Dir    Direction
	Seq    uint32
	Len    int    // length of the checked buffer
	Offset int    // first byte that differs, or -1 if the buffer is too short
	Field  string // "magic", "direction", "reserved", "seq", "checksum" or "body"
	Got    byte
	Want   byte
	Differ int // how many bytes differ in total
	// GotDir and GotSeq are what the header carries, when its magic is intact.
	GotDir Direction
	GotSeq uint32
	header bool
}

func (e *PayloadError) Error() string {
	head := fmt.Sprintf("payload %s seq %d (%d bytes)", e.Dir, e.Seq, e.Len)
	if e.Offset < 0 {
		return fmt.Sprintf("%s: shorter than the %d-byte header", head, PayloadHeaderLen)
	}
	s := fmt.Sprintf("%s: %s byte at offset %d is %#02x, want %#02x", head, e.Field, e.Offset, e.Got, e.Want)
	if e.Differ > 1 {
		s += fmt.Sprintf(" (%d bytes differ)", e.Differ)
	}
	if e.header && (e.GotDir != e.Dir || e.GotSeq != e.Seq) {
		s += fmt.Sprintf("; the header says %s seq %d", e.GotDir, e.GotSeq)
	}
	return s
}

// VerifyPayload checks that buf is exactly message seq of direction d as FillPayload wrote
// it, and returns a *PayloadError naming the first differing offset otherwise.
func VerifyPayload(buf []byte, d Direction, seq uint32) error {
	if len(buf) < PayloadHeaderLen {
		return &PayloadError{Dir: d, Seq: seq, Len: len(buf), Offset: -1}
	}
	body := buf[PayloadHeaderLen:]
	if [4]byte(buf[0:4]) == payloadMagic && buf[4] == byte(d) && buf[5]|buf[6]|buf[7] == 0 &&
		binary.BigEndian.Uint32(buf[8:12]) == seq && patternMatches(body, d, seq) &&
		binary.BigEndian.Uint32(buf[12:16]) == crc32.Checksum(body, castagnoli) {
		return nil
	}
	// Something differs: build the expected message to say exactly what.
	want := make([]byte, len(buf))
	FillPayload(want, d, seq)
	first, differ := -1, 0
	for i := range buf {
		if buf[i] != want[i] {
			if first < 0 {
				first = i
			}
			differ++
		}
	}
	if first < 0 {
		return nil
	}
	e := &PayloadError{Dir: d, Seq: seq, Len: len(buf), Offset: first, Got: buf[first], Want: want[first], Differ: differ}
	switch {
	case first < 4:
		e.Field = "magic"
	case first == 4:
		e.Field = "direction"
	case first < 8:
		e.Field = "reserved"
	case first < 12:
		e.Field = "seq"
	case first < 16:
		e.Field = "checksum"
	default:
		e.Field = "body"
	}
	if [4]byte(buf[0:4]) == payloadMagic {
		e.header = true
		e.GotDir = Direction(buf[4])
		e.GotSeq = binary.BigEndian.Uint32(buf[8:12])
	}
	return e
}

// ParsePayloadHeader reads the direction and sequence number a message claims, and reports
// whether its magic is intact and its body matches the checksum. It lets a receiver name
// what arrived (e.g. a reordered UD message) before calling VerifyPayload.
func ParsePayloadHeader(buf []byte) (d Direction, seq uint32, ok bool) {
	if len(buf) < PayloadHeaderLen || [4]byte(buf[0:4]) != payloadMagic {
		return 0, 0, false
	}
	d = Direction(buf[4])
	seq = binary.BigEndian.Uint32(buf[8:12])
	ok = binary.BigEndian.Uint32(buf[12:16]) == crc32.Checksum(buf[PayloadHeaderLen:], castagnoli)
	return d, seq, ok
}
