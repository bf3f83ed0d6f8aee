package conformance

import (
	"encoding/json"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ductwork-go/ductwork/backend"
)

func testJoins(t *testing.T, h Harness) {
	runCases(t, h, map[string]caseFunc{
		"Fanout500":     joinFanout500,
		"ExpectedZero":  joinExpectedZero,
		"Combine3":      joinCombine3,
		"Delay":         joinDelay,
		"MissingJoin":   joinMissing,
		"FiredJoin":     joinArrivalAfterFired,
		"NestedScopes":  joinNestedScopes,
		"JoinJobFields": joinJobFields,
	})
}

// checkJoinInputs checks that a join job's inputs are the encoded slot
// numbers 0..n-1 in order.
func checkJoinInputs(t *testing.T, j *backend.Job, n int) {
	t.Helper()
	if !j.Join {
		t.Fatalf("join job %s has Join false", describeJob(j))
	}
	if len(j.JoinInputs) != n {
		t.Fatalf("join job has %d inputs; want %d", len(j.JoinInputs), n)
	}
	for i, in := range j.JoinInputs {
		if got, ok := decInt(t, in); !ok || got != i {
			t.Fatalf("join input %d = %s; want %d (inputs must be in slot order)", i, short(in), i)
		}
	}
}

// joinFanout500: 500 branches complete concurrently from 8 workers, each
// arriving at its slot; the join job appears exactly once with its inputs in
// slot order.
func joinFanout500(t *testing.T, h Harness) {
	b := newBackend(t, h)
	const n, workers = 500, 8
	proc, root := startRoot(t, b, defA)
	res := complete(t, b, root, proc, enc(t, "expanded"), backend.Plan{
		Jobs:      children(t, "branch", n),
		OpenJoins: []backend.OpenJoin{{NodeID: "collect", Expected: n}},
	})
	if res.NewJobs != n || res.JoinFired {
		t.Fatalf("expand Complete = %+v; want %d new jobs and no join fired", *res, n)
	}
	ctx := testCtx(t)
	var (
		done       atomic.Int64 // completed branches
		fired      atomic.Int64 // completions that reported JoinFired
		mu         sync.Mutex
		joinJobs   []*backend.Job
		wg         sync.WaitGroup
		start      = make(chan struct{})
		deadline   = time.Now().Add(2 * time.Minute)
		finishedOK = func() bool {
			mu.Lock()
			defer mu.Unlock()
			return done.Load() == n && len(joinJobs) > 0
		}
	)
	for w := range workers {
		p := register(t, b, defA)
		wg.Go(func() {
			<-start
			for !finishedOK() && time.Now().Before(deadline) {
				cr, err := b.Claim(ctx, &backend.ClaimParams{ProcessID: p, Limit: 4, Definitions: []backend.DefinitionRef{defA}})
				if err != nil {
					t.Errorf("worker %d: Claim: %v", w, err)
					return
				}
				if len(cr.Jobs) == 0 {
					time.Sleep(time.Millisecond)
					continue
				}
				for _, j := range cr.Jobs {
					if j.NodeID == "collect" {
						mu.Lock()
						joinJobs = append(joinJobs, j)
						mu.Unlock()
						continue
					}
					var slot int
					if err := json.Unmarshal(j.Input, &slot); err != nil {
						t.Errorf("worker %d: branch input %s: %v", w, short(j.Input), err)
						return
					}
					res, err := b.Complete(ctx, &backend.CompleteParams{JobID: j.ID, ProcessID: p, Fence: j.Fence,
						Output: j.Input, Plan: backend.Plan{Arrive: &backend.Arrival{NodeID: "collect", Slot: slot}}})
					if err != nil {
						t.Errorf("worker %d: Complete of branch %d: %v", w, slot, err)
						return
					}
					done.Add(1)
					if res.JoinFired {
						fired.Add(1)
						if res.NewJobs != 1 {
							t.Errorf("the completion that fired the join inserted %d jobs; want 1", res.NewJobs)
						}
					}
				}
			}
		})
	}
	close(start)
	wg.Wait()
	if t.Failed() {
		return
	}
	if done.Load() != n {
		t.Fatalf("%d of %d branches completed before the deadline", done.Load(), n)
	}
	if fired.Load() != 1 {
		t.Fatalf("%d completions reported JoinFired; want exactly 1", fired.Load())
	}
	if len(joinJobs) != 1 {
		t.Fatalf("the join job was claimed %d times; want 1", len(joinJobs))
	}
	checkJoinInputs(t, joinJobs[0], n)
	claimNone(t, b, proc, defA)
	count := 0
	for _, j := range listJobs(t, b, root.RunID) {
		if j.NodeID == "collect" {
			count++
			if !j.Join {
				t.Errorf("listed join job %d has Join false", j.ID)
			}
		}
	}
	if count != 1 {
		t.Fatalf("the run lists %d join jobs; want exactly 1", count)
	}
}

