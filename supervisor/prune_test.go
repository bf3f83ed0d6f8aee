package supervisor_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/supervisor"
)

// pruneRecorder is a backend that records the PruneExecutions calls made
// through it.
type pruneRecorder struct {
	backend.Backend
	mu    sync.Mutex
	calls []pruneCall
}

type pruneCall struct {
	params  backend.PruneExecutionsParams
	deleted int
}

func (p *pruneRecorder) PruneExecutions(ctx context.Context, params *backend.PruneExecutionsParams) (*backend.PruneExecutionsResult, error) {
	res, err := p.Backend.PruneExecutions(ctx, params)
	if err == nil {
		p.mu.Lock()
		p.calls = append(p.calls, pruneCall{params: *params, deleted: res.Deleted})
		p.mu.Unlock()
	}
	return res, err
}

func (p *pruneRecorder) recorded() []pruneCall {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]pruneCall(nil), p.calls...)
}

// executeRoots triggers n runs of def and, directly on b, releases the
// claim of their first step as process, then completes it: 2n executions,
// n of them history rows (the releases), which pruning may delete, and n on
// the job rows, which it keeps. It returns the runs and the end time of the
// last execution.
func executeRoots(t *testing.T, b backend.Backend, def backend.DefinitionRef, process string, n int) ([]int64, time.Time) {
	t.Helper()
	ctx := ctxFor(t)
	registerFake(t, b, process, def)
	var runs []int64
	for range n {
		tr, err := b.Trigger(ctx, &backend.TriggerParams{Pipeline: def.Pipeline, Fingerprint: def.Fingerprint, First: backend.NewJob{NodeID: "root"}})
		if err != nil {
			t.Fatalf("Trigger: %v", err)
		}
		runs = append(runs, tr.RunID)
	}
	var last time.Time
	for range n {
		cl, err := b.Claim(ctx, &backend.ClaimParams{ProcessID: process, Limit: 1, Definitions: []backend.DefinitionRef{def}})
		if err != nil || len(cl.Jobs) != 1 {
			t.Fatalf("Claim = %v, %v; want one job", cl, err)
		}
		j := cl.Jobs[0]
		if _, err := b.Release(ctx, &backend.ReleaseParams{JobID: j.ID, ProcessID: process, Fence: j.Fence}); err != nil {
			t.Fatalf("Release: %v", err)
		}
		cl, err = b.Claim(ctx, &backend.ClaimParams{ProcessID: process, Limit: 1, Definitions: []backend.DefinitionRef{def}})
		if err != nil || len(cl.Jobs) != 1 {
			t.Fatalf("Claim after Release = %v, %v; want the job again", cl, err)
		}
		j = cl.Jobs[0]
		if _, err := b.Complete(ctx, &backend.CompleteParams{JobID: j.ID, ProcessID: process, Fence: j.Fence, Output: []byte("1"),
			Plan: backend.Plan{CompleteRun: true}}); err != nil {
			t.Fatalf("Complete: %v", err)
		}
		ex, err := b.ListExecutions(ctx, &backend.ListExecutionsParams{RunID: j.RunID})
		if err != nil || len(ex.Executions) != 2 {
			t.Fatalf("ListExecutions = %v, %v; want two executions", ex, err)
		}
		last = ex.Executions[1].FinishedAt
	}
	return runs, last
}

// executionCount counts the executions of runs.
func executionCount(t *testing.T, b backend.Backend, runs []int64) int {
	t.Helper()
	n := 0
	for _, id := range runs {
		ex, err := b.ListExecutions(ctxFor(t), &backend.ListExecutionsParams{RunID: id})
		if err != nil {
			t.Fatalf("ListExecutions: %v", err)
		}
		n += len(ex.Executions)
	}
	return n
}

// TestMaintenancePrunesExecutionHistory: a maintenance supervisor deletes
// history rows older than ExecutionRetention, PruneBatch rows a call, and
// keeps younger ones and every job's latest execution.
func TestMaintenancePrunesExecutionHistory(t *testing.T) {
	t.Parallel()
	const retention = time.Second
	b := &pruneRecorder{Backend: newBackend(t)}
	def := backend.DefinitionRef{Pipeline: "prune", Fingerprint: "fp"}
	old, lastOld := executeRoots(t, b, def, "old-worker", 5)
	waitPast(t, b, lastOld, retention)
	young, _ := executeRoots(t, b, def, "young-worker", 2)

	c := newClient(t, b)
	s := newSupervisor(t, c, supervisor.Config{Role: supervisor.RoleMaintenance,
		ExecutionRetention: retention, PruneInterval: 10 * time.Millisecond, PruneBatch: 2})
	r := start(t, s)
	waitFor(t, "the old history rows pruned", func() bool { return executionCount(t, b, old) == len(old) })
	if n := executionCount(t, b, young); n != 4 {
		t.Errorf("%d of the 4 younger executions left; want all kept", n)
	}
	if err := r.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	deleted := 0
	for _, c := range b.recorded() {
		if c.params.Limit != 2 || c.params.OlderThan != retention {
			t.Errorf("PruneExecutions(%+v); want Limit 2, OlderThan %v", c.params, retention)
		}
		if c.deleted > 2 {
			t.Errorf("one call deleted %d executions; want at most the batch, 2", c.deleted)
		}
		deleted += c.deleted
	}
	if deleted != 5 {
		t.Errorf("pruning deleted %d executions in all; want the 5 old ones", deleted)
	}
}

// TestNegativeRetentionKeepsHistory: with a negative ExecutionRetention the
// maintenance loops never prune.
func TestNegativeRetentionKeepsHistory(t *testing.T) {
	t.Parallel()
	b := &pruneRecorder{Backend: newBackend(t)}
	def := backend.DefinitionRef{Pipeline: "keep", Fingerprint: "fp"}
	runs, _ := executeRoots(t, b, def, "worker", 2)
	c := newClient(t, b)
	s := newSupervisor(t, c, supervisor.Config{Role: supervisor.RoleMaintenance, ExecutionRetention: -1,
		PruneInterval: time.Millisecond})
	at, err := b.Now(ctxFor(t))
	if err != nil {
		t.Fatal(err)
	}
	r := start(t, s)
	// Asserting an absence: a prune loop, had it started, would have run
	// dozens of times at a 1 ms interval by then.
	waitFor(t, "the process registered", func() bool { return processExists(t, b, s.ProcessID()) })
	waitPast(t, b, at, 100*time.Millisecond)
	if err := r.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if calls := b.recorded(); len(calls) != 0 {
		t.Errorf("PruneExecutions called %d times with a negative retention", len(calls))
	}
	if n := executionCount(t, b, runs); n != 4 {
		t.Errorf("%d executions left; want all 4", n)
	}
}
