package ductwork_test

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/ductwork-go/ductwork"
	"github.com/ductwork-go/ductwork/backend/sqlite"
	"github.com/ductwork-go/ductwork/supervisor"
)

type env struct {
	b      *sqlite.Backend
	client *ductwork.Client
	path   string
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// newEnv opens a migrated SQLite database under t.TempDir and a client on it.
func newEnv(t *testing.T, defs ...ductwork.Definition) *env {
	t.Helper()
	path := filepath.Join(t.TempDir(), "dw.db")
	b, err := sqlite.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	if err := b.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	c, err := ductwork.NewClient(b, &ductwork.Config{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Register(defs...); err != nil {
		t.Fatal(err)
	}
	return &env{b: b, client: c, path: path}
}

// startSupervisor runs a fast-polling supervisor until the test ends.
func startSupervisor(t *testing.T, c *ductwork.Client, cfg *supervisor.Config) *supervisor.Supervisor {
	t.Helper()
	if cfg == nil {
		cfg = &supervisor.Config{}
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 5 * time.Millisecond
	}
	if cfg.Workers == 0 {
		cfg.Workers = 8
	}
	s, err := supervisor.New(c, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("supervisor: %v", err)
		}
	})
	return s
}

func waitCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}