// joinExpectedZero: a join opened with Expected 0 fires at once with no
// inputs.
func joinExpectedZero(t *testing.T, h Harness) {
	b := newBackend(t, h)
	proc, root := startRoot(t, b, defA)
	res := complete(t, b, root, proc, enc(t, []int{}), backend.Plan{
		OpenJoins: []backend.OpenJoin{{NodeID: "collect", Expected: 0}},
	})
	if res.NewJobs != 1 {
		t.Fatalf("Complete opening an empty join inserted %d jobs; want its join job", res.NewJobs)
	}
	j := claimOne(t, b, proc, defA)
	if j.NodeID != "collect" || !j.Join {
		t.Fatalf("claimed %s (join %v); want the join job of \"collect\"", describeJob(j), j.Join)
	}
	if j.JoinInputs == nil || len(j.JoinInputs) != 0 {
		t.Fatalf("empty join's JoinInputs = %#v; want an empty, non-nil slice", j.JoinInputs)
	}
}

// joinCombine3: a 3-slot join whose arrivals come out of order hands the
// outputs in slot order and fires only on the last arrival.
func joinCombine3(t *testing.T, h Harness) {
	b := newBackend(t, h)
	proc, root := startRoot(t, b, defA)
	complete(t, b, root, proc, enc(t, "divided"), backend.Plan{
		Jobs: []backend.NewJob{
			{NodeID: "fetch-a", Input: enc(t, 0)},
			{NodeID: "fetch-b", Input: enc(t, 1)},
			{NodeID: "fetch-c", Input: enc(t, 2)},
		},
		OpenJoins: []backend.OpenJoin{{NodeID: "collate", Expected: 3}},
	})
	byNode := map[string]*backend.Job{}
	for _, j := range claim(t, b, proc, 10, defA) {
		byNode[j.NodeID] = j
	}
	if len(byNode) != 3 {
		t.Fatalf("claimed %d branches; want 3", len(byNode))
	}
	for i, node := range []string{"fetch-c", "fetch-a", "fetch-b"} {
		j := byNode[node]
		slot, _ := decInt(t, j.Input)
		res := complete(t, b, j, proc, enc(t, slot), backend.Plan{Arrive: &backend.Arrival{NodeID: "collate", Slot: slot}})
		last := i == 2
		if res.JoinFired != last || (last && res.NewJobs != 1) || (!last && res.NewJobs != 0) {
			t.Fatalf("arrival %d (%s) = %+v; want JoinFired %v", i+1, node, *res, last)
		}
		if !last {
			claimNone(t, b, proc, defA)
		}
	}
	j := claimOne(t, b, proc, defA)
	if j.NodeID != "collate" || j.Scope != "" {
		t.Fatalf("claimed %s; want the join job of \"collate\"", describeJob(j))
	}
	checkJoinInputs(t, j, 3)
}

