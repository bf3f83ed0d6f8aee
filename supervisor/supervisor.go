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
	"github.com/ductwork-go/ductwork/internal/engine"
)

// Role selects which loops a supervisor runs.
type Role int

// Roles.
const (
	// RoleAll runs workers and maintenance (the default).
	RoleAll Role = iota
	// RoleWorker claims and executes steps, and heartbeats; it does not reap
	// nor fire schedules.
	RoleWorker
	// RoleMaintenance only reaps dead processes, reports stranded work,
	// prunes the execution history and fires the client's schedules.
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
	// ExecutionRetention is how long the execution history keeps an
	// execution after it ended, by the database's clock: the maintenance
	// loops delete older ones every PruneInterval, PruneBatch rows a
	// transaction. Default 7 days; negative keeps the history for ever.
	ExecutionRetention time.Duration
	// PruneInterval is how often old executions are pruned. Default 1m.
	PruneInterval time.Duration
	// PruneBatch is how many executions one pruning transaction deletes at
	// most, so that no transaction holds many row locks or runs long.
	// Default 1000.
	PruneBatch int
	// ShutdownGrace is how long in-flight steps may run after shutdown
	// begins; after it their contexts are cancelled and their claims
	// released. Default 10s.
	ShutdownGrace time.Duration
	// CallTimeout bounds each database call the supervisor makes (a claim, a
	// heartbeat, a reap, one commit attempt, a release), so that a link that
	// goes silent (packets dropped, never answered) fails the call instead of
	// hanging it. Default: the client's Config.CallTimeout (10s).
	CallTimeout time.Duration
	// ReleaseTimeout is how long shutdown may take after ShutdownGrace to
	// commit what finished, release the remaining claims and deregister;
	// whatever the network does, Run returns within ShutdownGrace +
	// ReleaseTimeout of the cancellation, or ShutdownGrace + StuckGrace
	// (and a release) when a step ignores the cancellation of its context.
	// Claims it could not release are recovered by the reaper. Default 5s.
	ReleaseTimeout time.Duration
	// SignalSweepInterval is how often kept signals are matched with the
	// awaits that reached them since (DeliverSignals). A completion that
	// reaches an await delivers at once; the sweep catches a signal sent
	// while that completion committed. Default 1s.
	SignalSweepInterval time.Duration
	// ScheduleInterval is the longest a supervisor that runs maintenance
	// waits between two looks at the schedules registered with its client
	// (Client.RegisterSchedules); it otherwise wakes when the earliest
	// next tick comes due. It bounds how soon a schedule resumed elsewhere
	// (Client.PauseSchedule) fires again. Default 5s.
	ScheduleInterval time.Duration
	// StepTimeout bounds each execution of a step that sets no
	// step.Timeout of its own; 0 means none. When a step's timeout expires
	// its context is cancelled (context.Cause is a *step.TimeoutError); a
	// step still running StuckGrace later is abandoned. Either way the
	// execution fails with a *step.TimeoutError: it spends the retry budget,
	// then halts the run with cause "timeout".
	StepTimeout time.Duration
	// StuckGrace is how long a step may take to return once its context is
	// cancelled (its timeout expired, its run was cancelled, or shutdown's
	// grace ran out). A step still running after it is abandoned: the
	// execution fails (timeout) or its claim is released (shutdown, cancel),
	// the worker takes other work, and the goroutine, which Go cannot stop,
	// is logged, counted (Stuck, and the StuckTracer hook) and left to
	// return on its own. Only a child process (Processes) can be stopped
	// for good: its parent recycles it. Default 2s.
	StuckGrace time.Duration
	// Processes, when positive, runs the steps in that many child
	// processes instead of in this one: Run re-executes this program (see
	// Children.Command) as child workers and keeps them alive, replacing a
	// child that dies (its claims are released at once as crash re-runs),
	// recycling one after Children.MaxSteps steps or above Children.MaxRSS,
	// and replacing one whose step ignored its timeout (the only way to
	// stop such code). This process then claims no steps itself; unless
	// Role is RoleWorker it reaps and reports stranded work. A shutdown of
	// Run stops the children gracefully (SIGTERM, then SIGKILL after
	// Children.StopTimeout); when this process dies, however it dies, its
	// children notice and stop too.
	//
	// The program must reach Run in a child as it does in the parent, with
	// its definitions registered: in a child process (IsChild), Run
	// executes steps whatever its Config says about Processes. One
	// supervisor per program. Processes needs a Unix system (MaxRSS:
	// Linux).
	Processes int
	// Children configures the child processes of Processes.
	Children Children
	// Logger defaults to the client's logger.
	Logger *slog.Logger
	// Hooks observe the supervisor's lifecycle.
	Hooks Hooks
	// Queues are the queues this supervisor serves (step.Queue), each with
	// its own workers. Empty means the default queue ("") alone, with
	// Workers and Prefetch. A process that lists queues serves only those:
	// list "" too for the steps without a queue.
	Queues []Queue
}

