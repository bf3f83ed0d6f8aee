package conformance

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ductwork-go/ductwork"
	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/flow"
	"github.com/ductwork-go/ductwork/step"
	"github.com/ductwork-go/ductwork/supervisor"
)

// endToEndCancelPrefetch: with Workers 2 and Prefetch 4, a run fans out to 8
// steps that block; 2 execute and 4 wait claimed in the supervisor's queue
// when the run is cancelled. No step starts after Cancel returns: the
// executing ones have their context cancelled (cause ductwork.ErrCancelled),
// the queued ones are released unstarted, and every step of the run ends
// cancelled, none pending or running.
func endToEndCancelPrefetch(t *testing.T, h Harness) {
	b := newBackend(t, h)
	quiet := slog.New(slog.DiscardHandler)
	var (
		mu        sync.Mutex
		cancelled bool
		started   []string // steps started, in order
		late      []string // steps started after Cancel returned
		causes    []error
	)
	release := make(chan struct{}) // closed after the cancel, in case a step ignores its context
	fan := step.New("fan", func(ctx step.Context, n int) ([]int, error) { return make([]int, n), nil })
	block := step.New("block", func(ctx step.Context, _ int) (int, error) {
		mu.Lock()
		started = append(started, ctx.Node()+"@"+ctx.IdempotencyKey())
		if cancelled {
			late = append(late, ctx.IdempotencyKey())
		}
		mu.Unlock()
		select {
		case <-ctx.Done():
			mu.Lock()
			causes = append(causes, context.Cause(ctx))
			mu.Unlock()
		case <-release:
		}
		return 0, nil
	})
	gather := step.New("gather", func(ctx step.Context, xs []int) (int, error) { return len(xs), nil })
	def := flow.MustDefine(randomID(t, "conformance-cancel"), func(p *flow.Pipeline[int]) flow.End[int] {
		return flow.Collapse(flow.Expand(flow.Start(p, fan), block), gather)
	})
	client, err := ductwork.NewClient(b, &ductwork.Config{Logger: quiet})
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	if err := client.Register(def); err != nil {
		t.Fatalf("Register: %v", err)
	}
	startSupervisor(t, client, &supervisor.Config{Workers: 2, Prefetch: 4, PollInterval: 5 * time.Millisecond, Logger: quiet})
	run, err := ductwork.Trigger(testCtx(t), client, def, 8)
	if err != nil {
		t.Fatalf("Trigger: %v", err)
	}
	// 2 steps executing and 4 claimed in the queue: 6 running jobs.
	waitFor(t, 30*time.Second, "2 steps started and 4 more claimed", func() bool {
		mu.Lock()
		n := len(started)
		mu.Unlock()
		running := 0
		for _, j := range listJobs(t, b, run.ID) {
			if j.Status == backend.JobRunning {
				running++
			}
		}
		return n == 2 && running == 6
	})
	if err := client.Cancel(testCtx(t), run.ID, "no longer wanted"); err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	mu.Lock()
	cancelled = true
	mu.Unlock()
	close(release)
	if _, err := run.Wait(testCtx(t)); !errors.Is(err, ductwork.ErrCancelled) {
		t.Fatalf("Wait: %v; want ErrCancelled", err)
	}
	// The queue drains in order: once a run triggered after the cancel has
	// completed, the workers have taken every queued job of the cancelled run.
	marker := flow.MustDefine(randomID(t, "conformance-marker"), func(p *flow.Pipeline[int]) flow.End[int] {
		return flow.Start(p, step.New("marker", func(ctx step.Context, n int) (int, error) { return n, nil }))
	})
	if err := client.Register(marker); err != nil {
		t.Fatalf("Register: %v", err)
	}
	mrun, err := ductwork.Trigger(testCtx(t), client, marker, 1)
	if err != nil {
		t.Fatalf("Trigger marker: %v", err)
	}
	if _, err := mrun.Wait(testCtx(t)); err != nil {
		t.Fatalf("marker run: %v", err)
	}
	waitFor(t, 30*time.Second, "the executing steps to see their context cancelled", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(causes) == 2
	})
	mu.Lock()
	defer mu.Unlock()
	if len(late) > 0 {
		t.Errorf("%d steps started after Cancel returned (%s); want none", len(late), strings.Join(late, ", "))
	}
	for _, c := range causes {
		if !errors.Is(c, ductwork.ErrCancelled) {
			t.Errorf("executing step's context cause = %v; want ductwork.ErrCancelled", c)
		}
	}
	for _, j := range listJobs(t, b, run.ID) {
		want := backend.JobCancelled
		if j.NodeID == "fan" {
			want = backend.JobCompleted
		}
		if j.Status != want {
			t.Errorf("step %s scope %q status = %q; want %q", j.NodeID, j.Scope, j.Status, want)
		}
	}
	if r := getRun(t, b, run.ID); r.Error != "no longer wanted" {
		t.Errorf("cancelled run's error = %q; want the reason", r.Error)
	}
}

