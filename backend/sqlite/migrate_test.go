package sqlite_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/ductwork-go/ductwork/backend/sqlite"
)

func TestMigrateTwiceIsNoOp(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := newBackend(t) // first Migrate
	trigger(t, b, "x")
	if err := b.Migrate(ctx); err != nil {
		t.Fatalf("second Migrate: %v", err)
	}
	var n, runs int
	if err := b.DB().QueryRowContext(ctx, `SELECT count(*) FROM ductwork_migrations`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if err := b.DB().QueryRowContext(ctx, `SELECT count(*) FROM ductwork_runs`).Scan(&runs); err != nil {
		t.Fatal(err)
	}
	if want := migrationCount(); n != want || runs != 1 {
		t.Fatalf("after two Migrates: %d versions, %d runs; want %d, 1", n, runs, want)
	}
}

func TestConcurrentMigrate(t *testing.T) {
	t.Parallel()
	path := dbPath(t)
	const n = 4
	backends := make([]*sqlite.Backend, n)
	for i := range backends {
		backends[i] = openAt(t, path)
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i, b := range backends {
		wg.Go(func() { errs[i] = b.Migrate(context.Background()) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Migrate %d: %v", i, err)
		}
	}
	var versions int
	if err := backends[0].DB().QueryRow(`SELECT count(*) FROM ductwork_migrations`).Scan(&versions); err != nil {
		t.Fatal(err)
	}
	if want := migrationCount(); versions != want {
		t.Fatalf("ductwork_migrations has %d rows, want %d", versions, want)
	}
	// Every instance can use the schema.
	for _, b := range backends {
		trigger(t, b, "x")
	}
}

func TestMigrationSQL(t *testing.T) {
	t.Parallel()
	s := sqlite.MigrationSQL()
	for _, want := range []string{"BEGIN IMMEDIATE;", "CREATE TABLE IF NOT EXISTS ductwork_migrations",
		"-- 0001_init.sql", "CREATE TABLE ductwork_jobs", "INSERT INTO ductwork_migrations (version, applied_at) VALUES (1,", "COMMIT;"} {
		if !strings.Contains(s, want) {
			t.Errorf("MigrationSQL lacks %q", want)
		}
	}
	// The script applies cleanly on an empty database.
	b := openAt(t, dbPath(t))
	if _, err := b.DB().Exec(s); err != nil {
		t.Fatalf("applying MigrationSQL: %v", err)
	}
	if err := b.Migrate(context.Background()); err != nil {
		t.Fatalf("Migrate after MigrationSQL: %v", err)
	}
	trigger(t, b, "x")
}

// migrationCount is the number of embedded migration files.
func migrationCount() int {
	return strings.Count(sqlite.MigrationSQL(), "INSERT INTO ductwork_migrations")
}
