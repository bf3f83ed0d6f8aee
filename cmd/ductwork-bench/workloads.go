package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ductwork-go/ductwork"
	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/flow"
	"github.com/ductwork-go/ductwork/step"
	"github.com/ductwork-go/ductwork/supervisor"
)

// The steps record what the workloads measure into the current probe. Times
// travel between steps as nanoseconds on this process's monotonic clock
// (mono), so wall-clock adjustments cannot distort them.
var (
	epoch = time.Now()
	cur   atomic.Pointer[probe]
)

func mono() int64 { return int64(time.Since(epoch)) }

// probe collects one workload's observations. The counter closes reached
// when it hits target, so waiting for completion costs no database queries.
type probe struct {
	target  int64
	count   atomic.Int64
	reached chan struct{}

	mu   sync.Mutex
	lat  []time.Duration // W2: trigger → last step's end; W4: trigger → first step's start
	lat2 []time.Duration // W4: step 1 end → step 2 start
}

func newProbe(target int) *probe {
	p := &probe{target: int64(target), reached: make(chan struct{})}
	if target <= 0 {
		close(p.reached)
	}
	cur.Store(p)
	return p
}

func (p *probe) hit() {
	if p == nil {
		return
	}
	if p.count.Add(1) == p.target {
		close(p.reached)
	}
}

func (p *probe) record(d time.Duration, second bool) {
	if p == nil {
		return
	}
	p.mu.Lock()
	if second {
		p.lat2 = append(p.lat2, d)
	} else {
		p.lat = append(p.lat, d)
	}
	p.mu.Unlock()
}

// W1: a one-step pipeline whose step does nothing but count.
var (
	jobsStep = step.New("w1-noop", func(_ step.Context, in int) (int, error) {
		cur.Load().hit()
		return in, nil
	})
	JobsPipeline = flow.MustDefine("bench-w1-jobs", func(p *flow.Pipeline[int]) flow.End[int] {
		return flow.Start(p, jobsStep)
	})
)

// W2: a chain of chainLen steps passing the trigger time along; the last one
// records the run's latency when it finishes.
const chainLen = 10

var ChainPipeline = chainPipeline("bench-w2-chain", "w2")

// LimitedChainPipeline is W2 with a concurrency limit of limitedChainLimit
// on every step (each step its own limit): what the gated claim costs.
var LimitedChainPipeline = chainPipeline("bench-w2-chain-limited", "w2l", step.Concurrency(limitedChainLimit))

const limitedChainLimit = 16

func chainPipeline(name, prefix string, opts ...step.Option) *flow.Definition[int64, int64] {
	return flow.MustDefine(name, func(p *flow.Pipeline[int64]) flow.End[int64] {
		pass := func(_ step.Context, t int64) (int64, error) { return t, nil }
		n := flow.Start(p, step.New(prefix+"-step-01", pass, opts...))
		for i := 2; i < chainLen; i++ {
			n = flow.Chain(n, step.New(fmt.Sprintf("%s-step-%02d", prefix, i), pass, opts...))
		}
		return flow.Chain(n, step.New(fmt.Sprintf("%s-step-%02d", prefix, chainLen), func(_ step.Context, t int64) (int64, error) {
			pr := cur.Load()
			pr.record(time.Duration(mono()-t), false)
			pr.hit()
			return t, nil
		}, opts...))
	})
}

// W3: one step returns n ints, each gets a no-op step, one step collapses them.
var FanoutPipeline = flow.MustDefine("bench-w3-fanout", func(p *flow.Pipeline[int]) flow.End[int] {
	ints := flow.Start(p, step.New("w3-split", func(_ step.Context, n int) ([]int, error) {
		out := make([]int, n)
		for i := range out {
			out[i] = i
		}
		return out, nil
	}))
	each := flow.Expand(ints, step.New("w3-item", func(_ step.Context, i int) (int, error) { return i, nil }))
	return flow.Collapse(each, step.New("w3-collapse", func(_ step.Context, xs []int) (int, error) { return len(xs), nil }))
}, flow.MaxFanOut(100_000_000))

// W4: two steps; the first records trigger → start and hands its end time
// to the second, which records the hand-off.
var LatencyPipeline = flow.MustDefine("bench-w4-latency", func(p *flow.Pipeline[int64]) flow.End[int64] {
	first := flow.Start(p, step.New("w4-first", func(_ step.Context, t int64) (int64, error) {
		cur.Load().record(time.Duration(mono()-t), false)
		return mono(), nil
	}))
	return flow.Chain(first, step.New("w4-second", func(_ step.Context, t int64) (int64, error) {
		cur.Load().record(time.Duration(mono()-t), true)
		return t, nil
	}))
})

