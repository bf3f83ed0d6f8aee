package supervisor

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ductwork-go/ductwork"
	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/internal/bridge"
	"github.com/ductwork-go/ductwork/internal/engine"
)

// Role selects which loops a supervisor runs.
type Role int

// Roles.
const (
	// RoleAll runs workers and maintenance (the default).
	RoleAll Role = iota
	// RoleWorker claims and executes steps, and heartbeats; it does not reap.
	RoleWorker
	// RoleMaintenance only reaps dead processes and reports stranded work.
	RoleMaintenance
)

// Config configures a Supervisor. The zero value is valid.
type Config struct {
	// Workers is the number of steps executed at once. Default 16.
	Workers int
	// Prefetch is how many claimed steps may wait for a free worker, so
	// that one claim serves several steps under load. Default Workers; a
	// negative value disables prefetching. Prefetched steps are claimed (a
	// crash re-runs them elsewhere, without spending retries).
	Prefetch int
	// Role selects the loops to run. Default RoleAll.
	Role Role
	// ProcessID identifies this process in the database. Default: random.
	ProcessID string
	// PollInterval is how often an idle worker pool looks for due work when
	// the backend cannot notify. Default 100ms.
	PollInterval time.Duration
	// HeartbeatInterval is how often the process row is refreshed. Each
	// heartbeat also asks which runs of the jobs this process holds were
	// cancelled elsewhere, so it bounds how long a step of a run cancelled
	// by another process keeps running here. Default ReapThreshold/4.
	HeartbeatInterval time.Duration
	// ReapThreshold is how old a heartbeat must be, by the database's clock,
	// for its process to be reaped. Default 20s.
	ReapThreshold time.Duration
	// ReapInterval is how often the reaper runs. Default ReapThreshold/2.
	ReapInterval time.Duration
	// ShutdownGrace is how long in-flight steps may run after shutdown
	// begins; after it their contexts are cancelled and their claims
	// released. Default 10s.
	ShutdownGrace time.Duration
	// Logger defaults to the client's logger.
	Logger *slog.Logger
	// Hooks observe the supervisor's lifecycle.
	Hooks Hooks
}

// Hooks are lifecycle callbacks. Nil fields are skipped.
type Hooks struct {
	// OnStart runs after the process is registered.
	OnStartFunc func(processID string)
	// OnStopFunc runs after shutdown completes.
	OnStopFunc func(processID string)
	// OnLoopRestartFunc runs when a loop died (panicked) and is restarted.
	OnLoopRestartFunc func(loop string, cause any)
	// OnReapFunc runs after this process reaped others.
	OnReapFunc func(res *backend.ReapResult)
	// OnStrandedFunc runs when unfinished runs exist whose definition this
	// process has not registered.
	OnStrandedFunc func(defs []backend.StrandedDefinition)
}

// Supervisor claims and executes steps, heartbeats, and reaps dead processes.
type Supervisor struct {
	cfg    Config
	eng    *engine.Engine
	b      backend.Backend
	logger *slog.Logger
	wake   chan struct{}

	mu      sync.Mutex
	running bool

	// epoch grows each time this process finds it was reaped: jobs claimed
	// in an earlier epoch were reset by the reaper and must not start.
	epoch atomic.Int64
}

// New returns a Supervisor for client. It does no I/O until Run.
func New(client *ductwork.Client, cfg *Config) (*Supervisor, error) {
	if client == nil {
		return nil, &ductwork.ArgumentError{Func: "supervisor.New", Arg: "client", Reason: "is nil"}
	}
	eng := bridge.EngineOf(client)
	var c Config
	if cfg != nil {
		c = *cfg
	}
	if c.Workers < 0 || c.PollInterval < 0 || c.ReapThreshold < 0 || c.ShutdownGrace < 0 ||
		c.HeartbeatInterval < 0 || c.ReapInterval < 0 {
		return nil, &ConfigError{Reason: "negative Workers or duration"}
	}
	if c.Workers == 0 {
		c.Workers = 16
	}
	switch {
	case c.Prefetch == 0:
		c.Prefetch = c.Workers
	case c.Prefetch < 0:
		c.Prefetch = 0
	}
	if c.PollInterval == 0 {
		c.PollInterval = 100 * time.Millisecond
	}
	if c.ReapThreshold == 0 {
		c.ReapThreshold = 20 * time.Second
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = max(c.ReapThreshold/4, time.Millisecond)
	}
	if c.HeartbeatInterval >= c.ReapThreshold {
		return nil, &ConfigError{Reason: fmt.Sprintf("HeartbeatInterval %s must be shorter than ReapThreshold %s", c.HeartbeatInterval, c.ReapThreshold)}
	}
	if c.ReapInterval == 0 {
		c.ReapInterval = max(c.ReapThreshold/2, time.Millisecond)
	}
	if c.ShutdownGrace == 0 {
		c.ShutdownGrace = 10 * time.Second
	}
	if c.ProcessID == "" {
		var buf [8]byte
		_, _ = rand.Read(buf[:])
		host, _ := os.Hostname()
		c.ProcessID = fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(buf[:]))
	}
	if c.Logger == nil {
		c.Logger = eng.Logger
	}
	return &Supervisor{cfg: c, eng: eng, b: eng.Backend, logger: c.Logger.With(slog.String(engine.AttrProcess, c.ProcessID)), wake: make(chan struct{}, 1)}, nil
}

