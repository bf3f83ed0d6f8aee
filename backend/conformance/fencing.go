package conformance

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/ductwork-go/ductwork/backend"
)

func testFencing(t *testing.T, h Harness) {
	runCases(t, h, map[string]caseFunc{
		"StaleAmongConcurrent":  fencingStaleAmongConcurrent,
		"FailedAmongConcurrent": fencingFailedAmongConcurrent,
		"StaleFence":            fencingStaleFence,
		"WrongOwner":            fencingWrongOwner,
		"CompleteTwice":         fencingCompleteTwice,
		"ReleaseReclaim":        fencingReleaseReclaim,
		"ReleaseCrashed":        fencingReleaseCrashed,
		"CompleteRacesReap":     fencingCompleteRacesReap,
		"StaleCompleteNoOps":    fencingStaleCompleteNoOps,
	})
}

// fencedOps tries Complete, Fail (both modes) and Release of job with the
// given fence and owner, and checks that each is ErrStaleClaim and that the
// job's stored row did not change.
func fencedOps(t *testing.T, b backend.Backend, j *backend.Job, owner string, fence int64, why string) {
	t.Helper()
	before := jobByID(t, b, j.RunID, j.ID)
	ctx := testCtx(t)
	_, err := b.Complete(ctx, &backend.CompleteParams{JobID: j.ID, ProcessID: owner, Fence: fence, Output: enc(t, "stale"),
		Plan: backend.Plan{Jobs: []backend.NewJob{{NodeID: "next"}}, CompleteRun: true}})
	wantErr(t, "Complete with "+why, err, backend.ErrStaleClaim)
	_, err = b.Fail(ctx, &backend.FailParams{JobID: j.ID, ProcessID: owner, Fence: fence, Error: "stale", Retry: true})
	wantErr(t, "Fail(Retry) with "+why, err, backend.ErrStaleClaim)
	_, err = b.Fail(ctx, &backend.FailParams{JobID: j.ID, ProcessID: owner, Fence: fence, Error: "stale"})
	wantErr(t, "Fail with "+why, err, backend.ErrStaleClaim)
	_, err = b.Release(ctx, &backend.ReleaseParams{JobID: j.ID, ProcessID: owner, Fence: fence})
	wantErr(t, "Release with "+why, err, backend.ErrStaleClaim)
	after := jobByID(t, b, j.RunID, j.ID)
	if diff := sameJobRow(before, after); diff != "" {
		t.Fatalf("a rejected call with %s changed the job: %s", why, diff)
	}
	if n := len(listJobs(t, b, j.RunID)); n != 1 {
		t.Fatalf("a rejected Complete with %s inserted jobs: the run has %d", why, n)
	}
	if r := getRun(t, b, j.RunID); r.Status != backend.RunRunning {
		t.Fatalf("a rejected call with %s moved the run to %q", why, r.Status)
	}
}

// fencingStaleFence: calls with an old or future fence are ErrStaleClaim and
// change nothing; the right fence then works.
func fencingStaleFence(t *testing.T, h Harness) {
	b := newBackend(t, h)
	proc, j := startRoot(t, b, defA)
	fencedOps(t, b, j, proc, j.Fence-1, "an older fence")
	fencedOps(t, b, j, proc, j.Fence+1, "a newer fence")
	complete(t, b, j, proc, enc(t, "done"), backend.Plan{CompleteRun: true})
}

// fencingWrongOwner: calls with the right fence but another owner are
// ErrStaleClaim and change nothing.
func fencingWrongOwner(t *testing.T, h Harness) {
	b := newBackend(t, h)
	proc, j := startRoot(t, b, defA)
	other := register(t, b, defA)
	fencedOps(t, b, j, other, j.Fence, "another process's ID")
	fencedOps(t, b, j, "", j.Fence, "an empty process ID")
	complete(t, b, j, proc, enc(t, "done"), backend.Plan{CompleteRun: true})
}

