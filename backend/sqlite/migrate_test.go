package sqlite_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/ductwork-go/ductwork/backend"
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

// TestMigrateFromVersion1KeepsRowsAndNeverReusesIDs: a database at version 1
// with runs and jobs is rebuilt by version 3 with every row and ID kept; new
// runs and jobs get greater IDs, and the ID of a deleted row is not handed
// out again (AUTOINCREMENT).
func TestMigrateFromVersion1KeepsRowsAndNeverReusesIDs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := openAt(t, dbPath(t))
	script := sqlite.MigrationSQL()
	cut := strings.Index(script, "-- 0002_")
	if cut < 0 {
		t.Fatal("MigrationSQL has no version 2")
	}
	if _, err := b.DB().ExecContext(ctx, script[:cut]+"COMMIT;"); err != nil {
		t.Fatalf("applying version 1: %v", err)
	}
	// Rows as version 1 stored them (this code's statements need version 3).
	var old []*backend.TriggerResult
	for _, in := range []string{"a", "b"} {
		r, err := b.DB().ExecContext(ctx, `INSERT INTO ductwork_runs (pipeline, fingerprint, status, input, metadata, created_at, updated_at)
VALUES ('orders', 'v1', 'running', ?, '{"tenant":"acme"}', 1, 1)`, []byte(in))
		if err != nil {
			t.Fatal(err)
		}
		runID, _ := r.LastInsertId()
		r, err = b.DB().ExecContext(ctx, `INSERT INTO ductwork_jobs (run_id, node_id, scope, status, input, created_at, due_at)
VALUES (?, 'start', '', 'pending', ?, 1, 1)`, runID, []byte(in))
		if err != nil {
			t.Fatal(err)
		}
		jobID, _ := r.LastInsertId()
		old = append(old, &backend.TriggerResult{RunID: runID, JobID: jobID})
	}
	if err := b.Migrate(ctx); err != nil {
		t.Fatalf("Migrate from version 1: %v", err)
	}
	for _, tr := range old {
		r, err := b.GetRun(ctx, &backend.GetRunParams{RunID: tr.RunID})
		if err != nil || r.Identity != "" || r.Metadata["tenant"] != "acme" {
			t.Fatalf("run %d after the rebuild = %+v, %v", tr.RunID, r, err)
		}
		if jobs, err := b.ListJobs(ctx, &backend.ListJobsParams{RunID: tr.RunID}); err != nil || len(jobs.Jobs) != 1 || jobs.Jobs[0].ID != tr.JobID {
			t.Fatalf("jobs of run %d after the rebuild = %+v, %v; want job %d", tr.RunID, jobs, err, tr.JobID)
		}
	}
	newest := trigger(t, b, "c")
	if newest.RunID <= old[1].RunID || newest.JobID <= old[1].JobID {
		t.Fatalf("trigger after the rebuild got run %d job %d; want greater than %d, %d", newest.RunID, newest.JobID, old[1].RunID, old[1].JobID)
	}
	for _, q := range []string{`DELETE FROM ductwork_jobs WHERE id = ?`, `DELETE FROM ductwork_runs WHERE id = ?`} {
		id := newest.JobID
		if strings.Contains(q, "runs") {
			id = newest.RunID
		}
		if _, err := b.DB().ExecContext(ctx, q, id); err != nil {
			t.Fatal(err)
		}
	}
	if again := trigger(t, b, "d"); again.RunID <= newest.RunID || again.JobID <= newest.JobID {
		t.Fatalf("after deleting run %d (job %d) the next trigger got run %d job %d; want greater IDs",
			newest.RunID, newest.JobID, again.RunID, again.JobID)
	}
}

// TestVersion1SchemaIsErrNotMigrated: code that needs version 3 on a
// database left at version 1 gets ErrNotMigrated, not a raw SQL error.
func TestVersion1SchemaIsErrNotMigrated(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := openAt(t, dbPath(t))
	script := sqlite.MigrationSQL()
	cut := strings.Index(script, "-- 0002_")
	if cut < 0 {
		t.Fatal("MigrationSQL has no version 2")
	}
	if _, err := b.DB().ExecContext(ctx, script[:cut]+"COMMIT;"); err != nil {
		t.Fatalf("applying version 1: %v", err)
	}
	_, err := b.Trigger(ctx, &backend.TriggerParams{Pipeline: "p", Fingerprint: "f", First: backend.NewJob{NodeID: "n"}})
	if !errors.Is(err, backend.ErrNotMigrated) {
		t.Fatalf("Trigger on a version 1 schema: %v; want ErrNotMigrated", err)
	}
	_, err = b.GetRun(ctx, &backend.GetRunParams{RunID: 1})
	if !errors.Is(err, backend.ErrNotMigrated) {
		t.Fatalf("GetRun on a version 1 schema: %v; want ErrNotMigrated", err)
	}
}
