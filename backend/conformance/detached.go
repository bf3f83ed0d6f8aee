package conformance

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ductwork-go/ductwork/backend"
)

// Detached branches (backend.Plan.Detached): the run's outstanding work is 1
// for the end node plus the sum of the completions' Detached; the completion
// that brings it to 0 completes the run. These cases build the plans the
// engine builds for such pipelines by hand; detached_e2e.go runs real ones.
func testDetached(t *testing.T, h Harness) {
	runCases(t, h, map[string]caseFunc{
		"EndFirst":        detachedEndFirst,
		"EndLast":         detachedEndLast,
		"Expansion":       detachedExpansion,
		"Join":            detachedJoin,
		"CrashBeforeLast": detachedCrashBeforeLast,
		"HaltRevive":      detachedHaltRevive,
		"Cancel":          detachedCancel,
		"Pipelines":       detachedPipelines,
		"Concurrent":      detachedConcurrent,
	})
}

// wantRun checks a run's status and output.
func wantRun(t *testing.T, b backend.Backend, runID int64, status string, output []byte) {
	t.Helper()
	r := getRun(t, b, runID)
	if r.Status != status || !equalBytes(r.Output, output) {
		t.Fatalf("run %d = {status %q, output %s}; want {%q, %s}", runID, r.Status, short(r.Output), status, short(output))
	}
}

// claimByNode claims every due job of defA for process, by node ID.
func claimByNode(t *testing.T, b backend.Backend, process string, want int) map[string]*backend.Job {
	t.Helper()
	jobs := claim(t, b, process, 100, defA)
	if len(jobs) != want {
		t.Fatalf("claimed %d jobs; want %d", len(jobs), want)
	}
	out := map[string]*backend.Job{}
	for _, j := range jobs {
		out[j.NodeID] = j
	}
	return out
}

// detachedEndFirst: the end node finishes first and hands its output to
// two detached branches of different lengths (a: three steps, b: one). The
// run stays running, with the end node's output stored, until the last
// step of the longer branch; that completion alone reports RunCompleted,
// and the run's output is still the end node's.
func detachedEndFirst(t *testing.T, h Harness) {
	b := newBackend(t, h)
	proc, root := startRoot(t, b, defA)
	out := enc(t, "end")
	res := complete(t, b, root, proc, out, backend.Plan{CompleteRun: true, Detached: 2, Jobs: []backend.NewJob{
		{NodeID: "a1", Input: out}, {NodeID: "b1", Input: out},
	}})
	if res.RunCompleted {
		t.Fatal("the end node completed the run with two detached branches outstanding")
	}
	wantRun(t, b, root.RunID, backend.RunRunning, out)
	jobs := claimByNode(t, b, proc, 2)
	if res := complete(t, b, jobs["b1"], proc, enc(t, "b1"), backend.Plan{Detached: -1}); res.RunCompleted {
		t.Fatal("the shorter branch completed the run; the longer one is outstanding")
	}
	last := jobs["a1"]
	for _, next := range []string{"a2", "a3"} {
		res := complete(t, b, last, proc, enc(t, next), backend.Plan{Jobs: []backend.NewJob{{NodeID: next}}})
		if res.RunCompleted {
			t.Fatalf("a step in the middle of a detached branch completed the run")
		}
		last = claimOne(t, b, proc, defA)
		wantRun(t, b, root.RunID, backend.RunRunning, out)
	}
	if res := complete(t, b, last, proc, enc(t, "a3"), backend.Plan{Detached: -1}); !res.RunCompleted {
		t.Fatal("the last step of the last detached branch did not report RunCompleted")
	}
	wantRun(t, b, root.RunID, backend.RunCompleted, out)
}