// endToEndIdempotencyKeys: the same pipeline's first run on two fresh
// databases has the same run ID, pipeline, node and scope, but the steps'
// idempotency keys differ (the run's random identity is part of them). A
// step that fails and is retried sees the same key on every attempt.
func endToEndIdempotencyKeys(t *testing.T, h Harness) {
	quiet := slog.New(slog.DiscardHandler)
	name := randomID(t, "conformance-keys")
	var mu sync.Mutex
	keys := map[string][]string{} // database -> keys seen, in order
	flaky := func(db string) *flow.Definition[int, int] {
		s := step.New("charge", func(ctx step.Context, n int) (int, error) {
			mu.Lock()
			keys[db] = append(keys[db], ctx.IdempotencyKey())
			mu.Unlock()
			if ctx.Attempt() < 3 {
				return 0, errors.New("provider timeout")
			}
			return n, nil
		}, step.Retries(3), step.Backoff(time.Millisecond, time.Millisecond))
		return flow.MustDefine(name, func(p *flow.Pipeline[int]) flow.End[int] { return flow.Start(p, s) })
	}
	runIDs := map[string]int64{}
	for _, db := range []string{"staging", "production"} {
		b := newBackend(t, h)
		def := flaky(db)
		client, err := ductwork.NewClient(b, &ductwork.Config{Logger: quiet})
		if err != nil {
			t.Fatalf("NewClient: %v", err)
		}
		if err := client.Register(def); err != nil {
			t.Fatalf("Register: %v", err)
		}
		startSupervisor(t, client, &supervisor.Config{PollInterval: 5 * time.Millisecond, Logger: quiet})
		run, err := ductwork.Trigger(testCtx(t), client, def, 1)
		if err != nil {
			t.Fatalf("Trigger: %v", err)
		}
		if _, err := run.Wait(testCtx(t)); err != nil {
			t.Fatalf("%s run: %v", db, err)
		}
		runIDs[db] = run.ID
	}
	mu.Lock()
	defer mu.Unlock()
	for db, ks := range keys {
		if len(ks) != 3 || ks[0] != ks[1] || ks[1] != ks[2] {
			t.Errorf("%s: keys over 3 attempts = %q; want one key, 3 times", db, ks)
		}
	}
	if runIDs["staging"] == runIDs["production"] && keys["staging"][0] == keys["production"][0] {
		t.Errorf("two databases gave run %d the same idempotency key %q; want different keys", runIDs["staging"], keys["staging"][0])
	}
	if runIDs["staging"] != runIDs["production"] {
		t.Logf("the two fresh databases gave different run IDs (%d, %d); keys differ anyway", runIDs["staging"], runIDs["production"])
	}
}

// endToEndCancelElsewhere: a run cancelled through another client (another
// process) has its executing step's context cancelled within about one
// heartbeat interval of the supervisor that runs it, with cause
// ductwork.ErrCancelled; the step's result is discarded and nothing follows.
func endToEndCancelElsewhere(t *testing.T, h Harness) {
	b := newBackend(t, h)
	quiet := slog.New(slog.DiscardHandler)
	startedCh := make(chan struct{}, 1)
	stopped := make(chan error, 1)
	first := step.New("first", func(ctx step.Context, n int) (int, error) {
		startedCh <- struct{}{}
		<-ctx.Done()
		stopped <- context.Cause(ctx)
		return n, nil
	})
	second := step.New("second", func(ctx step.Context, n int) (int, error) { return n, nil })
	def := flow.MustDefine(randomID(t, "conformance-cancel-elsewhere"), func(p *flow.Pipeline[int]) flow.End[int] {
		return flow.Chain(flow.Start(p, first), second)
	})
	worker, err := ductwork.NewClient(b, &ductwork.Config{Logger: quiet})
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	if err := worker.Register(def); err != nil {
		t.Fatalf("Register: %v", err)
	}
	// The other process: a client of its own (its own engine), no supervisor.
	operator, err := ductwork.NewClient(b, &ductwork.Config{Logger: quiet})
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	const heartbeat = 100 * time.Millisecond
	startSupervisor(t, worker, &supervisor.Config{PollInterval: 5 * time.Millisecond, HeartbeatInterval: heartbeat,
		ReapThreshold: time.Minute, Logger: quiet})
	run, err := ductwork.Trigger(testCtx(t), operator, def, 1)
	if err != nil {
		t.Fatalf("Trigger: %v", err)
	}
	select {
	case <-startedCh:
	case <-testCtx(t).Done():
		t.Fatal("the step did not start")
	}
	if err := operator.Cancel(testCtx(t), run.ID, "from elsewhere"); err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	at := time.Now()
	// One heartbeat interval, plus slack for a slow shared machine.
	select {
	case cause := <-stopped:
		if !errors.Is(cause, ductwork.ErrCancelled) {
			t.Errorf("step context cause = %v; want ductwork.ErrCancelled", cause)
		}
		t.Logf("step context cancelled %v after Cancel returned (heartbeat interval %v)", time.Since(at).Round(time.Millisecond), heartbeat)
	case <-time.After(heartbeat + 5*time.Second):
		t.Fatalf("the step's context was not cancelled within %v of Cancel", heartbeat+5*time.Second)
	}
	waitFor(t, 30*time.Second, "the worker to finish the cancelled step", func() bool {
		for _, j := range listJobs(t, b, run.ID) {
			if j.Status == backend.JobRunning || j.Status == backend.JobPending {
				return false
			}
		}
		return true
	})
	jobs := listJobs(t, b, run.ID)
	if len(jobs) != 1 || jobs[0].Status != backend.JobCancelled {
		t.Errorf("jobs = %d, first %q; want one, cancelled (nothing follows a cancelled step)", len(jobs), jobs[0].Status)
	}
}
