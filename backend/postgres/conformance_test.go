package postgres_test

import (
	"context"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/backend/conformance"
	"github.com/ductwork-go/ductwork/backend/postgres"
	"github.com/ductwork-go/ductwork/internal/testdb"
)

func TestConformance(t *testing.T) {
	testdb.PostgresDSN(t) // skip the whole suite at once without a database
	type storage struct {
		pool   *pgxpool.Pool
		schema string
	}
	var stores sync.Map // *postgres.Backend -> storage
	open := func(t *testing.T, s storage) *postgres.Backend {
		t.Helper()
		b, err := postgres.New(s.pool, &postgres.Config{Schema: s.schema})
		if err != nil {
			t.Fatalf("postgres.New: %v", err)
		}
		stores.Store(b, s)
		t.Cleanup(func() {
			if err := b.Close(context.WithoutCancel(t.Context())); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
		return b
	}
	conformance.Run(t, conformance.Harness{
		NewBackend: func(t *testing.T) backend.Backend {
			pool, schema := testdb.PostgresPool(t)
			return open(t, storage{pool, schema})
		},
		Reopen: func(t *testing.T, b backend.Backend) backend.Backend {
			s, ok := stores.Load(b)
			if !ok {
				t.Fatalf("Reopen: %T was not made by NewBackend", b)
			}
			return open(t, s.(storage))
		},
		BeginTx: func(t *testing.T, b backend.Backend) (any, func() error, func() error) {
			s, ok := stores.Load(b)
			if !ok {
				t.Fatalf("BeginTx: %T was not made by NewBackend", b)
			}
			ctx := context.WithoutCancel(t.Context())
			tx, err := s.(storage).pool.Begin(ctx)
			if err != nil {
				t.Fatalf("Begin: %v", err)
			}
			return tx, func() error { return tx.Commit(ctx) }, func() error { return tx.Rollback(ctx) }
		},
	})
}