// Queue configures one served queue.
type Queue struct {
	// Name is the queue ("" is the default queue).
	Name string
	// Workers is the number of the queue's steps executed at once. Default
	// Config.Workers.
	Workers int
	// Prefetch is as Config.Prefetch, for this queue. Default Workers; a
	// negative value disables prefetching.
	Prefetch int
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
	// OnChildExitFunc runs in the parent when a child process (see
	// Config.Processes) has ended, before it is replaced.
	OnChildExitFunc func(ChildExit)
}

// Supervisor claims and executes steps, heartbeats, and reaps dead processes.
type Supervisor struct {
	cfg    Config
	eng    *engine.Engine
	b      backend.Backend
	logger *slog.Logger
	// wake holds one channel per served queue's fetch loop.
	wake map[string]chan struct{}

	mu      sync.Mutex
	running bool

	// epoch grows each time this process finds it was reaped: jobs claimed
	// in an earlier epoch were reset by the reaper and must not start.
	epoch atomic.Int64

	// ledger holds the claims this process runs or has queued; reconcile
	// asks the heartbeat loop to compare it with the database at once.
	ledger    *ledger
	reconcile chan struct{}

	// onAbandon is told when a step is abandoned, and onExecuted after each
	// execution: a child process tells its parent (children.go); nil
	// otherwise.
	onAbandon  func(job *backend.Job, err error)
	onExecuted func()
}

