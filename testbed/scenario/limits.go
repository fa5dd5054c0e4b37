package scenario

import (
	"fmt"
	"io"
	"os"
	"syscall"
	"unicode/utf8"

	"github.com/goccy/go-yaml/token"
)

// rocebed runs as root and reads scenarios from wherever it is told to. These limits keep the
// cost of any input — a real scenario or a hostile one — small and linear in its size: a
// shipped scenario is about 1 KiB and 300 YAML tokens; a 1 MiB file of any shape is refused
// in well under a second and 100 MB (testbed/scenario/hostile-report.sh measures it). Every check runs before the
// YAML library gets the text, or on its tokens before it builds a tree, because the library's
// cost grows with the product of nesting depth and size (100 000 nested '[' took 15 GB).
const (
	// MaxSize is the largest scenario file, in bytes.
	MaxSize = 1 << 20
	// MaxTokens bounds the YAML tokens of a scenario (scalars, ':', '-', brackets, ...).
	MaxTokens = 20_000
	// MaxDepth bounds how deeply collections nest; the format itself needs 6.
	MaxDepth = 64
	// MaxErrors is how many problems one parse reports before it stops looking.
	MaxErrors = 100
	// maxExpanded bounds the text ${param} substitution may produce, all strings together.
	maxExpanded = MaxSize
)

// ReadFile reads a scenario file: a regular file of at most MaxSize bytes. It never blocks
// on a FIFO or a device (it opens without waiting and looks at what it opened before reading)
// and never reads more than MaxSize+1 bytes, so `validate /dev/zero` or a named pipe is
// refused at once.
func ReadFile(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is a %s, not a regular file: a scenario is read from a file", path, fileKind(fi.Mode()))
	}
	if fi.Size() > MaxSize {
		return nil, fmt.Errorf("%s is %d bytes: a scenario is at most %d (1 MiB)", path, fi.Size(), MaxSize)
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxSize {
		return nil, fmt.Errorf("%s is more than %d bytes: a scenario is at most 1 MiB", path, MaxSize)
	}
	return data, nil
}

func fileKind(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "directory"
	case m&os.ModeNamedPipe != 0:
		return "named pipe (FIFO)"
	case m&os.ModeSocket != 0:
		return "socket"
	case m&os.ModeCharDevice != 0:
		return "character device"
	case m&os.ModeDevice != 0:
		return "block device"
	}
	return "special file"
}

// checkText refuses, before any parsing, text that is too big, not UTF-8, holds characters
// YAML does not allow in a stream (C0 and C1 controls other than tab, newline and carriage
// return; DEL), or could hold more than MaxTokens tokens. The token count is an upper bound
// that costs one pass and no memory: every YAML token is an indicator character or a run of
// other non-blank characters (counted twice and once: the library adds a token for some
// indicators).
func checkText(file string, data []byte) *FieldError {
	if len(data) > MaxSize {
		return &FieldError{File: file, Pos: Position{Line: 1, Column: 1}, Msg: fmt.Sprintf("the scenario is %d bytes: at most %d (1 MiB)", len(data), MaxSize)}
	}
	line, col := 1, 1
	tokens, inRun := 0, false
	for i := 0; i < len(data); {
		r, size := rune(data[i]), 1
		if r >= utf8.RuneSelf {
			r, size = utf8.DecodeRune(data[i:])
		}
		at := Position{Line: line, Column: col}
		switch {
		case r == utf8.RuneError && size == 1:
			return &FieldError{File: file, Pos: at, Msg: fmt.Sprintf("byte %#02x is not UTF-8: a scenario is UTF-8 text", data[i])}
		case r == '\n':
			line, col, inRun = line+1, 0, false
		case r == ' ' || r == '\t' || r == '\r':
			inRun = false
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f && r != 0x85) || r == 0xfeff && i > 0:
			return &FieldError{File: file, Pos: at, Msg: fmt.Sprintf("control character %U: YAML text may not hold it (write it as an escape in a double-quoted string)", r)}
		case isIndicator(r):
			tokens += 2
			inRun = false
		case !inRun:
			tokens++
			inRun = true
		}
		if tokens > MaxTokens {
			return &FieldError{File: file, Pos: at, Msg: fmt.Sprintf("the scenario has more than %d YAML tokens: that is far beyond any lab", MaxTokens)}
		}
		i += size
		col++
	}
	return nil
}

func isIndicator(r rune) bool {
	switch r {
	case '[', ']', '{', '}', ',', ':', '-', '?', '|', '>', '!', '&', '*', '#', '\'', '"', '%', '@', '`':
		return true
	}
	return false
}

// checkTokens bounds the YAML library's tokens before it builds a tree from them: their
// number, and how deeply the collections they open nest. Flow collections ([ and {) are
// counted exactly; a block collection is counted by the column its entries start at, twice
// over, because a block sequence may share the column of the mapping it is the value of.
func checkTokens(file string, tokens token.Tokens) *FieldError {
	if len(tokens) > MaxTokens {
		return &FieldError{File: file, Pos: tokPos(tokens[MaxTokens]), Msg: fmt.Sprintf("the scenario has more than %d YAML tokens: that is far beyond any lab", MaxTokens)}
	}
	flow := 0
	var cols []int // columns of the open block collections, increasing
	push := func(c int) {
		for len(cols) > 0 && cols[len(cols)-1] > c {
			cols = cols[:len(cols)-1]
		}
		if len(cols) == 0 || cols[len(cols)-1] != c {
			cols = append(cols, c)
		}
	}
	for i, tk := range tokens {
		switch tk.Type {
		case token.SequenceStartType, token.MappingStartType:
			flow++
		case token.SequenceEndType, token.MappingEndType:
			if flow > 0 {
				flow--
			}
		case token.SequenceEntryType, token.MappingKeyType:
			if flow == 0 {
				push(tokPos(tk).Column)
			}
		case token.MappingValueType:
			if flow == 0 && i > 0 {
				push(tokPos(tokens[i-1]).Column)
			}
		}
		if 2*len(cols)+flow > MaxDepth {
			return &FieldError{File: file, Pos: tokPos(tk), Msg: fmt.Sprintf("collections nest more than %d deep here: a scenario needs 6", MaxDepth)}
		}
	}
	return nil
}

func tokPos(tk *token.Token) Position {
	if tk == nil || tk.Position == nil || tk.Position.Line < 1 || tk.Position.Column < 1 {
		return Position{Line: 1, Column: 1}
	}
	return Position{Line: tk.Position.Line, Column: tk.Position.Column}
}
