package sqlite_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/ductwork-go/ductwork/backend"
)

func TestTriggerClaimComplete(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := newBackend(t)
	tr := trigger(t, b, "in")

	j := claimOne(t, b, "p1")
	if j.ID != tr.JobID || j.RunID != tr.RunID || j.NodeID != "start" || string(j.Input) != "in" ||
		j.Pipeline != def.Pipeline || j.Fingerprint != def.Fingerprint || j.Attempt != 1 || j.Crashes != 0 ||
		j.Fence != 1 || j.Join || j.Metadata["tenant"] != "acme" {
		t.Fatalf("claimed job = %+v", j)
	}
	if j.ClaimedAt.Before(j.CreatedAt) || j.DueAt.Before(j.CreatedAt) {
		t.Fatalf("times: created %v due %v claimed %v", j.CreatedAt, j.DueAt, j.ClaimedAt)
	}
	if again := claim(t, b, "p2", 10); len(again) != 0 {
		t.Fatalf("claimed a running job twice: %+v", again)
	}

	res := complete(t, b, j, "p1", "out", backend.Plan{CompleteRun: true})
	if !res.RunCompleted || res.NewJobs != 0 || res.JoinFired {
		t.Fatalf("Complete = %+v", res)
	}
	r := getRun(t, b, tr.RunID)
	if r.Status != backend.RunCompleted || string(r.Output) != "out" || string(r.Input) != "in" ||
		!reflect.DeepEqual(r.Metadata, map[string]string{"tenant": "acme"}) {
		t.Fatalf("run = %+v", r)
	}
	info := jobByID(t, b, tr.RunID, j.ID)
	if info.Status != backend.JobCompleted || string(info.Output) != "out" || info.ProcessID != "p1" ||
		info.StartedAt == nil || info.FinishedAt == nil {
		t.Fatalf("job = %+v", info)
	}
	now, err := b.Now(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if now.Before(info.CreatedAt) {
		t.Fatalf("Now %v before job creation %v", now, info.CreatedAt)
	}
}

func TestJoinFiresOnceWithInputsInSlotOrder(t *testing.T) {
	t.Parallel()
	b := newBackend(t)
	tr := trigger(t, b, "in")
	first := claimOne(t, b, "p1")

	// Fan out into three branches and open a join waiting for them.
	plan := backend.Plan{OpenJoins: []backend.OpenJoin{{NodeID: "gather", Expected: 3, Priority: 5}}}
	for i := range 3 {
		plan.Jobs = append(plan.Jobs, backend.NewJob{NodeID: "branch", Scope: scope(i), Input: []byte(scope(i))})
	}
	if res := complete(t, b, first, "p1", "", plan); res.NewJobs != 3 || res.JoinFired {
		t.Fatalf("fan-out Complete = %+v", res)
	}
	branches := claim(t, b, "p1", 10)
	if len(branches) != 3 {
		t.Fatalf("claimed %d branches, want 3", len(branches))
	}
	bySlot := map[string]*backend.Job{}
	for _, j := range branches {
		bySlot[j.Scope] = j
	}
	// Arrive out of order: slots 2, 0, 1.
	for n, slot := range []int{2, 0, 1} {
		j := bySlot[scope(slot)]
		res := complete(t, b, j, "p1", "out"+scope(slot), backend.Plan{
			Arrive: &backend.Arrival{NodeID: "gather", Slot: slot},
		})
		last := n == 2
		if res.JoinFired != last || res.NewJobs != map[bool]int{false: 0, true: 1}[last] {
			t.Fatalf("arrival %d (slot %d): %+v", n, slot, res)
		}
	}
	join := claimOne(t, b, "p1")
	if !join.Join || join.NodeID != "gather" || join.Scope != "" || join.Input != nil {
		t.Fatalf("join job = %+v", join)
	}
	want := [][]byte{[]byte("out0"), []byte("out1"), []byte("out2")}
	if !reflect.DeepEqual(join.JoinInputs, want) {
		t.Fatalf("JoinInputs = %q, want %q", join.JoinInputs, want)
	}
	if res := complete(t, b, join, "p1", "done", backend.Plan{CompleteRun: true}); !res.RunCompleted {
		t.Fatalf("join Complete = %+v", res)
	}
	var joinJobs int
	for _, j := range jobs(t, b, tr.RunID) {
		if j.Join {
			joinJobs++
		}
	}
	if joinJobs != 1 {
		t.Fatalf("%d join jobs, want 1", joinJobs)
	}
	if r := getRun(t, b, tr.RunID); r.Status != backend.RunCompleted || string(r.Output) != "done" {
		t.Fatalf("run = %+v", r)
	}
}

func TestOpenJoinExpectedZeroInsertsJobAtOnce(t *testing.T) {
	t.Parallel()
	b := newBackend(t)
	trigger(t, b, "in")
	first := claimOne(t, b, "p1")
	res := complete(t, b, first, "p1", "", backend.Plan{
		OpenJoins: []backend.OpenJoin{{NodeID: "gather", Scope: "0", Expected: 0}},
	})
	if res.NewJobs != 1 {
		t.Fatalf("Complete = %+v, want 1 new job", res)
	}
	join := claimOne(t, b, "p1")
	if !join.Join || join.NodeID != "gather" || join.Scope != "0" || join.JoinInputs == nil || len(join.JoinInputs) != 0 {
		t.Fatalf("join job = %+v", join)
	}
}

func TestArrivalAtUnknownJoinChangesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := newBackend(t)
	tr := trigger(t, b, "in")
	j := claimOne(t, b, "p1")
	_, err := b.Complete(ctx, &backend.CompleteParams{
		JobID: j.ID, ProcessID: "p1", Fence: j.Fence, Output: []byte("x"),
		Plan: backend.Plan{Jobs: []backend.NewJob{{NodeID: "next"}}, Arrive: &backend.Arrival{NodeID: "nope"}},
	})
	if err == nil {
		t.Fatal("Complete with an arrival at an unopened join succeeded")
	}
	if all := jobs(t, b, tr.RunID); len(all) != 1 || all[0].Status != backend.JobRunning {
		t.Fatalf("jobs after failed Complete: %+v", all[0])
	}
}

