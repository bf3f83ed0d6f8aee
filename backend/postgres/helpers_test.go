package postgres_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/backend/conformance"
	"github.com/ductwork-go/ductwork/backend/postgres"
	"github.com/ductwork-go/ductwork/internal/leakcheck"
)

// dsnEnv names the variable holding the test database's DSN.
const dsnEnv = "DUCTWORK_TEST_POSTGRES_DSN"

func TestMain(m *testing.M) {
	conformance.CrashHelper(conformance.Harness{Crash: crashHarness})
	leakcheck.Main(m)
}

// testDB is one test's pool and a schema of its own.
type testDB struct {
	pool   *pgxpool.Pool
	schema string
}

// newTestDB connects to the database named by DUCTWORK_TEST_POSTGRES_DSN (or
// skips) and picks a random schema that is dropped when the test ends.
func newTestDB(t *testing.T) *testDB {
	t.Helper()
	dsn := os.Getenv(dsnEnv)
	if dsn == "" {
		t.Skipf("set %s to run the PostgreSQL tests (for example postgres://postgres@127.0.0.1:5432/test?sslmode=disable)", dsnEnv)
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		t.Fatalf("parse %s: %v", dsnEnv, err)
	}
	cfg.MaxConns = 12
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	var buf [6]byte
	_, _ = rand.Read(buf[:])
	db := &testDB{pool: pool, schema: "ductwork_test_" + hex.EncodeToString(buf[:])}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := pool.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{db.schema}.Sanitize()+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", db.schema, err)
		}
		pool.Close()
	})
	return db
}

// newBackend returns a backend over a fresh, unmigrated schema.
func (db *testDB) newBackend(t *testing.T) *postgres.Backend {
	t.Helper()
	b, err := postgres.New(db.pool, &postgres.Config{Schema: db.schema})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return b
}

// newMigrated returns a migrated backend over a fresh schema, and its pool.
func newMigrated(t *testing.T) (*postgres.Backend, *testDB) {
	t.Helper()
	db := newTestDB(t)
	b := db.newBackend(t)
	if err := b.Migrate(t.Context()); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	return b, db
}

// table returns the schema-qualified, quoted name of a table.
func (db *testDB) table(name string) string {
	return pgx.Identifier{db.schema, name}.Sanitize()
}

var testDef = backend.DefinitionRef{Pipeline: "p", Fingerprint: "f1"}

// trigger starts a run of testDef whose first job is node "start".
func trigger(t *testing.T, b backend.Backend) *backend.TriggerResult {
	t.Helper()
	res, err := b.Trigger(t.Context(), &backend.TriggerParams{
		Pipeline: testDef.Pipeline, Fingerprint: testDef.Fingerprint,
		Input: []byte(`1`), Metadata: map[string]string{"k": "v"},
		First: backend.NewJob{NodeID: "start", Input: []byte(`1`)},
	})
	if err != nil {
		t.Fatalf("Trigger: %v", err)
	}
	return res
}

// register registers a process that claims testDef.
func register(t *testing.T, b backend.Backend, id string) {
	t.Helper()
	_, err := b.RegisterProcess(t.Context(), &backend.RegisterProcessParams{
		ProcessID: id, Host: "test", PID: os.Getpid(), Definitions: []backend.DefinitionRef{testDef},
	})
	if err != nil {
		t.Fatalf("RegisterProcess: %v", err)
	}
}

// claim claims up to limit jobs of testDef for process.
func claim(t *testing.T, b backend.Backend, process string, limit int) []*backend.Job {
	t.Helper()
	res, err := b.Claim(t.Context(), &backend.ClaimParams{ProcessID: process, Limit: limit, Definitions: []backend.DefinitionRef{testDef}})
	if err != nil {
		t.Fatalf("Claim: %v", err)
	}
	return res.Jobs
}

// claimOne claims exactly one job.
func claimOne(t *testing.T, b backend.Backend, process string) *backend.Job {
	t.Helper()
	jobs := claim(t, b, process, 1)
	if len(jobs) != 1 {
		t.Fatalf("Claim: got %d jobs, want 1", len(jobs))
	}
	return jobs[0]
}

// complete completes job with plan.
func complete(t *testing.T, b backend.Backend, j *backend.Job, process string, out string, plan backend.Plan) *backend.CompleteResult {
	t.Helper()
	res, err := b.Complete(t.Context(), &backend.CompleteParams{JobID: j.ID, ProcessID: process, Fence: j.Fence, Output: []byte(out), Plan: plan})
	if err != nil {
		t.Fatalf("Complete job %d: %v", j.ID, err)
	}
	return res
}

// jobs lists all jobs of a run.
func jobs(t *testing.T, b backend.Backend, runID int64) []*backend.JobInfo {
	t.Helper()
	res, err := b.ListJobs(t.Context(), &backend.ListJobsParams{RunID: runID, Limit: 100000})
	if err != nil {
		t.Fatalf("ListJobs: %v", err)
	}
	return res.Jobs
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
