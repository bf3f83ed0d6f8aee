package conformance

import (
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ductwork-go/ductwork/backend"
)

// testLimits: queues, concurrency limits (per step and per key) and rate
// limits, decided by the gated claim in the database.
func testLimits(t *testing.T, h Harness) {
	runCases(t, h, map[string]caseFunc{
		"ConcurrencyRace":     limitConcurrencyRace,
		"ConcurrencyKeys":     limitConcurrencyKeys,
		"SlotReturnedByReap":  limitSlotReturnedByReap,
		"SlotReturnedOnExit":  limitSlotReturnedOnExit,
		"GatedApart":          limitGatedApart,
		"Queues":              limitQueues,
		"ClaimNextSkipsGated": limitClaimNextSkipsGated,
		"GatedJoin":           limitGatedJoin,
		"RateBurstAndWait":    limitRateBurstAndWait,
		"RateRace":            limitRateRace,
	})
}

// claimG makes one gated (or, with gated false, ordinary) claim on queue.
func claimG(t *testing.T, b backend.Backend, process, queue string, gated bool, limit int, rates ...backend.RateLimit) *backend.ClaimResult {
	t.Helper()
	res, err := b.Claim(testCtx(t), &backend.ClaimParams{ProcessID: process, Limit: limit, Definitions: []backend.DefinitionRef{defA},
		Queue: queue, Gated: gated, RateLimits: rates})
	if err != nil {
		t.Fatalf("Claim(queue %q, gated %t): %v", queue, gated, err)
	}
	return res
}

// gatedChildren are n jobs of node "child" at scopes "0".."n-1" with gate g.
func gatedChildren(t *testing.T, n int, g backend.Gate) []backend.NewJob {
	t.Helper()
	jobs := children(t, "child", n)
	for i := range jobs {
		jobs[i].Gate = g
	}
	return jobs
}

// limitConcurrencyRace: many processes claim gated jobs of one concurrency
// key at once, each holding what it claims for a moment before completing
// it. The running jobs never exceed the limit: not as each claimer sees it
// (counted from a claim's return to the call that completes, an interval
// inside the database's) and not in the database (counted after each claim).
func limitConcurrencyRace(t *testing.T, h Harness) {
	b := newBackend(t, h)
	const n, limit, claimers = 120, 3, 8
	proc, root := startRoot(t, b, defA)
	complete(t, b, root, proc, enc(t, "ok"), backend.Plan{Jobs: gatedChildren(t, n, backend.Gate{ConcurrencyKey: "race", Concurrency: limit})})
	ctx := testCtx(t)
	var (
		running, peak, done, dbPeak atomic.Int64
		wg                          sync.WaitGroup
		start                       = make(chan struct{})
		expiry                      = time.Now().Add(2 * time.Minute)
	)
	bump := func(p *atomic.Int64, v int64) {
		for {
			old := p.Load()
			if v <= old || p.CompareAndSwap(old, v) {
				return
			}
		}
	}
	for i := range claimers {
		p := register(t, b, defA)
		wg.Go(func() {
			<-start
			for done.Load() < n && time.Now().Before(expiry) {
				res, err := b.Claim(ctx, &backend.ClaimParams{ProcessID: p, Limit: 2, Definitions: []backend.DefinitionRef{defA}, Gated: true})
				if err != nil {
					t.Errorf("Claim by %s: %v", p, err)
					return
				}
				if len(res.Jobs) == 0 {
					time.Sleep(time.Millisecond)
					continue
				}
				bump(&peak, running.Add(int64(len(res.Jobs))))
				if i%2 == 0 {
					// The database's count, read while these are held.
					lr, err := b.ListJobs(ctx, &backend.ListJobsParams{RunID: root.RunID, Status: backend.JobRunning, Limit: 1000})
					if err != nil {
						t.Errorf("ListJobs: %v", err)
						return
					}
					bump(&dbPeak, int64(len(lr.Jobs)))
				}
				time.Sleep(2 * time.Millisecond)
				for _, j := range res.Jobs {
					running.Add(-1)
					if _, err := b.Complete(ctx, &backend.CompleteParams{JobID: j.ID, ProcessID: p, Fence: j.Fence, Output: enc(t, "done")}); err != nil {
						t.Errorf("Complete(job %d): %v", j.ID, err)
						return
					}
					done.Add(1)
				}
			}
		})
	}
	close(start)
	wg.Wait()
	if got := done.Load(); got != n {
		t.Fatalf("%d of %d gated jobs completed", got, n)
	}
	if p := peak.Load(); p > limit {
		t.Fatalf("limit exceeded: %d jobs ran at once as the claimers saw it; the limit is %d", p, limit)
	}
	if p := dbPeak.Load(); p > limit {
		t.Fatalf("limit exceeded: %d jobs running at once in the database; the limit is %d", p, limit)
	}
	t.Logf("peak running: %d seen by claimers, %d in the database (limit %d)", peak.Load(), dbPeak.Load(), limit)
}

