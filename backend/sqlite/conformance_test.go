package sqlite_test

import (
	"context"
	"sync"
	"testing"

	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/backend/conformance"
	"github.com/ductwork-go/ductwork/backend/sqlite"
	"github.com/ductwork-go/ductwork/internal/testdb"
)

func TestConformance(t *testing.T) {
	var paths sync.Map // *sqlite.Backend -> its file
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
	})
}
