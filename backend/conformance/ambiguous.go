package conformance

import (
	"testing"

	"github.com/ductwork-go/ductwork/backend"
)

// A write whose reply is lost leaves its caller unable to tell whether it
// landed. These cases check what the contract gives that caller: every
// operation can be repeated and tells the repeat of a write that landed from
// one that did not, and a process can list the claims it holds.
func testAmbiguous(t *testing.T, h Harness) {
	runCases(t, h, map[string]caseFunc{
		"CompleteReplayKeepsClaimNext": ambiguousCompleteClaimNext,
		"HaltReplayed":                 ambiguousHalt,
		"RetryRepeatIsStale":           ambiguousRetry,
		"HeartbeatListsOwned":          ambiguousOwned,
		"TriggerKey":                   ambiguousTriggerKey,
	})
}

// ambiguousCompleteClaimNext: a completion with ClaimNext landed and its
// reply was lost; the retry is replayed, and the job that completion claimed
// is listed as owned by the process, with the fence that releases it.
func ambiguousCompleteClaimNext(t *testing.T, h Harness) {
	b := newBackend(t, h)
	proc, j := startRoot(t, b, defA)
	params := &backend.CompleteParams{JobID: j.ID, ProcessID: proc, Fence: j.Fence, Output: enc(t, "out"),
		Plan: backend.Plan{Jobs: []backend.NewJob{{NodeID: "s2", Input: enc(t, "in2")}}}, ClaimNext: 1}
	first, err := b.Complete(testCtx(t), params)
	if err != nil {
		t.Fatalf("Complete: %v", err)
	}
	if len(first.Claimed) != 1 {
		t.Skip("the backend claimed nothing for ClaimNext (allowed); nothing to recover")
	}
	lost := first.Claimed[0] // the reply that carried it is lost
	again, err := b.Complete(testCtx(t), params)
	if err != nil || !again.Replayed || len(again.Claimed) != 0 || again.NewJobs != 0 {
		t.Fatalf("retried Complete = %+v, %v; want Replayed, nothing new", again, err)
	}
	if n := len(listJobs(t, b, j.RunID)); n != 2 {
		t.Fatalf("run has %d jobs after the retry; want 2", n)
	}
	hb, err := b.Heartbeat(testCtx(t), &backend.HeartbeatParams{ProcessID: proc, Owned: true})
	if err != nil {
		t.Fatalf("Heartbeat(Owned): %v", err)
	}
	if len(hb.Owned) != 1 || hb.Owned[0].JobID != lost.ID || hb.Owned[0].Fence != lost.Fence {
		t.Fatalf("owned = %+v; want only job %d fence %d", hb.Owned, lost.ID, lost.Fence)
	}
	// Released as the execution it is: lost (a crash re-run).
	if _, err := b.Release(testCtx(t), &backend.ReleaseParams{JobID: lost.ID, ProcessID: proc, Fence: hb.Owned[0].Fence, Crashed: true}); err != nil {
		t.Fatalf("Release of the owned job: %v", err)
	}
	next := claimOne(t, b, proc, defA)
	if next.ID != lost.ID || next.Attempt != lost.Attempt || next.Crashes != lost.Crashes+1 {
		t.Fatalf("reclaimed %s; want job %d, same attempt, one more crash", describeJob(next), lost.ID)
	}
}

// ambiguousHalt: a halting Fail landed and its reply was lost; the retry is
// replayed and still reports Halted (so OnHalt runs once, on the retry),
// while the failure of a second job of the halted run reports Halted never.
func ambiguousHalt(t *testing.T, h Harness) {
	b := newBackend(t, h)
	proc, root := startRoot(t, b, defA)
	complete(t, b, root, proc, enc(t, "r"), backend.Plan{Jobs: children(t, "c", 2)})
	jobs := claim(t, b, proc, 2, defA)
	if len(jobs) != 2 {
		t.Fatalf("claimed %d jobs; want 2", len(jobs))
	}
	fail := func(j *backend.Job) *backend.FailResult {
		t.Helper()
		res, err := b.Fail(testCtx(t), &backend.FailParams{JobID: j.ID, ProcessID: proc, Fence: j.Fence, Error: "boom"})
		if err != nil {
			t.Fatalf("Fail %s: %v", describeJob(j), err)
		}
		return res
	}
	if res := fail(jobs[0]); !res.Halted || res.Replayed {
		t.Fatalf("first Fail = %+v; want Halted, not Replayed", res)
	}
	if res := fail(jobs[0]); !res.Halted || !res.Replayed {
		t.Fatalf("repeated Fail = %+v; want Halted and Replayed", res)
	}
	if res := fail(jobs[1]); res.Halted || res.Replayed {
		t.Fatalf("Fail of a second job = %+v; want neither Halted nor Replayed", res)
	}
	if res := fail(jobs[1]); res.Halted || !res.Replayed {
		t.Fatalf("repeated Fail of the second job = %+v; want Replayed, not Halted", res)
	}
	if r := getRun(t, b, root.RunID); r.Status != backend.RunHalted {
		t.Fatalf("run status %q; want halted", r.Status)
	}
}

