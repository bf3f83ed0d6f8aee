package conformance

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ductwork-go/ductwork/backend"
)

func testReaper(t *testing.T, h Harness) {
	runCases(t, h, map[string]caseFunc{
		"ConcurrentReapers":  reapConcurrent,
		"CrashRerun":         reapCrashRerun,
		"LiveNotReaped":      reapLiveNotReaped,
		"SelfNotReaped":      reapSelfNotReaped,
		"HeartbeatReaped":    reapHeartbeatReaped,
		"OrphanedJobs":       reapOrphanedJobs,
		"Deregister":         reapDeregister,
		"RegisterIdempotent": reapRegisterIdempotent,
	})
}

// reapConcurrent: several reapers at once reap each dead process exactly
// once and reset each of its jobs exactly once.
func reapConcurrent(t *testing.T, h Harness) {
	b := newBackend(t, h)
	const deadCount, reapers = 10, 4
	threshold := precision(b)
	dead := make([]string, deadCount)
	jobs := map[int64]*backend.Job{}
	for i := range dead {
		tr := trigger(t, b, defA, backend.NewJob{NodeID: "root"})
		dead[i] = register(t, b, defA)
		j := claimOne(t, b, dead[i], defA)
		if j.ID != tr.JobID {
			t.Fatalf("claimed job %d; want %d", j.ID, tr.JobID)
		}
		jobs[j.ID] = j
	}
	for _, p := range dead {
		makeStale(t, b, p, threshold)
	}
	// The reapers are not registered: registered ones would be stale by the
	// same tiny threshold and reap each other.
	ctx := testCtx(t)
	results := make([]*backend.ReapResult, reapers)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range reapers {
		wg.Go(func() {
			<-start
			res, err := b.Reap(ctx, &backend.ReapParams{ProcessID: "reaper-" + string(rune('a'+i)), Threshold: threshold})
			if err != nil {
				t.Errorf("Reap #%d: %v", i, err)
				return
			}
			results[i] = res
		})
	}
	close(start)
	wg.Wait()
	if t.Failed() {
		return
	}
	var reaped []string
	resetJobs := 0
	for _, r := range results {
		reaped = append(reaped, r.Processes...)
		resetJobs += r.Jobs
	}
	slices.Sort(reaped)
	want := slices.Sorted(slices.Values(dead))
	if !slices.Equal(reaped, want) {
		t.Errorf("reapers together reaped %v; want each of %v exactly once", reaped, want)
	}
	if resetJobs != deadCount {
		t.Errorf("reapers together reset %d jobs; want %d", resetJobs, deadCount)
	}
	for id, j := range jobs {
		info := jobByID(t, b, j.RunID, id)
		if info.Status != backend.JobPending || info.Crashes != 1 || info.Attempt != 1 || info.ProcessID != "" {
			t.Errorf("job %d after reaping = {status %q, crashes %d, attempt %d, process %q}; want {pending, 1, 1, \"\"}",
				id, info.Status, info.Crashes, info.Attempt, info.ProcessID)
		}
	}
	for _, p := range dead {
		_, err := b.Heartbeat(ctx, &backend.HeartbeatParams{ProcessID: p})
		wantErr(t, "Heartbeat of a reaped process", err, backend.ErrProcessNotFound)
	}
	res, err := b.Reap(ctx, &backend.ReapParams{ProcessID: "reaper-late", Threshold: threshold})
	if err != nil {
		t.Fatalf("Reap again: %v", err)
	}
	if len(res.Processes) != 0 || res.Jobs != 0 {
		t.Errorf("a second Reap reaped %v and %d jobs; want nothing", res.Processes, res.Jobs)
	}
}

