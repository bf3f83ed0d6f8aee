package conformance

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ductwork-go/ductwork/backend"
)

// testExecutions: every claim is one execution, listed from the claim on
// (running, with no end) and ended by the write that ends the claim, in its
// own transaction, with the claim's start and its end by the database's
// clock; stale writes record nothing; the executions a job left behind are
// pruned in batches, a job's latest one goes with the job.
func testExecutions(t *testing.T, h Harness) {
	runCases(t, h, map[string]caseFunc{
		"Completed":      execCompleted,
		"RetriedFailure": execRetriedFailure,
		"ReapedCrash":    execReapedCrash,
		"Released":       execReleased,
		"Deregistered":   execDeregistered,
		"Cancelled":      execCancelled,
		"StaleNoRow":     execStaleNoRow,
		"Timeout":        execTimeout,
		"Pagination":     execPagination,
		"Prune":          execPrune,
		"PruneBadInput":  execPruneBadInput,
		"Running":        execRunning,
		"RetryThenOK":    execRetryThenOK,
		"ReviveKeeps":    execReviveKeeps,
	})
}

// executions lists every execution of a run (of one job when jobID is set).
func executions(t *testing.T, b backend.Backend, runID, jobID int64) []*backend.Execution {
	t.Helper()
	var out []*backend.Execution
	var after int64
	for {
		res, err := b.ListExecutions(testCtx(t), &backend.ListExecutionsParams{RunID: runID, JobID: jobID, AfterID: after, Limit: 100})
		if err != nil {
			t.Fatalf("ListExecutions(run %d): %v", runID, err)
		}
		out = append(out, res.Executions...)
		if res.Next == 0 {
			return out
		}
		after = res.Next
	}
}

// describeExec renders an execution for failure messages.
func describeExec(e *backend.Execution) string {
	return fmt.Sprintf("{job %d node %s scope %q attempt %d crashes %d fence %d process %s outcome %s error %q}",
		e.JobID, e.NodeID, e.Scope, e.Attempt, e.Crashes, e.Fence, e.ProcessID, e.Outcome, e.Error)
}

// checkExec checks that e is the execution of claim j by process, ended
// with outcome, and that its times are the database's: the claim's start,
// an end not before it and not after the database's clock now.
func checkExec(t *testing.T, b backend.Backend, e *backend.Execution, j *backend.Job, process string, outcome backend.Outcome) {
	t.Helper()
	if e.JobID != j.ID || e.RunID != j.RunID || e.NodeID != j.NodeID || e.Scope != j.Scope || e.Attempt != j.Attempt ||
		e.Crashes != j.Crashes || e.Fence != j.Fence || e.ProcessID != process || e.Outcome != outcome {
		t.Errorf("execution %s; want job %d run %d node %s scope %q attempt %d crashes %d fence %d process %s outcome %s",
			describeExec(e), j.ID, j.RunID, j.NodeID, j.Scope, j.Attempt, j.Crashes, j.Fence, process, outcome)
	}
	p := precision(b)
	if d := e.StartedAt.Sub(j.ClaimedAt); d < -p || d > p {
		t.Errorf("execution of job %d started at %v; want the claim's time %v", j.ID, e.StartedAt, j.ClaimedAt)
	}
	if e.FinishedAt.Before(e.StartedAt) {
		t.Errorf("execution of job %d finished at %v, before it started (%v)", j.ID, e.FinishedAt, e.StartedAt)
	}
	if n := now(t, b); e.FinishedAt.After(n.Add(p)) {
		t.Errorf("execution of job %d finished at %v, after the database's now %v", j.ID, e.FinishedAt, n)
	}
}

// wantExecs checks the number of executions of a run.
func wantExecs(t *testing.T, b backend.Backend, runID int64, n int) []*backend.Execution {
	t.Helper()
	got := executions(t, b, runID, 0)
	if len(got) != n {
		var lines []string
		for _, e := range got {
			lines = append(lines, describeExec(e))
		}
		t.Fatalf("run %d has %d executions; want %d:\n%s", runID, len(got), n, strings.Join(lines, "\n"))
	}
	return got
}