// detachedEndLast: a detached branch finishes before the end node; the run
// completes with the end node, with its output.
func detachedEndLast(t *testing.T, h Harness) {
	b := newBackend(t, h)
	proc, root := startRoot(t, b, defA)
	complete(t, b, root, proc, enc(t, "root"), backend.Plan{Detached: 1, Jobs: []backend.NewJob{
		{NodeID: "end"}, {NodeID: "side"},
	}})
	jobs := claimByNode(t, b, proc, 2)
	if res := complete(t, b, jobs["side"], proc, enc(t, "side"), backend.Plan{Detached: -1}); res.RunCompleted {
		t.Fatal("a detached branch completed the run before its end node")
	}
	wantRun(t, b, root.RunID, backend.RunRunning, nil)
	out := enc(t, "end")
	if res := complete(t, b, jobs["end"], proc, out, backend.Plan{CompleteRun: true}); !res.RunCompleted {
		t.Fatal("the end node, finishing last, did not report RunCompleted")
	}
	wantRun(t, b, root.RunID, backend.RunCompleted, out)
}

// detachedExpansion: an expansion whose branches are all detached (no
// join) with 0, 1 and 1,000 elements, opened by the end node. The empty one
// completes the run at once; 1,000 branches completed concurrently by 8
// workers report RunCompleted exactly once.
func detachedExpansion(t *testing.T, h Harness) {
	b := newBackend(t, h)
	for _, n := range []int{0, 1, 1000} {
		proc, root := startRoot(t, b, defA)
		out := enc(t, n)
		res := complete(t, b, root, proc, out, backend.Plan{CompleteRun: true, Detached: n, Jobs: children(t, "email", n)})
		if res.RunCompleted != (n == 0) {
			t.Fatalf("%d elements: the end node reported RunCompleted %t; want %t", n, res.RunCompleted, n == 0)
		}
		if n == 0 {
			wantRun(t, b, root.RunID, backend.RunCompleted, out)
			continue
		}
		const workers = 8
		var (
			done, completed atomic.Int64
			wg              sync.WaitGroup
			ctx             = testCtx(t)
			deadline        = time.Now().Add(2 * time.Minute)
		)
		for w := range workers {
			p := register(t, b, defA)
			wg.Go(func() {
				for done.Load() < int64(n) && time.Now().Before(deadline) {
					cr, err := b.Claim(ctx, &backend.ClaimParams{ProcessID: p, Limit: 4, Definitions: []backend.DefinitionRef{defA}})
					if err != nil {
						t.Errorf("worker %d: Claim: %v", w, err)
						return
					}
					for _, j := range cr.Jobs {
						res, err := b.Complete(ctx, &backend.CompleteParams{JobID: j.ID, ProcessID: p, Fence: j.Fence,
							Output: enc(t, j.Scope), Plan: backend.Plan{Detached: -1}})
						if err != nil {
							t.Errorf("worker %d: Complete(%s): %v", w, describeJob(j), err)
							return
						}
						done.Add(1)
						if res.RunCompleted {
							completed.Add(1)
						}
					}
				}
			})
		}
		wg.Wait()
		if t.Failed() {
			return
		}
		if done.Load() != int64(n) || completed.Load() != 1 {
			t.Fatalf("%d elements: %d completed, %d reported RunCompleted; want %d and exactly 1", n, done.Load(), completed.Load(), n)
		}
		wantRun(t, b, root.RunID, backend.RunCompleted, out)
	}
}

// detachedJoin: a join on a detached branch counts once, from its opening
// until its own job completes: the arrivals do not complete the run, the
// join's job does.
func detachedJoin(t *testing.T, h Harness) {
	b := newBackend(t, h)
	proc, root := startRoot(t, b, defA)
	out := enc(t, "end")
	complete(t, b, root, proc, out, backend.Plan{CompleteRun: true, Detached: 3, Jobs: children(t, "x", 2),
		OpenJoins: []backend.OpenJoin{{NodeID: "collect", Expected: 2}}})
	for _, j := range claim(t, b, proc, 2, defA) {
		slot, _ := decInt(t, j.Input)
		res := complete(t, b, j, proc, enc(t, slot), backend.Plan{Detached: -1,
			Arrive: &backend.Arrival{NodeID: "collect", Slot: slot}})
		if res.RunCompleted {
			t.Fatalf("an arrival at a detached join completed the run")
		}
	}
	j := claimOne(t, b, proc, defA)
	checkJoinInputs(t, j, 2)
	if res := complete(t, b, j, proc, enc(t, "collected"), backend.Plan{Detached: -1}); !res.RunCompleted {
		t.Fatal("the detached join's job did not complete the run")
	}
	wantRun(t, b, root.RunID, backend.RunCompleted, out)
}