// New returns a Supervisor for client. It does no I/O until Run.
func New(client *ductwork.Client, cfg *Config) (*Supervisor, error) {
	if client == nil {
		return nil, &ductwork.ArgumentError{Func: "supervisor.New", Arg: "client", Reason: "is nil"}
	}
	eng := client.Engine()
	if eng == nil {
		return nil, &ductwork.ArgumentError{Func: "supervisor.New", Arg: "client", Reason: "was not made by ductwork.NewClient"}
	}
	var c Config
	if cfg != nil {
		c = *cfg
	}
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"Workers", int64(c.Workers)}, {"PollInterval", int64(c.PollInterval)}, {"ReapThreshold", int64(c.ReapThreshold)},
		{"ShutdownGrace", int64(c.ShutdownGrace)}, {"HeartbeatInterval", int64(c.HeartbeatInterval)},
		{"ReapInterval", int64(c.ReapInterval)}, {"CallTimeout", int64(c.CallTimeout)}, {"ReleaseTimeout", int64(c.ReleaseTimeout)},
		{"StepTimeout", int64(c.StepTimeout)}, {"StuckGrace", int64(c.StuckGrace)}, {"Processes", int64(c.Processes)},
		{"Children.MaxSteps", int64(c.Children.MaxSteps)}, {"Children.MaxRSS", c.Children.MaxRSS},
		{"Children.CheckInterval", int64(c.Children.CheckInterval)}, {"Children.RestartBackoff", int64(c.Children.RestartBackoff)},
		{"Children.MaxRestartBackoff", int64(c.Children.MaxRestartBackoff)}, {"Children.StopTimeout", int64(c.Children.StopTimeout)},
		{"PruneInterval", int64(c.PruneInterval)}, {"PruneBatch", int64(c.PruneBatch)},
	} {
		if f.v < 0 {
			return nil, &ConfigError{Reason: f.name + " is negative"}
		}
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
	if c.SignalSweepInterval <= 0 {
		c.SignalSweepInterval = time.Second
	}
	if c.ScheduleInterval <= 0 {
		c.ScheduleInterval = 5 * time.Second
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
	if c.ExecutionRetention == 0 {
		c.ExecutionRetention = DefaultExecutionRetention
	}
	if c.PruneInterval == 0 {
		c.PruneInterval = time.Minute
	}
	if c.PruneBatch == 0 {
		c.PruneBatch = backend.DefaultPruneLimit
	}
	if c.CallTimeout == 0 {
		c.CallTimeout = eng.CallTimeout
	}
	if c.CallTimeout <= 0 {
		c.CallTimeout = engine.DefaultCallTimeout
	}
	if c.ReleaseTimeout == 0 {
		c.ReleaseTimeout = 5 * time.Second
	}
	if c.StuckGrace == 0 {
		c.StuckGrace = engine.DefaultStuckGrace
	}
	if ch := childInfo(); ch != nil {
		// This process is a child worker: it executes steps; its parent
		// reaps and keeps it alive.
		c.ProcessID, c.Role, c.Processes = ch.id, RoleWorker, 0
	}
	if c.Processes > 0 {
		if err := c.Children.defaults(&c); err != nil {
			return nil, err
		}
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
	if len(c.Queues) == 0 {
		c.Queues = []Queue{{Name: "", Workers: c.Workers, Prefetch: c.Prefetch}}
	} else {
		c.Queues = append([]Queue(nil), c.Queues...)
		seen := map[string]bool{}
		for i := range c.Queues {
			q := &c.Queues[i]
			if seen[q.Name] {
				return nil, &ConfigError{Reason: fmt.Sprintf("queue %q listed twice", q.Name)}
			}
			seen[q.Name] = true
			if q.Workers < 0 {
				return nil, &ConfigError{Reason: fmt.Sprintf("queue %q: negative Workers", q.Name)}
			}
			if len(q.Name) > backend.MaxQueueBytes {
				return nil, &ConfigError{Reason: fmt.Sprintf("queue name of %d bytes, longer than %d", len(q.Name), backend.MaxQueueBytes)}
			}
			if q.Workers == 0 {
				q.Workers = c.Workers
			}
			switch {
			case q.Prefetch == 0:
				q.Prefetch = q.Workers
			case q.Prefetch < 0:
				q.Prefetch = 0
			}
		}
	}
	return &Supervisor{cfg: c, eng: eng, b: eng.Backend, logger: c.Logger.With(slog.String(engine.AttrProcess, c.ProcessID)),
		wake: wakes(c.Queues), ledger: newLedger(), reconcile: make(chan struct{}, 1)}, nil
}

func wakes(qs []Queue) map[string]chan struct{} {
	m := make(map[string]chan struct{}, len(qs))
	for _, q := range qs {
		m[q.Name] = make(chan struct{}, 1)
	}
	return m
}

// ConfigError reports an invalid Config.
type ConfigError struct{ Reason string }

func (e *ConfigError) Error() string { return "supervisor: invalid config: " + e.Reason }

// Stuck returns how many abandoned steps of this process (see
// Config.StuckGrace) are still running. It is shared by the supervisors of
// one client.
func (s *Supervisor) Stuck() int { return s.eng.Stuck() }

// ProcessID returns the ID this supervisor registers as.
func (s *Supervisor) ProcessID() string { return s.cfg.ProcessID }

// Run registers the process and runs its loops until ctx is cancelled, then
// shuts down gracefully: no new claims, in-flight steps get ShutdownGrace to
// finish, then their claims are released and the process deregistered, all
// within ReleaseTimeout. Run returns nil after a shutdown, or the error that
// kept it from starting: when the database did not answer before the
// context ended, the last registration error.
func (s *Supervisor) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.running {
		s.mu.Unlock()
		return errors.New("supervisor: already running")
	}
	s.running = true
	s.mu.Unlock()
	defer func() { s.mu.Lock(); s.running = false; s.mu.Unlock() }()
	if c := childInfo(); c != nil {
		return s.runChild(ctx, c)
	}
	return s.run(ctx)
}

func (s *Supervisor) run(ctx context.Context) error {
	if err := s.register(ctx); err != nil {
		if errors.Is(err, errStoppedBeforeRegistered) {
			// Shut down before a first registration attempt could end: a
			// shutdown, not a failure (the process owned nothing yet).
			return nil
		}
		return err
	}
	defer s.eng.AddWaker(s.Wake)()
	if f := s.cfg.Hooks.OnStartFunc; f != nil {
		engine.SafeCall(ctx, s.logger, "OnStartFunc", func() { f(s.cfg.ProcessID) })
	}
	// hardCtx outlives ctx by the grace period: it bounds step executions.
	hardCtx, hardCancel := context.WithCancel(context.WithoutCancel(ctx))
	defer hardCancel()
	// finalCtx outlives it by ReleaseTimeout: it bounds commits and releases,
	// so that shutdown ends whatever the network does.
	finalCtx, finalCancel := context.WithCancel(context.WithoutCancel(ctx))
	defer finalCancel()

	var loops sync.WaitGroup
	start := func(name string, fn func(context.Context)) {
		loops.Add(1)
		go func() { defer loops.Done(); s.supervise(ctx, name, fn) }()
	}
	start("heartbeat", s.heartbeatLoop)
	var inflight sync.WaitGroup
	switch {
	case s.cfg.Processes > 0:
		start("children", s.processes)
	case s.cfg.Role != RoleMaintenance:
		for _, q := range s.cfg.Queues {
			name := "fetch"
			if q.Name != "" {
				name = "fetch:" + q.Name
			}
			start(name, func(ctx context.Context) { s.fetchLoop(ctx, hardCtx, finalCtx, &inflight, q) })
		}
	}
	if s.cfg.Role != RoleWorker {
		start("reaper", s.reapLoop)
		start("stranded", s.strandedLoop)
		start("signals", s.signalLoop)
		start("schedules", s.scheduleLoop)
		if s.cfg.ExecutionRetention > 0 {
			start("prune", s.pruneLoop)
		}
	}
	<-ctx.Done()
	deadline := time.Now().Add(s.cfg.ShutdownGrace + s.cfg.ReleaseTimeout)
	stopFinal := time.AfterFunc(time.Until(deadline), finalCancel)
	defer stopFinal.Stop()
	loops.Wait()
	if s.cfg.Processes > 0 {
		// The children have stopped (within their StopTimeout); this
		// process holds no claims and only deregisters.
		deadline = time.Now().Add(s.cfg.ReleaseTimeout)
	}

	// Graceful shutdown: wait for in-flight steps, up to the grace period.
	done := make(chan struct{})
	go func() { inflight.Wait(); close(done) }()
	grace := time.NewTimer(s.cfg.ShutdownGrace)
	defer grace.Stop()
	select {
	case <-done:
	case <-grace.C:
		s.logger.Warn("ductwork: shutdown grace period over, cancelling in-flight steps")
		hardCancel()
		<-done
	}
	// Deregistering releases whatever the process still owns. It gets what
	// is left of the release window; if that is nothing (the link is silent),
	// the reaper recovers the claims.
	cctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), deadline)
	defer cancel()
	if err := s.b.DeregisterProcess(cctx, &backend.DeregisterProcessParams{ProcessID: s.cfg.ProcessID}); err != nil {
		s.logger.Warn("ductwork: deregister failed; the reaper will recover this process's claims", slog.Any("error", err))
	}
	if f := s.cfg.Hooks.OnStopFunc; f != nil {
		engine.SafeCall(ctx, s.logger, "OnStopFunc", func() { f(s.cfg.ProcessID) })
	}
	return nil
}

