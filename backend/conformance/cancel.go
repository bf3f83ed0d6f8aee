package conformance

import (
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/ductwork-go/ductwork/backend"
)

func testCancel(t *testing.T, h Harness) {
	runCases(t, h, map[string]caseFunc{
		"JobsCancelled":          cancelJobsCancelled,
		"CompleteAfterCancel":    cancelCompleteAfter,
		"CompleteRacingCancel":   cancelCompleteRacing,
		"HeartbeatReportsCancel": cancelHeartbeatReports,
	})
}

// cancelJobsCancelled: CancelRun gives the run's pending and running jobs
// the status cancelled and leaves completed ones as they are.
func cancelJobsCancelled(t *testing.T, h Harness) {
	b := newBackend(t, h)
	proc, root := startRoot(t, b, defA)
	complete(t, b, root, proc, nil, backend.Plan{Jobs: children(t, "child", 3)})
	running := claimOne(t, b, proc, defA)
	if _, err := b.CancelRun(testCtx(t), &backend.CancelRunParams{RunID: root.RunID, Reason: "stop"}); err != nil {
		t.Fatalf("CancelRun: %v", err)
	}
	for _, j := range listJobs(t, b, root.RunID) {
		want := backend.JobCancelled
		if j.ID == root.ID {
			want = backend.JobCompleted
		}
		if j.Status != want {
			t.Errorf("job %s scope %q (running before: %t) status = %q; want %q", j.NodeID, j.Scope, j.ID == running.ID, j.Status, want)
		}
	}
	claimNone(t, b, proc, defA)
}

// cancelCompleteAfter: a running job's Complete, Fail and Release after
// CancelRun return ErrStaleClaim and change nothing: no job is created and
// the run stays cancelled.
func cancelCompleteAfter(t *testing.T, h Harness) {
	b := newBackend(t, h)
	proc, root := startRoot(t, b, defA)
	if _, err := b.CancelRun(testCtx(t), &backend.CancelRunParams{RunID: root.RunID, Reason: "stop"}); err != nil {
		t.Fatalf("CancelRun: %v", err)
	}
	before := listJobs(t, b, root.RunID)
	_, err := b.Complete(testCtx(t), &backend.CompleteParams{JobID: root.ID, ProcessID: proc, Fence: root.Fence,
		Output: enc(t, 1), Plan: backend.Plan{Jobs: children(t, "child", 3), CompleteRun: true}, ClaimNext: 1})
	wantErr(t, "Complete after CancelRun", err, backend.ErrStaleClaim)
	_, err = b.Fail(testCtx(t), &backend.FailParams{JobID: root.ID, ProcessID: proc, Fence: root.Fence, Error: "x", Retry: true})
	wantErr(t, "Fail after CancelRun", err, backend.ErrStaleClaim)
	_, err = b.Release(testCtx(t), &backend.ReleaseParams{JobID: root.ID, ProcessID: proc, Fence: root.Fence})
	wantErr(t, "Release after CancelRun", err, backend.ErrStaleClaim)
	after := listJobs(t, b, root.RunID)
	if len(after) != len(before) {
		t.Fatalf("jobs after the late completion: %d; want %d (none created)", len(after), len(before))
	}
	for i := range after {
		if diff := sameJobRow(before[i], after[i]); diff != "" {
			t.Errorf("late completion changed job %d: %s", after[i].ID, diff)
		}
	}
	if r := getRun(t, b, root.RunID); r.Status != backend.RunCancelled {
		t.Errorf("run status = %q; want %q", r.Status, backend.RunCancelled)
	}
}

// cancelCompleteRacing: a Complete that creates jobs, racing a CancelRun of
// its run, either commits before the cancel (its jobs are then cancelled too)
// or fails with ErrStaleClaim: afterwards no job of the run is pending or
// running.
func cancelCompleteRacing(t *testing.T, h Harness) {
	b := newBackend(t, h)
	proc := register(t, b, defA)
	for i := range 12 {
		trigger(t, b, defA, backend.NewJob{NodeID: "root", Input: enc(t, i)})
		root := claimOne(t, b, proc, defA)
		var wg sync.WaitGroup
		start := make(chan struct{})
		var completeErr, cancelErr error
		wg.Go(func() {
			<-start
			_, completeErr = b.Complete(testCtx(t), &backend.CompleteParams{JobID: root.ID, ProcessID: proc, Fence: root.Fence,
				Output: enc(t, i), Plan: backend.Plan{Jobs: children(t, "child", 4)}, ClaimNext: 1})
		})
		wg.Go(func() {
			<-start
			_, cancelErr = b.CancelRun(testCtx(t), &backend.CancelRunParams{RunID: root.RunID, Reason: "race"})
		})
		close(start)
		wg.Wait()
		if cancelErr != nil {
			t.Fatalf("round %d: CancelRun: %v", i, cancelErr)
		}
		if completeErr != nil && !errors.Is(completeErr, backend.ErrStaleClaim) {
			t.Fatalf("round %d: Complete: %v; want success or ErrStaleClaim", i, completeErr)
		}
		for _, j := range listJobs(t, b, root.RunID) {
			if j.Status == backend.JobPending || j.Status == backend.JobRunning {
				t.Fatalf("round %d (complete: %v): job %s scope %q is %s after the cancel; want none pending or running",
					i, completeErr, j.NodeID, j.Scope, j.Status)
			}
		}
	}
}

// cancelHeartbeatReports: Heartbeat reports which of the runs it is given are
// cancelled, and only those.
func cancelHeartbeatReports(t *testing.T, h Harness) {
	b := newBackend(t, h)
	proc := register(t, b, defA)
	kept := trigger(t, b, defA, backend.NewJob{NodeID: "root"})
	gone := trigger(t, b, defA, backend.NewJob{NodeID: "root"})
	other := trigger(t, b, defA, backend.NewJob{NodeID: "root"})
	for _, r := range []*backend.TriggerResult{gone, other} {
		if _, err := b.CancelRun(testCtx(t), &backend.CancelRunParams{RunID: r.RunID}); err != nil {
			t.Fatalf("CancelRun: %v", err)
		}
	}
	res, err := b.Heartbeat(testCtx(t), &backend.HeartbeatParams{ProcessID: proc, Runs: []int64{kept.RunID, gone.RunID, 987654321}})
	if err != nil {
		t.Fatalf("Heartbeat: %v", err)
	}
	if !slices.Equal(res.CancelledRuns, []int64{gone.RunID}) {
		t.Errorf("Heartbeat CancelledRuns = %v; want [%d] (run %d is not cancelled, run %d was not asked about)",
			res.CancelledRuns, gone.RunID, kept.RunID, other.RunID)
	}
	res, err = b.Heartbeat(testCtx(t), &backend.HeartbeatParams{ProcessID: proc})
	if err != nil || len(res.CancelledRuns) != 0 {
		t.Errorf("Heartbeat without runs = %+v, %v; want no cancelled runs", res, err)
	}
}
