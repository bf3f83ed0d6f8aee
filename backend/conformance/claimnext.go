package conformance

import (
	"testing"
	"time"

	"github.com/ductwork-go/ductwork/backend"
)

func testClaimNext(t *testing.T, h Harness) {
	runCases(t, h, map[string]caseFunc{
		"ClaimsDueNewJob":   claimNextDue,
		"NotDelayed":        claimNextNotDelayed,
		"NotCancelledRun":   claimNextCancelled,
		"FiredJoinWithArgs": claimNextJoin,
	})
}

// completeNext completes j with ClaimNext 1.
func completeNext(t *testing.T, b backend.Backend, j *backend.Job, process string, plan backend.Plan) *backend.CompleteResult {
	t.Helper()
	res, err := b.Complete(testCtx(t), &backend.CompleteParams{
		JobID: j.ID, ProcessID: process, Fence: j.Fence, Output: enc(t, "out"), Plan: plan, ClaimNext: 1,
	})
	if err != nil {
		t.Fatalf("Complete(job %d, ClaimNext 1): %v", j.ID, err)
	}
	if len(res.Claimed) > 1 {
		t.Fatalf("ClaimNext 1 claimed %d jobs", len(res.Claimed))
	}
	return res
}

// claimNextDue: the job claimed by ClaimNext is the plan's first due job,
// owned by the completing process with a fence that Complete accepts, and no
// other claimer gets it.
func claimNextDue(t *testing.T, h Harness) {
	b := newBackend(t, h)
	def := backend.DefinitionRef{Pipeline: "claimnext", Fingerprint: "v1"}
	proc, root := startRoot(t, b, def)
	res := completeNext(t, b, root, proc, backend.Plan{Jobs: []backend.NewJob{
		{NodeID: "next", Input: enc(t, 7)}, {NodeID: "other", Input: enc(t, 8)},
	}})
	if len(res.Claimed) == 0 {
		t.Skip("the backend claims nothing with ClaimNext (allowed; the caller claims instead)")
	}
	j := res.Claimed[0]
	if j.NodeID != "next" || j.RunID != root.RunID || j.Attempt != 1 || j.Fence == 0 {
		t.Fatalf("claimed %s; want node next of run %d, attempt 1, a fence", describeJob(j), root.RunID)
	}
	if n, ok := decInt(t, j.Input); !ok || n != 7 {
		t.Fatalf("claimed job input %q; want 7", j.Input)
	}
	info := jobByID(t, b, j.RunID, j.ID)
	if info.Status != backend.JobRunning || info.ProcessID != proc || info.Fence != j.Fence {
		t.Fatalf("stored job %+v; want running, owned by %s, fence %d", info, proc, j.Fence)
	}
	other := register(t, b, def)
	got := claim(t, b, other, 10, def)
	if len(got) != 1 || got[0].NodeID != "other" {
		t.Fatalf("another claimer got %d jobs; want only the unclaimed one", len(got))
	}
	complete(t, b, j, proc, enc(t, "done"), backend.Plan{})
}

// claimNextNotDelayed: a delayed new job is not claimed early.
func claimNextNotDelayed(t *testing.T, h Harness) {
	b := newBackend(t, h)
	def := backend.DefinitionRef{Pipeline: "claimnext-delay", Fingerprint: "v1"}
	proc, root := startRoot(t, b, def)
	res := completeNext(t, b, root, proc, backend.Plan{Jobs: []backend.NewJob{{NodeID: "later", Delay: time.Hour}}})
	if len(res.Claimed) != 0 {
		t.Fatalf("ClaimNext claimed a job due in an hour: %s", describeJob(res.Claimed[0]))
	}
}

// claimNextCancelled: no job of a cancelled run is claimed: the completion
// of its running job is stale (the cancel took the claim) and claims nothing.
func claimNextCancelled(t *testing.T, h Harness) {
	b := newBackend(t, h)
	def := backend.DefinitionRef{Pipeline: "claimnext-cancel", Fingerprint: "v1"}
	proc, root := startRoot(t, b, def)
	if _, err := b.CancelRun(testCtx(t), &backend.CancelRunParams{RunID: root.RunID}); err != nil {
		t.Fatal(err)
	}
	res, err := b.Complete(testCtx(t), &backend.CompleteParams{JobID: root.ID, ProcessID: proc, Fence: root.Fence,
		Plan: backend.Plan{Jobs: []backend.NewJob{{NodeID: "next"}}}, ClaimNext: 1})
	wantErr(t, "Complete with ClaimNext after CancelRun", err, backend.ErrStaleClaim)
	if res != nil && len(res.Claimed) != 0 {
		t.Fatalf("ClaimNext claimed a job of a cancelled run: %s", describeJob(res.Claimed[0]))
	}
	claimNone(t, b, proc, def)
}

// claimNextJoin: the last arrival at a join claims the join's job, with its
// inputs in slot order.
func claimNextJoin(t *testing.T, h Harness) {
	b := newBackend(t, h)
	def := backend.DefinitionRef{Pipeline: "claimnext-join", Fingerprint: "v1"}
	proc, root := startRoot(t, b, def)
	complete(t, b, root, proc, enc(t, "root"), backend.Plan{
		OpenJoins: []backend.OpenJoin{{NodeID: "gather", Expected: 2}},
		Jobs:      children(t, "item", 2),
	})
	items := claim(t, b, proc, 2, def)
	if len(items) != 2 {
		t.Fatalf("claimed %d items; want 2", len(items))
	}
	for _, it := range items {
		slot, _ := decInt(t, it.Input)
		res, err := b.Complete(testCtx(t), &backend.CompleteParams{
			JobID: it.ID, ProcessID: proc, Fence: it.Fence, Output: enc(t, slot*10), ClaimNext: 1,
			Plan: backend.Plan{Arrive: &backend.Arrival{NodeID: "gather", Slot: slot}},
		})
		if err != nil {
			t.Fatal(err)
		}
		if !res.JoinFired {
			if len(res.Claimed) != 0 {
				t.Fatalf("an arrival that did not fire the join claimed %s", describeJob(res.Claimed[0]))
			}
			continue
		}
		if len(res.Claimed) == 0 {
			t.Skip("the backend claims nothing with ClaimNext")
		}
		j := res.Claimed[0]
		if !j.Join || j.NodeID != "gather" || len(j.JoinInputs) != 2 {
			t.Fatalf("claimed %s with %d inputs; want the gather join job with 2", describeJob(j), len(j.JoinInputs))
		}
		for i, in := range j.JoinInputs {
			if n, ok := decInt(t, in); !ok || n != i*10 {
				t.Fatalf("join input %d = %q; want %d", i, in, i*10)
			}
		}
	}
}
