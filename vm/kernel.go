package vm

import (
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"context"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os/exec"
)

// compression is one payload format a bzImage may carry.
type compression struct {
	name  string
	magic []byte
	tool  []string // fixed argv of a decompressor reading stdin, when Go has none
}

var compressions = []compression{
	{name: "gzip", magic: []byte{0x1f, 0x8b, 0x08}},
	{name: "xz", magic: []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}, tool: []string{"xz", "-dc", "--single-stream"}},
	{name: "zstd", magic: []byte{0x28, 0xb5, 0x2f, 0xfd}, tool: []string{"zstd", "-dc"}},
	{name: "bzip2", magic: []byte("BZh")},
}

// ExtractVmlinux returns the uncompressed ELF kernel inside a bzImage, and the payload's
// compression. It takes the payload from the boot header (protocol ≥ 2.08) and, failing that,
// tries every compression magic in the file. xz and zstd go through the xz and zstd tools.
func ExtractVmlinux(ctx context.Context, bz []byte) ([]byte, string, error) {
	var errs []error
	if p, err := bzPayload(bz); err == nil {
		for _, c := range compressions {
			if bytes.HasPrefix(p, c.magic) {
				out, err := decompress(ctx, c, p)
				if err == nil {
					return out, c.name, nil
				}
				errs = append(errs, fmt.Errorf("header payload (%s): %w", c.name, err))
			}
		}
	} else {
		errs = append(errs, err)
	}
	for _, c := range compressions {
		for off := 0; ; {
			i := bytes.Index(bz[off:], c.magic)
			if i < 0 {
				break
			}
			out, err := decompress(ctx, c, bz[off+i:])
			if err == nil {
				return out, c.name, nil
			}
			errs = append(errs, fmt.Errorf("%s at %#x: %w", c.name, off+i, err))
			off += i + 1
			if len(errs) > 32 {
				break
			}
		}
	}
	return nil, "", fmt.Errorf("no ELF kernel found in the bzImage: %w", errors.Join(errs...))
}

// bzPayload slices the compressed kernel out of a bzImage using its setup header
// (Documentation/arch/x86/boot.rst: setup_sects at 0x1f1, "HdrS" at 0x202, version at 0x206,
// payload_offset/payload_length at 0x248/0x24c, relative to the protected-mode code).
func bzPayload(bz []byte) ([]byte, error) {
	if len(bz) < 0x250 || string(bz[0x202:0x206]) != "HdrS" {
		return nil, errors.New("not a bzImage: no HdrS boot header")
	}
	if v := binary.LittleEndian.Uint16(bz[0x206:]); v < 0x208 {
		return nil, fmt.Errorf("boot protocol %#x has no payload fields", v)
	}
	sects := int(bz[0x1f1])
	if sects == 0 {
		sects = 4
	}
	start := (sects + 1) * 512
	off := int(binary.LittleEndian.Uint32(bz[0x248:]))
	n := int(binary.LittleEndian.Uint32(bz[0x24c:]))
	if start+off+n > len(bz) || n == 0 {
		return nil, fmt.Errorf("payload %d+%d bytes lies outside the %d-byte file", start+off, n, len(bz))
	}
	return bz[start+off : start+off+n], nil
}

// decompress inflates one payload and insists that the result is an ELF file.
func decompress(ctx context.Context, c compression, p []byte) ([]byte, error) {
	var out []byte
	var err error
	switch {
	case c.name == "gzip":
		var zr *gzip.Reader
		if zr, err = gzip.NewReader(bytes.NewReader(p)); err == nil {
			zr.Multistream(false)
			out, err = io.ReadAll(zr)
		}
	case c.name == "bzip2":
		out, err = io.ReadAll(bzip2.NewReader(bytes.NewReader(p)))
	default:
		cmd := exec.CommandContext(ctx, c.tool[0], c.tool[1:]...)
		cmd.Stdin = bytes.NewReader(p)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err = cmd.Run()
		out = stdout.Bytes()
		if errors.Is(err, exec.ErrNotFound) {
			return nil, fmt.Errorf("%s payload needs the %s tool: apt-get install %s: %w", c.name, c.tool[0], map[string]string{"xz": "xz-utils", "zstd": "zstd"}[c.tool[0]], err)
		}
		// zstd complains about the size word the kernel build appends; the output still counts
		// when it is a whole ELF file.
		if err != nil && len(out) > 0 {
			err = nil
		}
		if err != nil {
			err = fmt.Errorf("%s: %w: %s", c.tool[0], err, bytes.TrimSpace(stderr.Bytes()))
		}
	}
	if err != nil && len(out) == 0 {
		return nil, err
	}
	if !bytes.HasPrefix(out, []byte("\x7fELF")) {
		return nil, errors.New("decompressed data is not an ELF file")
	}
	if _, err := elf.NewFile(bytes.NewReader(out)); err != nil {
		return nil, fmt.Errorf("decompressed ELF: %w", err)
	}
	return out, nil
}

// HasPVHNote reports whether an ELF kernel has the Xen PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY,
// type 18, name "Xen") that QEMU's -kernel needs to boot an uncompressed vmlinux.
func HasPVHNote(vmlinux []byte) bool {
	f, err := elf.NewFile(bytes.NewReader(vmlinux))
	if err != nil {
		return false
	}
	for _, p := range f.Progs {
		if p.Type != elf.PT_NOTE {
			continue
		}
		data, err := io.ReadAll(p.Open())
		if err != nil {
			continue
		}
		for len(data) >= 12 {
			nsz := int(f.ByteOrder.Uint32(data[0:]))
			dsz := int(f.ByteOrder.Uint32(data[4:]))
			typ := f.ByteOrder.Uint32(data[8:])
			nameEnd := 12 + nsz
			next := 12 + align4(nsz) + align4(dsz)
			if nameEnd > len(data) || next > len(data) {
				break
			}
			if typ == 18 && string(bytes.TrimRight(data[12:nameEnd], "\x00")) == "Xen" {
				return true
			}
			data = data[next:]
		}
	}
	return false
}

func align4(n int) int { return (n + 3) &^ 3 }
