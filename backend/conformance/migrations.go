package conformance

import (
	"sync"
	"testing"

	"github.com/ductwork-go/ductwork/backend"
)

func testMigrations(t *testing.T, h Harness) {
	runCases(t, h, map[string]caseFunc{
		"Idempotent": migrateIdempotent,
		"Concurrent": migrateConcurrent,
	})
}

// migrateIdempotent: Migrate twice more on a migrated backend changes
// nothing and keeps data.
func migrateIdempotent(t *testing.T, h Harness) {
	b := newBackend(t, h)
	tr := trigger(t, b, defA, backend.NewJob{NodeID: "root", Input: enc(t, 1)})
	for i := range 2 {
		if err := b.Migrate(testCtx(t)); err != nil {
			t.Fatalf("Migrate #%d on a migrated backend: %v", i+2, err)
		}
	}
	if r := getRun(t, b, tr.RunID); r.Status != backend.RunRunning {
		t.Fatalf("run status after re-migrating = %q; want %q", r.Status, backend.RunRunning)
	}
	if jobs := listJobs(t, b, tr.RunID); len(jobs) != 1 {
		t.Fatalf("run has %d jobs after re-migrating; want 1", len(jobs))
	}
}

// migrateConcurrent: four handles on the same un-migrated storage migrate at
// once; all succeed and the schema works from every handle.
func migrateConcurrent(t *testing.T, h Harness) {
	if h.Reopen == nil {
		t.Skip("Harness.Reopen is nil: cannot open a second handle on the same storage")
	}
	first := h.NewBackend(t)
	handles := []backend.Backend{first}
	for range 3 {
		handles = append(handles, h.Reopen(t, first))
	}
	ctx := testCtx(t)
	start := make(chan struct{})
	errs := make([]error, len(handles))
	var wg sync.WaitGroup
	for i, b := range handles {
		wg.Go(func() {
			<-start
			errs[i] = b.Migrate(ctx)
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("concurrent Migrate on handle %d: %v", i, err)
		}
	}
	if t.Failed() {
		return
	}
	// Data written through one handle is visible through every other.
	tr := trigger(t, handles[1], defA, backend.NewJob{NodeID: "root"})
	for i, b := range handles {
		if r := getRun(t, b, tr.RunID); r.ID != tr.RunID {
			t.Errorf("handle %d: GetRun(%d) returned run %d", i, tr.RunID, r.ID)
		}
	}
	if err := handles[3].Migrate(ctx); err != nil {
		t.Errorf("Migrate after the concurrent migrations: %v", err)
	}
}