// fencingCompleteTwice: a second Complete with the same claim (a retry after
// a lost reply) is reported as replayed and changes nothing: the first output
// and plan stay, the second plan is not applied.
func fencingCompleteTwice(t *testing.T, h Harness) {
	b := newBackend(t, h)
	proc, j := startRoot(t, b, defA)
	complete(t, b, j, proc, enc(t, "first"), backend.Plan{Jobs: []backend.NewJob{{NodeID: "next"}}})
	res, err := b.Complete(testCtx(t), &backend.CompleteParams{JobID: j.ID, ProcessID: proc, Fence: j.Fence, Output: enc(t, "second"),
		Plan: backend.Plan{Jobs: []backend.NewJob{{NodeID: "other"}}}})
	if err != nil || !res.Replayed || res.NewJobs != 0 || len(res.Claimed) != 0 {
		t.Fatalf("second Complete = %+v, %v; want Replayed with no new or claimed jobs", res, err)
	}
	info := jobByID(t, b, j.RunID, j.ID)
	if !equalBytes(info.Output, enc(t, "first")) {
		t.Errorf("job output = %s; want the first completion's", short(info.Output))
	}
	if n := len(listJobs(t, b, j.RunID)); n != 2 {
		t.Errorf("run has %d jobs; want 2 (the second plan must not apply)", n)
	}
	_, err = b.Fail(testCtx(t), &backend.FailParams{JobID: j.ID, ProcessID: proc, Fence: j.Fence, Error: "late"})
	wantErr(t, "Fail after Complete", err, backend.ErrStaleClaim)
	_, err = b.Release(testCtx(t), &backend.ReleaseParams{JobID: j.ID, ProcessID: proc, Fence: j.Fence})
	wantErr(t, "Release after Complete", err, backend.ErrStaleClaim)
	// Another process presenting the same fence is no replay.
	_, err = b.Complete(testCtx(t), &backend.CompleteParams{JobID: j.ID, ProcessID: proc + "-other", Fence: j.Fence, Output: enc(t, "x")})
	wantErr(t, "Complete by another owner", err, backend.ErrStaleClaim)
}

// fencingReleaseReclaim: a released job is due at once with the same
// attempt and crash counts (a release is not a crash); the new claim has a larger fence and the old one is stale.
func fencingReleaseReclaim(t *testing.T, h Harness) {
	b := newBackend(t, h)
	proc, j := startRoot(t, b, defA)
	if _, err := b.Release(testCtx(t), &backend.ReleaseParams{JobID: j.ID, ProcessID: proc, Fence: j.Fence}); err != nil {
		t.Fatalf("Release: %v", err)
	}
	info := jobByID(t, b, j.RunID, j.ID)
	if info.Status != backend.JobPending || info.ProcessID != "" {
		t.Errorf("released job = {status %q, process %q}; want pending with no process", info.Status, info.ProcessID)
	}
	other := register(t, b, defA)
	j2 := claimOne(t, b, other, defA)
	if j2.ID != j.ID || j2.Attempt != j.Attempt || j2.Crashes != j.Crashes || j2.Fence <= j.Fence {
		t.Fatalf("reclaimed %s; want job %d, attempt %d, crashes %d, fence > %d", describeJob(j2), j.ID, j.Attempt, j.Crashes, j.Fence)
	}
	fencedOps(t, b, j, proc, j.Fence, "the fence of a released claim")
	complete(t, b, j2, other, enc(t, "done"), backend.Plan{CompleteRun: true})
}

// fencingReleaseCrashed: a release marked Crashed counts one crash re-run,
// exactly as a reap would, and leaves the attempt alone; the claim is fenced
// like any release.
func fencingReleaseCrashed(t *testing.T, h Harness) {
	b := newBackend(t, h)
	proc, j := startRoot(t, b, defA)
	if _, err := b.Release(testCtx(t), &backend.ReleaseParams{JobID: j.ID, ProcessID: proc, Fence: j.Fence, Crashed: true}); err != nil {
		t.Fatalf("Release(Crashed): %v", err)
	}
	j2 := claimOne(t, b, proc, defA)
	if j2.ID != j.ID || j2.Attempt != j.Attempt || j2.Crashes != j.Crashes+1 || j2.Fence <= j.Fence {
		t.Fatalf("reclaimed %s; want job %d, attempt %d, crashes %d, fence > %d", describeJob(j2), j.ID, j.Attempt, j.Crashes+1, j.Fence)
	}
	_, err := b.Release(testCtx(t), &backend.ReleaseParams{JobID: j.ID, ProcessID: proc, Fence: j.Fence, Crashed: true})
	wantErr(t, "Release(Crashed) with the fence of a released claim", err, backend.ErrStaleClaim)
	if info := jobByID(t, b, j.RunID, j.ID); info.Crashes != j.Crashes+1 {
		t.Fatalf("a stale Release(Crashed) changed the crash count to %d", info.Crashes)
	}
	complete(t, b, j2, proc, enc(t, "done"), backend.Plan{CompleteRun: true})
}