// ConfigError reports an invalid Config.
type ConfigError struct{ Reason string }

func (e *ConfigError) Error() string { return "supervisor: invalid config: " + e.Reason }

// ProcessID returns the ID this supervisor registers as.
func (s *Supervisor) ProcessID() string { return s.cfg.ProcessID }

// Run registers the process and runs its loops until ctx is cancelled, then
// shuts down gracefully: no new claims, in-flight steps get ShutdownGrace to
// finish, then their claims are released and the process deregistered. Run
// returns nil after a clean shutdown, or the error that kept it from starting.
func (s *Supervisor) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.running {
		s.mu.Unlock()
		return errors.New("supervisor: already running")
	}
	s.running = true
	s.mu.Unlock()
	defer func() { s.mu.Lock(); s.running = false; s.mu.Unlock() }()

	if err := s.register(ctx); err != nil {
		return err
	}
	defer s.eng.AddWaker(s.Wake)()
	if f := s.cfg.Hooks.OnStartFunc; f != nil {
		engine.SafeCall(ctx, s.logger, "OnStartFunc", func() { f(s.cfg.ProcessID) })
	}
	// hardCtx outlives ctx by the grace period: it bounds step executions.
	hardCtx, hardCancel := context.WithCancel(context.WithoutCancel(ctx))
	defer hardCancel()

	var loops sync.WaitGroup
	start := func(name string, fn func(context.Context)) {
		loops.Add(1)
		go func() { defer loops.Done(); s.supervise(ctx, name, fn) }()
	}
	start("heartbeat", s.heartbeatLoop)
	var inflight sync.WaitGroup
	if s.cfg.Role != RoleMaintenance {
		start("fetch", func(ctx context.Context) { s.fetchLoop(ctx, hardCtx, &inflight) })
	}
	if s.cfg.Role != RoleWorker {
		start("reaper", s.reapLoop)
		start("stranded", s.strandedLoop)
	}
	<-ctx.Done()
	loops.Wait()

	// Graceful shutdown: wait for in-flight steps, up to the grace period.
	done := make(chan struct{})
	go func() { inflight.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(s.cfg.ShutdownGrace):
		s.logger.Warn("ductwork: shutdown grace period over, cancelling in-flight steps")
		hardCancel()
		<-done
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := s.b.DeregisterProcess(cctx, &backend.DeregisterProcessParams{ProcessID: s.cfg.ProcessID}); err != nil {
		s.logger.Warn("ductwork: deregister failed; the reaper will recover this process's claims", slog.String("error", err.Error()))
	}
	if f := s.cfg.Hooks.OnStopFunc; f != nil {
		engine.SafeCall(ctx, s.logger, "OnStopFunc", func() { f(s.cfg.ProcessID) })
	}
	return nil
}

func (s *Supervisor) register(ctx context.Context) error {
	host, _ := os.Hostname()
	delay := 100 * time.Millisecond
	for {
		_, err := s.b.RegisterProcess(ctx, &backend.RegisterProcessParams{
			ProcessID: s.cfg.ProcessID, Host: host, PID: os.Getpid(), Definitions: s.eng.Refs(),
		})
		if err == nil {
			return nil
		}
		if errors.Is(err, backend.ErrClosed) || errors.Is(err, backend.ErrNotMigrated) || backend.IsPermanent(err) {
			// A closed backend, a database without the schema, or a refusal
			// no retry can change (a process ID longer than the backend
			// stores).
			return fmt.Errorf("supervisor: register process: %w", err)
		}
		s.logger.Warn("ductwork: cannot register process, retrying", slog.String("error", err.Error()), slog.Duration("after", delay))
		select {
		case <-ctx.Done():
			return fmt.Errorf("supervisor: register process: %w", err)
		case <-time.After(delay):
		}
		delay = min(delay*2, 10*time.Second)
	}
}