// execCompleted: a completion ends the execution of its claim, and a run
// with nothing else claimed has no other.
func execCompleted(t *testing.T, h Harness) {
	b := newBackend(t, h)
	proc, j := startRoot(t, b, defA)
	checkRunning(t, b, wantExecs(t, b, j.RunID, 1)[0], j, proc)
	complete(t, b, j, proc, enc(t, "out"), backend.Plan{Jobs: []backend.NewJob{{NodeID: "next", Input: enc(t, 1)}}})
	e := wantExecs(t, b, j.RunID, 1)[0]
	checkExec(t, b, e, j, proc, backend.OutcomeCompleted)
	if e.Error != "" || e.Stack != "" {
		t.Errorf("completed execution has error %q stack %q; want none", e.Error, e.Stack)
	}
	next := claimOne(t, b, proc, defA)
	complete(t, b, next, proc, enc(t, "end"), backend.Plan{CompleteRun: true})
	got := wantExecs(t, b, j.RunID, 2)
	checkExec(t, b, got[1], next, proc, backend.OutcomeCompleted)
	if got[0].ID >= got[1].ID {
		t.Errorf("execution IDs %d, %d; want them ascending in the order the executions ended", got[0].ID, got[1].ID)
	}
	if other := executions(t, b, j.RunID+1000, 0); len(other) != 0 {
		t.Errorf("an unknown run lists %d executions; want none", len(other))
	}
}

// execRetriedFailure: a failure that is retried and the failure that halts
// the run are two executions, under attempts 1 and 2, with their errors and
// stacks.
func execRetriedFailure(t *testing.T, h Harness) {
	b := newBackend(t, h)
	proc, j := startRoot(t, b, defA)
	if _, err := b.Fail(testCtx(t), &backend.FailParams{JobID: j.ID, ProcessID: proc, Fence: j.Fence,
		Error: "first failure", Stack: "goroutine 1 [running]:\nfirst", Retry: true}); err != nil {
		t.Fatalf("Fail(Retry): %v", err)
	}
	e := wantExecs(t, b, j.RunID, 1)[0]
	checkExec(t, b, e, j, proc, backend.OutcomeFailed)
	if e.Error != "first failure" || e.Stack != "goroutine 1 [running]:\nfirst" {
		t.Errorf("retried execution error %q stack %q; want the failure's", e.Error, e.Stack)
	}
	j2 := claimOne(t, b, proc, defA)
	if j2.Attempt != 2 {
		t.Fatalf("retry claimed as attempt %d; want 2", j2.Attempt)
	}
	res, err := b.Fail(testCtx(t), &backend.FailParams{JobID: j2.ID, ProcessID: proc, Fence: j2.Fence,
		Error: "second failure", Stack: "stack two", Cause: backend.HaltRetriesExhausted})
	if err != nil || !res.Halted {
		t.Fatalf("Fail = %+v, %v; want the run halted", res, err)
	}
	got := wantExecs(t, b, j.RunID, 2)
	checkExec(t, b, got[1], j2, proc, backend.OutcomeFailed)
	if got[1].Error != "second failure" || got[1].Stack != "stack two" {
		t.Errorf("halting execution error %q stack %q; want the failure's", got[1].Error, got[1].Stack)
	}
	// A replayed halt (same claim) records nothing more.
	if _, err := b.Fail(testCtx(t), &backend.FailParams{JobID: j2.ID, ProcessID: proc, Fence: j2.Fence,
		Error: "second failure", Cause: backend.HaltRetriesExhausted}); err != nil {
		t.Fatalf("replayed Fail: %v", err)
	}
	wantExecs(t, b, j.RunID, 2)
	// Revived, the job runs as attempt 3: a third execution.
	if _, err := b.ReviveRun(testCtx(t), &backend.ReviveRunParams{RunID: j.RunID}); err != nil {
		t.Fatalf("ReviveRun: %v", err)
	}
	j3 := claimOne(t, b, proc, defA)
	complete(t, b, j3, proc, enc(t, "ok"), backend.Plan{CompleteRun: true})
	got = wantExecs(t, b, j.RunID, 3)
	checkExec(t, b, got[2], j3, proc, backend.OutcomeCompleted)
	if got[2].Attempt != 3 {
		t.Errorf("revived execution attempt %d; want 3", got[2].Attempt)
	}
}

