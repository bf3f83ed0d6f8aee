package conformance

import (
	"maps"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ductwork-go/ductwork/backend"
)

func testClaims(t *testing.T, h Harness) {
	runCases(t, h, map[string]caseFunc{
		"ExactlyOnce":       claimExactlyOnce,
		"NotDue":            claimNotDue,
		"DefinitionsFilter": claimDefinitionsFilter,
		"Limit":             claimLimit,
		"Fields":            claimFields,
		"Priority":          claimPriority,
	})
}

// claimExactlyOnce: 8 concurrent claimers over 1,000 due jobs claim each
// exactly once.
func claimExactlyOnce(t *testing.T, h Harness) {
	b := newBackend(t, h)
	const n, claimers = 1000, 8
	proc, root := startRoot(t, b, defA)
	if res := complete(t, b, root, proc, enc(t, "ok"), backend.Plan{Jobs: children(t, "child", n)}); res.NewJobs != n {
		t.Fatalf("Complete inserted %d jobs; want %d", res.NewJobs, n)
	}
	procs := make([]string, claimers)
	for i := range procs {
		procs[i] = register(t, b, defA)
	}
	ctx := testCtx(t)
	var (
		mu     sync.Mutex
		owner  = map[int64]string{} // job ID -> claiming process
		dups   []int64
		total  atomic.Int64
		wg     sync.WaitGroup
		start  = make(chan struct{})
		expiry = time.Now().Add(2 * time.Minute)
	)
	for _, p := range procs {
		wg.Go(func() {
			<-start
			for total.Load() < n && time.Now().Before(expiry) {
				res, err := b.Claim(ctx, &backend.ClaimParams{ProcessID: p, Limit: 10, Definitions: []backend.DefinitionRef{defA}})
				if err != nil {
					t.Errorf("Claim by %s: %v", p, err)
					return
				}
				if len(res.Jobs) == 0 {
					time.Sleep(time.Millisecond)
					continue
				}
				mu.Lock()
				for _, j := range res.Jobs {
					if _, seen := owner[j.ID]; seen {
						dups = append(dups, j.ID)
					}
					owner[j.ID] = p
				}
				mu.Unlock()
				total.Add(int64(len(res.Jobs)))
			}
		})
	}
	close(start)
	wg.Wait()
	if len(dups) > 0 {
		t.Fatalf("%d jobs were claimed more than once (first: job %d)", len(dups), dups[0])
	}
	if len(owner) != n {
		t.Fatalf("claimers took %d distinct jobs; want %d", len(owner), n)
	}
	claimNone(t, b, proc, defA)
	running := 0
	for _, j := range listJobs(t, b, root.RunID) {
		if j.ID == root.ID {
			continue
		}
		if j.Status != backend.JobRunning || j.ProcessID != owner[j.ID] {
			t.Errorf("job %d: status %q owner %q; want running, owned by %q", j.ID, j.Status, j.ProcessID, owner[j.ID])
			continue
		}
		running++
	}
	if running != n {
		t.Errorf("%d children are running; want %d", running, n)
	}
}

// claimNotDue: a job delayed by an hour is not claimed; a due one beside it is.
func claimNotDue(t *testing.T, h Harness) {
	b := newBackend(t, h)
	later := trigger(t, b, defA, backend.NewJob{NodeID: "root", Delay: time.Hour})
	due := trigger(t, b, defA, backend.NewJob{NodeID: "root"})
	proc := register(t, b, defA)
	jobs := claim(t, b, proc, 10, defA)
	if len(jobs) != 1 || jobs[0].ID != due.JobID {
		t.Fatalf("Claim returned %d jobs; want only the due job %d", len(jobs), due.JobID)
	}
	info := jobByID(t, b, later.RunID, later.JobID)
	if info.Status != backend.JobPending {
		t.Errorf("delayed job status = %q; want %q", info.Status, backend.JobPending)
	}
	if soon := now(t, b).Add(50 * time.Minute); info.DueAt.Before(soon) {
		t.Errorf("delayed job DueAt = %v; want about an hour from the database clock (after %v)", info.DueAt, soon)
	}
}

