package conformance

import (
	"testing"
	"time"

	"github.com/ductwork-go/ductwork/backend"
)

func testListing(t *testing.T, h Harness) {
	runCases(t, h, map[string]caseFunc{
		"ListRuns":            listingRuns,
		"ListRunsTimeRange":   listingRunsTimeRange,
		"ListJobs":            listingJobs,
		"StrandedDefinitions": listingStranded,
		"LastPageFull":        listingLastPageFull,
	})
}

// listAllRuns follows ListRuns pagination with the given page size and
// checks that the pages are newest first without overlap.
func listAllRuns(t *testing.T, b backend.Backend, p backend.ListRunsParams) []*backend.Run {
	t.Helper()
	var all []*backend.Run
	for range 10_000 {
		res, err := b.ListRuns(testCtx(t), &p)
		if err != nil {
			t.Fatalf("ListRuns(%+v): %v", p, err)
		}
		if p.Limit > 0 && len(res.Runs) > p.Limit {
			t.Fatalf("ListRuns(limit %d) returned %d runs", p.Limit, len(res.Runs))
		}
		for _, r := range res.Runs {
			if len(all) > 0 && r.ID >= all[len(all)-1].ID {
				t.Fatalf("ListRuns not newest first: run %d after run %d", r.ID, all[len(all)-1].ID)
			}
			all = append(all, r)
		}
		if res.Next == 0 {
			return all
		}
		if p.BeforeID != 0 && res.Next >= p.BeforeID {
			t.Fatalf("ListRuns Next %d does not move below BeforeID %d", res.Next, p.BeforeID)
		}
		p.BeforeID = res.Next
	}
	t.Fatal("ListRuns pagination does not end")
	return nil
}

// listingRuns: ListRuns filters by status and pipeline, and its pages cover
// every run exactly once.
func listingRuns(t *testing.T, h Harness) {
	b := newBackend(t, h)
	var a, bb []int64
	for range 15 {
		a = append(a, trigger(t, b, defA, backend.NewJob{NodeID: "root"}).RunID)
	}
	for range 10 {
		bb = append(bb, trigger(t, b, defB, backend.NewJob{NodeID: "root"}).RunID)
	}
	cancelled := map[int64]bool{}
	for _, id := range a[:5] {
		if _, err := b.CancelRun(testCtx(t), &backend.CancelRunParams{RunID: id, Reason: "listing"}); err != nil {
			t.Fatalf("CancelRun: %v", err)
		}
		cancelled[id] = true
	}
	check := func(name string, p backend.ListRunsParams, want func(*backend.Run) bool, wantN int) {
		t.Helper()
		for _, limit := range []int{0, 1, 7, 25, 100} {
			p.Limit = limit
			runs := listAllRuns(t, b, p)
			seen := map[int64]bool{}
			for _, r := range runs {
				if seen[r.ID] {
					t.Errorf("%s (limit %d): run %d listed twice", name, limit, r.ID)
				}
				seen[r.ID] = true
				if !want(r) {
					t.Errorf("%s (limit %d): run %d (%s, %s) does not match the filter", name, limit, r.ID, r.Pipeline, r.Status)
				}
			}
			if len(seen) != wantN {
				t.Errorf("%s (limit %d): %d runs; want %d", name, limit, len(seen), wantN)
			}
		}
	}
	check("all", backend.ListRunsParams{}, func(*backend.Run) bool { return true }, 25)
	check("pipeline a", backend.ListRunsParams{Pipeline: defA.Pipeline},
		func(r *backend.Run) bool { return r.Pipeline == defA.Pipeline }, 15)
	check("cancelled", backend.ListRunsParams{Status: backend.RunCancelled},
		func(r *backend.Run) bool { return r.Status == backend.RunCancelled && cancelled[r.ID] }, 5)
	check("pipeline a running", backend.ListRunsParams{Pipeline: defA.Pipeline, Status: backend.RunRunning},
		func(r *backend.Run) bool { return r.Pipeline == defA.Pipeline && r.Status == backend.RunRunning }, 10)
	check("pipeline b cancelled", backend.ListRunsParams{Pipeline: defB.Pipeline, Status: backend.RunCancelled},
		func(*backend.Run) bool { return false }, 0)
	check("unknown pipeline", backend.ListRunsParams{Pipeline: "nope"}, func(*backend.Run) bool { return false }, 0)
	// BeforeID alone: only older runs.
	older := listAllRuns(t, b, backend.ListRunsParams{BeforeID: bb[0]})
	if len(older) != len(a) {
		t.Errorf("ListRuns(BeforeID %d) = %d runs; want the %d runs created before it", bb[0], len(older), len(a))
	}
}

