package ductwork_test

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ductwork-go/ductwork"
	"github.com/ductwork-go/ductwork/flow"
	"github.com/ductwork-go/ductwork/step"
	"github.com/ductwork-go/ductwork/supervisor"
)

// peakCounter records how many executions run at once, per key.
type peakCounter struct {
	mu      sync.Mutex
	running map[string]int
	peak    map[string]int
}

func newPeakCounter() *peakCounter {
	return &peakCounter{running: map[string]int{}, peak: map[string]int{}}
}

func (p *peakCounter) enter(key string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.running[key]++
	p.peak[key] = max(p.peak[key], p.running[key])
}

func (p *peakCounter) leave(key string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.running[key]--
}

func (p *peakCounter) max(key string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.peak[key]
}

type tenantJob struct {
	Tenant string
	N      int
}

// TestConcurrencyLimits: with two supervisors (16 workers each) on one
// database, a step limited to 2 never runs more than twice at once, and a
// step limited to 1 per tenant never runs twice at once for a tenant while
// tenants run side by side; every run completes.
func TestConcurrencyLimits(t *testing.T) {
	for _, kind := range allBackends {
		t.Run(kind, func(t *testing.T) {
			b, _ := openCrashBackend(t, kind)
			peaks := newPeakCounter()
			work := func(key string) {
				peaks.enter(key)
				time.Sleep(3 * time.Millisecond)
				peaks.leave(key)
			}
			global := step.New("limited", func(_ step.Context, in tenantJob) (tenantJob, error) {
				work("global")
				return in, nil
			}, step.Concurrency(2))
			perTenant := step.New("per-tenant", func(_ step.Context, in tenantJob) (int, error) {
				work(in.Tenant)
				return in.N, nil
			}, step.ConcurrencyKey(func(in tenantJob) string { return in.Tenant }, 1))
			def := flow.MustDefine("limits-"+kind, func(p *flow.Pipeline[tenantJob]) flow.End[int] {
				return flow.Chain(flow.Start(p, global), perTenant)
			})
			var clients []*ductwork.Client
			for range 2 {
				c, err := ductwork.NewClient(b, &ductwork.Config{Logger: quietLogger()})
				if err != nil {
					t.Fatal(err)
				}
				if err := c.Register(def); err != nil {
					t.Fatal(err)
				}
				clients = append(clients, c)
			}
			const runs = 24
			ctx := waitCtx(t)
			var handles []*ductwork.Run[int]
			for i := range runs {
				r, err := ductwork.Trigger(ctx, clients[0], def, tenantJob{Tenant: fmt.Sprintf("t%d", i%3), N: i})
				if err != nil {
					t.Fatal(err)
				}
				handles = append(handles, r)
			}
			for _, c := range clients {
				startSupervisor(t, c, &supervisor.Config{Workers: 16})
			}
			for _, r := range handles {
				if _, err := r.Wait(ctx); err != nil {
					t.Fatalf("run %d: %v", r.ID, err)
				}
			}
			if p := peaks.max("global"); p > 2 || p < 1 {
				t.Fatalf("step limited to 2 ran %d at once", p)
			}
			for i := range 3 {
				if p := peaks.max(fmt.Sprintf("t%d", i)); p != 1 {
					t.Fatalf("tenant t%d ran %d at once; the limit is 1 per tenant", i, p)
				}
			}
		})
	}
}

