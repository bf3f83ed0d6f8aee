package supervisor_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ductwork-go/ductwork"
	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/backend/sqlite"
	"github.com/ductwork-go/ductwork/flow"
	"github.com/ductwork-go/ductwork/step"
	"github.com/ductwork-go/ductwork/supervisor"
)

// quiet discards the log lines of clients and supervisors.
var quiet = slog.New(slog.DiscardHandler)

// newBackend opens and migrates a SQLite database under t.TempDir.
func newBackend(t *testing.T) *sqlite.Backend {
	t.Helper()
	b, err := sqlite.Open(filepath.Join(t.TempDir(), "dw.db"), &sqlite.Config{Logger: quiet})
	if err != nil {
		t.Fatalf("sqlite.Open: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Close(context.WithoutCancel(t.Context())); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	if err := b.Migrate(t.Context()); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	return b
}

// newClient returns a client on b that registered defs.
func newClient(t *testing.T, b backend.Backend, defs ...ductwork.Definition) *ductwork.Client {
	t.Helper()
	c, err := ductwork.NewClient(b, &ductwork.Config{Logger: quiet})
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	if err := c.Register(defs...); err != nil {
		t.Fatalf("Register: %v", err)
	}
	return c
}

// newSupervisor makes a fast-polling supervisor for c.
func newSupervisor(t *testing.T, c *ductwork.Client, cfg supervisor.Config) *supervisor.Supervisor {
	t.Helper()
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 5 * time.Millisecond
	}
	s, err := supervisor.New(c, &cfg)
	if err != nil {
		t.Fatalf("supervisor.New: %v", err)
	}
	return s
}

// running is a supervisor's Run in a goroutine of its own.
type running struct {
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

// start runs s until stop is called or the test ends.
func start(t *testing.T, s *supervisor.Supervisor) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- s.Run(ctx) }()
	t.Cleanup(func() {
		if err := r.stop(t); err != nil {
			t.Errorf("supervisor Run: %v", err)
		}
	})
	return r
}

// wait waits for Run to return after its context was cancelled.
func (r *running) wait(t *testing.T) error {
	t.Helper()
	r.once.Do(func() {
		select {
		case r.err = <-r.done:
		case <-time.After(30 * time.Second):
			r.err = errors.New("Run did not return within 30s of its context being cancelled")
		}
	})
	return r.err
}

// stop cancels Run's context and waits for it to return.
func (r *running) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	return r.wait(t)
}

// ctxFor returns a context bounding one blocking call of the test.
func ctxFor(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// waitFor polls cond until it holds, failing the test after 30s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	delay := time.Millisecond
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(delay)
		delay = min(2*delay, 20*time.Millisecond)
	}
}

