package conformance

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/ductwork-go/ductwork"
	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/flow"
	"github.com/ductwork-go/ductwork/step"
	"github.com/ductwork-go/ductwork/supervisor"
)

// endToEndTimeoutAbandons: a step that ignores its context and outlives its
// timeout is abandoned StuckGrace after the timeout: the execution fails
// with a *step.TimeoutError (Abandoned), its retry is spent, and the run
// halts with cause timeout on the second attempt. With Workers 1, a run
// triggered behind it completes meanwhile: the abandoned step holds no
// worker. The supervisor counts both abandoned goroutines as stuck.
func endToEndTimeoutAbandons(t *testing.T, h Harness) {
	b := newBackend(t, h)
	quiet := slog.New(slog.DiscardHandler)
	release := make(chan struct{})
	var (
		mu       sync.Mutex
		attempts []int
	)
	hang := step.New("hang", func(ctx step.Context, n int) (int, error) {
		mu.Lock()
		attempts = append(attempts, ctx.Attempt())
		mu.Unlock()
		<-release // ignores ctx
		return n, nil
	}, step.Timeout(100*time.Millisecond), step.Retries(1), step.Backoff(time.Millisecond, time.Millisecond))
	def := flow.MustDefine(randomID(t, "conformance-hang"), func(p *flow.Pipeline[int]) flow.End[int] { return flow.Start(p, hang) })
	quick := flow.MustDefine(randomID(t, "conformance-quick"), func(p *flow.Pipeline[int]) flow.End[int] {
		return flow.Start(p, step.New("quick", func(_ step.Context, n int) (int, error) { return n + 1, nil }))
	})
	client, err := ductwork.NewClient(b, &ductwork.Config{Logger: quiet})
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	if err := client.Register(def, quick); err != nil {
		t.Fatalf("Register: %v", err)
	}
	s := startSupervisor(t, client, &supervisor.Config{Workers: 1, Prefetch: -1, StuckGrace: 50 * time.Millisecond,
		PollInterval: 5 * time.Millisecond, Logger: quiet})
	t.Cleanup(func() { // before the supervisor stops (cleanups run last first)
		close(release)
		waitUnstuck(t, s)
	})
	run, err := ductwork.Trigger(testCtx(t), client, def, 1)
	if err != nil {
		t.Fatalf("Trigger: %v", err)
	}
	waitFor(t, caseTimeout, "the first attempt to start", func() bool { mu.Lock(); defer mu.Unlock(); return len(attempts) == 1 })
	qrun, err := ductwork.Trigger(testCtx(t), client, quick, 1)
	if err != nil {
		t.Fatalf("Trigger quick: %v", err)
	}
	if out, err := qrun.Wait(testCtx(t)); err != nil || out != 2 {
		t.Fatalf("quick run behind the hanging step = %d, %v; want 2 (the worker was freed)", out, err)
	}
	_, err = run.Wait(testCtx(t))
	var he *ductwork.HaltedError
	if !errors.As(err, &he) {
		t.Fatalf("Wait = %v; want *HaltedError", err)
	}
	if he.Cause != ductwork.HaltTimeout || he.Node != "hang" || he.Attempt != 2 {
		t.Fatalf("halt = {cause %q, node %q, attempt %d}; want timeout at hang, attempt 2 (the retry spent)", he.Cause, he.Node, he.Attempt)
	}
	var te *step.TimeoutError
	if !errors.As(err, &te) || !te.Abandoned || te.Timeout != 100*time.Millisecond || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait error = %v; want a *step.TimeoutError, abandoned after 100ms, matching context.DeadlineExceeded", err)
	}
	mu.Lock()
	if len(attempts) != 2 || attempts[0] != 1 || attempts[1] != 2 {
		t.Errorf("attempts started = %v; want [1 2]", attempts)
	}
	mu.Unlock()
	jobs := listJobs(t, b, run.ID)
	if len(jobs) != 1 || jobs[0].Status != backend.JobFailed || jobs[0].Attempt != 2 || jobs[0].Crashes != 0 {
		t.Fatalf("jobs = %+v; want hang failed on attempt 2, no crash", jobs)
	}
	if n := s.Stuck(); n != 2 {
		t.Errorf("Stuck = %d; want 2 abandoned goroutines", n)
	}
}