// fencingStaleCompleteNoOps: a stale Complete of a reclaimed job does not
// apply its plan (no new jobs, no arrival, no run completion).
func fencingStaleCompleteNoOps(t *testing.T, h Harness) {
	b := newBackend(t, h)
	proc, root := startRoot(t, b, defA)
	complete(t, b, root, proc, nil, backend.Plan{
		Jobs:      []backend.NewJob{{NodeID: "branch", Scope: "0"}},
		OpenJoins: []backend.OpenJoin{{NodeID: "join", Expected: 1}},
	})
	j := claimOne(t, b, proc, defA)
	if _, err := b.Release(testCtx(t), &backend.ReleaseParams{JobID: j.ID, ProcessID: proc, Fence: j.Fence}); err != nil {
		t.Fatalf("Release: %v", err)
	}
	j2 := claimOne(t, b, proc, defA)
	_, err := b.Complete(testCtx(t), &backend.CompleteParams{JobID: j.ID, ProcessID: proc, Fence: j.Fence, Output: enc(t, "stale"),
		Plan: backend.Plan{Arrive: &backend.Arrival{NodeID: "join", Slot: 0}, Jobs: []backend.NewJob{{NodeID: "extra"}}, CompleteRun: true}})
	wantErr(t, "Complete with the released claim's fence", err, backend.ErrStaleClaim)
	if n := len(listJobs(t, b, root.RunID)); n != 2 {
		t.Fatalf("run has %d jobs after a stale Complete; want 2", n)
	}
	claimNone(t, b, proc, defA)
	res := complete(t, b, j2, proc, enc(t, "fresh"), backend.Plan{Arrive: &backend.Arrival{NodeID: "join", Slot: 0}})
	if !res.JoinFired {
		t.Errorf("the fresh claim's arrival did not fire the join")
	}
}

