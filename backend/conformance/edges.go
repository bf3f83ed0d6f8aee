package conformance

import (
	"slices"
	"testing"
	"time"

	"github.com/ductwork-go/ductwork/backend"
)

// Edges pins what the Backend interface's comments leave open, where the
// backends once answered differently: every backend now gives the answer
// stated on each case.
func testEdges(t *testing.T, h Harness) {
	runCases(t, h, map[string]caseFunc{
		"SetValueUnknownRun": edgeSetValueUnknownRun,
		"NegativeCursor":     edgeNegativeCursor,
		"ReapOrder":          edgeReapOrder,
	})
}

// edgeSetValueUnknownRun: SetValue on a run that does not exist returns
// ErrRunNotFound, with and without Overwrite, and stores nothing (GetValue
// then returns ErrValueNotFound). SQLite, whose values table has no
// enforced foreign key, once stored the value.
func edgeSetValueUnknownRun(t *testing.T, h Harness) {
	b := newBackend(t, h)
	const unknown = 987654321
	for _, overwrite := range []bool{false, true} {
		err := b.SetValue(testCtx(t), &backend.SetValueParams{RunID: unknown, Key: "k", Value: enc(t, 1), Overwrite: overwrite})
		wantErr(t, "SetValue on an unknown run", err, backend.ErrRunNotFound)
	}
	_, err := b.GetValue(testCtx(t), &backend.GetValueParams{RunID: unknown, Key: "k"})
	wantErr(t, "GetValue after a refused SetValue", err, backend.ErrValueNotFound)
	// A known run still tells a taken key apart from a missing run.
	tr := trigger(t, b, defA, backend.NewJob{NodeID: "root"})
	if err := b.SetValue(testCtx(t), &backend.SetValueParams{RunID: tr.RunID, Key: "k", Value: enc(t, 1)}); err != nil {
		t.Fatalf("SetValue: %v", err)
	}
	err = b.SetValue(testCtx(t), &backend.SetValueParams{RunID: tr.RunID, Key: "k", Value: enc(t, 2)})
	wantErr(t, "SetValue of a taken key", err, backend.ErrValueExists)
}

// edgeNegativeCursor: a negative cursor is no cursor. ListRuns with a
// negative BeforeID lists from the newest run, as with 0 (PostgreSQL once
// listed nothing); ListJobs and ListExecutions with a negative AfterID
// list from the first.
func edgeNegativeCursor(t *testing.T, h Harness) {
	b := newBackend(t, h)
	proc, root := startRoot(t, b, defA)
	complete(t, b, root, proc, enc(t, 1), backend.Plan{CompleteRun: true})
	trigger(t, b, defA, backend.NewJob{NodeID: "root"})
	all, err := b.ListRuns(testCtx(t), &backend.ListRunsParams{Pipeline: defA.Pipeline})
	if err != nil {
		t.Fatalf("ListRuns: %v", err)
	}
	if len(all.Runs) != 2 {
		t.Fatalf("ListRuns listed %d runs; want 2", len(all.Runs))
	}
	neg, err := b.ListRuns(testCtx(t), &backend.ListRunsParams{Pipeline: defA.Pipeline, BeforeID: -1})
	if err != nil {
		t.Fatalf("ListRuns(BeforeID -1): %v", err)
	}
	if len(neg.Runs) != 2 || neg.Runs[0].ID != all.Runs[0].ID {
		t.Errorf("ListRuns(BeforeID -1) listed %d runs; want the same 2 as BeforeID 0, newest first", len(neg.Runs))
	}
	jobs, err := b.ListJobs(testCtx(t), &backend.ListJobsParams{RunID: root.RunID, AfterID: -1})
	if err != nil {
		t.Fatalf("ListJobs(AfterID -1): %v", err)
	}
	if len(jobs.Jobs) != 1 || jobs.Jobs[0].ID != root.ID {
		t.Errorf("ListJobs(AfterID -1) listed %d jobs; want the run's one", len(jobs.Jobs))
	}
	ex, err := b.ListExecutions(testCtx(t), &backend.ListExecutionsParams{RunID: root.RunID, AfterID: -1})
	if err != nil {
		t.Fatalf("ListExecutions(AfterID -1): %v", err)
	}
	if len(ex.Executions) != 1 {
		t.Errorf("ListExecutions(AfterID -1) listed %d executions; want the run's one", len(ex.Executions))
	}
}

// edgeReapOrder: ReapResult.Processes lists the reaped processes sorted by
// ID (SQLite once listed them in its DELETE's order).
func edgeReapOrder(t *testing.T, h Harness) {
	b := newBackend(t, h)
	ids := []string{randomID(t, "p-z"), randomID(t, "p-a"), randomID(t, "p-m")}
	for _, id := range ids {
		if _, err := b.RegisterProcess(testCtx(t), &backend.RegisterProcessParams{ProcessID: id, Host: "conformance", PID: 1}); err != nil {
			t.Fatalf("RegisterProcess(%s): %v", id, err)
		}
	}
	reaper := register(t, b)
	const threshold = 500 * time.Millisecond
	for _, id := range ids {
		makeStale(t, b, id, threshold)
	}
	if _, err := b.Heartbeat(testCtx(t), &backend.HeartbeatParams{ProcessID: reaper}); err != nil {
		t.Fatalf("Heartbeat: %v", err)
	}
	res, err := b.Reap(testCtx(t), &backend.ReapParams{ProcessID: reaper, Threshold: threshold})
	if err != nil {
		t.Fatalf("Reap: %v", err)
	}
	want := slices.Sorted(slices.Values(ids))
	if !slices.Equal(res.Processes, want) {
		t.Errorf("Reap listed %v; want %v (sorted)", res.Processes, want)
	}
}