// limitConcurrencyKeys: a limit per key holds each key to its limit, and a
// backlog of one key does not hold back another key's job queued behind it:
// once the key is full, the next claim passes over its backlog.
func limitConcurrencyKeys(t *testing.T, h Harness) {
	b := newBackend(t, h)
	proc, root := startRoot(t, b, defA)
	jobs := gatedChildren(t, 2000, backend.Gate{ConcurrencyKey: "tenant-a", Concurrency: 2})
	last := backend.NewJob{NodeID: "child", Scope: "2000", Input: enc(t, 2000), Gate: backend.Gate{ConcurrencyKey: "tenant-b", Concurrency: 2}}
	complete(t, b, root, proc, enc(t, "ok"), backend.Plan{Jobs: append(jobs, last)})
	var first []*backend.Job
	for range 2 {
		first = append(first, claimG(t, b, proc, "", true, 3).Jobs...)
	}
	if len(first) != 3 {
		t.Fatalf("two gated claims took %d jobs; want 2 of tenant-a and 1 of tenant-b", len(first))
	}
	if first[0].Scope != "0" || first[1].Scope != "1" || first[2].Scope != "2000" {
		t.Fatalf("gated claims took scopes %q, %q, %q; want 0, 1 (tenant-a in order) and 2000 (tenant-b)", first[0].Scope, first[1].Scope, first[2].Scope)
	}
	if got := claimG(t, b, proc, "", true, 10).Jobs; len(got) != 0 {
		t.Fatalf("a gated claim with both keys full took %d jobs", len(got))
	}
	complete(t, b, first[0], proc, enc(t, "done"), backend.Plan{})
	got := claimG(t, b, proc, "", true, 10).Jobs
	if len(got) != 1 || got[0].Scope != "2" {
		t.Fatalf("after one tenant-a job finished the gated claim took %d jobs; want scope 2 alone", len(got))
	}
}

// limitSlotReturnedByReap: a gated job whose process died gives its slot
// back when it is reaped; the re-run takes it.
func limitSlotReturnedByReap(t *testing.T, h Harness) {
	b := newBackend(t, h)
	proc, root := startRoot(t, b, defA)
	complete(t, b, root, proc, enc(t, "ok"), backend.Plan{Jobs: gatedChildren(t, 2, backend.Gate{ConcurrencyKey: "reap", Concurrency: 1})})
	dead := register(t, b, defA)
	held := claimG(t, b, dead, "", true, 5).Jobs
	if len(held) != 1 {
		t.Fatalf("gated claim took %d jobs; want 1 (limit 1)", len(held))
	}
	live := register(t, b, defA)
	if got := claimG(t, b, live, "", true, 5).Jobs; len(got) != 0 {
		t.Fatalf("gated claim took %d jobs while the slot is held", len(got))
	}
	const threshold = 200 * time.Millisecond
	makeStale(t, b, dead, threshold)
	if _, err := b.Heartbeat(testCtx(t), &backend.HeartbeatParams{ProcessID: live}); err != nil {
		t.Fatalf("Heartbeat: %v", err)
	}
	if _, err := b.Reap(testCtx(t), &backend.ReapParams{ProcessID: live, Threshold: threshold}); err != nil {
		t.Fatalf("Reap: %v", err)
	}
	got := claimG(t, b, live, "", true, 5).Jobs
	if len(got) != 1 || got[0].ID != held[0].ID {
		t.Fatalf("after the reap the gated claim took %d jobs; want the reaped job %d again", len(got), held[0].ID)
	}
}