// claimDefinitionsFilter: a process claims only work of the definitions it
// passes, and nothing with an empty list.
func claimDefinitionsFilter(t *testing.T, h Harness) {
	b := newBackend(t, h)
	ids := map[backend.DefinitionRef]int64{}
	for _, d := range []backend.DefinitionRef{defA, defA2, defB} {
		ids[d] = trigger(t, b, d, backend.NewJob{NodeID: "root"}).JobID
	}
	proc := register(t, b, defA)
	claimNone(t, b, proc) // empty Definitions claims nothing
	jobs := claim(t, b, proc, 10, defA)
	if len(jobs) != 1 || jobs[0].ID != ids[defA] {
		t.Fatalf("Claim(%v) returned %d jobs; want only job %d", defA, len(jobs), ids[defA])
	}
	if jobs[0].Pipeline != defA.Pipeline || jobs[0].Fingerprint != defA.Fingerprint {
		t.Errorf("claimed job of %s/%s; want %s/%s", jobs[0].Pipeline, jobs[0].Fingerprint, defA.Pipeline, defA.Fingerprint)
	}
	claimNone(t, b, proc, defA)
	jobs = claim(t, b, proc, 10, defA2, defB)
	got := map[int64]bool{}
	for _, j := range jobs {
		got[j.ID] = true
	}
	if len(jobs) != 2 || !got[ids[defA2]] || !got[ids[defB]] {
		t.Errorf("Claim(%v, %v) returned %v; want jobs %d and %d", defA2, defB, got, ids[defA2], ids[defB])
	}
}

// claimLimit: Claim never returns more than Limit jobs.
func claimLimit(t *testing.T, h Harness) {
	b := newBackend(t, h)
	for range 10 {
		trigger(t, b, defA, backend.NewJob{NodeID: "root"})
	}
	proc := register(t, b, defA)
	if jobs := claim(t, b, proc, 3, defA); len(jobs) != 3 {
		t.Fatalf("Claim(limit 3) over 10 due jobs returned %d; want 3", len(jobs))
	}
	if jobs := claim(t, b, proc, 1, defA); len(jobs) != 1 {
		t.Fatalf("Claim(limit 1) returned %d; want 1", len(jobs))
	}
	if jobs := claim(t, b, proc, 100, defA); len(jobs) != 6 {
		t.Fatalf("Claim(limit 100) over the 6 left returned %d; want 6", len(jobs))
	}
	claimNone(t, b, proc, defA)
}

// claimFields: a claimed job carries what the executor needs.
func claimFields(t *testing.T, h Harness) {
	b := newBackend(t, h)
	input := enc(t, []string{"a", "b"})
	meta := map[string]string{"k": "v"}
	res, err := b.Trigger(testCtx(t), &backend.TriggerParams{
		Pipeline: defA.Pipeline, Fingerprint: defA.Fingerprint, Input: input, Metadata: meta,
		First: backend.NewJob{NodeID: "node-1", Scope: "", Input: input},
	})
	if err != nil {
		t.Fatalf("Trigger: %v", err)
	}
	proc := register(t, b, defA)
	before := now(t, b)
	j := claimOne(t, b, proc, defA)
	switch {
	case j.ID != res.JobID, j.RunID != res.RunID:
		t.Errorf("claimed %s; want job %d of run %d", describeJob(j), res.JobID, res.RunID)
	case j.Pipeline != defA.Pipeline, j.Fingerprint != defA.Fingerprint, j.NodeID != "node-1", j.Scope != "":
		t.Errorf("claimed job of %s/%s node %q scope %q; want %s/%s node \"node-1\" scope \"\"",
			j.Pipeline, j.Fingerprint, j.NodeID, j.Scope, defA.Pipeline, defA.Fingerprint)
	case !equalBytes(j.Input, input):
		t.Errorf("claimed input = %s; want %s", short(j.Input), short(input))
	case j.Join || len(j.JoinInputs) != 0:
		t.Errorf("claimed job has Join %v, %d join inputs; want a plain job", j.Join, len(j.JoinInputs))
	case j.Attempt != 1, j.Crashes != 0, j.Fence <= 0:
		t.Errorf("claimed %s; want attempt 1, crashes 0, a positive fence", describeJob(j))
	case !maps.Equal(j.Metadata, meta):
		t.Errorf("claimed metadata = %v; want %v", j.Metadata, meta)
	case j.ClaimedAt.Before(before.Add(-precision(b))):
		t.Errorf("ClaimedAt %v is before the database clock read before Claim (%v)", j.ClaimedAt, before)
	}
	info := jobByID(t, b, res.RunID, res.JobID)
	if info.Status != backend.JobRunning || info.ProcessID != proc || info.Fence != j.Fence || info.StartedAt == nil {
		t.Errorf("listed job = {status %q, process %q, fence %d, started %v}; want {running, %q, %d, set}",
			info.Status, info.ProcessID, info.Fence, info.StartedAt, proc, j.Fence)
	}
}

// claimPriority: among due jobs the higher priority is claimed first.
func claimPriority(t *testing.T, h Harness) {
	b := newBackend(t, h)
	trigger(t, b, defA, backend.NewJob{NodeID: "root", Priority: 1})
	high := trigger(t, b, defA, backend.NewJob{NodeID: "root", Priority: 10})
	trigger(t, b, defA, backend.NewJob{NodeID: "root", Priority: -5})
	proc := register(t, b, defA)
	if j := claimOne(t, b, proc, defA); j.ID != high.JobID {
		t.Errorf("Claim(limit 1) took job %d; want the priority-10 job %d", j.ID, high.JobID)
	}
}
