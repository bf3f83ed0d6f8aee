package sqlite_test

import (
	"context"
	"errors"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/ductwork-go/ductwork/backend"
)

func TestReapDeadProcess(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := newBackend(t)
	register(t, b, "dead")
	register(t, b, "live")
	tr := trigger(t, b, "in")
	j := claimOne(t, b, "dead")
	complete(t, b, j, "dead", "", backend.Plan{Jobs: []backend.NewJob{{NodeID: "a"}, {NodeID: "b"}}})
	held := claim(t, b, "dead", 2)
	if len(held) != 2 {
		t.Fatalf("claimed %d, want 2", len(held))
	}

	// A live process is not reaped.
	res, err := b.Reap(ctx, &backend.ReapParams{ProcessID: "live", Threshold: time.Minute})
	if err != nil || len(res.Processes) != 0 || res.Jobs != 0 {
		t.Fatalf("Reap of live processes = %+v, %v", res, err)
	}

	if _, err := b.DB().ExecContext(ctx,
		`UPDATE ductwork_processes SET heartbeat_at = heartbeat_at - 3600000000 WHERE id = 'dead'`); err != nil {
		t.Fatal(err)
	}
	// The reaper never reaps itself.
	res, err = b.Reap(ctx, &backend.ReapParams{ProcessID: "dead", Threshold: time.Minute})
	if err != nil || len(res.Processes) != 0 {
		t.Fatalf("self Reap = %+v, %v", res, err)
	}
	res, err = b.Reap(ctx, &backend.ReapParams{ProcessID: "live", Threshold: time.Minute})
	if err != nil {
		t.Fatalf("Reap: %v", err)
	}
	if !reflect.DeepEqual(res.Processes, []string{"dead"}) || res.Jobs != 2 {
		t.Fatalf("Reap = %+v, want [dead] and 2 jobs", res)
	}
	for _, h := range held {
		info := jobByID(t, b, tr.RunID, h.ID)
		if info.Status != backend.JobPending || info.Crashes != 1 || info.Attempt != 1 || info.ProcessID != "" {
			t.Fatalf("reaped job = %+v", info)
		}
	}
	// A second reaper finds nothing.
	res, err = b.Reap(ctx, &backend.ReapParams{ProcessID: "other", Threshold: time.Minute})
	if err != nil || len(res.Processes) != 0 || res.Jobs != 0 {
		t.Fatalf("second Reap = %+v, %v", res, err)
	}
	// The zombie's commit is refused; its heartbeat reports the reaping.
	_, err = b.Complete(ctx, &backend.CompleteParams{JobID: held[0].ID, ProcessID: "dead", Fence: held[0].Fence})
	if !errors.Is(err, backend.ErrStaleClaim) {
		t.Fatalf("zombie Complete err = %v, want ErrStaleClaim", err)
	}
	if _, err := b.Heartbeat(ctx, &backend.HeartbeatParams{ProcessID: "dead"}); !errors.Is(err, backend.ErrProcessNotFound) {
		t.Fatalf("Heartbeat of reaped process err = %v, want ErrProcessNotFound", err)
	}
	// The jobs run again with a new fence.
	again := claim(t, b, "live", 2)
	if len(again) != 2 || again[0].Fence != 2 || again[0].Crashes != 1 || again[0].Attempt != 1 {
		t.Fatalf("re-claimed = %+v", again)
	}
}

func TestConcurrentReapersReapOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := newBackend(t)
	register(t, b, "dead")
	trigger(t, b, "in")
	claimOne(t, b, "dead")
	if _, err := b.DB().ExecContext(ctx,
		`UPDATE ductwork_processes SET heartbeat_at = heartbeat_at - 3600000000 WHERE id = 'dead'`); err != nil {
		t.Fatal(err)
	}
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		processes int
		jobsReset int
		errs      []error
	)
	for range 6 {
		wg.Go(func() {
			res, err := b.Reap(ctx, &backend.ReapParams{ProcessID: "reaper", Threshold: time.Minute})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			processes += len(res.Processes)
			jobsReset += res.Jobs
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("Reap: %v", errs)
	}
	if processes != 1 || jobsReset != 1 {
		t.Fatalf("reaped %d processes and %d jobs in all, want 1 and 1", processes, jobsReset)
	}
}

func TestReapOrphanedJobs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := newBackend(t)
	register(t, b, "live")
	tr := trigger(t, b, "in")
	j := claimOne(t, b, "ghost") // never registered
	// A fresh orphan claim is left alone (its owner may be registering).
	res, err := b.Reap(ctx, &backend.ReapParams{ProcessID: "live", Threshold: time.Minute})
	if err != nil || res.Jobs != 0 {
		t.Fatalf("Reap = %+v, %v", res, err)
	}
	if _, err := b.DB().ExecContext(ctx,
		`UPDATE ductwork_jobs SET started_at = started_at - 3600000000 WHERE id = ?`, j.ID); err != nil {
		t.Fatal(err)
	}
	res, err = b.Reap(ctx, &backend.ReapParams{ProcessID: "live", Threshold: time.Minute})
	if err != nil || res.Jobs != 1 || len(res.Processes) != 0 {
		t.Fatalf("Reap = %+v, %v", res, err)
	}
	if info := jobByID(t, b, tr.RunID, j.ID); info.Status != backend.JobPending || info.Crashes != 1 {
		t.Fatalf("orphan = %+v", info)
	}
}

func TestProcessLifecycle(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := newBackend(t)
	first, err := b.RegisterProcess(ctx, &backend.RegisterProcessParams{ProcessID: "p", Host: "h", PID: 7})
	if err != nil {
		t.Fatal(err)
	}
	again, err := b.RegisterProcess(ctx, &backend.RegisterProcessParams{ProcessID: "p", Host: "h", PID: 7})
	if err != nil || !again.StartedAt.Equal(first.StartedAt) {
		t.Fatalf("re-register = %+v, %v; want StartedAt %v", again, err, first.StartedAt)
	}
	hb, err := b.Heartbeat(ctx, &backend.HeartbeatParams{ProcessID: "p"})
	if err != nil || hb.At.Before(first.StartedAt) {
		t.Fatalf("Heartbeat = %+v, %v", hb, err)
	}
	tr := trigger(t, b, "in")
	j := claimOne(t, b, "p")
	for range 2 { // idempotent
		if err := b.DeregisterProcess(ctx, &backend.DeregisterProcessParams{ProcessID: "p"}); err != nil {
			t.Fatalf("DeregisterProcess: %v", err)
		}
	}
	if info := jobByID(t, b, tr.RunID, j.ID); info.Status != backend.JobPending || info.Crashes != 0 || info.ProcessID != "" {
		t.Fatalf("job after deregister = %+v", info)
	}
	if _, err := b.Heartbeat(ctx, &backend.HeartbeatParams{ProcessID: "p"}); !errors.Is(err, backend.ErrProcessNotFound) {
		t.Fatalf("Heartbeat err = %v, want ErrProcessNotFound", err)
	}
}