// fencingCompleteRacesReap: a dead process's Complete races a reaper that
// resets and reclaims the job; exactly one Complete wins, repeatedly.
func fencingCompleteRacesReap(t *testing.T, h Harness) {
	b := newBackend(t, h)
	threshold := precision(b)
	reaper := register(t, b, defA)
	ctx := testCtx(t)
	const rounds = 15
	for round := range rounds {
		tr := trigger(t, b, defA, backend.NewJob{NodeID: "root"})
		dead := register(t, b, defA)
		j := claimOne(t, b, dead, defA)
		if j.ID != tr.JobID {
			t.Fatalf("round %d: claimed job %d; want %d", round, j.ID, tr.JobID)
		}
		makeStale(t, b, dead, threshold)
		outDead, outReaper := enc(t, "dead"), enc(t, "reaper")
		var (
			wg                 sync.WaitGroup
			errDead, errReaper error
			reaperClaimed      bool
		)
		start := make(chan struct{})
		wg.Go(func() {
			<-start
			_, errDead = b.Complete(ctx, &backend.CompleteParams{JobID: j.ID, ProcessID: dead, Fence: j.Fence, Output: outDead,
				Plan: backend.Plan{CompleteRun: true}})
		})
		// reclaim claims the job for the reaper and completes it; it reports
		// false when there was nothing to claim.
		reclaim := func() (bool, error) {
			res, err := b.Claim(ctx, &backend.ClaimParams{ProcessID: reaper, Limit: 1, Definitions: []backend.DefinitionRef{defA}})
			if err != nil || len(res.Jobs) == 0 {
				return false, err
			}
			rj := res.Jobs[0]
			if rj.ID != j.ID || rj.Fence <= j.Fence || rj.Crashes != j.Crashes+1 || rj.Attempt != j.Attempt {
				return true, errors.New("reclaimed " + describeJob(rj) + "; want the same job, a larger fence, crashes+1, same attempt")
			}
			_, err = b.Complete(ctx, &backend.CompleteParams{JobID: rj.ID, ProcessID: reaper, Fence: rj.Fence, Output: outReaper,
				Plan: backend.Plan{CompleteRun: true}})
			return true, err
		}
		wg.Go(func() {
			<-start
			if _, err := b.Reap(ctx, &backend.ReapParams{ProcessID: reaper, Threshold: threshold}); err != nil {
				errReaper = err
				return
			}
			reaperClaimed, errReaper = reclaim()
		})
		close(start)
		wg.Wait()
		// With SKIP LOCKED a claim may pass over the row while the dead
		// process's Complete briefly locks it, so an empty claim is not yet
		// an answer: poll until the job is completed or reclaimed.
		if errReaper == nil && !reaperClaimed {
			waitFor(t, 10*time.Second, "the reset job to be claimable or completed", func() bool {
				reaperClaimed, errReaper = reclaim()
				return reaperClaimed || errReaper != nil || jobByID(t, b, tr.RunID, tr.JobID).Status == backend.JobCompleted
			})
		}
		if errReaper != nil {
			t.Fatalf("round %d: reaper side: %v", round, errReaper)
		}
		deadWon := errDead == nil
		if errDead != nil && !errors.Is(errDead, backend.ErrStaleClaim) {
			t.Fatalf("round %d: the dead process's Complete: %v; want nil or ErrStaleClaim", round, errDead)
		}
		if deadWon == reaperClaimed {
			t.Fatalf("round %d: dead process won: %v, reaper reclaimed and completed: %v; want exactly one winner", round, deadWon, reaperClaimed)
		}
		want := outReaper
		if deadWon {
			want = outDead
		}
		info := jobByID(t, b, tr.RunID, tr.JobID)
		if info.Status != backend.JobCompleted || !equalBytes(info.Output, want) {
			t.Fatalf("round %d: job = {status %q, output %s}; want completed with %s", round, info.Status, short(info.Output), short(want))
		}
		if r := getRun(t, b, tr.RunID); r.Status != backend.RunCompleted || !equalBytes(r.Output, want) {
			t.Fatalf("round %d: run = {status %q, output %s}; want completed with %s", round, r.Status, short(r.Output), short(want))
		}
		// Keep the reaper alive for the next round.
		if _, err := b.Heartbeat(ctx, &backend.HeartbeatParams{ProcessID: reaper}); err != nil {
			t.Fatalf("Heartbeat(reaper): %v", err)
		}
	}
}

// fencingStaleAmongConcurrent: 16 completions race (a backend may commit
// them together); the 4 with a stale fence fail with ErrStaleClaim and change
// nothing, the 12 others commit with their plans.
func fencingStaleAmongConcurrent(t *testing.T, h Harness) {
	b := newBackend(t, h)
	def := backend.DefinitionRef{Pipeline: "fencing-concurrent", Fingerprint: "v1"}
	proc, root := startRoot(t, b, def)
	complete(t, b, root, proc, enc(t, "root"), backend.Plan{Jobs: children(t, "item", 16)})
	jobs := claim(t, b, proc, 16, def)
	if len(jobs) != 16 {
		t.Fatalf("claimed %d jobs; want 16", len(jobs))
	}
	before := map[int64]*backend.JobInfo{}
	for _, j := range jobs {
		before[j.ID] = jobByID(t, b, j.RunID, j.ID)
	}
	errs := make([]error, len(jobs))
	var wg sync.WaitGroup
	for i, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fence := j.Fence
			if i%4 == 0 {
				fence++ // stale
			}
			_, errs[i] = b.Complete(testCtx(t), &backend.CompleteParams{
				JobID: j.ID, ProcessID: proc, Fence: fence, Output: enc(t, i),
				Plan: backend.Plan{Jobs: []backend.NewJob{{NodeID: "after", Scope: j.Scope}}},
			})
		}()
	}
	wg.Wait()
	for i, j := range jobs {
		after := jobByID(t, b, j.RunID, j.ID)
		if i%4 == 0 {
			wantErr(t, "stale Complete among concurrent ones", errs[i], backend.ErrStaleClaim)
			if diff := sameJobRow(before[j.ID], after); diff != "" {
				t.Fatalf("stale Complete of job %d changed it: %s", j.ID, diff)
			}
			continue
		}
		if errs[i] != nil {
			t.Fatalf("Complete of job %d: %v", j.ID, errs[i])
		}
		if after.Status != backend.JobCompleted {
			t.Fatalf("job %d is %s after its Complete", j.ID, after.Status)
		}
	}
	n := 0
	for _, j := range listJobs(t, b, root.RunID) {
		if j.NodeID == "after" {
			n++
		}
	}
	if n != 12 {
		t.Fatalf("%d follow-up jobs; want 12 (the stale completions' plans must not apply)", n)
	}
}