// execReapedCrash: reaping a dead process records its execution as crashed,
// under the dead process's ID, and the crash re-run is an execution of its
// own with the crash counted.
func execReapedCrash(t *testing.T, h Harness) {
	b := newBackend(t, h)
	threshold := precision(b)
	dead, j := startRoot(t, b, defA)
	makeStale(t, b, dead, threshold)
	if _, err := b.Reap(testCtx(t), &backend.ReapParams{ProcessID: "reaper", Threshold: threshold}); err != nil {
		t.Fatalf("Reap: %v", err)
	}
	e := wantExecs(t, b, j.RunID, 1)[0]
	checkExec(t, b, e, j, dead, backend.OutcomeCrashed)
	// A second reap finds nothing and records nothing.
	if _, err := b.Reap(testCtx(t), &backend.ReapParams{ProcessID: "reaper", Threshold: threshold}); err != nil {
		t.Fatalf("Reap: %v", err)
	}
	wantExecs(t, b, j.RunID, 1)
	live := register(t, b, defA)
	j2 := claimOne(t, b, live, defA)
	// The zombie's late commit is refused and records nothing.
	_, err := b.Complete(testCtx(t), &backend.CompleteParams{JobID: j.ID, ProcessID: dead, Fence: j.Fence, Output: enc(t, "late")})
	wantErr(t, "Complete by the reaped process", err, backend.ErrStaleClaim)
	complete(t, b, j2, live, enc(t, "out"), backend.Plan{CompleteRun: true})
	got := wantExecs(t, b, j.RunID, 2)
	checkExec(t, b, got[1], j2, live, backend.OutcomeCompleted)
	if got[1].Crashes != 1 || got[1].Attempt != got[0].Attempt {
		t.Errorf("crash re-run %s; want crashes 1 and the same attempt as the crashed one", describeExec(got[1]))
	}
}

// execReleased: a graceful release is recorded as released, a Crashed one
// as crashed, each under the counts the execution ran with.
func execReleased(t *testing.T, h Harness) {
	b := newBackend(t, h)
	proc, j := startRoot(t, b, defA)
	if _, err := b.Release(testCtx(t), &backend.ReleaseParams{JobID: j.ID, ProcessID: proc, Fence: j.Fence}); err != nil {
		t.Fatalf("Release: %v", err)
	}
	checkExec(t, b, wantExecs(t, b, j.RunID, 1)[0], j, proc, backend.OutcomeReleased)
	j2 := claimOne(t, b, proc, defA)
	if _, err := b.Release(testCtx(t), &backend.ReleaseParams{JobID: j2.ID, ProcessID: proc, Fence: j2.Fence, Crashed: true}); err != nil {
		t.Fatalf("Release(Crashed): %v", err)
	}
	checkExec(t, b, wantExecs(t, b, j.RunID, 2)[1], j2, proc, backend.OutcomeCrashed)
	j3 := claimOne(t, b, proc, defA)
	if j3.Crashes != 1 {
		t.Fatalf("claim after a crashed release has crashes %d; want 1", j3.Crashes)
	}
	// A stale release records nothing: the two released, then j3 running.
	_, err := b.Release(testCtx(t), &backend.ReleaseParams{JobID: j2.ID, ProcessID: proc, Fence: j2.Fence})
	wantErr(t, "stale Release", err, backend.ErrStaleClaim)
	checkRunning(t, b, wantExecs(t, b, j.RunID, 3)[2], j3, proc)
}

// execDeregistered: deregistering a process records the executions of the
// jobs it still held as released, and only those.
func execDeregistered(t *testing.T, h Harness) {
	b := newBackend(t, h)
	trigger(t, b, defA, backend.NewJob{NodeID: "root"})
	trigger(t, b, defA, backend.NewJob{NodeID: "root"})
	proc := register(t, b, defA)
	jobs := claim(t, b, proc, 2, defA)
	if len(jobs) != 2 {
		t.Fatalf("claimed %d jobs; want 2", len(jobs))
	}
	complete(t, b, jobs[0], proc, enc(t, "done"), backend.Plan{CompleteRun: true})
	if err := b.DeregisterProcess(testCtx(t), &backend.DeregisterProcessParams{ProcessID: proc}); err != nil {
		t.Fatalf("DeregisterProcess: %v", err)
	}
	checkExec(t, b, wantExecs(t, b, jobs[0].RunID, 1)[0], jobs[0], proc, backend.OutcomeCompleted)
	checkExec(t, b, wantExecs(t, b, jobs[1].RunID, 1)[0], jobs[1], proc, backend.OutcomeReleased)
	if err := b.DeregisterProcess(testCtx(t), &backend.DeregisterProcessParams{ProcessID: proc}); err != nil {
		t.Fatalf("DeregisterProcess again: %v", err)
	}
	wantExecs(t, b, jobs[1].RunID, 1)
}

