package conformance

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ductwork-go/ductwork/backend"
)

func testRetries(t *testing.T, h Harness) {
	runCases(t, h, map[string]caseFunc{
		"RetryLater":      retryLater,
		"RetryNow":        retryNow,
		"HaltOnce":        retryHaltOnce,
		"Revive":          retryRevive,
		"Cancel":          retryCancel,
		"RunStateErrors":  retryRunStateErrors,
		"CancelHalted":    retryCancelHalted,
		"HaltedNotClaims": retryHaltedNotClaimed,
	})
}

// retryLater: a retry an hour out is not claimable, has Attempt+1 and the
// error recorded.
func retryLater(t *testing.T, h Harness) {
	b := newBackend(t, h)
	proc, j := startRoot(t, b, defA)
	res, err := b.Fail(testCtx(t), &backend.FailParams{JobID: j.ID, ProcessID: proc, Fence: j.Fence, Error: "try later",
		Retry: true, RetryAfter: time.Hour})
	if err != nil {
		t.Fatalf("Fail(Retry, 1h): %v", err)
	}
	if res.Halted {
		t.Error("Fail with Retry reported Halted")
	}
	claimNone(t, b, proc, defA)
	info := jobByID(t, b, j.RunID, j.ID)
	if info.Status != backend.JobPending || info.Attempt != 2 || info.Error != "try later" || info.ProcessID != "" {
		t.Errorf("retried job = {status %q, attempt %d, error %q, process %q}; want {pending, 2, \"try later\", \"\"}",
			info.Status, info.Attempt, info.Error, info.ProcessID)
	}
	if soon := now(t, b).Add(50 * time.Minute); info.DueAt.Before(soon) {
		t.Errorf("retried job DueAt = %v; want about an hour from the database clock (after %v)", info.DueAt, soon)
	}
	if r := getRun(t, b, j.RunID); r.Status != backend.RunRunning {
		t.Errorf("run status after a retry = %q; want %q", r.Status, backend.RunRunning)
	}
}

// retryNow: a retry with no delay is claimable at once with Attempt+1, the
// same crash count and a larger fence.
func retryNow(t *testing.T, h Harness) {
	b := newBackend(t, h)
	proc, j := startRoot(t, b, defA)
	if _, err := b.Fail(testCtx(t), &backend.FailParams{JobID: j.ID, ProcessID: proc, Fence: j.Fence, Error: "again", Retry: true}); err != nil {
		t.Fatalf("Fail(Retry, 0): %v", err)
	}
	j2 := claimOne(t, b, proc, defA)
	if j2.ID != j.ID || j2.Attempt != 2 || j2.Crashes != 0 || j2.Fence <= j.Fence {
		t.Fatalf("retry claimed %s; want job %d, attempt 2, crashes 0, fence > %d", describeJob(j2), j.ID, j.Fence)
	}
	_, err := b.Complete(testCtx(t), &backend.CompleteParams{JobID: j.ID, ProcessID: proc, Fence: j.Fence})
	wantErr(t, "Complete with the failed attempt's fence", err, backend.ErrStaleClaim)
}