// endToEndTimeoutCooperative: the supervisor's StepTimeout bounds a step
// that sets none. The step sees its context end with a *step.TimeoutError
// as its cause and returns; the failure is a *step.TimeoutError wrapping
// what it returned, not abandoned; the retry is spent and the run halts with
// cause timeout. Nothing is stuck.
func endToEndTimeoutCooperative(t *testing.T, h Harness) {
	b := newBackend(t, h)
	quiet := slog.New(slog.DiscardHandler)
	causes := make(chan error, 2)
	wait := step.New("wait", func(ctx step.Context, n int) (int, error) {
		<-ctx.Done()
		causes <- context.Cause(ctx)
		return 0, ctx.Err()
	}, step.Retries(1), step.Backoff(time.Millisecond, time.Millisecond))
	def := flow.MustDefine(randomID(t, "conformance-wait"), func(p *flow.Pipeline[int]) flow.End[int] { return flow.Start(p, wait) })
	client, err := ductwork.NewClient(b, &ductwork.Config{Logger: quiet})
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	if err := client.Register(def); err != nil {
		t.Fatalf("Register: %v", err)
	}
	s := startSupervisor(t, client, &supervisor.Config{Workers: 1, StepTimeout: 50 * time.Millisecond,
		PollInterval: 5 * time.Millisecond, Logger: quiet})
	run, err := ductwork.Trigger(testCtx(t), client, def, 1)
	if err != nil {
		t.Fatalf("Trigger: %v", err)
	}
	_, err = run.Wait(testCtx(t))
	var he *ductwork.HaltedError
	if !errors.As(err, &he) || he.Cause != ductwork.HaltTimeout || he.Attempt != 2 {
		t.Fatalf("Wait = %v; want a halt with cause timeout on attempt 2", err)
	}
	var te *step.TimeoutError
	if !errors.As(err, &te) || te.Abandoned || te.Timeout != 50*time.Millisecond || !errors.Is(te.Err, context.DeadlineExceeded) {
		t.Fatalf("Wait error = %v; want a *step.TimeoutError of 50ms wrapping the step's context.DeadlineExceeded, not abandoned", err)
	}
	for range 2 {
		c := <-causes
		if !errors.As(c, &te) || te.Step != "wait" || te.Timeout != 50*time.Millisecond {
			t.Errorf("context.Cause seen by the step = %v; want its *step.TimeoutError", c)
		}
	}
	if n := s.Stuck(); n != 0 {
		t.Errorf("Stuck = %d; want 0", n)
	}
}

// endToEndShutdownAbandons: a step with no timeout that ignores its
// context cannot hold a shutdown past ShutdownGrace + StuckGrace: Run
// returns, the step's claim is released (pending again, same attempt, no
// crash counted) and the goroutine is counted as stuck.
func endToEndShutdownAbandons(t *testing.T, h Harness) {
	b := newBackend(t, h)
	quiet := slog.New(slog.DiscardHandler)
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	hang := step.New("hang", func(ctx step.Context, n int) (int, error) {
		started <- struct{}{}
		<-release // ignores ctx
		return n, nil
	})
	def := flow.MustDefine(randomID(t, "conformance-shutdown"), func(p *flow.Pipeline[int]) flow.End[int] { return flow.Start(p, hang) })
	client, err := ductwork.NewClient(b, &ductwork.Config{Logger: quiet})
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	if err := client.Register(def); err != nil {
		t.Fatalf("Register: %v", err)
	}
	s, err := supervisor.New(client, &supervisor.Config{Workers: 1, ShutdownGrace: 50 * time.Millisecond,
		StuckGrace: 50 * time.Millisecond, PollInterval: 5 * time.Millisecond, Logger: quiet})
	if err != nil {
		t.Fatalf("supervisor.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		close(release)
		waitUnstuck(t, s)
	})
	run, err := ductwork.Trigger(testCtx(t), client, def, 1)
	if err != nil {
		t.Fatalf("Trigger: %v", err)
	}
	<-started
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(caseTimeout):
		t.Fatal("Run did not return: the step that ignores its context held the shutdown")
	}
	jobs := listJobs(t, b, run.ID)
	if len(jobs) != 1 || jobs[0].Status != backend.JobPending || jobs[0].Attempt != 1 || jobs[0].Crashes != 0 {
		t.Fatalf("jobs = %+v; want hang pending again on attempt 1, no crash counted", jobs)
	}
	if n := s.Stuck(); n != 1 {
		t.Errorf("Stuck = %d; want 1", n)
	}
}

// waitUnstuck waits, in a cleanup (t.Context is done by then), until the
// abandoned steps of s have returned, so that no goroutine outlives the test.
func waitUnstuck(t *testing.T, s *supervisor.Supervisor) {
	t.Helper()
	deadline := time.Now().Add(caseTimeout)
	for s.Stuck() != 0 {
		if time.Now().After(deadline) {
			t.Errorf("%d abandoned steps never returned", s.Stuck())
			return
		}
		time.Sleep(time.Millisecond)
	}
}