// limitSlotReturnedOnExit: a release, a retry and a halt each give the slot
// back in the transaction that ends the execution.
func limitSlotReturnedOnExit(t *testing.T, h Harness) {
	b := newBackend(t, h)
	proc, root := startRoot(t, b, defA)
	complete(t, b, root, proc, enc(t, "ok"), backend.Plan{Jobs: gatedChildren(t, 4, backend.Gate{ConcurrencyKey: "exit", Concurrency: 1})})
	take := func(what string) *backend.Job {
		t.Helper()
		got := claimG(t, b, proc, "", true, 5).Jobs
		if len(got) != 1 {
			t.Fatalf("%s: gated claim took %d jobs; want 1 (limit 1)", what, len(got))
		}
		if more := claimG(t, b, proc, "", true, 5).Jobs; len(more) != 0 {
			t.Fatalf("%s: a second gated claim took %d jobs while the slot is held", what, len(more))
		}
		return got[0]
	}
	j := take("first")
	if _, err := b.Release(testCtx(t), &backend.ReleaseParams{JobID: j.ID, ProcessID: proc, Fence: j.Fence}); err != nil {
		t.Fatalf("Release: %v", err)
	}
	j = take("after a release")
	if _, err := b.Fail(testCtx(t), &backend.FailParams{JobID: j.ID, ProcessID: proc, Fence: j.Fence, Error: "retry", Retry: true}); err != nil {
		t.Fatalf("Fail(retry): %v", err)
	}
	j = take("after a retry")
	if _, err := b.Fail(testCtx(t), &backend.FailParams{JobID: j.ID, ProcessID: proc, Fence: j.Fence, Error: "halt", Cause: backend.HaltRetriesExhausted}); err != nil {
		t.Fatalf("Fail(halt): %v", err)
	}
	if _, err := b.ReviveRun(testCtx(t), &backend.ReviveRunParams{RunID: root.RunID}); err != nil {
		t.Fatalf("ReviveRun: %v", err)
	}
	take("after a halt and a revive")
}

// limitGatedApart: an ordinary claim never takes a gated job, and a gated
// claim never takes an ungated one.
func limitGatedApart(t *testing.T, h Harness) {
	b := newBackend(t, h)
	proc, root := startRoot(t, b, defA)
	plain := children(t, "plain", 3)
	gated := backend.NewJob{NodeID: "gated", Input: enc(t, 0), Gate: backend.Gate{RateLimit: "apart"}}
	complete(t, b, root, proc, enc(t, "ok"), backend.Plan{Jobs: append(plain, gated)})
	rate := backend.RateLimit{Name: "apart", Interval: time.Hour, Burst: 1}
	got := claimG(t, b, proc, "", false, 10, rate).Jobs
	if len(got) != 3 {
		t.Fatalf("ordinary claim took %d jobs; want the 3 ungated", len(got))
	}
	for _, j := range got {
		if j.NodeID != "plain" {
			t.Fatalf("ordinary claim took job of node %q", j.NodeID)
		}
	}
	got = claimG(t, b, proc, "", true, 10, rate).Jobs
	if len(got) != 1 || got[0].NodeID != "gated" {
		t.Fatalf("gated claim took %d jobs; want the gated one", len(got))
	}
	// A gated job naming a rate limit the claimer does not know waits.
	proc2, root2 := startRoot(t, b, defA)
	complete(t, b, root2, proc2, enc(t, "ok"), backend.Plan{Jobs: []backend.NewJob{{NodeID: "gated", Input: enc(t, 1), Gate: backend.Gate{RateLimit: "unknown"}}}})
	if got := claimG(t, b, proc, "", true, 10, rate).Jobs; len(got) != 0 {
		t.Fatalf("gated claim took %d jobs naming a rate limit it was not given", len(got))
	}
}