// haltedRun builds a run with a completed job, two failed jobs (one of them
// on its second attempt) and one pending job, halted by two concurrent
// Fails. It returns the process, the run ID, the completed job's ID, and
// the failed jobs' IDs.
func haltedRun(t *testing.T, b backend.Backend) (string, int64, int64, []int64) {
	t.Helper()
	proc, root := startRoot(t, b, defA)
	complete(t, b, root, proc, enc(t, "root-out"), backend.Plan{Jobs: []backend.NewJob{
		{NodeID: "x", Input: enc(t, "x")}, {NodeID: "y", Input: enc(t, "y")},
	}})
	js := claim(t, b, proc, 10, defA)
	if len(js) != 2 {
		t.Fatalf("claimed %d jobs; want 2", len(js))
	}
	// The first one fails once with a retry, so its attempt is 2 when it halts.
	if _, err := b.Fail(testCtx(t), &backend.FailParams{JobID: js[0].ID, ProcessID: proc, Fence: js[0].Fence, Error: "first", Retry: true}); err != nil {
		t.Fatalf("Fail(Retry): %v", err)
	}
	js[0] = claimOne(t, b, proc, defA)
	if js[0].Attempt != 2 {
		t.Fatalf("retried job has attempt %d; want 2", js[0].Attempt)
	}
	ctx := testCtx(t)
	halted := make([]bool, 2)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, j := range js {
		wg.Go(func() {
			<-start
			res, err := b.Fail(ctx, &backend.FailParams{JobID: j.ID, ProcessID: proc, Fence: j.Fence, Error: "fatal " + j.NodeID})
			if err != nil {
				t.Errorf("Fail of %s: %v", j.NodeID, err)
				return
			}
			halted[i] = res.Halted
		})
	}
	close(start)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	if halted[0] == halted[1] {
		t.Fatalf("Halted results %v; want true for exactly one of the two failing jobs", halted)
	}
	r := getRun(t, b, root.RunID)
	if r.Status != backend.RunHalted || (r.Error != "fatal x" && r.Error != "fatal y") {
		t.Fatalf("run = {status %q, error %q}; want halted with one of the jobs' errors", r.Status, r.Error)
	}
	for _, j := range js {
		if info := jobByID(t, b, root.RunID, j.ID); info.Status != backend.JobFailed || info.FinishedAt == nil {
			t.Fatalf("job %s = {status %q, finished %v}; want failed with FinishedAt", j.NodeID, info.Status, info.FinishedAt)
		}
	}
	return proc, root.RunID, root.ID, []int64{js[0].ID, js[1].ID}
}

// retryHaltOnce: two jobs of one run failing without retry halt the run, and
// only one of the Fails reports Halted.
func retryHaltOnce(t *testing.T, h Harness) {
	b := newBackend(t, h)
	proc, _, _, _ := haltedRun(t, b)
	claimNone(t, b, proc, defA)
}

// retryHaltedNotClaimed: a pending job of a halted run is not claimed.
func retryHaltedNotClaimed(t *testing.T, h Harness) {
	b := newBackend(t, h)
	proc, root := startRoot(t, b, defA)
	complete(t, b, root, proc, nil, backend.Plan{Jobs: []backend.NewJob{{NodeID: "x"}, {NodeID: "y", Delay: 300 * time.Millisecond}}})
	x := claimOne(t, b, proc, defA)
	res, err := b.Fail(testCtx(t), &backend.FailParams{JobID: x.ID, ProcessID: proc, Fence: x.Fence, Error: "fatal"})
	if err != nil || !res.Halted {
		t.Fatalf("Fail = %+v, %v; want Halted", res, err)
	}
	// Wait until y is due by the database clock, then check it stays unclaimed.
	for _, info := range listJobs(t, b, root.RunID) {
		if info.NodeID == "y" {
			waitPast(t, b, info.DueAt, precision(b))
		}
	}
	claimNone(t, b, proc, defA)
}

// retryRevive: ReviveRun makes the failed jobs due at once, keeping their
// attempt count (the re-run is the next attempt) and their last error, with
// RetryBase set to the attempt they failed on (a fresh retry budget), and
// leaves completed jobs untouched.
func retryRevive(t *testing.T, h Harness) {
	b := newBackend(t, h)
	proc, runID, rootID, failed := haltedRun(t, b)
	rootBefore := jobByID(t, b, runID, rootID)
	failedAttempt := map[int64]int{} // 2 for the job that was retried once, 1 for the other
	for _, id := range failed {
		failedAttempt[id] = jobByID(t, b, runID, id).Attempt
	}
	res, err := b.ReviveRun(testCtx(t), &backend.ReviveRunParams{RunID: runID})
	if err != nil {
		t.Fatalf("ReviveRun: %v", err)
	}
	if res.Jobs != 2 {
		t.Errorf("ReviveRun revived %d jobs; want 2", res.Jobs)
	}
	if r := getRun(t, b, runID); r.Status != backend.RunRunning {
		t.Errorf("revived run status = %q; want %q", r.Status, backend.RunRunning)
	}
	for _, id := range failed {
		a := failedAttempt[id]
		if info := jobByID(t, b, runID, id); info.Status != backend.JobPending || info.Attempt != a+1 ||
			info.RetryBase != a || !strings.HasPrefix(info.Error, "fatal") {
			t.Errorf("revived job %d = {status %q, attempt %d, retry base %d, error %q}; want pending, attempt %d, retry base %d, the error kept",
				id, info.Status, info.Attempt, info.RetryBase, info.Error, a+1, a)
		}
	}
	got := map[int64]bool{}
	for _, j := range claim(t, b, proc, 10, defA) {
		got[j.ID] = true
		if a := failedAttempt[j.ID]; j.Attempt != a+1 || j.RetryBase != a {
			t.Errorf("revived %s, retry base %d; want attempt %d, retry base %d", describeJob(j), j.RetryBase, a+1, a)
		}
	}
	if len(got) != 2 || !got[failed[0]] || !got[failed[1]] {
		t.Errorf("after ReviveRun claimed %v; want exactly the failed jobs %v", got, failed)
	}
	if diff := sameJobRow(rootBefore, jobByID(t, b, runID, rootID)); diff != "" {
		t.Errorf("ReviveRun changed a completed job: %s", diff)
	}
	_, err = b.ReviveRun(testCtx(t), &backend.ReviveRunParams{RunID: runID})
	wantErr(t, "ReviveRun of a running run", err, backend.ErrRunState)
}