// joinDelay: a join job gets the delay and priority of its OpenJoin.
func joinDelay(t *testing.T, h Harness) {
	b := newBackend(t, h)
	proc, root := startRoot(t, b, defA)
	complete(t, b, root, proc, nil, backend.Plan{
		Jobs:      []backend.NewJob{{NodeID: "branch", Scope: "0", Input: enc(t, 0)}},
		OpenJoins: []backend.OpenJoin{{NodeID: "collect", Expected: 1, Delay: time.Hour}},
	})
	j := claimOne(t, b, proc, defA)
	res := complete(t, b, j, proc, enc(t, 0), backend.Plan{Arrive: &backend.Arrival{NodeID: "collect", Slot: 0}})
	if !res.JoinFired || res.NewJobs != 1 {
		t.Fatalf("last arrival = %+v; want the join fired", *res)
	}
	claimNone(t, b, proc, defA)
	for _, info := range listJobs(t, b, root.RunID) {
		if info.NodeID == "collect" {
			if soon := now(t, b).Add(50 * time.Minute); info.DueAt.Before(soon) {
				t.Errorf("join job DueAt = %v; want about an hour from now (after %v)", info.DueAt, soon)
			}
			return
		}
	}
	t.Fatal("no join job listed")
}

// joinMissing: an arrival at a join that was never opened is a permanent
// error (retrying cannot open the join) and rolls the completion back.
func joinMissing(t *testing.T, h Harness) {
	b := newBackend(t, h)
	proc, root := startRoot(t, b, defA)
	_, err := b.Complete(testCtx(t), &backend.CompleteParams{JobID: root.ID, ProcessID: proc, Fence: root.Fence, Output: enc(t, 1),
		Plan: backend.Plan{Jobs: []backend.NewJob{{NodeID: "next"}}, Arrive: &backend.Arrival{NodeID: "nowhere", Slot: 0}}})
	if err == nil || !backend.IsPermanent(err) {
		t.Fatalf("Complete arriving at a join that was never opened = %v; want a permanent error", err)
	}
	info := jobByID(t, b, root.RunID, root.ID)
	if info.Status != backend.JobRunning || len(info.Output) != 0 {
		t.Fatalf("after the failed Complete the job = {status %q, output %s}; want still running, no output", info.Status, short(info.Output))
	}
	if n := len(listJobs(t, b, root.RunID)); n != 1 {
		t.Fatalf("after the failed Complete the run has %d jobs; want 1", n)
	}
	complete(t, b, root, proc, enc(t, 1), backend.Plan{CompleteRun: true})
}

// joinArrivalAfterFired pins what the contract left open (SQLite refused it,
// the others ignored it): an arrival at a join that already received its
// Expected arrivals and fired is refused with a permanent error, and the
// completion is rolled back (the job stays running with no output, no second
// join job appears, the fired join's inputs are unchanged).
func joinArrivalAfterFired(t *testing.T, h Harness) {
	b := newBackend(t, h)
	proc, root := startRoot(t, b, defA)
	complete(t, b, root, proc, nil, backend.Plan{
		Jobs:      []backend.NewJob{{NodeID: "branch", Scope: "0", Input: enc(t, 0)}, {NodeID: "branch", Scope: "1", Input: enc(t, 1)}},
		OpenJoins: []backend.OpenJoin{{NodeID: "collect", Expected: 1}},
	})
	branches := claim(t, b, proc, 2, defA)
	if len(branches) != 2 {
		t.Fatalf("claimed %d branches; want 2", len(branches))
	}
	first, late := branches[0], branches[1]
	if res := complete(t, b, first, proc, enc(t, 0), backend.Plan{Arrive: &backend.Arrival{NodeID: "collect", Slot: 0}}); !res.JoinFired {
		t.Fatalf("the only expected arrival = %+v; want the join fired", *res)
	}
	_, err := b.Complete(testCtx(t), &backend.CompleteParams{JobID: late.ID, ProcessID: proc, Fence: late.Fence, Output: enc(t, 1),
		Plan: backend.Plan{Arrive: &backend.Arrival{NodeID: "collect", Slot: 0}}})
	if err == nil || !backend.IsPermanent(err) {
		t.Fatalf("Complete arriving at a join that already fired = %v; want a permanent error", err)
	}
	info := jobByID(t, b, late.RunID, late.ID)
	if info.Status != backend.JobRunning || len(info.Output) != 0 {
		t.Fatalf("after the refused arrival the job = {status %q, output %s}; want still running, no output", info.Status, short(info.Output))
	}
	joinJobs := 0
	for _, j := range listJobs(t, b, root.RunID) {
		if j.NodeID == "collect" {
			joinJobs++
		}
	}
	if joinJobs != 1 {
		t.Fatalf("%d join jobs for the join; want 1", joinJobs)
	}
	join := claimOne(t, b, proc, defA)
	checkJoinInputs(t, join, 1)
}