// limitQueues: a job on a queue is claimed only from that queue, by
// priority within it; the default queue is "".
func limitQueues(t *testing.T, h Harness) {
	b := newBackend(t, h)
	proc, root := startRoot(t, b, defA)
	jobs := []backend.NewJob{
		{NodeID: "heavy", Scope: "0", Input: enc(t, 0), Queue: "heavy"},
		{NodeID: "heavy", Scope: "1", Input: enc(t, 1), Queue: "heavy", Priority: 5},
		{NodeID: "light", Input: enc(t, 2)},
	}
	complete(t, b, root, proc, enc(t, "ok"), backend.Plan{Jobs: jobs})
	if got := claimG(t, b, proc, "other", false, 10).Jobs; len(got) != 0 {
		t.Fatalf("claim of queue other took %d jobs", len(got))
	}
	got := claimG(t, b, proc, "", false, 10).Jobs
	if len(got) != 1 || got[0].NodeID != "light" {
		t.Fatalf("claim of the default queue took %d jobs; want the light one", len(got))
	}
	got = claimG(t, b, proc, "heavy", false, 10).Jobs
	if len(got) != 2 || got[0].Scope != "1" || got[1].Scope != "0" {
		t.Fatalf("claim of queue heavy took %d jobs; want both heavy ones, priority 5 first", len(got))
	}
	// The first job of a run on a queue.
	trigger(t, b, defA, backend.NewJob{NodeID: "root", Input: enc(t, "q"), Queue: "heavy"})
	claimNone(t, b, proc, defA)
	if got := claimG(t, b, proc, "heavy", false, 10).Jobs; len(got) != 1 {
		t.Fatalf("claim of queue heavy took %d jobs; want the triggered one", len(got))
	}
}

// limitClaimNextSkipsGated: a completion's ClaimNext takes only an ungated
// job of its own queue.
func limitClaimNextSkipsGated(t *testing.T, h Harness) {
	b := newBackend(t, h)
	for _, tc := range []struct {
		name string
		job  backend.NewJob
	}{
		{"gated", backend.NewJob{NodeID: "next", Input: enc(t, 1), Gate: backend.Gate{ConcurrencyKey: "cn", Concurrency: 5}}},
		{"other queue", backend.NewJob{NodeID: "next", Input: enc(t, 1), Queue: "heavy"}},
	} {
		proc, root := startRoot(t, b, defA)
		res := completeNext(t, b, root, proc, backend.Plan{Jobs: []backend.NewJob{tc.job}})
		if len(res.Claimed) != 0 {
			t.Fatalf("%s: ClaimNext claimed %d jobs; want none", tc.name, len(res.Claimed))
		}
	}
	proc, root := startRoot(t, b, defA)
	res, err := b.Complete(testCtx(t), &backend.CompleteParams{JobID: root.ID, ProcessID: proc, Fence: root.Fence, Output: enc(t, "ok"),
		ClaimNext: 1, Queue: "heavy", Plan: backend.Plan{Jobs: []backend.NewJob{{NodeID: "next", Input: enc(t, 1), Queue: "heavy"}}}})
	if err != nil {
		t.Fatalf("Complete: %v", err)
	}
	if len(res.Claimed) != 1 {
		t.Fatalf("ClaimNext on queue heavy claimed %d jobs of queue heavy; want 1", len(res.Claimed))
	}
}

// limitGatedJoin: a join opened with a gate and a queue fires a job with
// them (a gated claim of that queue takes it, nothing else does).
func limitGatedJoin(t *testing.T, h Harness) {
	b := newBackend(t, h)
	proc, root := startRoot(t, b, defA)
	g := backend.Gate{ConcurrencyKey: "join", Concurrency: 1}
	complete(t, b, root, proc, enc(t, "ok"), backend.Plan{
		Jobs:      children(t, "part", 2),
		OpenJoins: []backend.OpenJoin{{NodeID: "gather", Expected: 2, Queue: "heavy", Gate: g}},
	})
	parts := claim(t, b, proc, 10, defA)
	if len(parts) != 2 {
		t.Fatalf("claimed %d parts; want 2", len(parts))
	}
	for i, p := range parts {
		slot, _ := strconv.Atoi(p.Scope)
		complete(t, b, p, proc, enc(t, i), backend.Plan{Arrive: &backend.Arrival{NodeID: "gather", Slot: slot, Queue: "heavy", Gated: true}})
	}
	claimNone(t, b, proc, defA)
	if got := claimG(t, b, proc, "heavy", false, 10).Jobs; len(got) != 0 {
		t.Fatalf("ordinary claim of queue heavy took %d jobs; the join's job is gated", len(got))
	}
	got := claimG(t, b, proc, "heavy", true, 10).Jobs
	if len(got) != 1 || got[0].NodeID != "gather" || !got[0].Join || len(got[0].JoinInputs) != 2 {
		t.Fatalf("gated claim of queue heavy took %d jobs; want the join's job with its 2 inputs", len(got))
	}
}