// waitChan waits for ch to be closed or to deliver a value.
func waitChan[T any](t *testing.T, what string, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(30 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// waitPast waits until the database clock is after at+d.
func waitPast(t *testing.T, b backend.Backend, at time.Time, d time.Duration) {
	t.Helper()
	waitFor(t, fmt.Sprintf("database clock past %v + %v", at, d), func() bool {
		now, err := b.Now(ctxFor(t))
		if err != nil {
			t.Fatalf("Now: %v", err)
		}
		return now.After(at.Add(d))
	})
}

// processExists reports whether process has a row, by heartbeating it.
func processExists(t *testing.T, b backend.Backend, process string) bool {
	t.Helper()
	_, err := b.Heartbeat(ctxFor(t), &backend.HeartbeatParams{ProcessID: process})
	switch {
	case err == nil:
		return true
	case errors.Is(err, backend.ErrProcessNotFound):
		return false
	}
	t.Fatalf("Heartbeat(%s): %v", process, err)
	return false
}

// registerFake registers a process that never heartbeats again and returns
// the database time of its heartbeat.
func registerFake(t *testing.T, b backend.Backend, id string, defs ...backend.DefinitionRef) time.Time {
	t.Helper()
	if _, err := b.RegisterProcess(ctxFor(t), &backend.RegisterProcessParams{ProcessID: id, Host: "fake", PID: 1, Definitions: defs}); err != nil {
		t.Fatalf("RegisterProcess(%s): %v", id, err)
	}
	hb, err := b.Heartbeat(ctxFor(t), &backend.HeartbeatParams{ProcessID: id})
	if err != nil {
		t.Fatalf("Heartbeat(%s): %v", id, err)
	}
	return hb.At
}

// steps lists a run's step instances.
func steps(t *testing.T, c *ductwork.Client, runID int64) []ductwork.StepInfo {
	t.Helper()
	s, err := c.Steps(ctxFor(t), runID)
	if err != nil {
		t.Fatalf("Steps(run %d): %v", runID, err)
	}
	return s
}

// oneStep is a single-step pipeline around fn.
func oneStep(name string, fn step.Func[int, int]) *flow.Definition[int, int] {
	s := step.New(name+"-step", fn)
	return flow.MustDefine(name, func(p *flow.Pipeline[int]) flow.End[int] { return flow.Start(p, s) })
}

func ref(d ductwork.Definition) backend.DefinitionRef {
	return backend.DefinitionRef{Pipeline: d.Name(), Fingerprint: d.Fingerprint()}
}

func TestNewRejectsInvalidConfig(t *testing.T) {
	t.Parallel()
	c := newClient(t, newBackend(t))
	for name, cfg := range map[string]supervisor.Config{
		"negative Workers":                   {Workers: -1},
		"negative PollInterval":              {PollInterval: -time.Millisecond},
		"negative ReapThreshold":             {ReapThreshold: -time.Second},
		"negative ShutdownGrace":             {ShutdownGrace: -time.Second},
		"HeartbeatInterval = ReapThreshold":  {HeartbeatInterval: time.Second, ReapThreshold: time.Second},
		"HeartbeatInterval > ReapThreshold":  {HeartbeatInterval: 2 * time.Second, ReapThreshold: time.Second},
		"HeartbeatInterval > default 20s":    {HeartbeatInterval: 21 * time.Second},
		"HeartbeatInterval = default 20s":    {HeartbeatInterval: 20 * time.Second},
		"HeartbeatInterval > ReapThreshold2": {HeartbeatInterval: time.Minute, ReapThreshold: 30 * time.Second, ReapInterval: time.Second},
		"negative StepTimeout":               {StepTimeout: -time.Second},
		"negative StuckGrace":                {StuckGrace: -time.Second},
		"negative Processes":                 {Processes: -1},
		"negative Children.MaxSteps":         {Processes: 1, Children: supervisor.Children{MaxSteps: -1}},
		"negative Children.MaxRSS":           {Processes: 1, Children: supervisor.Children{MaxRSS: -1}},
		"negative Children.StopTimeout":      {Processes: 1, Children: supervisor.Children{StopTimeout: -time.Second}},
		"Processes with RoleMaintenance":     {Processes: 2, Role: supervisor.RoleMaintenance},
		"queue listed twice":                 {Queues: []supervisor.Queue{{Name: "heavy"}, {Name: "heavy"}}},
		"queue with negative Workers":        {Queues: []supervisor.Queue{{Name: "heavy", Workers: -1}}},
		"queue name too long":                {Queues: []supervisor.Queue{{Name: strings.Repeat("q", 65)}}},
	} {
		t.Run(name, func(t *testing.T) {
			s, err := supervisor.New(c, &cfg)
			var ce *supervisor.ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("New(%+v) = %v, %v; want a *ConfigError", cfg, s, err)
			}
			if s != nil {
				t.Errorf("New returned a supervisor with its *ConfigError")
			}
		})
	}
	for name, cfg := range map[string]*supervisor.Config{
		"nil":                         nil,
		"zero":                        {},
		"HeartbeatInterval < default": {HeartbeatInterval: 19 * time.Second},
		"short intervals":             {HeartbeatInterval: time.Millisecond, ReapThreshold: 2 * time.Millisecond},
		"Processes":                   {Processes: 2, StepTimeout: time.Minute},
	} {
		t.Run("valid "+name, func(t *testing.T) {
			s, err := supervisor.New(c, cfg)
			if err != nil || s == nil {
				t.Fatalf("New(%+v) = %v, %v; want a supervisor", cfg, s, err)
			}
		})
	}
	if _, err := supervisor.New(nil, nil); err == nil {
		t.Error("New(nil client) succeeded")
	}
}

// TestNewRejectsNegativeIntervals: a negative HeartbeatInterval or
// ReapInterval passes validation and makes time.NewTicker panic inside the
// heartbeat or reaper loop, which then restarts forever instead of running.
func TestNewRejectsNegativeIntervals(t *testing.T) {
	t.Parallel()
	c := newClient(t, newBackend(t))
	for name, cfg := range map[string]supervisor.Config{
		"negative HeartbeatInterval": {HeartbeatInterval: -time.Second},
		"negative ReapInterval":      {ReapInterval: -time.Second},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := supervisor.New(c, &cfg)
			var ce *supervisor.ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("New(%+v) error = %v; want a *ConfigError", cfg, err)
			}
		})
	}
}