// execCancelled: cancelling a run records its running jobs' executions as
// cancelled; its pending jobs, which were not executing, record nothing.
func execCancelled(t *testing.T, h Harness) {
	b := newBackend(t, h)
	proc, j := startRoot(t, b, defA)
	complete(t, b, j, proc, enc(t, "out"), backend.Plan{Jobs: children(t, "child", 3)})
	running := claimOne(t, b, proc, defA)
	if _, err := b.CancelRun(testCtx(t), &backend.CancelRunParams{RunID: j.RunID, Reason: "stop"}); err != nil {
		t.Fatalf("CancelRun: %v", err)
	}
	got := wantExecs(t, b, j.RunID, 2)
	checkExec(t, b, got[1], running, proc, backend.OutcomeCancelled)
	_, err := b.Complete(testCtx(t), &backend.CompleteParams{JobID: running.ID, ProcessID: proc, Fence: running.Fence, Output: enc(t, "late")})
	wantErr(t, "Complete after CancelRun", err, backend.ErrStaleClaim)
	wantExecs(t, b, j.RunID, 2)
}

// execStaleNoRow: writes refused as stale record nothing, and a replayed
// completion (same claim, committed before) records nothing more.
func execStaleNoRow(t *testing.T, h Harness) {
	b := newBackend(t, h)
	proc, j := startRoot(t, b, defA)
	ctx := testCtx(t)
	_, err := b.Complete(ctx, &backend.CompleteParams{JobID: j.ID, ProcessID: proc, Fence: j.Fence + 1, Output: enc(t, "x")})
	wantErr(t, "Complete with a wrong fence", err, backend.ErrStaleClaim)
	_, err = b.Fail(ctx, &backend.FailParams{JobID: j.ID, ProcessID: "someone-else", Fence: j.Fence, Error: "x", Retry: true})
	wantErr(t, "Fail by another process", err, backend.ErrStaleClaim)
	_, err = b.Release(ctx, &backend.ReleaseParams{JobID: j.ID, ProcessID: proc, Fence: j.Fence - 1})
	wantErr(t, "Release with a wrong fence", err, backend.ErrStaleClaim)
	checkRunning(t, b, wantExecs(t, b, j.RunID, 1)[0], j, proc)
	complete(t, b, j, proc, enc(t, "out"), backend.Plan{CompleteRun: true})
	res, err := b.Complete(ctx, &backend.CompleteParams{JobID: j.ID, ProcessID: proc, Fence: j.Fence, Output: enc(t, "out"), Plan: backend.Plan{CompleteRun: true}})
	if err != nil || !res.Replayed {
		t.Fatalf("replayed Complete = %+v, %v; want Replayed", res, err)
	}
	wantExecs(t, b, j.RunID, 1)
}

// execTimeout: FailParams.Outcome is recorded as given (an execution ended
// by a hard timeout says so).
func execTimeout(t *testing.T, h Harness) {
	b := newBackend(t, h)
	proc, j := startRoot(t, b, defA)
	if _, err := b.Fail(testCtx(t), &backend.FailParams{JobID: j.ID, ProcessID: proc, Fence: j.Fence,
		Error: "step timed out", Retry: true, Outcome: backend.OutcomeTimeout}); err != nil {
		t.Fatalf("Fail: %v", err)
	}
	e := wantExecs(t, b, j.RunID, 1)[0]
	checkExec(t, b, e, j, proc, backend.OutcomeTimeout)
	if e.Error != "step timed out" {
		t.Errorf("timeout execution error %q; want the failure's", e.Error)
	}
}