// limitRateBurstAndWait: a rate limit lets Burst jobs start at once, then
// holds the rest back (pending, in order) and says when a token is due;
// once the database's clock passes it, the next job in order starts.
func limitRateBurstAndWait(t *testing.T, h Harness) {
	b := newBackend(t, h)
	proc, root := startRoot(t, b, defA)
	complete(t, b, root, proc, enc(t, "ok"), backend.Plan{Jobs: gatedChildren(t, 5, backend.Gate{RateLimit: "stripe"})})
	rate := backend.RateLimit{Name: "stripe", Interval: 400 * time.Millisecond, Burst: 2}
	res := claimG(t, b, proc, "", true, 10, rate)
	if len(res.Jobs) != 2 || res.Jobs[0].Scope != "0" || res.Jobs[1].Scope != "1" {
		t.Fatalf("first gated claim took %d jobs; want the burst of 2, scopes 0 and 1", len(res.Jobs))
	}
	if res.RetryIn <= 0 || res.RetryIn > rate.Interval+precision(b) {
		t.Fatalf("RetryIn = %v; want a wait in (0, %v]", res.RetryIn, rate.Interval)
	}
	at := res.Jobs[0].ClaimedAt
	if got := claimG(t, b, proc, "", true, 10, rate); len(got.Jobs) != 0 && now(t, b).Sub(at) < rate.Interval-2*precision(b) {
		t.Fatalf("a gated claim within the interval took %d jobs", len(got.Jobs))
	}
	waitPast(t, b, at, rate.Interval+100*time.Millisecond) // ClaimedAt may precede the claim's own reading of the clock
	got := claimG(t, b, proc, "", true, 10, rate).Jobs
	if len(got) != 1 || got[0].Scope != "2" {
		t.Fatalf("after the wait the gated claim took %d jobs; want scope 2 alone", len(got))
	}
	for _, j := range listJobs(t, b, root.RunID) {
		if (j.Scope == "3" || j.Scope == "4") && j.Status != backend.JobPending {
			t.Fatalf("job at scope %s is %s; work over the limit waits, pending", j.Scope, j.Status)
		}
	}
}

// limitRateRace: claimers in several processes share one rate limit; over
// the whole run, no more jobs start than the limit allows (its burst plus
// one per interval of the database's clock).
func limitRateRace(t *testing.T, h Harness) {
	b := newBackend(t, h)
	proc, root := startRoot(t, b, defA)
	const n = 400
	complete(t, b, root, proc, enc(t, "ok"), backend.Plan{Jobs: gatedChildren(t, n, backend.Gate{RateLimit: "shared"})})
	rate := backend.RateLimit{Name: "shared", Interval: 50 * time.Millisecond, Burst: 3}
	ctx := testCtx(t)
	begin := now(t, b)
	var (
		started atomic.Int64
		wg      sync.WaitGroup
		stop    = time.Now().Add(1500 * time.Millisecond)
	)
	for range 6 {
		p := register(t, b, defA)
		wg.Go(func() {
			for time.Now().Before(stop) {
				res, err := b.Claim(ctx, &backend.ClaimParams{ProcessID: p, Limit: 4, Definitions: []backend.DefinitionRef{defA},
					Gated: true, RateLimits: []backend.RateLimit{rate}})
				if err != nil {
					if !errors.Is(err, ctx.Err()) {
						t.Errorf("Claim: %v", err)
					}
					return
				}
				started.Add(int64(len(res.Jobs)))
				time.Sleep(time.Millisecond)
			}
		})
	}
	wg.Wait()
	elapsed := now(t, b).Sub(begin)
	allowed := int64(rate.Burst) + int64(elapsed/rate.Interval) + 1
	if got := started.Load(); got > allowed {
		t.Fatalf("%d jobs started in %v; the limit allows at most %d (burst %d + one per %v)", got, elapsed, allowed, rate.Burst, rate.Interval)
	} else if got < 2 {
		t.Fatalf("%d jobs started in %v; the limit allows about %d", got, elapsed, allowed)
	}
	t.Logf("%d jobs started in %v (at most %d allowed)", started.Load(), elapsed, allowed)
}