// TestGracefulShutdownLetsStepFinish: a step in flight when Run's context is
// cancelled keeps its context for the grace period, commits, and Run returns
// after it.
func TestGracefulShutdownLetsStepFinish(t *testing.T) {
	t.Parallel()
	started, gate := make(chan struct{}), make(chan struct{})
	var execs atomic.Int32
	var ctxErrAtGate atomic.Value
	def := oneStep("graceful", func(ctx step.Context, n int) (int, error) {
		if execs.Add(1) == 1 {
			close(started)
		}
		select {
		case <-gate:
			ctxErrAtGate.Store(fmt.Sprint(ctx.Err()))
			return n + 1, nil
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	})
	b := newBackend(t)
	c := newClient(t, b, def)
	s := newSupervisor(t, c, supervisor.Config{ShutdownGrace: time.Minute})
	r := start(t, s)
	run, err := ductwork.Trigger(ctxFor(t), c, def, 41)
	if err != nil {
		t.Fatalf("Trigger: %v", err)
	}
	waitChan(t, "the step to start", started)

	r.cancel()
	select {
	case err := <-r.done:
		t.Fatalf("Run returned (%v) while a step was in flight within the grace period", err)
	default:
	}
	close(gate)
	if err := r.wait(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	// Run waited for the step: the run is complete when it returns.
	if st, err := run.Status(ctxFor(t)); err != nil || st != ductwork.RunCompleted {
		t.Fatalf("run status after Run returned = %q, %v; want completed", st, err)
	}
	if got := ctxErrAtGate.Load(); got != "<nil>" {
		t.Errorf("step context error within the grace period = %v; want none", got)
	}
	if out, err := run.Wait(ctxFor(t)); err != nil || out != 42 {
		t.Errorf("output = %d, %v; want 42", out, err)
	}
	ss := steps(t, c, run.ID)
	if len(ss) != 1 || ss[0].Status != backend.JobCompleted || ss[0].Attempt != 1 || ss[0].CrashReruns != 0 {
		t.Errorf("steps = %+v; want one completed at attempt 1 without crash re-runs", ss)
	}
	if n := execs.Load(); n != 1 {
		t.Errorf("step executed %d times; want 1", n)
	}
	if processExists(t, b, s.ProcessID()) {
		t.Errorf("process %s still registered after Run returned", s.ProcessID())
	}
}

// TestShutdownGraceExpiryReleasesClaim: a step that outlives the grace period
// has its context cancelled; its claim is released without spending the
// retry budget, the process is deregistered, and another supervisor finishes
// the run.
func TestShutdownGraceExpiryReleasesClaim(t *testing.T) {
	t.Parallel()
	const grace = 100 * time.Millisecond
	started := make(chan struct{})
	var execs atomic.Int32
	type execution struct {
		key              string
		attempt, crashes int
		err              error
	}
	var mu sync.Mutex
	var seen []execution
	def := oneStep("grace-expiry", func(ctx step.Context, n int) (int, error) {
		ex := execution{key: ctx.IdempotencyKey(), attempt: ctx.Attempt(), crashes: ctx.Crashes()}
		defer func() { mu.Lock(); seen = append(seen, ex); mu.Unlock() }()
		if execs.Add(1) == 1 {
			close(started)
			<-ctx.Done() // no gate: it runs until its context ends
			ex.err = ctx.Err()
			return 0, ex.err
		}
		return n * 2, nil
	})
	b := newBackend(t)
	c := newClient(t, b, def)
	s := newSupervisor(t, c, supervisor.Config{ShutdownGrace: grace})
	r := start(t, s)
	run, err := ductwork.Trigger(ctxFor(t), c, def, 21)
	if err != nil {
		t.Fatalf("Trigger: %v", err)
	}
	waitChan(t, "the step to start", started)

	cancelled := time.Now()
	if err := r.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if took := time.Since(cancelled); took < grace {
		t.Errorf("Run returned %v after cancellation; want at least the grace period %v", took, grace)
	}
	ss := steps(t, c, run.ID)
	if len(ss) != 1 {
		t.Fatalf("%d steps; want 1", len(ss))
	}
	// A release at shutdown is not a crash: it spends neither budget.
	if st := ss[0]; st.Status != backend.JobPending || st.CrashReruns != 0 || st.Attempt != 1 {
		t.Errorf("step after grace expiry = {status %q, crash re-runs %d, attempt %d}; want {pending, 0, 1}", st.Status, st.CrashReruns, st.Attempt)
	}
	if st, err := run.Status(ctxFor(t)); err != nil || st != ductwork.RunRunning {
		t.Errorf("run status = %q, %v; want running", st, err)
	}
	if processExists(t, b, s.ProcessID()) {
		t.Errorf("process %s still registered after Run returned", s.ProcessID())
	}

	s2 := newSupervisor(t, c, supervisor.Config{})
	if s2.ProcessID() == s.ProcessID() {
		t.Fatalf("two supervisors got the same random ProcessID %q", s.ProcessID())
	}
	start(t, s2)
	if out, err := run.Wait(ctxFor(t)); err != nil || out != 42 {
		t.Fatalf("output = %d, %v; want 42", out, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 2 {
		t.Fatalf("executions %+v; want 2", seen)
	}
	if !errors.Is(seen[0].err, context.Canceled) {
		t.Errorf("first execution's context ended with %v; want context.Canceled", seen[0].err)
	}
	if seen[1].key != seen[0].key || seen[1].attempt != 1 || seen[1].crashes != 0 {
		t.Errorf("re-run = %+v; want key %q, attempt 1, crashes 0", seen[1], seen[0].key)
	}
}

// TestRoleMaintenanceReapsButNeverClaims: a maintenance-only supervisor
// reaps a dead process (whose job becomes due again) and claims nothing.
func TestRoleMaintenanceReapsButNeverClaims(t *testing.T) {
	t.Parallel()
	const threshold = 100 * time.Millisecond
	var execs atomic.Int32
	def := oneStep("maintenance", func(_ step.Context, n int) (int, error) { execs.Add(1); return n, nil })
	b := newBackend(t)
	c := newClient(t, b, def)
	pending, err := ductwork.Trigger(ctxFor(t), c, def, 1)
	if err != nil {
		t.Fatalf("Trigger: %v", err)
	}
	held, err := ductwork.Trigger(ctxFor(t), c, def, 2)
	if err != nil {
		t.Fatalf("Trigger: %v", err)
	}
	// A dead process holds one of the jobs.
	const dead = "dead-process"
	hbAt := registerFake(t, b, dead, ref(def))
	cl, err := b.Claim(ctxFor(t), &backend.ClaimParams{ProcessID: dead, Limit: 1, Definitions: []backend.DefinitionRef{ref(def)}})
	if err != nil || len(cl.Jobs) != 1 {
		t.Fatalf("Claim by the dead process = %v, %v; want one job", cl, err)
	}
	heldJob := cl.Jobs[0]
	if heldJob.RunID == pending.ID {
		pending, held = held, pending
	}

	reaped := make(chan *backend.ReapResult, 16)
	s := newSupervisor(t, c, supervisor.Config{
		Role: supervisor.RoleMaintenance, ReapThreshold: threshold, HeartbeatInterval: 10 * time.Millisecond, ReapInterval: 10 * time.Millisecond,
		Hooks: supervisor.Hooks{OnReapFunc: func(res *backend.ReapResult) { reaped <- res }},
	})
	r := start(t, s)
	waitPast(t, b, hbAt, threshold)
	res := waitChan(t, "OnReapFunc", reaped)
	if !slices.Equal(res.Processes, []string{dead}) || res.Jobs != 1 {
		t.Errorf("OnReapFunc got {processes %v, jobs %d}; want {[%s], 1}", res.Processes, res.Jobs, dead)
	}
	if processExists(t, b, dead) {
		t.Errorf("reaped process %s still has a row", dead)
	}
	// The reaper ran several times more; still nothing was claimed.
	waitPast(t, b, hbAt, threshold+20*10*time.Millisecond)
	for _, runID := range []int64{pending.ID, held.ID} {
		ss := steps(t, c, runID)
		if len(ss) != 1 || ss[0].Status != backend.JobPending {
			t.Errorf("run %d steps %+v under a maintenance-only supervisor; want one pending step", runID, ss)
		}
	}
	if ss := steps(t, c, held.ID); len(ss) == 1 && ss[0].CrashReruns != 1 {
		t.Errorf("reaped job has %d crash re-runs; want 1", ss[0].CrashReruns)
	}
	if n := execs.Load(); n != 0 {
		t.Errorf("a maintenance-only supervisor executed %d steps", n)
	}
	if err := r.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	// The jobs were claimable all along: a worker runs them.
	start(t, newSupervisor(t, c, supervisor.Config{Role: supervisor.RoleWorker}))
	for _, run := range []*ductwork.Run[int]{pending, held} {
		if _, err := run.Wait(ctxFor(t)); err != nil {
			t.Fatalf("run %d: %v", run.ID, err)
		}
	}
}

// TestRoleWorkerExecutesButNeverReaps: a worker-only supervisor runs steps
// and leaves a dead process alone.
func TestRoleWorkerExecutesButNeverReaps(t *testing.T) {
	t.Parallel()
	const threshold = 50 * time.Millisecond
	def := oneStep("worker", func(_ step.Context, n int) (int, error) { return n + 1, nil })
	b := newBackend(t)
	c := newClient(t, b, def)
	const dead = "dead-process"
	hbAt := registerFake(t, b, dead, ref(def))
	var reaps atomic.Int32
	start(t, newSupervisor(t, c, supervisor.Config{
		Role: supervisor.RoleWorker, ReapThreshold: threshold, HeartbeatInterval: 10 * time.Millisecond, ReapInterval: 10 * time.Millisecond,
		Hooks: supervisor.Hooks{OnReapFunc: func(*backend.ReapResult) { reaps.Add(1) }},
	}))
	run, err := ductwork.Trigger(ctxFor(t), c, def, 1)
	if err != nil {
		t.Fatalf("Trigger: %v", err)
	}
	if out, err := run.Wait(ctxFor(t)); err != nil || out != 2 {
		t.Fatalf("output = %d, %v; want 2", out, err)
	}
	// Long enough past the threshold for many reap intervals.
	waitPast(t, b, hbAt, threshold+20*10*time.Millisecond)
	if n := reaps.Load(); n != 0 {
		t.Errorf("a worker-only supervisor reaped %d times", n)
	}
	if !processExists(t, b, dead) {
		t.Errorf("a worker-only supervisor reaped %s", dead)
	}
}

// TestLifecycleHooksOnce: OnStartFunc runs once, after the process is
// registered; OnStopFunc once, after shutdown.
func TestLifecycleHooksOnce(t *testing.T) {
	t.Parallel()
	b := newBackend(t)
	c := newClient(t, b)
	var mu sync.Mutex
	var events []string
	started := make(chan struct{})
	s := newSupervisor(t, c, supervisor.Config{
		ProcessID: "lifecycle",
		Hooks: supervisor.Hooks{
			OnStartFunc: func(id string) {
				_, err := b.Heartbeat(context.Background(), &backend.HeartbeatParams{ProcessID: id})
				mu.Lock()
				events = append(events, fmt.Sprintf("start %s registered=%v", id, err == nil))
				mu.Unlock()
				close(started)
			},
			OnStopFunc: func(id string) {
				mu.Lock()
				events = append(events, "stop "+id)
				mu.Unlock()
			},
		},
	})
	r := start(t, s)
	waitChan(t, "OnStartFunc", started)
	if err := r.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{"start lifecycle registered=true", "stop lifecycle"}
	if !slices.Equal(events, want) {
		t.Errorf("hooks called %q; want %q", events, want)
	}
}

// TestReregistersAfterBeingReaped: when another process reaps this one (it
// stalled past the threshold), the next heartbeat finds the row gone and the
// supervisor registers again and keeps working.
func TestReregistersAfterBeingReaped(t *testing.T) {
	t.Parallel()
	const self, hbEvery = "reaped-supervisor", 20 * time.Millisecond
	def := oneStep("reregister", func(_ step.Context, n int) (int, error) { return n * 3, nil })
	b := newBackend(t)
	c := newClient(t, b, def)
	started := make(chan struct{})
	start(t, newSupervisor(t, c, supervisor.Config{
		ProcessID: self, HeartbeatInterval: hbEvery,
		Hooks: supervisor.Hooks{OnStartFunc: func(string) { close(started) }},
	}))
	waitChan(t, "OnStartFunc", started)

	// Reap it from another process ID, as soon as its heartbeat is older
	// than a threshold shorter than its heartbeat interval.
	const threshold = 2 * time.Millisecond
	waitFor(t, "another process to reap "+self, func() bool {
		res, err := b.Reap(ctxFor(t), &backend.ReapParams{ProcessID: "other", Threshold: threshold})
		if err != nil {
			t.Fatalf("Reap: %v", err)
		}
		return slices.Contains(res.Processes, self)
	})
	waitFor(t, self+" to register again", func() bool { return processExists(t, b, self) })

	run, err := ductwork.Trigger(ctxFor(t), c, def, 14)
	if err != nil {
		t.Fatalf("Trigger: %v", err)
	}
	if out, err := run.Wait(ctxFor(t)); err != nil || out != 42 {
		t.Fatalf("output = %d, %v; want 42", out, err)
	}
	if !processExists(t, b, self) {
		t.Errorf("process %s is not registered", self)
	}
}

// TestSignalContextSIGTERM: SIGTERM cancels the context SignalContext
// returns.
func TestSignalContextSIGTERM(t *testing.T) {
	// Not parallel: it signals the whole test process.
	ctx, stop := supervisor.SignalContext(context.Background())
	if err := ctx.Err(); err != nil {
		stop()
		t.Fatalf("context done before any signal: %v", err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		stop()
		t.Fatalf("kill: %v", err)
	}
	select {
	case <-ctx.Done():
	case <-time.After(30 * time.Second):
		stop()
		t.Fatal("context not cancelled after SIGTERM")
	}
	stop()
	if !errors.Is(ctx.Err(), context.Canceled) {
		t.Errorf("ctx.Err() = %v; want context.Canceled", ctx.Err())
	}
}

// TestSignalContextStopTwice: stop is called by a deferred call and again
// explicitly, as with signal.NotifyContext; the second call must not panic.
func TestSignalContextStopTwice(t *testing.T) {
	_, stop := supervisor.SignalContext(context.Background())
	stop()
	defer func() {
		if r := recover(); r != nil {
			t.Errorf("second stop panicked: %v", r)
		}
	}()
	stop()
}

// TestSignalContextParentCancel: cancelling the parent cancels the returned
// context.
func TestSignalContextParentCancel(t *testing.T) {
	parent, cancel := context.WithCancel(context.Background())
	ctx, stop := supervisor.SignalContext(parent)
	defer stop()
	cancel()
	waitChan(t, "the context to follow its parent", ctx.Done())
}

// TestPrefetchDisabled: with Prefetch < 0 the pool claims only for idle
// workers and still drains every run (a freed worker wakes the fetcher).
func TestPrefetchDisabled(t *testing.T) {
	for _, prefetch := range []int{-1, 0, 3} {
		t.Run(fmt.Sprint(prefetch), func(t *testing.T) {
			b := newBackend(t)
			one := step.New("one", func(_ step.Context, n int) (int, error) { return n, nil })
			def := flow.MustDefine("prefetch", func(p *flow.Pipeline[int]) flow.End[int] { return flow.Start(p, one) })
			client, err := ductwork.NewClient(b, &ductwork.Config{Logger: quiet})
			if err != nil {
				t.Fatal(err)
			}
			_ = client.Register(def)
			runs := make([]*ductwork.Run[int], 40)
			for i := range runs {
				if runs[i], err = ductwork.Trigger(t.Context(), client, def, i); err != nil {
					t.Fatal(err)
				}
			}
			// A poll interval far above the test's deadline: only wake-ups can drain the runs.
			s, err := supervisor.New(client, &supervisor.Config{Workers: 2, Prefetch: prefetch, PollInterval: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- s.Run(ctx) }()
			defer func() { cancel(); <-done }()
			wctx, wcancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer wcancel()
			for i, r := range runs {
				if out, err := r.Wait(wctx); err != nil || out != i {
					t.Fatalf("run %d: %d, %v", i, out, err)
				}
			}
		})
	}
}

// TestShutdownDuringRegistrationIsNotAnError: a supervisor cancelled while
// its registration is still being retried (the database unreachable)
// returns nil, as after any shutdown.
func TestShutdownDuringRegistrationIsNotAnError(t *testing.T) {
	hb := &blockingRegister{Backend: newBackend(t), entered: make(chan struct{})}
	c := newClient(t, hb, oneStep("reg-cancel", func(_ step.Context, n int) (int, error) { return n, nil }))
	s := newSupervisor(t, c, supervisor.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	waitChan(t, "the registration to start", hb.entered)
	cancel()
	if err := waitChan(t, "Run to return", done); err != nil {
		t.Fatalf("Run cancelled during registration = %v; want nil", err)
	}
}

// blockingRegister is a backend whose RegisterProcess waits for its
// context, as over a link that does not answer.
type blockingRegister struct {
	backend.Backend
	entered chan struct{}
	once    sync.Once
}

func (b *blockingRegister) RegisterProcess(ctx context.Context, _ *backend.RegisterProcessParams) (*backend.RegisterProcessResult, error) {
	b.once.Do(func() { close(b.entered) })
	<-ctx.Done()
	return nil, ctx.Err()
}