// listingRunsTimeRange: CreatedFrom is inclusive, CreatedTo exclusive, both
// by the stored created_at, and they combine with the other filters and with
// pagination.
func listingRunsTimeRange(t *testing.T, h Harness) {
	b := newBackend(t, h)
	var batches [3][]*backend.Run
	for i := range batches {
		for range 4 {
			batches[i] = append(batches[i], getRun(t, b, trigger(t, b, defA, backend.NewJob{NodeID: "root"}).RunID))
		}
		batches[i] = append(batches[i], getRun(t, b, trigger(t, b, defB, backend.NewJob{NodeID: "root"}).RunID))
		latest := batches[i][0].CreatedAt
		for _, r := range batches[i] {
			if r.CreatedAt.After(latest) {
				latest = r.CreatedAt
			}
		}
		waitPast(t, b, latest, precision(b)) // the next batch is created strictly later
	}
	first := func(rs []*backend.Run) time.Time {
		m := rs[0].CreatedAt
		for _, r := range rs {
			if r.CreatedAt.Before(m) {
				m = r.CreatedAt
			}
		}
		return m
	}
	from, to := first(batches[1]), first(batches[2])
	ids := func(runs []*backend.Run, pipeline string) map[int64]bool {
		m := map[int64]bool{}
		for _, r := range runs {
			if pipeline == "" || r.Pipeline == pipeline {
				m[r.ID] = true
			}
		}
		return m
	}
	check := func(name string, p backend.ListRunsParams, want map[int64]bool) {
		t.Helper()
		for _, limit := range []int{0, 1, 3} {
			p.Limit = limit
			got := listAllRuns(t, b, p)
			if len(got) != len(want) {
				t.Errorf("%s (limit %d): %d runs; want %d", name, limit, len(got), len(want))
			}
			for _, r := range got {
				if !want[r.ID] {
					t.Errorf("%s (limit %d): run %d (created %v) does not match [%v, %v)", name, limit, r.ID, r.CreatedAt, p.CreatedFrom, p.CreatedTo)
				}
			}
		}
	}
	all := append(append(append([]*backend.Run{}, batches[0]...), batches[1]...), batches[2]...)
	check("from the second batch", backend.ListRunsParams{CreatedFrom: from}, ids(append(append([]*backend.Run{}, batches[1]...), batches[2]...), ""))
	check("before the second batch", backend.ListRunsParams{CreatedTo: from}, ids(batches[0], ""))
	check("the second batch", backend.ListRunsParams{CreatedFrom: from, CreatedTo: to}, ids(batches[1], ""))
	check("the second batch of pipeline b", backend.ListRunsParams{CreatedFrom: from, CreatedTo: to, Pipeline: defB.Pipeline}, ids(batches[1], defB.Pipeline))
	check("empty range", backend.ListRunsParams{CreatedFrom: to, CreatedTo: to}, map[int64]bool{})
	check("unbounded", backend.ListRunsParams{}, ids(all, ""))
}

// listingJobs: ListJobs lists a run's jobs in creation order, filters by
// status, and its pages cover every job exactly once.
func listingJobs(t *testing.T, h Harness) {
	b := newBackend(t, h)
	proc, root := startRoot(t, b, defA)
	complete(t, b, root, proc, nil, backend.Plan{Jobs: children(t, "child", 30)})
	other := trigger(t, b, defA, backend.NewJob{NodeID: "root"}) // another run's job must not show up
	for _, limit := range []int{1, 4, 30, 31, 100} {
		var all []*backend.JobInfo
		var after int64
		for page := 0; ; page++ {
			if page > 100 {
				t.Fatalf("limit %d: ListJobs pagination does not end", limit)
			}
			res, err := b.ListJobs(testCtx(t), &backend.ListJobsParams{RunID: root.RunID, Limit: limit, AfterID: after})
			if err != nil {
				t.Fatalf("ListJobs: %v", err)
			}
			if len(res.Jobs) > limit {
				t.Fatalf("ListJobs(limit %d) returned %d jobs", limit, len(res.Jobs))
			}
			all = append(all, res.Jobs...)
			if res.Next == 0 {
				break
			}
			after = res.Next
		}
		if len(all) != 31 {
			t.Fatalf("limit %d: %d jobs listed; want 31", limit, len(all))
		}
		for i, j := range all {
			if j.RunID != root.RunID || j.ID == other.JobID {
				t.Fatalf("limit %d: job %d of run %d listed for run %d", limit, j.ID, j.RunID, root.RunID)
			}
			if i > 0 && j.ID <= all[i-1].ID {
				t.Fatalf("limit %d: job %d listed after job %d; want ascending IDs", limit, j.ID, all[i-1].ID)
			}
		}
		if all[0].ID != root.ID {
			t.Errorf("limit %d: first job %d; want the first step's job %d", limit, all[0].ID, root.ID)
		}
	}
	for status, want := range map[string]int{backend.JobPending: 30, backend.JobCompleted: 1, backend.JobRunning: 0} {
		res, err := b.ListJobs(testCtx(t), &backend.ListJobsParams{RunID: root.RunID, Status: status})
		if err != nil {
			t.Fatalf("ListJobs(status %s): %v", status, err)
		}
		if len(res.Jobs) != want {
			t.Errorf("ListJobs(status %s) = %d jobs; want %d", status, len(res.Jobs), want)
		}
		for _, j := range res.Jobs {
			if j.Status != status {
				t.Errorf("ListJobs(status %s) listed a %s job", status, j.Status)
			}
		}
	}
}

