package sqlite_test

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/backend/conformance"
	"github.com/ductwork-go/ductwork/backend/sqlite"
	"github.com/ductwork-go/ductwork/internal/leakcheck"
)

func TestMain(m *testing.M) {
	conformance.CrashHelper(conformance.Harness{Crash: crashHarness})
	leakcheck.Main(m)
}

// dbPath returns a fresh database file path under t.TempDir().
func dbPath(t testing.TB) string {
	t.Helper()
	return filepath.Join(t.TempDir(), "ductwork.db")
}

// openAt opens a Backend on path and closes it at the end of the test.
func openAt(t testing.TB, path string) *sqlite.Backend {
	t.Helper()
	b, err := sqlite.Open(path, &sqlite.Config{Logger: quiet})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return b
}

// newBackend opens and migrates a Backend on a fresh file.
func newBackend(t *testing.T) *sqlite.Backend {
	t.Helper()
	b := openAt(t, dbPath(t))
	if err := b.Migrate(context.Background()); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	return b
}

// quiet discards the backends' log lines.
var quiet = slog.New(slog.DiscardHandler)

var def = backend.DefinitionRef{Pipeline: "orders", Fingerprint: "v1"}

// trigger starts a run of def whose first job is node "start".
func trigger(t *testing.T, b backend.Backend, input string) *backend.TriggerResult {
	t.Helper()
	res, err := b.Trigger(context.Background(), &backend.TriggerParams{
		Pipeline:    def.Pipeline,
		Fingerprint: def.Fingerprint,
		Input:       []byte(input),
		Metadata:    map[string]string{"tenant": "acme"},
		First:       backend.NewJob{NodeID: "start", Input: []byte(input)},
	})
	if err != nil {
		t.Fatalf("Trigger: %v", err)
	}
	return res
}

// claim claims up to limit jobs of def for process.
func claim(t *testing.T, b backend.Backend, process string, limit int) []*backend.Job {
	t.Helper()
	res, err := b.Claim(context.Background(), &backend.ClaimParams{
		ProcessID: process, Limit: limit, Definitions: []backend.DefinitionRef{def},
	})
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

// complete completes j with output and plan.
func complete(t *testing.T, b backend.Backend, j *backend.Job, process, output string, plan backend.Plan) *backend.CompleteResult {
	t.Helper()
	res, err := b.Complete(context.Background(), &backend.CompleteParams{
		JobID: j.ID, ProcessID: process, Fence: j.Fence, Output: []byte(output), Plan: plan,
	})
	if err != nil {
		t.Fatalf("Complete(job %d): %v", j.ID, err)
	}
	return res
}

// jobs lists all jobs of a run.
func jobs(t *testing.T, b backend.Backend, runID int64) []*backend.JobInfo {
	t.Helper()
	res, err := b.ListJobs(context.Background(), &backend.ListJobsParams{RunID: runID, Limit: 1000})
	if err != nil {
		t.Fatalf("ListJobs: %v", err)
	}
	return res.Jobs
}

// jobByID finds one job of a run.
func jobByID(t *testing.T, b backend.Backend, runID, id int64) *backend.JobInfo {
	t.Helper()
	for _, j := range jobs(t, b, runID) {
		if j.ID == id {
			return j
		}
	}
	t.Fatalf("job %d of run %d not found", id, runID)
	return nil
}

// getRun reads a run.
func getRun(t *testing.T, b backend.Backend, id int64) *backend.Run {
	t.Helper()
	r, err := b.GetRun(context.Background(), &backend.GetRunParams{RunID: id})
	if err != nil {
		t.Fatalf("GetRun: %v", err)
	}
	return r
}

func register(t *testing.T, b backend.Backend, id string) {
	t.Helper()
	_, err := b.RegisterProcess(context.Background(), &backend.RegisterProcessParams{
		ProcessID: id, Host: "host", PID: 1, Definitions: []backend.DefinitionRef{def},
	})
	if err != nil {
		t.Fatalf("RegisterProcess(%s): %v", id, err)
	}
}

func scope(i int) string { return fmt.Sprint(i) }