// errStoppedBeforeRegistered: Run's context ended before any registration
// attempt had failed on its own (see Run).
var errStoppedBeforeRegistered = errors.New("supervisor: stopped before registering")

func (s *Supervisor) register(ctx context.Context) error {
	host, _ := os.Hostname()
	delay := 100 * time.Millisecond
	defs, err := s.eng.StoredDefinitions()
	if err != nil {
		return fmt.Errorf("supervisor: store definitions: %w", err)
	}
	var failed error // the last failure that was not the shutdown itself
	for {
		if ctx.Err() != nil {
			if failed != nil {
				return fmt.Errorf("supervisor: register process: %w", failed)
			}
			return errStoppedBeforeRegistered
		}
		cctx, cancel := s.callCtx(ctx)
		_, err := s.b.RegisterProcess(cctx, &backend.RegisterProcessParams{
			ProcessID: s.cfg.ProcessID, Host: host, PID: os.Getpid(), Definitions: s.eng.Refs(),
		})
		cancel()
		if err == nil {
			// The shapes of the definitions, for tools that draw runs. A
			// failure costs only the drawing (tools fall back to the steps
			// as they ran) and is retried at the next registration.
			cctx, cancel := s.callCtx(ctx)
			_, err := s.b.SaveDefinitions(cctx, &backend.SaveDefinitionsParams{Definitions: defs})
			cancel()
			if err != nil && ctx.Err() == nil {
				s.logger.Warn("ductwork: cannot store definition shapes", slog.Any("error", err))
			}
			return nil
		}
		if errors.Is(err, backend.ErrClosed) || errors.Is(err, backend.ErrNotMigrated) || backend.IsPermanent(err) {
			// A closed backend, a database without the schema, or a refusal
			// no retry can change (a process ID longer than the backend
			// stores).
			return fmt.Errorf("supervisor: register process: %w", err)
		}
		if ctx.Err() != nil {
			continue // the shutdown ended this attempt
		}
		failed = err
		s.logger.Warn("ductwork: cannot register process, retrying", slog.String("error", err.Error()), slog.Duration("after", delay))
		select {
		case <-ctx.Done():
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

// callCtx bounds one database call by CallTimeout.
func (s *Supervisor) callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.cfg.CallTimeout)
}

// reconcileSoon asks the heartbeat loop to reconcile without waiting for its
// next tick (a call that may have claimed jobs failed, or a commit whose
// reply was lost turned out to have landed).
func (s *Supervisor) reconcileSoon() {
	select {
	case s.reconcile <- struct{}{}:
	default:
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
		case <-s.reconcile:
		}
		// The heartbeat also asks which runs of the jobs this process holds
		// were cancelled (by another process): their queued jobs must not
		// start and their executing steps must stop; and which jobs the
		// database says the process owns (see reconcileOwned).
		window := s.ledger.mark()
		cctx, cancel := s.callCtx(ctx)
		res, err := s.b.Heartbeat(cctx, &backend.HeartbeatParams{ProcessID: s.cfg.ProcessID, Runs: s.eng.HeldRuns(),
			Owned: s.cfg.Role != RoleMaintenance})
		cancel()
		if err == nil {
			for _, id := range res.CancelledRuns {
				s.eng.RunCancelled(id)
			}
			s.eng.RetryReleases(ctx)
			s.reconcileOwned(ctx, res.Owned, window)
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

// reconcileOwned releases the claims the database holds for this process
// that it is not running and has not queued: claims made by a call whose
// reply was lost (a batch claim, or a completion's ClaimNext). Nobody in the
// process will run them, and the reaper never frees the work of a live
// process, so without this they would stay claimed for as long as the process
// lives. They are released as a crash re-run: due at once, no retry spent.
// Claiming calls still in flight when the list was read are waited for
// first, so a claim whose reply is on its way is never taken for a stray.
func (s *Supervisor) reconcileOwned(ctx context.Context, owned []backend.OwnedJob, window uint64) {
	if len(owned) == 0 {
		return
	}
	if !s.ledger.settle(ctx, s.cfg.HeartbeatInterval) {
		return // try again on the next heartbeat
	}
	strays := s.ledger.strays(owned, window)
	for _, o := range strays {
		s.logger.WarnContext(ctx, "ductwork: releasing a claim this process holds but is not running (the reply of the call that made it was lost)",
			slog.Int64(engine.AttrStepID, o.JobID))
		s.eng.ReleaseLost(ctx, s.cfg.ProcessID, &backend.Job{ID: o.JobID, Fence: o.Fence})
	}
	if len(strays) > 0 {
		s.Wake()
	}
}

func (s *Supervisor) reapLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.ReapInterval)
	defer t.Stop()
	for {
		cctx, cancel := s.callCtx(ctx)
		res, err := s.b.Reap(cctx, &backend.ReapParams{ProcessID: s.cfg.ProcessID, Threshold: s.cfg.ReapThreshold})
		cancel()
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

// signalLoop delivers kept signals to the awaits that reached them.
func (s *Supervisor) signalLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.SignalSweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cctx, cancel := s.callCtx(ctx)
		res, err := s.b.DeliverSignals(cctx, &backend.DeliverSignalsParams{})
		cancel()
		if err != nil && ctx.Err() == nil {
			s.logger.Warn("ductwork: signal delivery sweep failed", slog.Any("error", err))
		} else if err == nil && res.Delivered > 0 {
			s.Wake()
		}
	}
}

// DefaultExecutionRetention is Config.ExecutionRetention when it is zero.
const DefaultExecutionRetention = 7 * 24 * time.Hour

// maxPruneBatches bounds the pruning transactions of one round, so that a
// large backlog is worked off over several rounds, between other work.
const maxPruneBatches = 100

// pruneLoop deletes executions older than ExecutionRetention, a batch per
// transaction, until a batch comes back short.
func (s *Supervisor) pruneLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.PruneInterval)
	defer t.Stop()
	for {
		deleted := 0
		for range maxPruneBatches {
			cctx, cancel := s.callCtx(ctx)
			res, err := s.b.PruneExecutions(cctx, &backend.PruneExecutionsParams{OlderThan: s.cfg.ExecutionRetention, Limit: s.cfg.PruneBatch})
			cancel()
			if err != nil {
				if ctx.Err() == nil {
					s.logger.WarnContext(ctx, "ductwork: pruning the execution history failed", slog.Any("error", err))
				}
				break
			}
			deleted += res.Deleted
			if res.Deleted < s.cfg.PruneBatch || ctx.Err() != nil {
				break
			}
		}
		if deleted > 0 {
			s.logger.DebugContext(ctx, "ductwork: pruned the execution history", slog.Int("executions", deleted))
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
		cctx, cancel := s.callCtx(ctx)
		res, err := s.b.StrandedDefinitions(cctx, &backend.StrandedDefinitionsParams{Known: s.eng.Refs()})
		cancel()
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
	for _, w := range s.wake {
		select {
		case w <- struct{}{}:
		default:
		}
	}
}

// work executes job and then, on the same slot, the next step that its
// completion claimed for this process (a chain runs without a claim
// round-trip per step).
func (s *Supervisor) work(ctx, hardCtx, finalCtx context.Context, job *backend.Job) {
	for job != nil {
		claimNext := 1
		if ctx.Err() != nil {
			claimNext = 0 // shutting down: claim nothing new
		}
		res := s.eng.Execute(hardCtx, s.cfg.ProcessID, job, engine.ExecOptions{
			ClaimNext: claimNext, CommitCtx: finalCtx, Tracker: s.ledger,
			DefaultTimeout: s.cfg.StepTimeout, StuckGrace: s.cfg.StuckGrace, OnAbandon: s.onAbandon})
		s.ledger.drop(job)
		if s.onExecuted != nil {
			s.onExecuted()
		}
		if res.Replayed {
			// Jobs the landed commit claimed are owned but not in res.Next.
			s.reconcileSoon()
		}
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
				s.eng.Release(finalCtx, s.cfg.ProcessID, extra)
				s.ledger.drop(extra)
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
func (s *Supervisor) workSafely(ctx, hardCtx, finalCtx context.Context, job *backend.Job) {
	defer func() {
		if r := recover(); r != nil {
			s.logger.ErrorContext(ctx, "ductwork: executing a step panicked outside user code; releasing its claim",
				slog.Int64(engine.AttrStepID, job.ID), slog.String(engine.AttrStep, job.NodeID),
				slog.Any("panic", r), slog.String("stack", string(debug.Stack())))
			s.eng.Release(finalCtx, s.cfg.ProcessID, job)
			s.ledger.drop(job)
		}
	}()
	s.work(ctx, hardCtx, finalCtx, job)
}

// claim makes one Claim call, tracked by the ledger.
func (s *Supervisor) claim(ctx context.Context, p *backend.ClaimParams) (*backend.ClaimResult, error) {
	end := s.ledger.BeginClaim()
	cctx, cancel := s.callCtx(ctx)
	res, err := s.b.Claim(cctx, p)
	cancel()
	if err != nil {
		end(nil)
		// The claim may have landed with its reply lost: its jobs are then
		// owned by this process, which does not know them.
		s.reconcileSoon()
		return nil, err
	}
	end(res.Jobs)
	s.eng.Hold(res.Jobs...)
	s.eng.Hooks.Claimed(ctx, s.logger, s.cfg.ProcessID, res.Jobs)
	return res, nil
}

// wakeAfter wakes the pool when work this process scheduled becomes due
// (by the host's clock: only a hint, the claim still asks the database), so
// short retries and delays do not wait for the next poll.
func (s *Supervisor) wakeAfter(d time.Duration) {
	if d < s.cfg.PollInterval {
		time.AfterFunc(d+time.Millisecond, s.Wake)
	}
}

func (s *Supervisor) fetchLoop(ctx, hardCtx, finalCtx context.Context, inflight *sync.WaitGroup, sq Queue) {
	// Claimed jobs wait in queue for one of Workers executors. The queue
	// holds up to Prefetch jobs, so under load one claim transaction serves
	// several steps instead of one per freed slot.
	type queued struct {
		job   *backend.Job
		epoch int64
	}
	queue := make(chan queued, sq.Workers+sq.Prefetch)
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
	for range sq.Workers {
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
					s.eng.Release(finalCtx, s.cfg.ProcessID, q.job)
					s.ledger.drop(q.job)
					continue
				}
				if ctx.Err() != nil {
					// Shutting down: a job not yet started goes back at once.
					s.eng.Release(finalCtx, s.cfg.ProcessID, q.job)
					s.ledger.drop(q.job)
					continue
				}
				busy.Add(1)
				s.workSafely(ctx, hardCtx, finalCtx, q.job)
				busy.Add(-1)
				signal()
				if gated, _ := s.eng.Gating(sq.Name); gated {
					// A limit's slot may have freed: the gated claim may
					// take more now.
					s.Wake()
				}
			}
		}()
	}
	var notify <-chan struct{}
	if n, ok := s.b.(backend.Notifier); ok && s.b.Capabilities().Notify {
		notify = n.Notifications(ctx)
	}
	delay := s.cfg.PollInterval
	lowWater := sq.Prefetch / 4
	gatedFirst := false
	for ctx.Err() == nil {
		// Claim when an executor is idle, or when the queue runs low.
		idle := int(int64(sq.Workers)-busy.Load()) - len(queue)
		want := 0
		if idle > 0 || len(queue) <= lowWater {
			// Fill running + queued up to Workers + Prefetch.
			want = sq.Workers + sq.Prefetch - int(busy.Load()) - len(queue)
			want = max(min(want, cap(queue)-len(queue)), 0)
		}
		refs := s.eng.Refs()
		var jobs []*backend.Job
		epoch := s.epoch.Load()
		if want > 0 && len(refs) > 0 {
			// Steps with limits are claimed by a gated claim of their own;
			// a queue without them never pays for it. With both kinds, the
			// two claims take turns going first, so neither kind can keep
			// the other from the queue's workers.
			gated, rates := s.eng.Gating(sq.Name)
			kinds := []bool{false}
			if gated {
				gatedFirst = !gatedFirst
				kinds = []bool{!gatedFirst, gatedFirst}
			}
			for _, g := range kinds {
				if want-len(jobs) <= 0 {
					break
				}
				got, err := s.claim(ctx, &backend.ClaimParams{ProcessID: s.cfg.ProcessID, Limit: want - len(jobs),
					Definitions: refs, Queue: sq.Name, Gated: g, RateLimits: rates})
				if err != nil {
					if ctx.Err() == nil {
						s.logger.Warn("ductwork: claim failed", slog.String("error", err.Error()), slog.Duration("retry_after", delay))
					}
					delay = min(delay*2, 5*time.Second)
					break
				}
				delay = s.cfg.PollInterval
				jobs = append(jobs, got.Jobs...)
				if got.RetryIn > 0 {
					s.wakeAfter(got.RetryIn)
				}
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
		case <-s.wake[sq.Name]:
		case <-changed:
		case <-notify:
		case <-time.After(wait):
		}
	}
}