// listingStranded: StrandedDefinitions reports definitions with unfinished
// runs that are not known, with their run counts, and nothing else.
func listingStranded(t *testing.T, h Harness) {
	b := newBackend(t, h)
	trigger(t, b, defA, backend.NewJob{NodeID: "root"})
	trigger(t, b, defA, backend.NewJob{NodeID: "root"})
	trigger(t, b, defA2, backend.NewJob{NodeID: "root"})
	// defB's only run is finished, so it is never stranded.
	trigger(t, b, defB, backend.NewJob{NodeID: "root"})
	proc := register(t, b, defB)
	complete(t, b, claimOne(t, b, proc, defB), proc, nil, backend.Plan{CompleteRun: true})

	stranded := func(known ...backend.DefinitionRef) map[backend.DefinitionRef]int {
		t.Helper()
		res, err := b.StrandedDefinitions(testCtx(t), &backend.StrandedDefinitionsParams{Known: known})
		if err != nil {
			t.Fatalf("StrandedDefinitions: %v", err)
		}
		got := map[backend.DefinitionRef]int{}
		for _, d := range res.Definitions {
			got[d.DefinitionRef] = d.Runs
		}
		return got
	}
	if got := stranded(defA); len(got) != 1 || got[defA2] != 1 {
		t.Errorf("StrandedDefinitions(known %v) = %v; want only %v with 1 run", defA, got, defA2)
	}
	if got := stranded(); len(got) != 2 || got[defA] != 2 || got[defA2] != 1 {
		t.Errorf("StrandedDefinitions(known none) = %v; want %v: 2, %v: 1", got, defA, defA2)
	}
	if got := stranded(defA, defA2, defB); len(got) != 0 {
		t.Errorf("StrandedDefinitions(all known) = %v; want none", got)
	}
}

// listingLastPageFull pins what the contract says of Next: 0 on the last
// page, also when that page is exactly full (a backend that set Next
// whenever a page was full sent its caller to an empty page).
func listingLastPageFull(t *testing.T, h Harness) {
	b := newBackend(t, h)
	for i := range 4 {
		trigger(t, b, defA, backend.NewJob{NodeID: "root", Input: enc(t, i)})
	}
	page := func(p backend.ListRunsParams) *backend.ListRunsResult {
		t.Helper()
		res, err := b.ListRuns(testCtx(t), &p)
		if err != nil {
			t.Fatalf("ListRuns(%+v): %v", p, err)
		}
		return res
	}
	if res := page(backend.ListRunsParams{Limit: 4}); len(res.Runs) != 4 || res.Next != 0 {
		t.Fatalf("ListRuns(limit 4) of 4 runs = %d runs, Next %d; want 4 runs, Next 0", len(res.Runs), res.Next)
	}
	first := page(backend.ListRunsParams{Limit: 2})
	if len(first.Runs) != 2 || first.Next == 0 {
		t.Fatalf("ListRuns(limit 2) of 4 runs = %d runs, Next %d; want 2 runs and a Next", len(first.Runs), first.Next)
	}
	if res := page(backend.ListRunsParams{Limit: 2, BeforeID: first.Next}); len(res.Runs) != 2 || res.Next != 0 {
		t.Fatalf("the second page of 2 of 4 runs = %d runs, Next %d; want 2 runs, Next 0", len(res.Runs), res.Next)
	}
	run := first.Runs[0].ID
	jobs, err := b.ListJobs(testCtx(t), &backend.ListJobsParams{RunID: run, Limit: 1})
	if err != nil {
		t.Fatalf("ListJobs: %v", err)
	}
	if len(jobs.Jobs) != 1 || jobs.Next != 0 {
		t.Fatalf("ListJobs(limit 1) of a run with one job = %d jobs, Next %d; want 1 job, Next 0", len(jobs.Jobs), jobs.Next)
	}
}
