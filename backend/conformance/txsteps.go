package conformance

import (
	"context"
	"errors"
	"testing"

	"github.com/ductwork-go/ductwork/backend"
)

// Transactional completions (CompleteParams.InTx), on backends whose
// Capabilities.TxKind is set; the others must refuse them.
func testTxSteps(t *testing.T, h Harness) {
	runCases(t, h, map[string]caseFunc{
		"StaleNotCalled":  txStaleNotCalled,
		"ErrorNoTrace":    txErrorNoTrace,
		"AppliesOwnPlan":  txAppliesOwnPlan,
		"UnsupportedKind": txUnsupported,
	})
}

// needTx skips a case on a backend that runs no transactional completions.
func needTx(t *testing.T, b backend.Backend) {
	t.Helper()
	if b.Capabilities().TxKind == "" {
		t.Skip("the backend runs no transactional completions (Capabilities.TxKind is empty)")
	}
}

// txStaleNotCalled: with a stale fence or a wrong owner, Complete returns
// ErrStaleClaim without calling InTx, and changes nothing.
func txStaleNotCalled(t *testing.T, h Harness) {
	b := newBackend(t, h)
	needTx(t, b)
	proc, j := startRoot(t, b, defA)
	before := jobByID(t, b, j.RunID, j.ID)
	for _, c := range []struct {
		why   string
		owner string
		fence int64
	}{{"an older fence", proc, j.Fence - 1}, {"a newer fence", proc, j.Fence + 1}, {"another owner", "someone-else", j.Fence}} {
		called := false
		_, err := b.Complete(testCtx(t), &backend.CompleteParams{JobID: j.ID, ProcessID: c.owner, Fence: c.fence,
			InTx: func(context.Context, any) ([]byte, backend.Plan, error) {
				called = true
				return enc(t, "stale"), backend.Plan{Jobs: []backend.NewJob{{NodeID: "next"}}, CompleteRun: true}, nil
			}})
		wantErr(t, "transactional Complete with "+c.why, err, backend.ErrStaleClaim)
		if called {
			t.Fatalf("transactional Complete with %s called InTx: the step ran on a stale claim", c.why)
		}
	}
	if diff := sameJobRow(before, jobByID(t, b, j.RunID, j.ID)); diff != "" {
		t.Fatalf("a refused transactional Complete changed the job: %s", diff)
	}
	if n := len(listJobs(t, b, j.RunID)); n != 1 {
		t.Fatalf("a refused transactional Complete inserted jobs: the run has %d", n)
	}
	// A claim made stale by a reap: the process is gone, its job re-queued.
	threshold := precision(b)
	makeStale(t, b, proc, threshold)
	if _, err := b.Reap(testCtx(t), &backend.ReapParams{ProcessID: "reaper", Threshold: threshold}); err != nil {
		t.Fatalf("Reap: %v", err)
	}
	live := register(t, b, defA)
	j2 := claimOne(t, b, live, defA)
	called := false
	_, err := b.Complete(testCtx(t), &backend.CompleteParams{JobID: j.ID, ProcessID: proc, Fence: j.Fence,
		InTx: func(context.Context, any) ([]byte, backend.Plan, error) {
			called = true
			return enc(t, "zombie"), backend.Plan{CompleteRun: true}, nil
		}})
	wantErr(t, "transactional Complete of a reaped claim", err, backend.ErrStaleClaim)
	if called {
		t.Fatal("transactional Complete of a reaped claim called InTx")
	}
	if r := getRun(t, b, j.RunID); r.Status != backend.RunRunning {
		t.Fatalf("a refused transactional Complete moved the run to %q", r.Status)
	}
	// The new claim completes transactionally.
	res, err := b.Complete(testCtx(t), &backend.CompleteParams{JobID: j2.ID, ProcessID: live, Fence: j2.Fence,
		InTx: func(context.Context, any) ([]byte, backend.Plan, error) {
			return enc(t, "rerun"), backend.Plan{CompleteRun: true}, nil
		}})
	if err != nil || !res.RunCompleted {
		t.Fatalf("transactional Complete of the re-claimed job: %v (%+v); want the run completed", err, res)
	}
}