// reapCrashRerun: a reaped job comes back with the same attempt, Crashes+1
// and a larger fence; the dead claim is stale.
func reapCrashRerun(t *testing.T, h Harness) {
	b := newBackend(t, h)
	threshold := precision(b)
	dead, j := startRoot(t, b, defA)
	makeStale(t, b, dead, threshold)
	res, err := b.Reap(testCtx(t), &backend.ReapParams{ProcessID: "reaper", Threshold: threshold})
	if err != nil {
		t.Fatalf("Reap: %v", err)
	}
	if !slices.Equal(res.Processes, []string{dead}) || res.Jobs != 1 {
		t.Fatalf("Reap = {processes %v, jobs %d}; want {[%s], 1}", res.Processes, res.Jobs, dead)
	}
	live := register(t, b, defA)
	j2 := claimOne(t, b, live, defA)
	if j2.ID != j.ID || j2.Attempt != j.Attempt || j2.Crashes != j.Crashes+1 || j2.Fence <= j.Fence {
		t.Fatalf("re-run %s; want job %d, attempt %d, crashes %d, fence > %d", describeJob(j2), j.ID, j.Attempt, j.Crashes+1, j.Fence)
	}
	_, err = b.Complete(testCtx(t), &backend.CompleteParams{JobID: j.ID, ProcessID: dead, Fence: j.Fence, Output: enc(t, "late")})
	wantErr(t, "Complete by the reaped process", err, backend.ErrStaleClaim)
	// A retry after a crash grows the attempt and keeps the crash count.
	if _, err := b.Fail(testCtx(t), &backend.FailParams{JobID: j2.ID, ProcessID: live, Fence: j2.Fence, Error: "boom", Retry: true}); err != nil {
		t.Fatalf("Fail(Retry): %v", err)
	}
	j3 := claimOne(t, b, live, defA)
	if j3.ID != j.ID || j3.Attempt != j.Attempt+1 || j3.Crashes != j2.Crashes {
		t.Errorf("retry %s; want attempt %d, crashes %d", describeJob(j3), j.Attempt+1, j2.Crashes)
	}
}

// reapLiveNotReaped: a process with a fresh heartbeat is not reaped by a
// large threshold, and keeps its job.
func reapLiveNotReaped(t *testing.T, h Harness) {
	b := newBackend(t, h)
	proc, j := startRoot(t, b, defA)
	for range 3 {
		res, err := b.Reap(testCtx(t), &backend.ReapParams{ProcessID: "reaper", Threshold: time.Hour})
		if err != nil {
			t.Fatalf("Reap: %v", err)
		}
		if len(res.Processes) != 0 || res.Jobs != 0 {
			t.Fatalf("Reap(threshold 1h) reaped %v and %d jobs; want nothing", res.Processes, res.Jobs)
		}
	}
	if _, err := b.Heartbeat(testCtx(t), &backend.HeartbeatParams{ProcessID: proc}); err != nil {
		t.Fatalf("Heartbeat of a live process: %v", err)
	}
	if info := jobByID(t, b, j.RunID, j.ID); info.Status != backend.JobRunning || info.ProcessID != proc {
		t.Fatalf("job = {status %q, process %q}; want running by %q", info.Status, info.ProcessID, proc)
	}
	complete(t, b, j, proc, enc(t, "ok"), backend.Plan{CompleteRun: true})
}

// reapSelfNotReaped: the reaper never reaps its own process, however stale.
func reapSelfNotReaped(t *testing.T, h Harness) {
	b := newBackend(t, h)
	threshold := precision(b)
	self, j := startRoot(t, b, defA)
	makeStale(t, b, self, threshold)
	res, err := b.Reap(testCtx(t), &backend.ReapParams{ProcessID: self, Threshold: threshold})
	if err != nil {
		t.Fatalf("Reap: %v", err)
	}
	if len(res.Processes) != 0 || res.Jobs != 0 {
		t.Fatalf("Reap by %s reaped %v and %d jobs; want nothing", self, res.Processes, res.Jobs)
	}
	if _, err := b.Heartbeat(testCtx(t), &backend.HeartbeatParams{ProcessID: self}); err != nil {
		t.Fatalf("Heartbeat of the reaper itself: %v", err)
	}
	complete(t, b, j, self, enc(t, "ok"), backend.Plan{CompleteRun: true})
}