// supervise runs fn until ctx is done, restarting it (with backoff) if it
// panics.
func (s *Supervisor) supervise(ctx context.Context, name string, fn func(context.Context)) {
	delay := 100 * time.Millisecond
	for ctx.Err() == nil {
		panicked := func() (p bool) {
			defer func() {
				if r := recover(); r != nil {
					p = true
					s.logger.Error("ductwork: loop died, restarting", slog.String("loop", name), slog.Any("panic", r), slog.String("stack", string(debug.Stack())))
					if f := s.cfg.Hooks.OnLoopRestartFunc; f != nil {
						engine.SafeCall(ctx, s.logger, "OnLoopRestartFunc", func() { f(name, r) })
					}
				}
			}()
			fn(ctx)
			return false
		}()
		if !panicked {
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(delay):
		}
		delay = min(delay*2, 10*time.Second)
	}
}

func (s *Supervisor) heartbeatLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// The heartbeat also asks which runs of the jobs this process holds
		// were cancelled (by another process): their queued jobs must not
		// start and their executing steps must stop.
		res, err := s.b.Heartbeat(ctx, &backend.HeartbeatParams{ProcessID: s.cfg.ProcessID, Runs: s.eng.HeldRuns()})
		if err == nil {
			for _, id := range res.CancelledRuns {
				s.eng.RunCancelled(id)
			}
			s.eng.RetryReleases(ctx)
		}
		if errors.Is(err, backend.ErrProcessNotFound) {
			s.epoch.Add(1)
			s.logger.Warn("ductwork: this process was reaped (it stalled past the reap threshold); its claims moved on, re-registering")
			if err := s.register(ctx); err != nil && ctx.Err() == nil {
				s.logger.Error("ductwork: re-register failed", slog.String("error", err.Error()))
			}
		} else if err != nil && ctx.Err() == nil {
			s.logger.Warn("ductwork: heartbeat failed", slog.String("error", err.Error()))
		}
	}
}

