package ductwork_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ductwork-go/ductwork"
	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/flow"
	"github.com/ductwork-go/ductwork/step"
)

// flaky fails its first `fails` executions per step instance.
type flaky struct {
	name  string
	fails int
	mu    sync.Mutex
	runs  map[string]int
}

func (f *flaky) Name() string { return f.name }

func (f *flaky) Execute(ctx step.Context, n int) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.runs[ctx.IdempotencyKey()]++
	if f.runs[ctx.IdempotencyKey()] <= f.fails {
		return 0, fmt.Errorf("flaky failure %d", f.runs[ctx.IdempotencyKey()])
	}
	return n + 1, nil
}

func (f *flaky) total() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := 0
	for _, v := range f.runs {
		t += v
	}
	return t
}

func TestRetryWithinBudgetCompletes(t *testing.T) {
	fl := &flaky{name: "flaky", fails: 2, runs: map[string]int{}}
	def := flow.MustDefine("retry-ok", func(p *flow.Pipeline[int]) flow.End[int] {
		return flow.Start(p, step.WithOptions[int, int](fl, step.Retries(2), step.Backoff(time.Millisecond, 5*time.Millisecond)))
	})
	e := newEnv(t, def)
	startSupervisor(t, e.client, nil)
	r, err := ductwork.Trigger(waitCtx(t), e.client, def, 1)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := r.Wait(waitCtx(t)); err != nil || out != 2 {
		t.Fatalf("out = %d, %v", out, err)
	}
	steps, _ := r.Steps(waitCtx(t))
	if len(steps) != 1 || steps[0].Attempt != 3 || steps[0].CrashReruns != 0 {
		t.Fatalf("steps = %+v, want one instance on attempt 3", steps)
	}
}

func TestRetryExhaustedHaltsOnHaltOnceThenRevive(t *testing.T) {
	var firstRuns atomic.Int32
	first := step.New("first", func(_ step.Context, n int) (int, error) { firstRuns.Add(1); return n, nil })
	fl := &flaky{name: "fails-3", fails: 3, runs: map[string]int{}}
	var halts atomic.Int32
	var haltReason atomic.Value
	def := flow.MustDefine("retry-halt", func(p *flow.Pipeline[int]) flow.End[int] {
		return flow.Chain(flow.Start(p, first), step.WithOptions[int, int](fl, step.Retries(1)))
	}, flow.Backoff(time.Millisecond, 2*time.Millisecond), flow.OnHalt(func(_ context.Context, h flow.Halt) {
		halts.Add(1)
		haltReason.Store(h.Reason)
	}))
	e := newEnv(t, def)
	startSupervisor(t, e.client, nil)
	r, err := ductwork.Trigger(waitCtx(t), e.client, def, 10)
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.Wait(waitCtx(t))
	var he *ductwork.HaltedError
	if !errors.As(err, &he) || !strings.Contains(he.Reason, "flaky failure 2") {
		t.Fatalf("wait err = %v, want HaltedError naming the last failure", err)
	}
	if he.Cause != ductwork.HaltRetriesExhausted || he.Node != "fails-3" || he.Attempt != 2 || he.Err == nil {
		t.Fatalf("halt = %+v; want retries exhausted at fails-3 on attempt 2, with the step's error", he)
	}
	if st, _ := r.Status(waitCtx(t)); st != ductwork.RunHalted {
		t.Fatalf("status = %s", st)
	}
	if fl.total() != 2 {
		t.Fatalf("failing step ran %d times, want 2 (1 + 1 retry)", fl.total())
	}
	// OnHalt runs after the halt commits, so Wait may return before it.
	waitFor(t, func() bool { return halts.Load() > 0 })
	if halts.Load() != 1 || !strings.Contains(haltReason.Load().(string), "flaky failure 2") {
		t.Fatalf("OnHalt ran %d times (reason %v)", halts.Load(), haltReason.Load())
	}

	// Revive: the failed step runs again with a fresh budget (its third run
	// fails, the fourth succeeds), the completed first step is not re-run.
	if err := e.client.Revive(waitCtx(t), r.ID); err != nil {
		t.Fatal(err)
	}
	if out, err := r.Wait(waitCtx(t)); err != nil || out != 11 {
		t.Fatalf("after revive: out = %d, %v", out, err)
	}
	if firstRuns.Load() != 1 {
		t.Fatalf("completed step re-ran: %d executions", firstRuns.Load())
	}
	// The revive kept the attempt count (attempts 3 and 4 after 1 and 2)
	// and gave the step a fresh budget from attempt 2.
	steps, err := r.Steps(waitCtx(t))
	if err != nil || len(steps) != 2 || steps[1].Attempt != 4 || steps[1].RetryBase != 2 {
		t.Fatalf("steps after revive = %+v, %v; want the revived step at attempt 4, retry base 2", steps, err)
	}
	if halts.Load() != 1 {
		t.Fatalf("OnHalt ran %d times", halts.Load())
	}
	if err := e.client.Revive(waitCtx(t), r.ID); !errors.Is(err, ductwork.ErrRunState) {
		t.Fatalf("revive of a completed run: %v, want ErrRunState", err)
	}
}