// retryCancel: a cancelled run's pending jobs are never claimed.
func retryCancel(t *testing.T, h Harness) {
	b := newBackend(t, h)
	proc, root := startRoot(t, b, defA)
	complete(t, b, root, proc, nil, backend.Plan{Jobs: children(t, "child", 3)})
	if _, err := b.CancelRun(testCtx(t), &backend.CancelRunParams{RunID: root.RunID, Reason: "operator said so"}); err != nil {
		t.Fatalf("CancelRun: %v", err)
	}
	r := getRun(t, b, root.RunID)
	if r.Status != backend.RunCancelled || r.Error != "operator said so" {
		t.Errorf("cancelled run = {status %q, error %q}; want {%q, \"operator said so\"}", r.Status, r.Error, backend.RunCancelled)
	}
	claimNone(t, b, proc, defA)
	_, err := b.CancelRun(testCtx(t), &backend.CancelRunParams{RunID: root.RunID})
	wantErr(t, "CancelRun of a cancelled run", err, backend.ErrRunState)
	_, err = b.ReviveRun(testCtx(t), &backend.ReviveRunParams{RunID: root.RunID})
	wantErr(t, "ReviveRun of a cancelled run", err, backend.ErrRunState)
}

// retryRunStateErrors: CancelRun and ReviveRun of unknown runs are
// ErrRunNotFound; ReviveRun of a running run is ErrRunState.
func retryRunStateErrors(t *testing.T, h Harness) {
	b := newBackend(t, h)
	_, err := b.CancelRun(testCtx(t), &backend.CancelRunParams{RunID: 987654321})
	wantErr(t, "CancelRun(unknown)", err, backend.ErrRunNotFound)
	_, err = b.ReviveRun(testCtx(t), &backend.ReviveRunParams{RunID: 987654321})
	wantErr(t, "ReviveRun(unknown)", err, backend.ErrRunNotFound)
	tr := trigger(t, b, defA, backend.NewJob{NodeID: "root"})
	_, err = b.ReviveRun(testCtx(t), &backend.ReviveRunParams{RunID: tr.RunID})
	wantErr(t, "ReviveRun of a running run", err, backend.ErrRunState)
}

// retryCancelHalted: a halted run can be cancelled, and then not revived.
func retryCancelHalted(t *testing.T, h Harness) {
	b := newBackend(t, h)
	proc, runID, _, _ := haltedRun(t, b)
	if _, err := b.CancelRun(testCtx(t), &backend.CancelRunParams{RunID: runID, Reason: "give up"}); err != nil {
		t.Fatalf("CancelRun of a halted run: %v", err)
	}
	if r := getRun(t, b, runID); r.Status != backend.RunCancelled {
		t.Errorf("run status = %q; want %q", r.Status, backend.RunCancelled)
	}
	_, err := b.ReviveRun(testCtx(t), &backend.ReviveRunParams{RunID: runID})
	wantErr(t, "ReviveRun of a cancelled run", err, backend.ErrRunState)
	claimNone(t, b, proc, defA)
}