func (s *Supervisor) reapLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.ReapInterval)
	defer t.Stop()
	for {
		res, err := s.b.Reap(ctx, &backend.ReapParams{ProcessID: s.cfg.ProcessID, Threshold: s.cfg.ReapThreshold})
		if err != nil && ctx.Err() == nil {
			s.logger.Warn("ductwork: reap failed", slog.String("error", err.Error()))
		} else if err == nil && (len(res.Processes) > 0 || res.Jobs > 0) {
			s.logger.Info("ductwork: reaped dead processes", slog.Any("processes", res.Processes), slog.Int("steps", res.Jobs))
			s.eng.Hooks.Reaped(ctx, s.logger, s.cfg.ProcessID, res)
			if f := s.cfg.Hooks.OnReapFunc; f != nil {
				engine.SafeCall(ctx, s.logger, "OnReapFunc", func() { f(res) })
			}
			s.Wake()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Supervisor) strandedLoop(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	reported := map[backend.DefinitionRef]bool{}
	for {
		res, err := s.b.StrandedDefinitions(ctx, &backend.StrandedDefinitionsParams{Known: s.eng.Refs()})
		if err == nil && len(res.Definitions) > 0 {
			var fresh []backend.StrandedDefinition
			for _, d := range res.Definitions {
				if !reported[d.DefinitionRef] {
					reported[d.DefinitionRef] = true
					fresh = append(fresh, d)
					s.logger.Warn("ductwork: unfinished runs of a definition this process has not registered; they wait for a process that has",
						slog.String("pipeline", d.Pipeline), slog.String("fingerprint", d.Fingerprint), slog.Int("runs", d.Runs))
				}
			}
			if f := s.cfg.Hooks.OnStrandedFunc; f != nil && len(fresh) > 0 {
				engine.SafeCall(ctx, s.logger, "OnStrandedFunc", func() { f(fresh) })
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Wake makes an idle worker pool look for work at once.
func (s *Supervisor) Wake() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// work executes job and then, on the same slot, the next step that its
// completion claimed for this process (a chain runs without a claim
// round-trip per step).
func (s *Supervisor) work(ctx, hardCtx context.Context, job *backend.Job) {
	for job != nil {
		claimNext := 1
		if ctx.Err() != nil {
			claimNext = 0 // shutting down: claim nothing new
		}
		res := s.eng.Execute(hardCtx, s.cfg.ProcessID, job, claimNext)
		switch {
		case res.Retried && res.RetryAfter > 0:
			s.wakeAfter(res.RetryAfter)
		case res.NextDelay > 0:
			s.wakeAfter(res.NextDelay)
		}
		job = nil
		if len(res.Next) > 0 {
			job = res.Next[0]
			s.eng.Hooks.Claimed(ctx, s.logger, s.cfg.ProcessID, res.Next)
			for _, extra := range res.Next[1:] {
				// Not asked for, but claimed: give it back rather than hold it.
				s.eng.Release(context.WithoutCancel(ctx), s.cfg.ProcessID, extra)
			}
		}
		if res.NewJobs > len(res.Next) || res.Retried {
			s.Wake()
		}
	}
}

// workSafely is work with a last line of defence: the engine contains every
// call into user code, but should anything still panic while executing a
// job, the worker logs it and gives the claim back instead of taking the
// process down (and, through the reaper, every process after it).
func (s *Supervisor) workSafely(ctx, hardCtx context.Context, job *backend.Job) {
	defer func() {
		if r := recover(); r != nil {
			s.logger.ErrorContext(ctx, "ductwork: executing a step panicked outside user code; releasing its claim",
				slog.Int64(engine.AttrStepID, job.ID), slog.String(engine.AttrStep, job.NodeID),
				slog.Any("panic", r), slog.String("stack", string(debug.Stack())))
			s.eng.Release(context.WithoutCancel(ctx), s.cfg.ProcessID, job)
		}
	}()
	s.work(ctx, hardCtx, job)
}

// wakeAfter wakes the pool when work this process scheduled becomes due
// (by the host's clock: only a hint, the claim still asks the database), so
// short retries and delays do not wait for the next poll.
func (s *Supervisor) wakeAfter(d time.Duration) {
	if d < s.cfg.PollInterval {
		time.AfterFunc(d+time.Millisecond, s.Wake)
	}
}

func (s *Supervisor) fetchLoop(ctx, hardCtx context.Context, inflight *sync.WaitGroup) {
	// Claimed jobs wait in queue for one of Workers executors. The queue
	// holds up to Prefetch jobs, so under load one claim transaction serves
	// several steps instead of one per freed slot.
	type queued struct {
		job   *backend.Job
		epoch int64
	}
	queue := make(chan queued, s.cfg.Workers+s.cfg.Prefetch)
	// changed wakes the fetcher when an executor takes a job or frees up.
	changed := make(chan struct{}, 1)
	signal := func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	var busy atomic.Int64
	defer close(queue)
	for range s.cfg.Workers {
		inflight.Add(1)
		go func() {
			defer inflight.Done()
			for q := range queue {
				signal()
				if q.epoch != s.epoch.Load() {
					// This process was found reaped after claiming the job.
					// If the reaper reset it, it is someone else's now; but
					// the claim may also postdate the reap (claimed on waking,
					// before the heartbeat noticed), and then it is ours and
					// nobody else will ever run it. Releasing is right both
					// ways: it is fenced, so it changes nothing in the first.
					s.eng.Release(context.WithoutCancel(ctx), s.cfg.ProcessID, q.job)
					continue
				}
				if ctx.Err() != nil {
					// Shutting down: a job not yet started goes back at once.
					s.eng.Release(context.WithoutCancel(ctx), s.cfg.ProcessID, q.job)
					continue
				}
				busy.Add(1)
				s.workSafely(ctx, hardCtx, q.job)
				busy.Add(-1)
				signal()
			}
		}()
	}
	var notify <-chan struct{}
	if n, ok := s.b.(backend.Notifier); ok && s.b.Capabilities().Notify {
		notify = n.Notifications(ctx)
	}
	delay := s.cfg.PollInterval
	lowWater := s.cfg.Prefetch / 4
	for ctx.Err() == nil {
		// Claim when an executor is idle, or when the queue runs low.
		idle := int(int64(s.cfg.Workers)-busy.Load()) - len(queue)
		want := 0
		if idle > 0 || len(queue) <= lowWater {
			// Fill running + queued up to Workers + Prefetch.
			want = s.cfg.Workers + s.cfg.Prefetch - int(busy.Load()) - len(queue)
			want = max(min(want, cap(queue)-len(queue)), 0)
		}
		refs := s.eng.Refs()
		var jobs []*backend.Job
		epoch := s.epoch.Load()
		if want > 0 && len(refs) > 0 {
			res, err := s.b.Claim(ctx, &backend.ClaimParams{ProcessID: s.cfg.ProcessID, Limit: want, Definitions: refs})
			if err != nil {
				if ctx.Err() == nil {
					s.logger.Warn("ductwork: claim failed", slog.String("error", err.Error()), slog.Duration("retry_after", delay))
				}
				delay = min(delay*2, 5*time.Second)
			} else {
				jobs = res.Jobs
				delay = s.cfg.PollInterval
				s.eng.Hold(jobs...)
				s.eng.Hooks.Claimed(ctx, s.logger, s.cfg.ProcessID, jobs)
			}
		}
		for _, job := range jobs {
			queue <- queued{job, epoch} // never blocks: at most cap-len were claimed
		}
		if want > 0 && len(jobs) == want {
			continue // there may be more
		}
		wait := delay
		if want == 0 {
			wait = time.Hour // nothing to claim for: an executor taking a job or freeing up wakes us
		}
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		case <-changed:
		case <-notify:
		case <-time.After(wait):
		}
	}
}