func TestPanicIsAStepErrorWithStack(t *testing.T) {
	boom := step.New("boom", func(_ step.Context, n int) (int, error) { panic("kaboom") }, step.Retries(0))
	def := flow.MustDefine("panics", func(p *flow.Pipeline[int]) flow.End[int] { return flow.Start(p, boom) })
	e := newEnv(t, def)
	startSupervisor(t, e.client, nil)
	r, err := ductwork.Trigger(waitCtx(t), e.client, def, 1)
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.Wait(waitCtx(t))
	var he *ductwork.HaltedError
	if !errors.As(err, &he) || !strings.Contains(he.Reason, "kaboom") {
		t.Fatalf("err = %v", err)
	}
	var pe *ductwork.PanicError
	if he.Cause != ductwork.HaltPanic || he.Node != "boom" || he.Attempt != 1 || !errors.As(err, &pe) || pe.Value != "kaboom" {
		t.Fatalf("halt = %+v (err %v); want cause panic at boom, attempt 1, a *PanicError with the panic value", he, err)
	}
	if !strings.Contains(he.Stack, "retries_test.go") || strings.Contains(he.Reason, "retries_test.go") {
		t.Fatalf("stack %q, reason %q: want the stack in Stack only", he.Stack, he.Reason)
	}
	steps, _ := r.Steps(waitCtx(t))
	if len(steps) != 1 || !strings.Contains(steps[0].Stack, "retries_test.go") || strings.Contains(steps[0].Error, "goroutine") || steps[0].Status != backend.JobFailed {
		t.Fatalf("panic stack not recorded apart from the error: %+v", steps)
	}
}

func TestPermanentErrorSkipsRetries(t *testing.T) {
	var runs atomic.Int32
	s := step.New("perm", func(_ step.Context, n int) (int, error) {
		runs.Add(1)
		return 0, step.Permanent(errors.New("bad record"))
	}, step.Retries(5))
	def := flow.MustDefine("permanent", func(p *flow.Pipeline[int]) flow.End[int] { return flow.Start(p, s) })
	e := newEnv(t, def)
	startSupervisor(t, e.client, nil)
	r, _ := ductwork.Trigger(waitCtx(t), e.client, def, 1)
	if _, err := r.Wait(waitCtx(t)); err == nil || runs.Load() != 1 {
		t.Fatalf("err %v after %d runs, want a halt after 1", err, runs.Load())
	}
}

func TestCancel(t *testing.T) {
	var secondRan atomic.Bool
	started := make(chan struct{}, 1)
	stopped := make(chan error, 1)
	first := step.New("first", func(ctx step.Context, n int) (int, error) {
		started <- struct{}{}
		<-ctx.Done() // only the cancel ends it
		stopped <- context.Cause(ctx)
		return n, nil
	})
	second := step.New("second", func(ctx step.Context, n int) (int, error) { secondRan.Store(true); return n, nil })
	def := flow.MustDefine("cancel", func(p *flow.Pipeline[int]) flow.End[int] {
		return flow.Chain(flow.Start(p, first), second)
	})
	e := newEnv(t, def)
	startSupervisor(t, e.client, nil)
	r, _ := ductwork.Trigger(waitCtx(t), e.client, def, 1)
	// Wait for the step to be executing, not only claimed: a claimed step
	// that has not started when the run is cancelled is never started (see
	// EndToEnd/CancelWithPrefetch), and this test is about the one running.
	select {
	case <-started:
	case <-waitCtx(t).Done():
		t.Fatal("the first step did not start")
	}
	if err := e.client.Cancel(waitCtx(t), r.ID, "customer withdrew"); err != nil {
		t.Fatal(err)
	}
	// The executing step's context is cancelled at once, with ErrCancelled
	// as the cause.
	select {
	case cause := <-stopped:
		if !errors.Is(cause, ductwork.ErrCancelled) {
			t.Fatalf("step context cause = %v; want ErrCancelled", cause)
		}
	case <-waitCtx(t).Done():
		t.Fatal("the running step's context was not cancelled")
	}
	if _, err := r.Wait(waitCtx(t)); !errors.Is(err, ductwork.ErrCancelled) {
		t.Fatalf("wait: %v", err)
	}
	info, err := e.client.Inspect(waitCtx(t), r.ID)
	if err != nil || info.Error != "customer withdrew" {
		t.Fatalf("inspect: %+v, %v; want the reason as the run's error", info, err)
	}
	// The step's result is discarded: it stays cancelled and nothing follows.
	steps, err := r.Steps(waitCtx(t))
	if err != nil || len(steps) != 1 || steps[0].Status != backend.JobCancelled {
		t.Fatalf("steps = %+v, %v; want one, cancelled", steps, err)
	}
	if secondRan.Load() {
		t.Fatal("a step of a cancelled run ran")
	}
	if err := e.client.Cancel(waitCtx(t), r.ID, ""); !errors.Is(err, ductwork.ErrRunState) {
		t.Fatalf("second cancel: %v", err)
	}
	if err := e.client.Cancel(waitCtx(t), 999999, ""); !errors.Is(err, ductwork.ErrRunNotFound) {
		t.Fatalf("cancel of unknown run: %v", err)
	}
}

