package sqlite_test

import (
	"context"
	"sync"
	"testing"

	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/backend/conformance"
	"github.com/ductwork-go/ductwork/backend/sqlite"
	"github.com/ductwork-go/ductwork/internal/crashpoint"
	"github.com/ductwork-go/ductwork/internal/testdb"
)

// paths maps each *sqlite.Backend the harness made to its file.
var paths sync.Map

// crashHarness runs the crash-point cases; the helper process opens the
// file the suite names.
var crashHarness = &conformance.CrashHarness{
	Points: crashPoints(),
	Storage: func(t *testing.T, b backend.Backend) string {
		path, ok := paths.Load(b)
		if !ok {
			t.Fatalf("Storage: %T was not made by NewBackend", b)
		}
		return path.(string)
	},
	Open: func(path string) (backend.Backend, error) { return sqlite.Open(path, nil) },
	Env:  func(point string) []string { return []string{crashpoint.EnvVar + "=" + point} },
}

// crashPoints lists the crash points compiled in (none without the build
// tag ductwork_crashpoints).
func crashPoints() []string {
	if !crashpoint.Compiled {
		return nil
	}
	return crashpoint.Backend
}

func TestConformance(t *testing.T) {
	open := func(t *testing.T, path string) *sqlite.Backend {
		t.Helper()
		b, err := sqlite.Open(path, nil)
		if err != nil {
			t.Fatalf("sqlite.Open: %v", err)
		}
		paths.Store(b, path)
		t.Cleanup(func() {
			if err := b.Close(context.WithoutCancel(t.Context())); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
		return b
	}
	conformance.Run(t, conformance.Harness{
		NewBackend: func(t *testing.T) backend.Backend {
			return open(t, testdb.SQLitePath(t))
		},
		Reopen: func(t *testing.T, b backend.Backend) backend.Backend {
			path, ok := paths.Load(b)
			if !ok {
				t.Fatalf("Reopen: %T was not made by NewBackend", b)
			}
			return open(t, path.(string))
		},
		BeginTx: func(t *testing.T, b backend.Backend) (any, func() error, func() error) {
			tx, err := b.(*sqlite.Backend).DB().BeginTx(t.Context(), nil)
			if err != nil {
				t.Fatalf("BeginTx: %v", err)
			}
			return tx, tx.Commit, tx.Rollback
		},
		Crash: crashHarness,
	})
}
