package testdb

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// PostgresEnv names the variable holding the PostgreSQL DSN for tests.
const PostgresEnv = "DUCTWORK_TEST_POSTGRES_DSN"

var postgresContainer = &container{kind: "postgres"}

// PostgresDSN returns the base DSN of a PostgreSQL database for tests: the
// value of DUCTWORK_TEST_POSTGRES_DSN, or else a PostgreSQL container
// started once per test binary. Without either it skips t.
func PostgresDSN(t testing.TB) string {
	t.Helper()
	if dsn := os.Getenv(PostgresEnv); dsn != "" {
		return dsn
	}
	return postgresContainer.get(t, PostgresEnv)
}

// PostgresPool returns a pool on the test database and the name of a fresh,
// random schema that does not exist yet (the backend's Migrate creates it).
// When the test ends the schema is dropped with DROP SCHEMA ... CASCADE and
// the pool is closed; register anything that uses the pool (a backend's
// Close) with t.Cleanup after calling PostgresPool, so it runs first.
func PostgresPool(t testing.TB) (*pgxpool.Pool, string) {
	t.Helper()
	dsn := PostgresDSN(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatalf("testdb: connect to %s: %v", PostgresEnv, err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		t.Fatalf("testdb: connect to %s: %v", PostgresEnv, err)
	}
	schema := randomName(t, "dw_")
	t.Cleanup(func() {
		defer pool.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := pool.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
			t.Errorf("testdb: drop schema %s: %v", schema, err)
		}
	})
	return pool, schema
}