// detachedCrashBeforeLast: the process running the last detached branch
// dies after the end node finished. The reaper makes the branch due again;
// the dead process's late completion is stale and changes nothing; the
// re-run completes the run, once, with the end node's output.
func detachedCrashBeforeLast(t *testing.T, h Harness) {
	b := newBackend(t, h)
	threshold := precision(b)
	proc, root := startRoot(t, b, defA)
	out := enc(t, "end")
	complete(t, b, root, proc, out, backend.Plan{CompleteRun: true, Detached: 1, Jobs: []backend.NewJob{{NodeID: "side"}}})
	dead := register(t, b, defA)
	j := claimOne(t, b, dead, defA)
	makeStale(t, b, dead, threshold)
	reaped, err := b.Reap(testCtx(t), &backend.ReapParams{ProcessID: "reaper", Threshold: threshold})
	if err != nil {
		t.Fatalf("Reap: %v", err)
	}
	if reaped.Jobs != 1 {
		t.Fatalf("Reap made %d jobs due again; want the detached branch's 1", reaped.Jobs)
	}
	wantRun(t, b, root.RunID, backend.RunRunning, out)
	_, err = b.Complete(testCtx(t), &backend.CompleteParams{JobID: j.ID, ProcessID: dead, Fence: j.Fence,
		Output: enc(t, "late"), Plan: backend.Plan{Detached: -1}})
	wantErr(t, "Complete by the reaped process", err, backend.ErrStaleClaim)
	wantRun(t, b, root.RunID, backend.RunRunning, out)
	live := register(t, b, defA)
	again := claimOne(t, b, live, defA)
	if again.ID != j.ID || again.Crashes != j.Crashes+1 {
		t.Fatalf("re-claimed %s; want job %d with one more crash", describeJob(again), j.ID)
	}
	if res := complete(t, b, again, live, enc(t, "side"), backend.Plan{Detached: -1}); !res.RunCompleted {
		t.Fatal("the re-run of the last detached branch did not complete the run")
	}
	wantRun(t, b, root.RunID, backend.RunCompleted, out)
}

// detachedHaltRevive: a detached branch fails for good and halts the run;
// the end node finishes while the run is halted, which keeps its output but
// does not complete it; after ReviveRun the branch runs again and its
// completion completes the run.
func detachedHaltRevive(t *testing.T, h Harness) {
	b := newBackend(t, h)
	proc, root := startRoot(t, b, defA)
	complete(t, b, root, proc, enc(t, "root"), backend.Plan{Detached: 1, Jobs: []backend.NewJob{
		{NodeID: "end"}, {NodeID: "side"},
	}})
	jobs := claimByNode(t, b, proc, 2)
	side := jobs["side"]
	fr, err := b.Fail(testCtx(t), &backend.FailParams{JobID: side.ID, ProcessID: proc, Fence: side.Fence, Error: "side failed"})
	if err != nil || !fr.Halted {
		t.Fatalf("Fail of the detached branch = %+v, %v; want Halted", fr, err)
	}
	out := enc(t, "end")
	if res := complete(t, b, jobs["end"], proc, out, backend.Plan{CompleteRun: true}); res.RunCompleted {
		t.Fatal("the end node completed a run halted by a detached branch")
	}
	wantRun(t, b, root.RunID, backend.RunHalted, out)
	rr, err := b.ReviveRun(testCtx(t), &backend.ReviveRunParams{RunID: root.RunID})
	if err != nil || rr.Jobs != 1 {
		t.Fatalf("ReviveRun = %+v, %v; want 1 job", rr, err)
	}
	again := claimOne(t, b, proc, defA)
	if again.ID != side.ID {
		t.Fatalf("after ReviveRun claimed %s; want the detached branch's job %d", describeJob(again), side.ID)
	}
	if res := complete(t, b, again, proc, enc(t, "side"), backend.Plan{Detached: -1}); !res.RunCompleted {
		t.Fatal("the revived detached branch did not complete the run")
	}
	wantRun(t, b, root.RunID, backend.RunCompleted, out)
}