// waitFor polls cond until it holds or the test's deadline passes.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 30s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestUnencodableOutputHaltsWithoutWritingIt(t *testing.T) {
	var nextRan atomic.Bool
	nan := step.New("nan", func(_ step.Context, n int) (float64, error) { return math.NaN(), nil })
	next := step.New("next", func(_ step.Context, f float64) (int, error) { nextRan.Store(true); return 0, nil })
	def := flow.MustDefine("nan", func(p *flow.Pipeline[int]) flow.End[int] { return flow.Chain(flow.Start(p, nan), next) })
	e := newEnv(t, def)
	startSupervisor(t, e.client, nil)
	r, _ := ductwork.Trigger(waitCtx(t), e.client, def, 1)
	_, err := r.Wait(waitCtx(t))
	var he *ductwork.HaltedError
	if !errors.As(err, &he) || !strings.Contains(he.Reason, "encode output") || he.Cause != ductwork.HaltEncode {
		t.Fatalf("err = %v; want an encode halt", err)
	}
	steps, _ := r.Steps(waitCtx(t))
	if len(steps) != 1 || steps[0].Output != nil || steps[0].Status != backend.JobFailed || nextRan.Load() {
		t.Fatalf("steps after an unencodable output: %+v", steps)
	}
}

func TestUnencodableTriggerInputWritesNothing(t *testing.T) {
	s := step.New("s", func(_ step.Context, f float64) (float64, error) { return f, nil })
	def := flow.MustDefine("nan-in", func(p *flow.Pipeline[float64]) flow.End[float64] { return flow.Start(p, s) })
	e := newEnv(t, def)
	_, err := ductwork.Trigger(waitCtx(t), e.client, def, math.Inf(1))
	var ee *ductwork.EncodeError
	if !errors.As(err, &ee) {
		t.Fatalf("err = %v, want *EncodeError", err)
	}
	assertNoRuns(t, e)
}

func assertNoRuns(t *testing.T, e *env) {
	t.Helper()
	res, err := e.b.ListRuns(waitCtx(t), &backend.ListRunsParams{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Runs) != 0 {
		t.Fatalf("%d runs written, want none", len(res.Runs))
	}
}

func TestFanOutAboveLimitHalts(t *testing.T) {
	ids := step.New("ids", func(_ step.Context, n int) ([]int, error) { return make([]int, n), nil })
	each := step.New("each", func(_ step.Context, n int) (int, error) { return n, nil })
	all := step.New("all", func(_ step.Context, xs []int) (int, error) { return len(xs), nil })
	def := flow.MustDefine("fanout-limit", func(p *flow.Pipeline[int]) flow.End[int] {
		return flow.Collapse(flow.Expand(flow.Start(p, ids), each), all)
	}, flow.MaxFanOut(5))
	e := newEnv(t, def)
	startSupervisor(t, e.client, nil)
	r, _ := ductwork.Trigger(waitCtx(t), e.client, def, 6)
	_, err := r.Wait(waitCtx(t))
	var he *ductwork.HaltedError
	if !errors.As(err, &he) || !strings.Contains(he.Reason, "max fan-out of 5") || he.Cause != ductwork.HaltFanOut || he.Node != "ids" {
		t.Fatalf("err = %v; want a fan-out halt at ids", err)
	}
	var fe *ductwork.FanOutError
	if !errors.As(err, &fe) || fe.Count != 6 || fe.Max != 5 {
		t.Fatalf("err = %v; want a *FanOutError{Count 6, Max 5}", err)
	}
	r2, _ := ductwork.Trigger(waitCtx(t), e.client, def, 5)
	if n, err := r2.Wait(waitCtx(t)); err != nil || n != 5 {
		t.Fatalf("at the limit: %d, %v", n, err)
	}
}