func TestStaleFence(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := newBackend(t)
	tr := trigger(t, b, "in")
	j := claimOne(t, b, "p1")
	before := jobByID(t, b, tr.RunID, j.ID)

	plan := backend.Plan{Jobs: []backend.NewJob{{NodeID: "next"}}, CompleteRun: true}
	cases := []struct {
		name    string
		process string
		fence   int64
	}{
		{"old fence", "p1", j.Fence - 1},
		{"future fence", "p1", j.Fence + 1},
		{"other owner", "p2", j.Fence},
	}
	for _, c := range cases {
		_, err := b.Complete(ctx, &backend.CompleteParams{JobID: j.ID, ProcessID: c.process, Fence: c.fence, Output: []byte("x"), Plan: plan})
		if !errors.Is(err, backend.ErrStaleClaim) {
			t.Errorf("%s: Complete err = %v, want ErrStaleClaim", c.name, err)
		}
		_, err = b.Fail(ctx, &backend.FailParams{JobID: j.ID, ProcessID: c.process, Fence: c.fence, Error: "x"})
		if !errors.Is(err, backend.ErrStaleClaim) {
			t.Errorf("%s: Fail err = %v, want ErrStaleClaim", c.name, err)
		}
		_, err = b.Fail(ctx, &backend.FailParams{JobID: j.ID, ProcessID: c.process, Fence: c.fence, Retry: true})
		if !errors.Is(err, backend.ErrStaleClaim) {
			t.Errorf("%s: Fail(retry) err = %v, want ErrStaleClaim", c.name, err)
		}
		_, err = b.Release(ctx, &backend.ReleaseParams{JobID: j.ID, ProcessID: c.process, Fence: c.fence})
		if !errors.Is(err, backend.ErrStaleClaim) {
			t.Errorf("%s: Release err = %v, want ErrStaleClaim", c.name, err)
		}
	}
	all := jobs(t, b, tr.RunID)
	if len(all) != 1 || !reflect.DeepEqual(all[0], before) {
		t.Fatalf("jobs changed by stale calls:\n got %+v\nwant %+v", all[0], before)
	}
	if r := getRun(t, b, tr.RunID); r.Status != backend.RunRunning {
		t.Fatalf("run status %q after stale calls", r.Status)
	}
	// The current claim still completes, once: a repeat is replayed and
	// changes nothing.
	complete(t, b, j, "p1", "ok", backend.Plan{})
	res, err := b.Complete(ctx, &backend.CompleteParams{JobID: j.ID, ProcessID: "p1", Fence: j.Fence, Output: []byte("again")})
	if err != nil || !res.Replayed {
		t.Fatalf("second Complete = %+v, %v; want Replayed", res, err)
	}
	if out := jobs(t, b, tr.RunID)[0].Output; string(out) != "ok" {
		t.Fatalf("output after a replayed Complete = %q, want %q", out, "ok")
	}
}

func TestFailRetry(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := newBackend(t)
	tr := trigger(t, b, "in")
	j := claimOne(t, b, "p1")

	// Retry after an hour: not due.
	if _, err := b.Fail(ctx, &backend.FailParams{JobID: j.ID, ProcessID: "p1", Fence: j.Fence, Error: "boom",
		Retry: true, RetryAfter: time.Hour}); err != nil {
		t.Fatalf("Fail(retry): %v", err)
	}
	info := jobByID(t, b, tr.RunID, j.ID)
	if info.Status != backend.JobPending || info.Attempt != 2 || info.Error != "boom" || info.ProcessID != "" ||
		info.DueAt.Sub(info.CreatedAt) < time.Hour-time.Second {
		t.Fatalf("job after retry = %+v", info)
	}
	if got := claim(t, b, "p1", 1); len(got) != 0 {
		t.Fatalf("claimed a job not yet due: %+v", got[0])
	}
	if r := getRun(t, b, tr.RunID); r.Status != backend.RunRunning {
		t.Fatalf("run status %q after retry", r.Status)
	}
	// Make it due through the database, then retry at once.
	if _, err := b.DB().ExecContext(ctx, `UPDATE ductwork_jobs SET due_at = due_at - 7200000000 WHERE id = ?`, j.ID); err != nil {
		t.Fatal(err)
	}
	j = claimOne(t, b, "p1")
	if j.Attempt != 2 || j.Fence != 2 {
		t.Fatalf("re-claimed job = %+v", j)
	}
	if _, err := b.Fail(ctx, &backend.FailParams{JobID: j.ID, ProcessID: "p1", Fence: j.Fence, Retry: true}); err != nil {
		t.Fatalf("Fail(retry): %v", err)
	}
	if j = claimOne(t, b, "p1"); j.Attempt != 3 {
		t.Fatalf("attempt = %d, want 3", j.Attempt)
	}
}

func TestFailHaltsOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := newBackend(t)
	tr := trigger(t, b, "in")
	first := claimOne(t, b, "p1")
	complete(t, b, first, "p1", "", backend.Plan{Jobs: []backend.NewJob{{NodeID: "a"}, {NodeID: "b"}}})
	two := claim(t, b, "p1", 2)
	if len(two) != 2 {
		t.Fatalf("claimed %d, want 2", len(two))
	}
	var halted int
	for i, j := range two {
		res, err := b.Fail(ctx, &backend.FailParams{JobID: j.ID, ProcessID: "p1", Fence: j.Fence, Error: fmt.Sprint("err", i)})
		if err != nil {
			t.Fatalf("Fail: %v", err)
		}
		if res.Halted {
			halted++
		}
	}
	if halted != 1 {
		t.Fatalf("Halted true %d times, want 1", halted)
	}
	r := getRun(t, b, tr.RunID)
	if r.Status != backend.RunHalted || r.Error != "err0" {
		t.Fatalf("run = %+v", r)
	}
	for _, j := range two {
		if info := jobByID(t, b, tr.RunID, j.ID); info.Status != backend.JobFailed || info.FinishedAt == nil {
			t.Fatalf("job = %+v", info)
		}
	}
}

func TestReleaseMakesJobDueWithoutSpendingRetries(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := newBackend(t)
	trigger(t, b, "in")
	j := claimOne(t, b, "p1")
	if _, err := b.Release(ctx, &backend.ReleaseParams{JobID: j.ID, ProcessID: "p1", Fence: j.Fence}); err != nil {
		t.Fatalf("Release: %v", err)
	}
	again := claimOne(t, b, "p2")
	if again.ID != j.ID || again.Attempt != 1 || again.Crashes != 0 || again.Fence != j.Fence+1 {
		t.Fatalf("re-claimed = %+v", again)
	}
}

func TestClaimFiltersAndOrders(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := newBackend(t)
	other := backend.DefinitionRef{Pipeline: "orders", Fingerprint: "v2"}
	if _, err := b.Trigger(ctx, &backend.TriggerParams{Pipeline: other.Pipeline, Fingerprint: other.Fingerprint,
		First: backend.NewJob{NodeID: "start"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Trigger(ctx, &backend.TriggerParams{Pipeline: def.Pipeline, Fingerprint: def.Fingerprint,
		First: backend.NewJob{NodeID: "later", Delay: time.Hour}}); err != nil {
		t.Fatal(err)
	}
	low := trigger(t, b, "low")
	high, err := b.Trigger(ctx, &backend.TriggerParams{Pipeline: def.Pipeline, Fingerprint: def.Fingerprint,
		First: backend.NewJob{NodeID: "start", Priority: 10}})
	if err != nil {
		t.Fatal(err)
	}
	if res, err := b.Claim(ctx, &backend.ClaimParams{ProcessID: "p", Limit: 10}); err != nil || len(res.Jobs) != 0 {
		t.Fatalf("Claim with no definitions = %v, %v", res, err)
	}
	got := claim(t, b, "p", 10)
	if len(got) != 2 || got[0].ID != high.JobID || got[1].ID != low.JobID {
		t.Fatalf("claimed %d jobs: %+v", len(got), got)
	}
}

func TestConcurrentClaimers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := newBackend(t)
	const total = 300
	for i := range total {
		trigger(t, b, fmt.Sprint(i))
	}
	var (
		mu       sync.Mutex
		seen     = map[int64]int{}
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	for w := range 8 {
		wg.Go(func() {
			process := fmt.Sprint("p", w)
			for {
				res, err := b.Claim(ctx, &backend.ClaimParams{ProcessID: process, Limit: 7, Definitions: []backend.DefinitionRef{def}})
				if err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
				if len(res.Jobs) == 0 {
					return
				}
				mu.Lock()
				for _, j := range res.Jobs {
					seen[j.ID]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		t.Fatalf("Claim: %v", firstErr)
	}
	if len(seen) != total {
		t.Fatalf("claimed %d distinct jobs, want %d", len(seen), total)
	}
	for id, n := range seen {
		if n != 1 {
			t.Fatalf("job %d claimed %d times", id, n)
		}
	}
}
