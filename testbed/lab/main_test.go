package lab_test

import (
	"flag"
	"log/slog"
	"os"
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