// execPagination: ListExecutions pages by ID and filters by job.
func execPagination(t *testing.T, h Harness) {
	b := newBackend(t, h)
	proc, j := startRoot(t, b, defA)
	complete(t, b, j, proc, enc(t, "out"), backend.Plan{Jobs: children(t, "child", 5)})
	kids := claim(t, b, proc, 5, defA)
	for _, k := range kids {
		complete(t, b, k, proc, enc(t, "k"), backend.Plan{})
	}
	all := wantExecs(t, b, j.RunID, 6)
	res, err := b.ListExecutions(testCtx(t), &backend.ListExecutionsParams{RunID: j.RunID, Limit: 4})
	if err != nil {
		t.Fatalf("ListExecutions: %v", err)
	}
	if len(res.Executions) != 4 || res.Next != res.Executions[3].ID {
		t.Fatalf("first page: %d executions, next %d; want 4 and the last one's ID", len(res.Executions), res.Next)
	}
	res2, err := b.ListExecutions(testCtx(t), &backend.ListExecutionsParams{RunID: j.RunID, Limit: 4, AfterID: res.Next})
	if err != nil {
		t.Fatalf("ListExecutions: %v", err)
	}
	if len(res2.Executions) != 2 || res2.Next != 0 || res2.Executions[0].ID != all[4].ID {
		t.Fatalf("second page: %d executions, next %d; want the last 2 and no next page", len(res2.Executions), res2.Next)
	}
	one := executions(t, b, j.RunID, kids[2].ID)
	if len(one) != 1 || one[0].JobID != kids[2].ID {
		t.Fatalf("executions of job %d: %d rows; want its one execution", kids[2].ID, len(one))
	}
}

// leaveBehind makes job j of proc leave n executions behind (retried
// failures, then a release when n > 1) and returns its current claim.
func leaveBehind(t *testing.T, b backend.Backend, proc string, def backend.DefinitionRef, j *backend.Job, n int) *backend.Job {
	t.Helper()
	for i := 0; i < n; i++ {
		var err error
		if i == n-1 && n > 1 {
			_, err = b.Release(testCtx(t), &backend.ReleaseParams{JobID: j.ID, ProcessID: proc, Fence: j.Fence})
		} else {
			_, err = b.Fail(testCtx(t), &backend.FailParams{JobID: j.ID, ProcessID: proc, Fence: j.Fence, Error: "again", Retry: true})
		}
		if err != nil {
			t.Fatalf("ending execution %d of job %d: %v", i+1, j.ID, err)
		}
		j = claimOne(t, b, proc, def)
	}
	return j
}

// execPrune: PruneExecutions deletes only history rows (executions a job
// left behind) older than the retention, at most Limit a call, oldest
// first, and keeps younger ones; a job's latest execution stays with it.
func execPrune(t *testing.T, h Harness) {
	b := newBackend(t, h)
	proc, j := startRoot(t, b, defA)
	j = leaveBehind(t, b, proc, defA, j, 3)
	complete(t, b, j, proc, enc(t, "out"), backend.Plan{CompleteRun: true})
	old := wantExecs(t, b, j.RunID, 4)
	res, err := b.PruneExecutions(testCtx(t), &backend.PruneExecutionsParams{OlderThan: time.Hour})
	if err != nil || res.Deleted != 0 {
		t.Fatalf("PruneExecutions(1h) = %+v, %v; want nothing deleted", res, err)
	}
	// A younger execution left behind, a second after the older ones, which
	// the retention keeps: the cut falls half a second after the last old
	// one.
	oldLast := old[len(old)-1].FinishedAt
	waitPast(t, b, oldLast, time.Second)
	trigger(t, b, defB, backend.NewJob{NodeID: "root"})
	proc2 := register(t, b, defB)
	y := claimOne(t, b, proc2, defB)
	y = leaveBehind(t, b, proc2, defB, y, 1)
	complete(t, b, y, proc2, enc(t, "y"), backend.Plan{CompleteRun: true})
	young := wantExecs(t, b, y.RunID, 2)[0]
	retention := now(t, b).Sub(oldLast.Add(500 * time.Millisecond))
	total := 0
	for i := 0; ; i++ {
		res, err := b.PruneExecutions(testCtx(t), &backend.PruneExecutionsParams{OlderThan: retention, Limit: 2})
		if err != nil {
			t.Fatalf("PruneExecutions: %v", err)
		}
		if res.Deleted > 2 {
			t.Fatalf("PruneExecutions(Limit 2) deleted %d", res.Deleted)
		}
		total += res.Deleted
		if res.Deleted < 2 || i > 10 {
			break
		}
	}
	if total != len(old)-1 {
		t.Errorf("pruned %d executions; want the %d left behind before the retention", total, len(old)-1)
	}
	if got := wantExecs(t, b, j.RunID, 1)[0]; got.ID != old[3].ID || got.Outcome != backend.OutcomeCompleted {
		t.Errorf("after pruning, run %d lists %s; want its job's latest execution, completed", j.RunID, describeExec(got))
	}
	if got := wantExecs(t, b, y.RunID, 2)[0]; got.ID != young.ID || got.Outcome != backend.OutcomeFailed {
		t.Errorf("the younger execution was replaced: %s", describeExec(got))
	}
}