// joinNestedScopes: joins with the same node at different scopes are
// independent.
func joinNestedScopes(t *testing.T, h Harness) {
	b := newBackend(t, h)
	proc, root := startRoot(t, b, defA)
	// Two outer branches, each with its own inner join of 2 at scope "i".
	var jobs []backend.NewJob
	var joins []backend.OpenJoin
	for outer := range 2 {
		scope := string(rune('0' + outer))
		joins = append(joins, backend.OpenJoin{NodeID: "inner-join", Scope: scope, Expected: 2})
		for inner := range 2 {
			jobs = append(jobs, backend.NewJob{NodeID: "leaf", Scope: scope + "." + string(rune('0'+inner)), Input: enc(t, []int{outer, inner})})
		}
	}
	complete(t, b, root, proc, nil, backend.Plan{Jobs: jobs, OpenJoins: joins})
	leaves := claim(t, b, proc, 10, defA)
	if len(leaves) != 4 {
		t.Fatalf("claimed %d leaves; want 4", len(leaves))
	}
	fired := 0
	for _, j := range leaves {
		var oi []int
		if err := json.Unmarshal(j.Input, &oi); err != nil || len(oi) != 2 {
			t.Fatalf("leaf input %s: %v", short(j.Input), err)
		}
		res := complete(t, b, j, proc, enc(t, oi[1]), backend.Plan{Arrive: &backend.Arrival{NodeID: "inner-join", Scope: string(rune('0' + oi[0])), Slot: oi[1]}})
		if res.JoinFired {
			fired++
		}
	}
	if fired != 2 {
		t.Fatalf("%d arrivals fired a join; want 2 (one per scope)", fired)
	}
	scopes := map[string]bool{}
	for _, j := range claim(t, b, proc, 10, defA) {
		if j.NodeID != "inner-join" {
			t.Fatalf("claimed %s; want only inner-join jobs", describeJob(j))
		}
		scopes[j.Scope] = true
		checkJoinInputs(t, j, 2)
	}
	if !scopes["0"] || !scopes["1"] || len(scopes) != 2 {
		t.Fatalf("join jobs at scopes %v; want 0 and 1", scopes)
	}
}

// joinJobFields: a claimed join job carries the run's definition and the
// attempt and fence of a fresh job, and completes like any other.
func joinJobFields(t *testing.T, h Harness) {
	b := newBackend(t, h)
	proc, root := startRoot(t, b, defA)
	complete(t, b, root, proc, nil, backend.Plan{OpenJoins: []backend.OpenJoin{{NodeID: "collect", Scope: "7", Expected: 0, Priority: 2}}})
	j := claimOne(t, b, proc, defA)
	if j.RunID != root.RunID || j.Pipeline != defA.Pipeline || j.Fingerprint != defA.Fingerprint || j.Scope != "7" ||
		j.Attempt != 1 || j.Crashes != 0 || j.Fence <= 0 || len(j.Input) != 0 {
		t.Fatalf("join job %s of %s/%s input %s; want run %d, scope \"7\", attempt 1, no input",
			describeJob(j), j.Pipeline, j.Fingerprint, short(j.Input), root.RunID)
	}
	res := complete(t, b, j, proc, enc(t, "summary"), backend.Plan{CompleteRun: true})
	if !res.RunCompleted {
		t.Fatal("completing the join job with CompleteRun did not complete the run")
	}
}