// TestQueues: a step on a queue runs only on a supervisor serving that
// queue; the rest of the run is served by the default queue.
func TestQueues(t *testing.T) {
	var heavyRan atomic.Int64
	light := step.New("light", func(_ step.Context, n int) (int, error) { return n + 1, nil })
	heavy := step.New("heavy", func(_ step.Context, n int) (int, error) { heavyRan.Add(1); return n * 10, nil }, step.Queue("heavy"))
	def := flow.MustDefine("queues", func(p *flow.Pipeline[int]) flow.End[int] {
		return flow.Chain(flow.Chain(flow.Start(p, light), heavy), light2)
	})
	e := newEnv(t, def)
	ctx := waitCtx(t)
	run, err := ductwork.Trigger(ctx, e.client, def, 1)
	if err != nil {
		t.Fatal(err)
	}
	startSupervisor(t, e.client, nil) // the default queue only
	waitUntil(t, "the light step to finish", func() bool {
		steps, err := run.Steps(ctx)
		return err == nil && len(steps) == 2
	})
	if heavyRan.Load() != 0 {
		t.Fatal("the heavy step ran on a supervisor that does not serve its queue")
	}
	startSupervisor(t, e.client, &supervisor.Config{Queues: []supervisor.Queue{{Name: "heavy", Workers: 1}}})
	out, err := run.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if out != 21 || heavyRan.Load() != 1 {
		t.Fatalf("output %d, heavy ran %d times; want 21 and once", out, heavyRan.Load())
	}
}

var light2 = step.New("light-2", func(_ step.Context, n int) (int, error) { return n + 1, nil })

// waitUntil polls cond until it holds (or fails the test after 30s).
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestFlowControlDefinitionErrors: invalid flow-control options are refused
// by Define with a *flow.DefinitionError naming the node and the rule.
func TestFlowControlDefinitionErrors(t *testing.T) {
	id := func(name string, opts ...step.Option) step.Step[int, int] {
		return step.New(name, func(_ step.Context, n int) (int, error) { return n, nil }, opts...)
	}
	chain := func(s step.Step[int, int]) error {
		_, err := flow.Define("bad", func(p *flow.Pipeline[int]) flow.End[int] {
			return flow.Chain(flow.Start(p, id("first")), s)
		})
		return err
	}
	cases := map[string]struct {
		err  func() error
		want string
	}{
		"negative concurrency": {func() error { return chain(id("s", step.Concurrency(-1))) }, "at least 1"},
		"nil key func":         {func() error { return chain(id("s", step.ConcurrencyKey[int](nil, 1))) }, "nil"},
		"key limit 0":          {func() error { return chain(id("s", step.ConcurrencyKey(func(int) string { return "" }, 0))) }, "at least 1"},
		"key type":             {func() error { return chain(id("s", step.ConcurrencyKey(func(string) string { return "" }, 1))) }, "takes string"},
		"key and concurrency": {func() error {
			return chain(id("s", step.Concurrency(2), step.ConcurrencyKey(func(int) string { return "" }, 1)))
		}, "choose one"},
		"rate count": {func() error { return chain(id("s", step.RateLimit("r", 0, time.Second))) }, "count"},
		"rate name":  {func() error { return chain(id("s", step.RateLimit("", 1, time.Second))) }, "name"},
		"rate burst": {func() error { return chain(id("s", step.RateLimitBurst("r", 1, time.Second, 0))) }, "burst"},
		"queue name": {func() error { return chain(id("s", step.Queue(strings.Repeat("q", 65)))) }, "queue name"},
		"rate conflict": {func() error {
			_, err := flow.Define("bad", func(p *flow.Pipeline[int]) flow.End[int] {
				return flow.Chain(flow.Start(p, id("first", step.RateLimit("r", 1, time.Second))), id("s", step.RateLimit("r", 2, time.Second)))
			})
			return err
		}, "another rate"},
		"key on a join": {func() error {
			_, err := flow.Define("bad", func(p *flow.Pipeline[[]int]) flow.End[int] {
				parts := flow.Expand(flow.Start(p, step.New("split", func(_ step.Context, in []int) ([]int, error) { return in, nil })), id("each"))
				return flow.Collapse(parts, step.New("sum", func(_ step.Context, in []int) (int, error) { return len(in), nil },
					step.ConcurrencyKey(func([]int) string { return "" }, 1)))
			})
			return err
		}, "join step"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			err := tc.err()
			var de *flow.DefinitionError
			if !errors.As(err, &de) || de.Rule != flow.RuleFlowControl || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Define = %v; want *DefinitionError with rule %q mentioning %q", err, flow.RuleFlowControl, tc.want)
			}
		})
	}
}