// execPruneBadInput: a non-positive retention or a negative limit is
// refused with a permanent error and deletes nothing.
func execPruneBadInput(t *testing.T, h Harness) {
	b := newBackend(t, h)
	proc, j := startRoot(t, b, defA)
	complete(t, b, j, proc, enc(t, "out"), backend.Plan{CompleteRun: true})
	for _, p := range []backend.PruneExecutionsParams{{OlderThan: 0}, {OlderThan: -time.Second}, {OlderThan: time.Nanosecond, Limit: -1}} {
		res, err := b.PruneExecutions(testCtx(t), &p)
		if err == nil || !backend.IsPermanent(err) {
			t.Errorf("PruneExecutions(%+v) = %+v, %v; want a permanent error", p, res, err)
		}
		if err != nil && !strings.Contains(err.Error(), "PruneExecutions") {
			t.Errorf("error %q does not name PruneExecutions", err)
		}
	}
	wantExecs(t, b, j.RunID, 1)
}

// checkRunning checks that e is the running execution of claim j by
// process: listed with the claim's start, OutcomeRunning and no end.
func checkRunning(t *testing.T, b backend.Backend, e *backend.Execution, j *backend.Job, process string) {
	t.Helper()
	if e.JobID != j.ID || e.RunID != j.RunID || e.NodeID != j.NodeID || e.Attempt != j.Attempt || e.Crashes != j.Crashes ||
		e.Fence != j.Fence || e.ProcessID != process || e.Outcome != backend.OutcomeRunning || !e.FinishedAt.IsZero() ||
		e.Error != "" || e.ID != backend.ExecutionID(j.ID, j.Fence) {
		t.Errorf("execution %s finished %v; want job %d attempt %d fence %d of %s running, with no end",
			describeExec(e), e.FinishedAt, j.ID, j.Attempt, j.Fence, process)
	}
	p := precision(b)
	if d := e.StartedAt.Sub(j.ClaimedAt); d < -p || d > p {
		t.Errorf("running execution of job %d started at %v; want the claim's time %v", j.ID, e.StartedAt, j.ClaimedAt)
	}
}

// execRunning: a claimed job's execution is listed while it runs, under
// the ID it keeps when it ends; a crash re-run lists the crashed execution
// and the running one.
func execRunning(t *testing.T, h Harness) {
	b := newBackend(t, h)
	threshold := precision(b)
	dead, j := startRoot(t, b, defA)
	running := wantExecs(t, b, j.RunID, 1)[0]
	checkRunning(t, b, running, j, dead)
	if one := executions(t, b, j.RunID, j.ID); len(one) != 1 || one[0].ID != running.ID {
		t.Fatalf("executions of job %d: %d; want its running one", j.ID, len(one))
	}
	makeStale(t, b, dead, threshold)
	if _, err := b.Reap(testCtx(t), &backend.ReapParams{ProcessID: "reaper", Threshold: threshold}); err != nil {
		t.Fatalf("Reap: %v", err)
	}
	got := wantExecs(t, b, j.RunID, 1)
	checkExec(t, b, got[0], j, dead, backend.OutcomeCrashed)
	if got[0].ID != running.ID {
		t.Errorf("the crashed execution has ID %d; want %d, the one it had while running", got[0].ID, running.ID)
	}
	live := register(t, b, defA)
	j2 := claimOne(t, b, live, defA)
	got = wantExecs(t, b, j.RunID, 2)
	checkExec(t, b, got[0], j, dead, backend.OutcomeCrashed)
	checkRunning(t, b, got[1], j2, live)
	complete(t, b, j2, live, enc(t, "out"), backend.Plan{CompleteRun: true})
	got = wantExecs(t, b, j.RunID, 2)
	checkExec(t, b, got[1], j2, live, backend.OutcomeCompleted)
	if got[1].ID != backend.ExecutionID(j2.ID, j2.Fence) {
		t.Errorf("completed execution ID %d; want %d", got[1].ID, backend.ExecutionID(j2.ID, j2.Fence))
	}
}