// txErrorNoTrace: an error from InTx is returned unchanged and nothing of
// the completion is written: the job keeps its claim, no job is inserted,
// the run goes on. The same claim then completes.
func txErrorNoTrace(t *testing.T, h Harness) {
	b := newBackend(t, h)
	needTx(t, b)
	proc, j := startRoot(t, b, defA)
	before := jobByID(t, b, j.RunID, j.ID)
	boom := errors.New("step failed")
	var gotTx any
	_, err := b.Complete(testCtx(t), &backend.CompleteParams{JobID: j.ID, ProcessID: proc, Fence: j.Fence,
		InTx: func(_ context.Context, tx any) ([]byte, backend.Plan, error) {
			gotTx = tx
			return enc(t, "half"), backend.Plan{Jobs: []backend.NewJob{{NodeID: "next"}}, CompleteRun: true}, boom
		}})
	if !errors.Is(err, boom) {
		t.Fatalf("transactional Complete whose InTx failed: error %v, want the InTx error", err)
	}
	if gotTx == nil {
		t.Fatal("InTx was called with a nil transaction")
	}
	if diff := sameJobRow(before, jobByID(t, b, j.RunID, j.ID)); diff != "" {
		t.Fatalf("a failed transactional Complete changed the job: %s", diff)
	}
	if n := len(listJobs(t, b, j.RunID)); n != 1 {
		t.Fatalf("a failed transactional Complete inserted jobs: the run has %d", n)
	}
	if r := getRun(t, b, j.RunID); r.Status != backend.RunRunning {
		t.Fatalf("a failed transactional Complete moved the run to %q", r.Status)
	}
	complete(t, b, j, proc, enc(t, "done"), backend.Plan{CompleteRun: true})
}

// txAppliesOwnPlan: the output and plan InTx returns are applied (those of
// the params are ignored), as a plain completion applies them.
func txAppliesOwnPlan(t *testing.T, h Harness) {
	b := newBackend(t, h)
	needTx(t, b)
	proc, j := startRoot(t, b, defA)
	res, err := b.Complete(testCtx(t), &backend.CompleteParams{JobID: j.ID, ProcessID: proc, Fence: j.Fence,
		Output: enc(t, "ignored"), Plan: backend.Plan{CompleteRun: true},
		InTx: func(context.Context, any) ([]byte, backend.Plan, error) {
			return enc(t, "root-out"), backend.Plan{Jobs: []backend.NewJob{{NodeID: "next", Input: enc(t, "root-out")}}}, nil
		}})
	if err != nil {
		t.Fatalf("transactional Complete: %v", err)
	}
	if res.NewJobs != 1 || res.RunCompleted {
		t.Fatalf("transactional Complete: NewJobs %d RunCompleted %v; want the InTx plan (1 job, run going on)", res.NewJobs, res.RunCompleted)
	}
	jobs := listJobs(t, b, j.RunID)
	if len(jobs) != 2 || jobs[1].NodeID != "next" {
		t.Fatalf("after a transactional Complete the run has %d jobs; want root and next", len(jobs))
	}
	if got := string(jobByID(t, b, j.RunID, j.ID).Output); got != string(enc(t, "root-out")) {
		t.Fatalf("job output %s; want the InTx output", got)
	}
	if r := getRun(t, b, j.RunID); r.Status != backend.RunRunning {
		t.Fatalf("run %q; want running", r.Status)
	}
}

// txUnsupported: a backend that runs no transactional completions refuses
// one with ErrUnsupportedTx and does not call InTx.
func txUnsupported(t *testing.T, h Harness) {
	b := newBackend(t, h)
	if b.Capabilities().TxKind != "" {
		t.Skip("the backend runs transactional completions")
	}
	proc, j := startRoot(t, b, defA)
	called := false
	_, err := b.Complete(testCtx(t), &backend.CompleteParams{JobID: j.ID, ProcessID: proc, Fence: j.Fence,
		InTx: func(context.Context, any) ([]byte, backend.Plan, error) {
			called = true
			return nil, backend.Plan{}, nil
		}})
	wantErr(t, "transactional Complete on a backend without TxKind", err, backend.ErrUnsupportedTx)
	if called {
		t.Fatal("InTx called by a backend without TxKind")
	}
}