// ambiguousRetry: a repeat of a retrying Fail that landed is ErrStaleClaim
// (the job is pending again and nobody's claim) and changes nothing more.
func ambiguousRetry(t *testing.T, h Harness) {
	b := newBackend(t, h)
	proc, j := startRoot(t, b, defA)
	p := &backend.FailParams{JobID: j.ID, ProcessID: proc, Fence: j.Fence, Error: "boom", Retry: true}
	if _, err := b.Fail(testCtx(t), p); err != nil {
		t.Fatalf("Fail(Retry): %v", err)
	}
	_, err := b.Fail(testCtx(t), p)
	wantErr(t, "repeated Fail(Retry)", err, backend.ErrStaleClaim)
	if info := jobByID(t, b, j.RunID, j.ID); info.Attempt != 2 || info.Status != backend.JobPending {
		t.Fatalf("job after the repeat: attempt %d status %q; want 2, pending", info.Attempt, info.Status)
	}
}

// ambiguousOwned: Heartbeat with Owned lists exactly the running jobs of the
// process, with their current fences.
func ambiguousOwned(t *testing.T, h Harness) {
	b := newBackend(t, h)
	proc, root := startRoot(t, b, defA)
	other := register(t, b, defA)
	complete(t, b, root, proc, enc(t, "r"), backend.Plan{Jobs: children(t, "c", 4)})
	mine := claim(t, b, proc, 2, defA)
	theirs := claim(t, b, other, 1, defA)
	if len(mine) != 2 || len(theirs) != 1 {
		t.Fatalf("claimed %d and %d; want 2 and 1", len(mine), len(theirs))
	}
	complete(t, b, mine[0], proc, enc(t, "x"), backend.Plan{})
	hb, err := b.Heartbeat(testCtx(t), &backend.HeartbeatParams{ProcessID: proc, Owned: true})
	if err != nil {
		t.Fatalf("Heartbeat(Owned): %v", err)
	}
	if len(hb.Owned) != 1 || hb.Owned[0] != (backend.OwnedJob{JobID: mine[1].ID, Fence: mine[1].Fence}) {
		t.Fatalf("owned = %+v; want only job %d fence %d", hb.Owned, mine[1].ID, mine[1].Fence)
	}
	plain, err := b.Heartbeat(testCtx(t), &backend.HeartbeatParams{ProcessID: proc})
	if err != nil || len(plain.Owned) != 0 {
		t.Fatalf("Heartbeat without Owned = %+v, %v; want no list", plain, err)
	}
}

// ambiguousTriggerKey: a keyed trigger is idempotent per pipeline: the
// repeat returns the same run with Existing, a different input under the
// same key is ErrKeyConflict, and nothing is written by either.
func ambiguousTriggerKey(t *testing.T, h Harness) {
	b := newBackend(t, h)
	keyed := func(def backend.DefinitionRef, key string, input []byte) (*backend.TriggerResult, error) {
		return b.Trigger(testCtx(t), &backend.TriggerParams{Pipeline: def.Pipeline, Fingerprint: def.Fingerprint,
			Input: input, Key: key, First: backend.NewJob{NodeID: "root", Input: input}})
	}
	key := randomID(t, "order")
	first, err := keyed(defA, key, enc(t, 1))
	if err != nil || first.Existing {
		t.Fatalf("first keyed Trigger = %+v, %v; want a new run", first, err)
	}
	again, err := keyed(defA, key, enc(t, 1))
	if err != nil || !again.Existing || again.RunID != first.RunID || again.JobID != first.JobID {
		t.Fatalf("repeated keyed Trigger = %+v, %v; want Existing run %d job %d", again, err, first.RunID, first.JobID)
	}
	_, err = keyed(defA, key, enc(t, 2))
	wantErr(t, "keyed Trigger with another input", err, backend.ErrKeyConflict)
	// Another version of the pipeline shares its keys.
	v2, err := keyed(defA2, key, enc(t, 1))
	if err != nil || !v2.Existing || v2.RunID != first.RunID {
		t.Fatalf("keyed Trigger of another version = %+v, %v; want Existing run %d", v2, err, first.RunID)
	}
	// Keys are per pipeline; no key never deduplicates.
	otherPipe, err := keyed(defB, key, enc(t, 1))
	if err != nil || otherPipe.Existing {
		t.Fatalf("same key in another pipeline = %+v, %v; want a new run", otherPipe, err)
	}
	for range 2 {
		if res, err := keyed(defA, "", enc(t, 1)); err != nil || res.Existing {
			t.Fatalf("unkeyed Trigger = %+v, %v; want a new run", res, err)
		}
	}
	runs, err := b.ListRuns(testCtx(t), &backend.ListRunsParams{Pipeline: defA.Pipeline})
	if err != nil || len(runs.Runs) != 3 {
		t.Fatalf("pipeline %s has %d runs (%v); want 3", defA.Pipeline, len(runs.Runs), err)
	}
	if jobs := listJobs(t, b, first.RunID); len(jobs) != 1 {
		t.Fatalf("the keyed run has %d jobs; want 1", len(jobs))
	}
}