// TestFairnessDueOrder states the fairness rule within a queue: steps of equal
// priority start in the order they became due, whatever their pipeline. A
// flood of pipeline A triggered before pipeline B's run delays it by that
// flood only; the flood that follows does not pass it.
func TestFairnessDueOrder(t *testing.T) {
	var (
		seq  atomic.Int64
		bPos atomic.Int64
	)
	flood := step.New("flood", func(_ step.Context, n int) (int, error) { seq.Add(1); return n, nil })
	other := step.New("other", func(_ step.Context, n int) (int, error) { bPos.Store(seq.Add(1)); return n, nil })
	defA := flow.MustDefine("flood-a", func(p *flow.Pipeline[int]) flow.End[int] { return flow.Start(p, flood) })
	defB := flow.MustDefine("other-b", func(p *flow.Pipeline[int]) flow.End[int] { return flow.Start(p, other) })
	e := newEnv(t, defA, defB)
	ctx := waitCtx(t)
	const before, after, workers = 60, 60, 2
	for i := range before {
		if _, err := ductwork.Trigger(ctx, e.client, defA, i); err != nil {
			t.Fatal(err)
		}
	}
	b, err := ductwork.Trigger(ctx, e.client, defB, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := range after {
		if _, err := ductwork.Trigger(ctx, e.client, defA, i); err != nil {
			t.Fatal(err)
		}
	}
	startSupervisor(t, e.client, &supervisor.Config{Workers: workers})
	if _, err := b.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	// Started no later than the flood before it. Workers record their start
	// in whatever order the scheduler runs them, and a claimed step may wait
	// in the prefetch queue (Prefetch defaults to Workers) while steps
	// claimed with it start: allow one per worker and one per prefetched
	// step (a broken rule puts B after the 60 steps that follow it).
	if pos := bPos.Load(); pos > before+1+2*workers {
		t.Fatalf("pipeline B's step started %dth; the %d flood steps due before it should be all that delays it", pos, before)
	}
}

// TestTriggerKeyOptions: WithKey with KeyErrorIfExists returns a
// *DuplicateRunError naming the run that holds the key (also inside
// TriggerTx, whose transaction stays usable), and KeyWhileActive lets a key
// start a new run once its run has completed.
func TestTriggerKeyOptions(t *testing.T) {
	s := step.New("once", func(_ step.Context, n int) (int, error) { return n, nil })
	def := flow.MustDefine("keyed", func(p *flow.Pipeline[int]) flow.End[int] { return flow.Start(p, s) })
	e := newEnv(t, def)
	ctx := waitCtx(t)
	first, err := ductwork.Trigger(ctx, e.client, def, 1, ductwork.WithKey("order-1", ductwork.KeyWhileActive))
	if err != nil {
		t.Fatal(err)
	}
	_, err = ductwork.Trigger(ctx, e.client, def, 1, ductwork.WithKey("order-1", ductwork.KeyErrorIfExists))
	var dup *ductwork.DuplicateRunError
	if !errors.As(err, &dup) || !errors.Is(err, ductwork.ErrDuplicateRun) || dup.RunID != first.ID || dup.Key != "order-1" {
		t.Fatalf("duplicate trigger = %v; want *DuplicateRunError naming run %d", err, first.ID)
	}
	tx, err := e.b.DB().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = ductwork.TriggerTx(ctx, e.client, tx, def, 1, ductwork.WithKey("order-1", ductwork.KeyErrorIfExists))
	if !errors.Is(err, ductwork.ErrDuplicateRun) {
		t.Fatalf("duplicate TriggerTx = %v; want ErrDuplicateRun", err)
	}
	other, err := ductwork.TriggerTx(ctx, e.client, tx, def, 2, ductwork.WithKey("order-2"))
	if err != nil || other.Existing {
		t.Fatalf("TriggerTx after a duplicate in the same transaction = %v; want a new run", err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	startSupervisor(t, e.client, nil)
	if _, err := first.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	again, err := ductwork.Trigger(ctx, e.client, def, 3, ductwork.WithKey("order-1", ductwork.KeyWhileActive))
	if err != nil || again.Existing || again.ID == first.ID {
		t.Fatalf("trigger while active after the run completed = %+v, %v; want a new run", again, err)
	}
}