// reapHeartbeatReaped: Heartbeat of a reaped or unknown process is
// ErrProcessNotFound.
func reapHeartbeatReaped(t *testing.T, h Harness) {
	b := newBackend(t, h)
	threshold := precision(b)
	proc := register(t, b, defA)
	makeStale(t, b, proc, threshold)
	res, err := b.Reap(testCtx(t), &backend.ReapParams{ProcessID: "reaper", Threshold: threshold})
	if err != nil {
		t.Fatalf("Reap: %v", err)
	}
	if !slices.Equal(res.Processes, []string{proc}) || res.Jobs != 0 {
		t.Fatalf("Reap = {processes %v, jobs %d}; want {[%s], 0}", res.Processes, res.Jobs, proc)
	}
	_, err = b.Heartbeat(testCtx(t), &backend.HeartbeatParams{ProcessID: proc})
	wantErr(t, "Heartbeat of a reaped process", err, backend.ErrProcessNotFound)
	_, err = b.Heartbeat(testCtx(t), &backend.HeartbeatParams{ProcessID: "never-registered"})
	wantErr(t, "Heartbeat of an unknown process", err, backend.ErrProcessNotFound)
	// Registering again brings it back.
	if _, err := b.RegisterProcess(testCtx(t), &backend.RegisterProcessParams{ProcessID: proc, Host: "h", PID: 2}); err != nil {
		t.Fatalf("RegisterProcess after being reaped: %v", err)
	}
	if _, err := b.Heartbeat(testCtx(t), &backend.HeartbeatParams{ProcessID: proc}); err != nil {
		t.Fatalf("Heartbeat after registering again: %v", err)
	}
}

// reapOrphanedJobs: a job left running by an owner with no process row is
// reset once its claim is older than the threshold.
func reapOrphanedJobs(t *testing.T, h Harness) {
	b := newBackend(t, h)
	threshold := precision(b)
	tr := trigger(t, b, defA, backend.NewJob{NodeID: "root"})
	j := claimOne(t, b, "never-registered", defA)
	info := jobByID(t, b, tr.RunID, j.ID)
	started := j.ClaimedAt
	if info.StartedAt != nil {
		started = *info.StartedAt
	}
	waitPast(t, b, started, 2*threshold+precision(b))
	res, err := b.Reap(testCtx(t), &backend.ReapParams{ProcessID: "reaper", Threshold: threshold})
	if err != nil {
		t.Fatalf("Reap: %v", err)
	}
	if res.Jobs != 1 {
		t.Errorf("Reap reset %d jobs; want the 1 orphaned job", res.Jobs)
	}
	info = jobByID(t, b, tr.RunID, j.ID)
	if info.Status != backend.JobPending || info.Crashes != 1 || info.Attempt != 1 {
		t.Errorf("orphaned job after Reap = {status %q, crashes %d, attempt %d}; want {pending, 1, 1}", info.Status, info.Crashes, info.Attempt)
	}
}

// reapDeregister: DeregisterProcess releases the process's jobs (counts
// unchanged: a release is not a crash) and removes it; it is idempotent.
func reapDeregister(t *testing.T, h Harness) {
	b := newBackend(t, h)
	proc, j := startRoot(t, b, defA)
	for i := range 2 {
		if err := b.DeregisterProcess(testCtx(t), &backend.DeregisterProcessParams{ProcessID: proc}); err != nil {
			t.Fatalf("DeregisterProcess #%d: %v", i+1, err)
		}
	}
	_, err := b.Heartbeat(testCtx(t), &backend.HeartbeatParams{ProcessID: proc})
	wantErr(t, "Heartbeat after DeregisterProcess", err, backend.ErrProcessNotFound)
	other := register(t, b, defA)
	j2 := claimOne(t, b, other, defA)
	if j2.ID != j.ID || j2.Attempt != j.Attempt || j2.Crashes != j.Crashes {
		t.Errorf("after DeregisterProcess claimed %s; want job %d, attempt %d, crashes %d (a release is not a crash)", describeJob(j2), j.ID, j.Attempt, j.Crashes)
	}
}

// reapRegisterIdempotent: registering the same ID twice works and refreshes
// the heartbeat.
func reapRegisterIdempotent(t *testing.T, h Harness) {
	b := newBackend(t, h)
	threshold := precision(b)
	proc := register(t, b, defA)
	makeStale(t, b, proc, threshold)
	if _, err := b.RegisterProcess(testCtx(t), &backend.RegisterProcessParams{ProcessID: proc, Host: "conformance", PID: 1,
		Definitions: []backend.DefinitionRef{defA}}); err != nil {
		t.Fatalf("RegisterProcess again: %v", err)
	}
	res, err := b.Reap(testCtx(t), &backend.ReapParams{ProcessID: "reaper", Threshold: time.Minute})
	if err != nil {
		t.Fatalf("Reap: %v", err)
	}
	if len(res.Processes) != 0 {
		t.Errorf("Reap(threshold 1m) after re-registering reaped %v; want nothing", res.Processes)
	}
}
