package testbed

import (
	"bytes"
	"flag"
	"log/slog"
	"os"
	"sync"
	"testing"
)

// TestMain keeps the per-step progress logs out of test output unless -v is given.
func TestMain(m *testing.M) {
	flag.Parse()
	level := slog.LevelWarn
	if testing.Verbose() {
		level = slog.LevelInfo
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})))
	os.Exit(m.Run())
}

// lockedBuffer collects a child process's output.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
