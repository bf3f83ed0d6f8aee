package conformance

import (
	"testing"
	"time"

	"github.com/ductwork-go/ductwork/backend"
)

func testClock(t *testing.T, h Harness) {
	runCases(t, h, map[string]caseFunc{
		"Monotonic":       clockMonotonic,
		"DelayByDBClock":  clockDelay,
		"TimestampsOrder": clockTimestamps,
	})
}

// clockMonotonic: Now never goes back by more than the backend's time
// precision, and does advance.
func clockMonotonic(t *testing.T, h Harness) {
	b := newBackend(t, h)
	if p := b.Capabilities().TimePrecision; p <= 0 {
		t.Errorf("Capabilities().TimePrecision = %v; want a positive resolution", p)
	}
	tol := precision(b)
	prev := now(t, b)
	if prev.IsZero() {
		t.Fatal("Now returned the zero time")
	}
	first := prev
	for i := range 100 {
		n := now(t, b)
		if n.Before(prev.Add(-tol)) {
			t.Fatalf("Now #%d = %v went back from %v by more than %v", i, n, prev, tol)
		}
		prev = n
	}
	waitPast(t, b, first, 2*tol)
}

// clockDelay: a job delayed by 200ms is due by the database clock: not
// claimable at once, claimable once the database clock passes its due time.
func clockDelay(t *testing.T, h Harness) {
	b := newBackend(t, h)
	const delay = 200 * time.Millisecond
	before := now(t, b)
	tr := trigger(t, b, defA, backend.NewJob{NodeID: "root", Delay: delay})
	proc := register(t, b, defA)
	if jobs := claim(t, b, proc, 1, defA); len(jobs) != 0 {
		// Only a failure if the database clock says the delay has not passed.
		if elapsed := now(t, b).Sub(before); elapsed < delay-precision(b) {
			t.Fatalf("a job with Delay %v was claimed %v after Trigger by the database clock", delay, elapsed)
		}
		t.Skipf("inconclusive: this machine took longer than %v between Trigger and Claim", delay)
	}
	info := jobByID(t, b, tr.RunID, tr.JobID)
	if d := info.DueAt.Sub(info.CreatedAt); d < delay-precision(b) || d > delay+time.Second {
		t.Errorf("DueAt - CreatedAt = %v; want about %v", d, delay)
	}
	var got *backend.Job
	waitFor(t, 10*time.Second, "the delayed job to become claimable", func() bool {
		if jobs := claim(t, b, proc, 1, defA); len(jobs) == 1 {
			got = jobs[0]
			return true
		}
		return false
	})
	if got.ID != tr.JobID {
		t.Fatalf("claimed job %d; want %d", got.ID, tr.JobID)
	}
	if at := now(t, b); at.Before(info.DueAt.Add(-precision(b))) {
		t.Errorf("claimed at database time %v, before the job's DueAt %v", at, info.DueAt)
	}
}

// clockTimestamps: stored timestamps follow the database clock through a
// job's life: created <= due <= started <= finished.
func clockTimestamps(t *testing.T, h Harness) {
	b := newBackend(t, h)
	tol := precision(b)
	before := now(t, b)
	proc, j := startRoot(t, b, defA)
	complete(t, b, j, proc, nil, backend.Plan{CompleteRun: true})
	after := now(t, b)
	info := jobByID(t, b, j.RunID, j.ID)
	if info.StartedAt == nil || info.FinishedAt == nil {
		t.Fatalf("completed job has StartedAt %v, FinishedAt %v; want both set", info.StartedAt, info.FinishedAt)
	}
	seq := []struct {
		name string
		at   time.Time
	}{
		{"Now before", before}, {"CreatedAt", info.CreatedAt}, {"DueAt", info.DueAt},
		{"StartedAt", *info.StartedAt}, {"FinishedAt", *info.FinishedAt}, {"Now after", after},
	}
	for i := 1; i < len(seq); i++ {
		if seq[i].at.Before(seq[i-1].at.Add(-tol)) {
			t.Errorf("%s %v is before %s %v", seq[i].name, seq[i].at, seq[i-1].name, seq[i-1].at)
		}
	}
	r := getRun(t, b, j.RunID)
	if r.UpdatedAt.Before(r.CreatedAt.Add(-tol)) || r.CreatedAt.Before(before.Add(-tol)) || r.UpdatedAt.After(after.Add(tol)) {
		t.Errorf("run CreatedAt %v, UpdatedAt %v; want within [%v, %v] and in order", r.CreatedAt, r.UpdatedAt, before, after)
	}
}