// fencingFailedAmongConcurrent: 16 completions race (a backend may commit
// them together), each inserting a follow-up job and claiming it
// (ClaimNext); the 4 whose plan fails part-way (after its job is inserted,
// an arrival at a join never opened) fail with a permanent error and change
// nothing, the 12 others commit, and each holds the claim of its follow-up.
func fencingFailedAmongConcurrent(t *testing.T, h Harness) {
	b := newBackend(t, h)
	def := backend.DefinitionRef{Pipeline: "fencing-failed-concurrent", Fingerprint: "v1"}
	proc, root := startRoot(t, b, def)
	complete(t, b, root, proc, enc(t, "root"), backend.Plan{Jobs: children(t, "item", 16)})
	jobs := claim(t, b, proc, 16, def)
	if len(jobs) != 16 {
		t.Fatalf("claimed %d jobs; want 16", len(jobs))
	}
	before := map[int64]*backend.JobInfo{}
	for _, j := range jobs {
		before[j.ID] = jobByID(t, b, j.RunID, j.ID)
	}
	errs := make([]error, len(jobs))
	results := make([]*backend.CompleteResult, len(jobs))
	var wg sync.WaitGroup
	for i, j := range jobs {
		wg.Go(func() {
			plan := backend.Plan{Jobs: []backend.NewJob{{NodeID: "after", Scope: j.Scope, Input: enc(t, i)}}}
			if i%4 == 1 {
				plan.Arrive = &backend.Arrival{NodeID: "nowhere", Scope: j.Scope}
			}
			results[i], errs[i] = b.Complete(testCtx(t), &backend.CompleteParams{
				JobID: j.ID, ProcessID: proc, Fence: j.Fence, Output: enc(t, i), Plan: plan, ClaimNext: 1,
			})
		})
	}
	wg.Wait()
	after := map[string]*backend.JobInfo{}
	for _, info := range listJobs(t, b, root.RunID) {
		if info.NodeID == "after" {
			after[info.Scope] = info
		}
	}
	for i, j := range jobs {
		row := jobByID(t, b, j.RunID, j.ID)
		if i%4 == 1 {
			if errs[i] == nil || !backend.IsPermanent(errs[i]) {
				t.Fatalf("Complete of job %d with a failing plan = %v; want a permanent error", j.ID, errs[i])
			}
			if diff := sameJobRow(before[j.ID], row); diff != "" {
				t.Fatalf("failed Complete of job %d changed it: %s", j.ID, diff)
			}
			if a := after[j.Scope]; a != nil {
				t.Fatalf("failed Complete of job %d left its follow-up job %d", j.ID, a.ID)
			}
			continue
		}
		if errs[i] != nil {
			t.Fatalf("Complete of job %d: %v", j.ID, errs[i])
		}
		if row.Status != backend.JobCompleted {
			t.Fatalf("job %d is %s after its Complete", j.ID, row.Status)
		}
		a := after[j.Scope]
		if a == nil {
			t.Fatalf("Complete of job %d inserted no follow-up job", j.ID)
		}
		for _, c := range results[i].Claimed {
			if c.ID != a.ID || c.NodeID != "after" || c.Scope != j.Scope || c.RunID != root.RunID || string(c.Input) != string(enc(t, i)) {
				t.Fatalf("Complete of job %d claimed %+v; want its follow-up job %d", j.ID, c, a.ID)
			}
			if a.Status != backend.JobRunning || a.Fence != c.Fence || a.ProcessID != proc {
				t.Fatalf("claimed follow-up job %d is {%s, fence %d, owner %q}; want {running, fence %d, owner %q}",
					a.ID, a.Status, a.Fence, a.ProcessID, c.Fence, proc)
			}
			complete(t, b, c, proc, enc(t, "done"), backend.Plan{})
		}
	}
	if len(after) != 12 {
		t.Fatalf("%d follow-up jobs; want 12 (the failed completions' plans must not apply)", len(after))
	}
}