// execRetryThenOK: a retried failure then a success list both, the failure
// with its error, the success with none (the job row keeps the last error).
func execRetryThenOK(t *testing.T, h Harness) {
	b := newBackend(t, h)
	proc, j := startRoot(t, b, defA)
	if _, err := b.Fail(testCtx(t), &backend.FailParams{JobID: j.ID, ProcessID: proc, Fence: j.Fence,
		Error: "flaky", Stack: "stack", Retry: true}); err != nil {
		t.Fatalf("Fail(Retry): %v", err)
	}
	j2 := claimOne(t, b, proc, defA)
	complete(t, b, j2, proc, enc(t, "ok"), backend.Plan{Jobs: []backend.NewJob{{NodeID: "next", Input: enc(t, 1)}}})
	got := wantExecs(t, b, j.RunID, 2)
	checkExec(t, b, got[0], j, proc, backend.OutcomeFailed)
	checkExec(t, b, got[1], j2, proc, backend.OutcomeCompleted)
	if got[0].Error != "flaky" || got[0].Stack != "stack" || got[1].Error != "" || got[1].Stack != "" {
		t.Errorf("errors %q/%q and %q/%q; want the failure's, then none", got[0].Error, got[0].Stack, got[1].Error, got[1].Stack)
	}
	if got[0].Attempt != 1 || got[1].Attempt != 2 || got[0].ID >= got[1].ID {
		t.Errorf("executions %s, %s; want attempts 1 then 2, in that order", describeExec(got[0]), describeExec(got[1]))
	}
	// Pages of one walk both, in order.
	var ids []int64
	var after int64
	for i := 0; i < 5; i++ {
		res, err := b.ListExecutions(testCtx(t), &backend.ListExecutionsParams{RunID: j.RunID, JobID: j.ID, Limit: 1, AfterID: after})
		if err != nil {
			t.Fatalf("ListExecutions: %v", err)
		}
		for _, e := range res.Executions {
			ids = append(ids, e.ID)
		}
		if after = res.Next; after == 0 {
			break
		}
	}
	if len(ids) != 2 || ids[0] != got[0].ID || ids[1] != got[1].ID {
		t.Errorf("pages of 1 listed %v; want %d, %d", ids, got[0].ID, got[1].ID)
	}
}

// execReviveKeeps: a revive keeps the execution that halted the run, with
// its outcome and error, once, before and after the re-run; a halt by a
// timeout stays a timeout.
func execReviveKeeps(t *testing.T, h Harness) {
	for _, outcome := range []backend.Outcome{backend.OutcomeFailed, backend.OutcomeTimeout} {
		b := newBackend(t, h)
		proc, j := startRoot(t, b, defA)
		res, err := b.Fail(testCtx(t), &backend.FailParams{JobID: j.ID, ProcessID: proc, Fence: j.Fence,
			Error: "broken", Stack: "halt stack", Cause: backend.HaltRetriesExhausted, Outcome: outcome})
		if err != nil || !res.Halted {
			t.Fatalf("Fail = %+v, %v; want the run halted", res, err)
		}
		halted := wantExecs(t, b, j.RunID, 1)[0]
		checkExec(t, b, halted, j, proc, outcome)
		if _, err := b.ReviveRun(testCtx(t), &backend.ReviveRunParams{RunID: j.RunID}); err != nil {
			t.Fatalf("ReviveRun: %v", err)
		}
		got := wantExecs(t, b, j.RunID, 1)[0]
		checkExec(t, b, got, j, proc, outcome)
		if got.ID != halted.ID || got.Error != "broken" || got.Stack != "halt stack" || !got.FinishedAt.Equal(halted.FinishedAt) {
			t.Errorf("after the revive: %s; want the halted execution %s as it was", describeExec(got), describeExec(halted))
		}
		j2 := claimOne(t, b, proc, defA)
		complete(t, b, j2, proc, enc(t, "ok"), backend.Plan{CompleteRun: true})
		all := wantExecs(t, b, j.RunID, 2)
		checkExec(t, b, all[0], j, proc, outcome)
		checkExec(t, b, all[1], j2, proc, backend.OutcomeCompleted)
		if all[0].ID != halted.ID || all[1].Attempt != 2 || all[1].Error != "" {
			t.Errorf("after the re-run: %s, %s; want the halted one, then attempt 2 completed", describeExec(all[0]), describeExec(all[1]))
		}
	}
}
