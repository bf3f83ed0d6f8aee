package postgres_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/backend/conformance"
	"github.com/ductwork-go/ductwork/backend/postgres"
	"github.com/ductwork-go/ductwork/internal/crashpoint"
	"github.com/ductwork-go/ductwork/internal/testdb"
)

// storage is a backend's pool and schema.
type storage struct {
	pool   *pgxpool.Pool
	schema string
	dsn    string
}

// stores maps each *postgres.Backend the harness made to its storage.
var stores sync.Map

// crashStorage names a schema for the crash helper process.
type crashStorage struct {
	DSN    string `json:"dsn"`
	Schema string `json:"schema"`
}

// crashHarness runs the crash-point cases; the helper process opens its own
// pool on the suite's schema.
var crashHarness = &conformance.CrashHarness{
	Points: crashPoints(),
	Storage: func(t *testing.T, b backend.Backend) string {
		s, ok := stores.Load(b)
		if !ok {
			t.Fatalf("Storage: %T was not made by NewBackend", b)
		}
		raw, err := json.Marshal(crashStorage{DSN: s.(storage).dsn, Schema: s.(storage).schema})
		if err != nil {
			t.Fatal(err)
		}
		return string(raw)
	},
	Open: func(name string) (backend.Backend, error) {
		var s crashStorage
		if err := json.Unmarshal([]byte(name), &s); err != nil {
			return nil, err
		}
		pool, err := pgxpool.New(context.Background(), s.DSN)
		if err != nil {
			return nil, err
		}
		return postgres.New(pool, &postgres.Config{Schema: s.Schema})
	},
	Env: func(point string) []string { return []string{crashpoint.EnvVar + "=" + point} },
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
	dsn := testdb.PostgresDSN(t) // skip the whole suite at once without a database
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
			return open(t, storage{pool, schema, dsn})
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
		Crash: crashHarness,
	})
}