// triggerGoroutines is how many goroutines trigger runs concurrently.
const triggerGoroutines = 8

// triggerMany triggers n runs of d from triggerGoroutines goroutines; input
// gives each run's input at the moment it is triggered.
func triggerMany[In, Out any](ctx context.Context, c *ductwork.Client, d *flow.Definition[In, Out], n int, input func(i int) In) error {
	var (
		next atomic.Int64
		wg   sync.WaitGroup
		errs = make([]error, triggerGoroutines)
	)
	for g := range triggerGoroutines {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				if _, err := ductwork.Trigger(ctx, c, d, input(i)); err != nil {
					errs[g] = err
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// startSupervisor runs a supervisor with the given workers until the returned
// stop function is called; stop returns Run's error.
func startSupervisor(ctx context.Context, c *ductwork.Client, workers int) (stop func() error, err error) {
	sup, err := supervisor.New(c, &supervisor.Config{Workers: workers})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- sup.Run(ctx) }()
	return func() error { cancel(); return <-done }, nil
}

// settle lets a freshly started supervisor register and go idle.
func settle(ctx context.Context) {
	select {
	case <-ctx.Done():
	case <-time.After(250 * time.Millisecond):
	}
}

// waitDone waits until the probe reached its target, then until no run of
// pipeline is still running (the last commits follow the last step's
// execution). It fails early when a run halted.
func waitDone(ctx context.Context, b backend.Backend, pipeline string, p *probe) error {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for waiting := true; waiting; {
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d of %d done: %w", p.count.Load(), p.target, ctx.Err())
		case <-p.reached:
			waiting = false
		case <-tick.C:
			if err := checkNotHalted(ctx, b, pipeline); err != nil {
				return err
			}
		}
	}
	for {
		res, err := b.ListRuns(ctx, &backend.ListRunsParams{Pipeline: pipeline, Status: backend.RunRunning, Limit: 1})
		if err != nil {
			return err
		}
		if len(res.Runs) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
}

func checkNotHalted(ctx context.Context, b backend.Backend, pipeline string) error {
	res, err := b.ListRuns(ctx, &backend.ListRunsParams{Pipeline: pipeline, Status: backend.RunHalted, Limit: 1})
	if err != nil {
		return err
	}
	if len(res.Runs) > 0 {
		return fmt.Errorf("run %d halted: %s", res.Runs[0].ID, res.Runs[0].Error)
	}
	return nil
}

// countRuns counts the runs of pipeline with status, page by page.
func countRuns(ctx context.Context, b backend.Backend, pipeline, status string) (int, error) {
	n := 0
	var before int64
	for {
		res, err := b.ListRuns(ctx, &backend.ListRunsParams{Pipeline: pipeline, Status: status, Limit: 1000, BeforeID: before})
		if err != nil {
			return n, err
		}
		n += len(res.Runs)
		if res.Next == 0 || len(res.Runs) == 0 {
			return n, nil
		}
		before = res.Next
	}
}

func verifyCompleted(ctx context.Context, b backend.Backend, pipeline string, want int) error {
	got, err := countRuns(ctx, b, pipeline, backend.RunCompleted)
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("%s: %d runs completed, want %d", pipeline, got, want)
	}
	return nil
}

// measured is what a workload function reports; the runner adds CPU time,
// peak RSS and the labels.
type measured struct {
	workload   string
	n          int
	steps      int
	elapsed    time.Duration
	lat        []time.Duration
	triggerDur time.Duration
}

// runJobs is W1: n one-step runs triggered up front (timed separately), then
// a supervisor drains them.
func runJobs(ctx context.Context, c *ductwork.Client, s *store, workers, n int, analyze bool) ([]measured, error) {
	p := newProbe(n)
	t0 := time.Now()
	if err := triggerMany(ctx, c, JobsPipeline, n, func(i int) int { return i }); err != nil {
		return nil, fmt.Errorf("trigger: %w", err)
	}
	trig := time.Since(t0)
	if analyze && s.analyze != nil {
		if err := s.analyze(ctx); err != nil {
			return nil, err
		}
	}
	t1 := time.Now()
	stop, err := startSupervisor(ctx, c, workers)
	if err != nil {
		return nil, err
	}
	werr := waitDone(ctx, c.Backend(), JobsPipeline.Name(), p)
	elapsed := time.Since(t1)
	if err := errors.Join(werr, stop()); err != nil {
		return nil, err
	}
	if err := verifyCompleted(ctx, c.Backend(), JobsPipeline.Name(), n); err != nil {
		return nil, err
	}
	return []measured{{workload: "jobs", n: n, steps: n, elapsed: elapsed, triggerDur: trig}}, nil
}

// runChain is W2: n runs of a chainLen-step chain triggered at once into an
// idle supervisor.
func runChain(ctx context.Context, c *ductwork.Client, s *store, workers, n int, analyze bool) ([]measured, error) {
	return runChainOf(ctx, c, s, workers, n, analyze, ChainPipeline, "chain")
}

// runLimitedChain is W2 with a concurrency limit on every step.
func runLimitedChain(ctx context.Context, c *ductwork.Client, s *store, workers, n int, analyze bool) ([]measured, error) {
	return runChainOf(ctx, c, s, workers, n, analyze, LimitedChainPipeline, "chain-limited")
}

func runChainOf(ctx context.Context, c *ductwork.Client, s *store, workers, n int, analyze bool, def *flow.Definition[int64, int64], workload string) ([]measured, error) {
	stop, err := startSupervisor(ctx, c, workers)
	if err != nil {
		return nil, err
	}
	settle(ctx)
	p := newProbe(n)
	t0 := time.Now()
	terr := triggerMany(ctx, c, def, n, func(int) int64 { return mono() })
	trig := time.Since(t0)
	if terr == nil && analyze && s.analyze != nil {
		terr = s.analyze(ctx)
	}
	var werr error
	if terr == nil {
		werr = waitDone(ctx, c.Backend(), def.Name(), p)
	}
	elapsed := time.Since(t0)
	if err := errors.Join(terr, werr, stop()); err != nil {
		return nil, err
	}
	if err := verifyCompleted(ctx, c.Backend(), def.Name(), n); err != nil {
		return nil, err
	}
	return []measured{{workload: workload, n: n, steps: n * chainLen, elapsed: elapsed, lat: p.lat, triggerDur: trig}}, nil
}

// runFanout is W3: one run expanding to n branches and collapsing them.
func runFanout(ctx context.Context, c *ductwork.Client, _ *store, workers, n int, _ bool) ([]measured, error) {
	stop, err := startSupervisor(ctx, c, workers)
	if err != nil {
		return nil, err
	}
	settle(ctx)
	newProbe(0)
	t0 := time.Now()
	var got int
	r, err := ductwork.Trigger(ctx, c, FanoutPipeline, n)
	if err == nil {
		got, err = r.Wait(ctx)
	}
	elapsed := time.Since(t0)
	if err := errors.Join(err, stop()); err != nil {
		return nil, err
	}
	if got != n {
		return nil, fmt.Errorf("fanout collapsed %d outputs, want %d", got, n)
	}
	return []measured{{workload: "fanout", n: n, steps: n + 2, elapsed: elapsed}}, nil
}

// runLatency is W4: n sequential runs of a two-step chain on an idle
// supervisor; each run is waited for before the next is triggered.
func runLatency(ctx context.Context, c *ductwork.Client, _ *store, workers, n int, _ bool) ([]measured, error) {
	stop, err := startSupervisor(ctx, c, workers)
	if err != nil {
		return nil, err
	}
	settle(ctx)
	p := newProbe(0)
	t0 := time.Now()
	var rerr error
	for range n {
		var r *ductwork.Run[int64]
		if r, rerr = ductwork.Trigger(ctx, c, LatencyPipeline, mono()); rerr != nil {
			break
		}
		if _, rerr = r.Wait(ctx); rerr != nil {
			break
		}
	}
	elapsed := time.Since(t0)
	if err := errors.Join(rerr, stop()); err != nil {
		return nil, err
	}
	if len(p.lat) != n || len(p.lat2) != n {
		return nil, fmt.Errorf("latency: %d/%d samples, want %d", len(p.lat), len(p.lat2), n)
	}
	return []measured{
		{workload: "latency", n: n, steps: 2 * n, elapsed: elapsed, lat: p.lat},
		{workload: "latency-handoff", n: n, steps: 2 * n, elapsed: elapsed, lat: p.lat2},
	}, nil
}