// detachedCancel: cancelling a run stops its detached branches: a pending
// one is never claimed, and the completion of one in flight does not
// complete the cancelled run (it may be refused).
func detachedCancel(t *testing.T, h Harness) {
	b := newBackend(t, h)
	proc, root := startRoot(t, b, defA)
	out := enc(t, "end")
	complete(t, b, root, proc, out, backend.Plan{CompleteRun: true, Detached: 2, Jobs: []backend.NewJob{
		{NodeID: "a"}, {NodeID: "b"},
	}})
	inFlight := claimOne(t, b, proc, defA)
	if _, err := b.CancelRun(testCtx(t), &backend.CancelRunParams{RunID: root.RunID, Reason: "stop"}); err != nil {
		t.Fatalf("CancelRun: %v", err)
	}
	claimNone(t, b, proc, defA)
	res, err := b.Complete(testCtx(t), &backend.CompleteParams{JobID: inFlight.ID, ProcessID: proc, Fence: inFlight.Fence,
		Output: enc(t, "late"), Plan: backend.Plan{Detached: -1}})
	if err == nil && res.RunCompleted {
		t.Fatal("a detached branch's completion completed a cancelled run")
	}
	if r := getRun(t, b, root.RunID); r.Status != backend.RunCancelled {
		t.Fatalf("run status %q after cancel; want %q", r.Status, backend.RunCancelled)
	}
	claimNone(t, b, proc, defA)
}

// detachedConcurrent: two runs of eight leaves each (one the end node, seven
// detached) complete all sixteen at once (a backend may commit them
// together, several of one run in one transaction): each run completes
// exactly once, reported by exactly one completion, with the end node's
// output.
func detachedConcurrent(t *testing.T, h Harness) {
	b := newBackend(t, h)
	proc := register(t, b, defA)
	var runs []int64
	for range 2 {
		trigger(t, b, defA, backend.NewJob{NodeID: "root", Input: enc(t, "root")})
	}
	for _, root := range claim(t, b, proc, 2, defA) {
		runs = append(runs, root.RunID)
		complete(t, b, root, proc, nil, backend.Plan{Jobs: children(t, "leaf", 8), Detached: 7})
	}
	if len(runs) != 2 {
		t.Fatalf("claimed %d roots; want 2", len(runs))
	}
	leaves := claim(t, b, proc, 16, defA)
	if len(leaves) != 16 {
		t.Fatalf("claimed %d leaves; want 16", len(leaves))
	}
	completed := map[int64]*atomic.Int32{runs[0]: {}, runs[1]: {}}
	var wg sync.WaitGroup
	for _, j := range leaves {
		wg.Go(func() {
			plan := backend.Plan{Detached: -1}
			if j.Scope == "0" {
				plan = backend.Plan{CompleteRun: true}
			}
			res, err := b.Complete(testCtx(t), &backend.CompleteParams{JobID: j.ID, ProcessID: proc, Fence: j.Fence,
				Output: enc(t, "out-"+j.Scope), Plan: plan})
			if err != nil {
				t.Errorf("Complete of leaf %s of run %d: %v", j.Scope, j.RunID, err)
				return
			}
			if res.RunCompleted {
				completed[j.RunID].Add(1)
			}
		})
	}
	wg.Wait()
	for _, id := range runs {
		if n := completed[id].Load(); n != 1 {
			t.Errorf("run %d: %d completions reported RunCompleted; want 1", id, n)
		}
		wantRun(t, b, id, backend.RunCompleted, enc(t, "out-0"))
	}
}
