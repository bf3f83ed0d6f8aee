// Package engine executes claimed jobs: it decodes the input, runs the step,
// and commits the result together with the plan of what follows (computed by
// package graph) through the Backend. It is shared by the ductwork Client and
// the supervisor.
package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/ductworktype"
	"github.com/ductwork-go/ductwork/internal/crashpoint"
	"github.com/ductwork-go/ductwork/internal/graph"
	"github.com/ductwork-go/ductwork/internal/schedule"
	"github.com/ductwork-go/ductwork/internal/txstep"
	"github.com/ductwork-go/ductwork/step"
)

// Log attribute keys.
const (
	AttrRunID    = "ductwork.run_id"
	AttrStepID   = "ductwork.step_id"
	AttrStep     = "ductwork.step"
	AttrPipeline = "ductwork.pipeline"
	AttrAttempt  = "ductwork.attempt"
	AttrProcess  = "ductwork.process_id"
)

// Engine holds the registered definitions and executes jobs.
type Engine struct {
	Backend backend.Backend
	Logger  *slog.Logger
	Hooks   *Hooks
	// MaxPayload caps an encoded step output; 0 means no cap.
	MaxPayload int
	// Intercept, when set, wraps every step call: it receives the step's
	// context, its node, the step instance's scope and the call itself. Package ductworktest uses it to
	// inject faults by step name. A panic in Intercept is the step's panic;
	// an error wrapping ErrSimulatedCrash loses the execution as a crash
	// would (the claim is released, no retry is spent).
	Intercept func(sc step.Context, node *graph.Node, scope string, next func() (any, error)) (any, error)
	// CallTimeout bounds each database call the engine makes (one commit
	// attempt, one release); 0 means DefaultCallTimeout.
	CallTimeout time.Duration

	mu     sync.RWMutex
	defs   map[backend.DefinitionRef]*graph.Graph
	refs   []backend.DefinitionRef
	byName map[string]*graph.Graph
	// gatedQueues and rates summarise the registered definitions' limits
	// (see Gating).
	gatedQueues map[string]bool
	rates       []backend.RateLimit

	wmu     sync.Mutex
	waiters map[int64][]chan struct{}

	kmu    sync.Mutex
	wakers map[*func()]struct{}

	omu     sync.Mutex
	orphans []orphan

	hmu       sync.Mutex
	halts     map[haltNote]error
	haltOrder []haltNote

	// runs tracks held jobs and cancelled runs (cancel.go).
	runs runs

	// Schedules are the client's schedules, fired by its supervisors'
	// scheduler loops.
	Schedules schedule.Registry

	// stuck counts abandoned step goroutines still running (watch.go).
	stuck atomic.Int64
}

// haltNote names a failing execution whose error may halt its run. The
// error is kept so that a Wait in this process can hand it back (errors.Is
// and errors.As reach what the step returned); the database keeps only its
// text.
type haltNote struct {
	run         int64
	node, scope string
	attempt     int
}

// maxHaltNotes bounds the halt errors kept in memory (oldest dropped).
const maxHaltNotes = 1024

// noteHalt records err as the cause of job's run halting. It is called
// before the halt is committed, so a Wait that sees the halt finds it.
func (e *Engine) noteHalt(job *backend.Job, err error) {
	e.hmu.Lock()
	defer e.hmu.Unlock()
	if e.halts == nil {
		e.halts = map[haltNote]error{}
	}
	// Keyed by the failing execution, not by the run: several branches of
	// one run may fail at once, and only one of them halts it.
	k := haltNote{run: job.RunID, node: job.NodeID, scope: job.Scope, attempt: job.Attempt}
	if _, ok := e.halts[k]; !ok {
		e.haltOrder = append(e.haltOrder, k)
		if len(e.haltOrder) > maxHaltNotes {
			delete(e.halts, e.haltOrder[0])
			e.haltOrder = e.haltOrder[1:]
		}
	}
	e.halts[k] = err
}

func (e *Engine) forgetHalt(job *backend.Job) {
	e.hmu.Lock()
	defer e.hmu.Unlock()
	delete(e.halts, haltNote{run: job.RunID, node: job.NodeID, scope: job.Scope, attempt: job.Attempt})
}

// HaltErr returns the error that halted run r in this process, if this
// process halted it with the failure r records; nil otherwise.
func (e *Engine) HaltErr(r *backend.Run) error {
	e.hmu.Lock()
	defer e.hmu.Unlock()
	return e.halts[haltNote{run: r.ID, node: r.HaltNode, scope: r.HaltScope, attempt: r.HaltAttempt}]
}

// AddWaker registers fn to be called when this process creates due work
// (a trigger, a revive); the returned function removes it. Supervisors use
// it to start new work without waiting for their next poll.
func (e *Engine) AddWaker(fn func()) (remove func()) {
	e.kmu.Lock()
	defer e.kmu.Unlock()
	if e.wakers == nil {
		e.wakers = map[*func()]struct{}{}
	}
	p := &fn
	e.wakers[p] = struct{}{}
	return func() {
		e.kmu.Lock()
		defer e.kmu.Unlock()
		delete(e.wakers, p)
	}
}

// WakeAll calls every registered waker.
func (e *Engine) WakeAll() {
	e.kmu.Lock()
	defer e.kmu.Unlock()
	for p := range e.wakers {
		(*p)()
	}
}

// Carrier holds a client's engine. ductwork.Client embeds it under an
// unexported name, so package supervisor (and ductworktest) reach the engine
// through the promoted Engine method, with no package-level variable, while
// the engine stays out of the client's documentation.
type Carrier struct {
	E *Engine
}

// Engine returns the carried engine.
func (c Carrier) Engine() *Engine { return c.E }

// New returns an Engine on b.
func New(b backend.Backend, logger *slog.Logger, hooks *Hooks) *Engine {
	if hooks == nil {
		hooks = &Hooks{}
	}
	return &Engine{
		Backend: b, Logger: logger, Hooks: hooks,
		defs: map[backend.DefinitionRef]*graph.Graph{}, byName: map[string]*graph.Graph{},
		waiters: map[int64][]chan struct{}{},
	}
}

// Register adds a definition. Registering the same version twice is a no-op;
// several versions of one pipeline may be registered side by side.
func (e *Engine) Register(g *graph.Graph) {
	e.mu.Lock()
	defer e.mu.Unlock()
	ref := g.Ref()
	if _, ok := e.defs[ref]; ok {
		return
	}
	e.defs[ref] = g
	e.refs = append(e.refs, ref)
	e.byName[g.Pipeline] = g
	if e.gatedQueues == nil {
		e.gatedQueues = map[string]bool{}
	}
	for _, n := range g.Nodes {
		if o := &n.Options; o.Concurrency > 0 || o.ConcurrencyKey != nil || o.RateLimit != nil {
			e.gatedQueues[o.Queue] = true
		}
	}
	for _, r := range g.RateLimits() {
		if !slices.ContainsFunc(e.rates, func(x backend.RateLimit) bool { return x.Name == r.Name }) {
			e.rates = append(e.rates, r)
		}
	}
}

// Lookup returns the registered definition for ref.
func (e *Engine) Lookup(ref backend.DefinitionRef) (*graph.Graph, bool) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	g, ok := e.defs[ref]
	return g, ok
}

// Gating reports whether a registered definition has a step with limits
// on queue, and the rate limits the registered definitions name (both kept
// up to date by Register, so asking costs a map lookup).
func (e *Engine) Gating(queue string) (gated bool, rates []backend.RateLimit) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.gatedQueues[queue], e.rates
}

// Refs lists the registered definition versions.
func (e *Engine) Refs() []backend.DefinitionRef {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return append([]backend.DefinitionRef(nil), e.refs...)
}

// StoredDefinitions returns the shapes of the registered definition
// versions, ready for backend.SaveDefinitions.
func (e *Engine) StoredDefinitions() ([]backend.StoredDefinition, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	out := make([]backend.StoredDefinition, 0, len(e.refs))
	for _, ref := range e.refs {
		d, err := e.defs[ref].StoredShape()
		if err != nil {
			return nil, fmt.Errorf("shape of %s: %w", ref.Pipeline, err)
		}
		out = append(out, d)
	}
	return out, nil
}

// WaitChan returns a channel closed when this process sees run finish
// (complete or halt). It is a hint: callers still poll the database.
func (e *Engine) WaitChan(runID int64) (<-chan struct{}, func()) {
	ch := make(chan struct{})
	e.wmu.Lock()
	e.waiters[runID] = append(e.waiters[runID], ch)
	e.wmu.Unlock()
	return ch, func() {
		e.wmu.Lock()
		defer e.wmu.Unlock()
		ws := e.waiters[runID]
		for i, w := range ws {
			if w == ch {
				e.waiters[runID] = append(ws[:i], ws[i+1:]...)
				break
			}
		}
		if len(e.waiters[runID]) == 0 {
			delete(e.waiters, runID)
		}
	}
}

func (e *Engine) runFinished(runID int64) {
	e.wmu.Lock()
	ws := e.waiters[runID]
	delete(e.waiters, runID)
	e.wmu.Unlock()
	for _, w := range ws {
		close(w)
	}
}

// DefaultCallTimeout bounds one database call when no timeout is configured.
const DefaultCallTimeout = 10 * time.Second

// WithCallTimeout returns ctx bounded by the engine's call timeout.
func (e *Engine) WithCallTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	d := e.CallTimeout
	if d <= 0 {
		d = DefaultCallTimeout
	}
	return context.WithTimeout(ctx, d)
}

// Tracker learns which claims a process holds. The engine calls BeginClaim
// before a completion that may claim jobs for the process (ClaimNext), and
// the function it returns after that call, with the jobs it claimed (none if
// it failed). A supervisor uses it to tell the claims it runs from claims the
// database gives it that nobody in the process will run (a reply lost).
type Tracker interface {
	BeginClaim() (end func(claimed []*backend.Job))
}

// ExecOptions are the options of Execute.
type ExecOptions struct {
	// ClaimNext > 0 asks the completion to claim up to that many of the jobs
	// it creates, returned in Result.Next.
	ClaimNext int
	// CommitCtx bounds the commit (with its retries) and any release; nil
	// means a context that outlives runCtx and is never cancelled.
	CommitCtx context.Context
	// Tracker, if set, is told about the completion's claims.
	Tracker Tracker
	// DefaultTimeout bounds the execution of a step that sets no Timeout;
	// 0 means none.
	DefaultTimeout time.Duration
	// StuckGrace is how long a step may take to return once its context is
	// cancelled (timeout, cancelled run, shutdown) before it is abandoned;
	// 0 means DefaultStuckGrace.
	StuckGrace time.Duration
	// OnAbandon, if set, is called when a step is abandoned (see watch).
	OnAbandon func(job *backend.Job, err error)
}

// Result is what Execute did.
type Result struct {
	// Completed: the output was committed. NewJobs counts jobs it created.
	Completed bool
	NewJobs   int
	// Retried / Halted: the step failed and was scheduled again / halted the run.
	// RetryAfter is the retry's delay.
	Retried    bool
	RetryAfter time.Duration
	Halted     bool
	// Next are jobs the completion claimed for this process (see claimNext).
	Next []*backend.Job
	// NextDelay is the shortest Delay among the jobs the plan created.
	NextDelay time.Duration
	// Released: the claim was given back (shutdown).
	Released bool
	// Stale: the claim had been lost; nothing was committed.
	Stale bool
	// Cancelled: the job's run was cancelled; the step did not start, or
	// its context was cancelled and nothing was committed.
	Cancelled bool
	// Replayed: a commit attempt whose reply was lost had in fact committed
	// (Completed or Halted is then set as that commit decided). Jobs that
	// commit claimed for this process are not in Next; they are owned by the
	// process until its reconciliation releases them.
	Replayed bool
	Err      error
}

// Execute runs one claimed job to a committed outcome. runCtx bounds the
// step's execution (cancelled after the shutdown grace period); commits use
// opts.CommitCtx, which outlives it. With opts.ClaimNext > 0 the completion
// also claims up to that many of the jobs it creates, returned in Result.Next
// for the caller to execute.
//
// The job must have been recorded with Hold; Execute drops it when done. A job
// of a run known to be cancelled is not started; a step whose run is
// cancelled while it executes has its context cancelled with ErrRunCancelled
// as the cause, and its outcome is not committed (the cancel took its claim).
func (e *Engine) Execute(runCtx context.Context, processID string, job *backend.Job, opts ExecOptions) Result {
	defer e.drop(job)
	crashpoint.Hit(crashpoint.AfterClaim)
	ref := backend.DefinitionRef{Pipeline: job.Pipeline, Fingerprint: job.Fingerprint}
	g, ok := e.Lookup(ref)
	commitCtx := opts.CommitCtx
	if commitCtx == nil {
		commitCtx = context.WithoutCancel(runCtx)
	}
	claimNext := opts.ClaimNext
	if e.isCancelled(job.RunID) {
		// Claimed before the cancel committed: give it back (the cancel made
		// the claim stale, so this changes nothing; it is fenced).
		if err := e.release(commitCtx, processID, job); err != nil && !errors.Is(err, backend.ErrStaleClaim) {
			return Result{Cancelled: true, Err: err}
		}
		return Result{Cancelled: true}
	}
	if !ok {
		// Claims filter on registered definitions, so this is a bug or a race
		// with unregistering; give the job back.
		err := e.release(commitCtx, processID, job)
		return Result{Released: err == nil, Err: fmt.Errorf("definition %s@%s not registered", ref.Pipeline, ref.Fingerprint)}
	}
	node := g.ByID[job.NodeID]
	logger := &jobLogger{base: e.Logger, job: job}
	if node == nil {
		return e.fail(commitCtx, g, processID, job, &definitionError{fmt.Errorf("node %q is not in definition %s@%s", job.NodeID, g.Pipeline, g.Fingerprint)}, false, logger)
	}
	if max := crashBudget(g, node); max >= 0 && job.Crashes > max {
		// The executions of this step instance keep killing their process:
		// stop here rather than hand it to the next process to die.
		return e.fail(commitCtx, g, processID, job, &graph.CrashBudgetError{Node: node.ID, Scope: job.Scope, Crashes: job.Crashes, Max: max}, false, logger)
	}

	// Every call into user code below (codec, step, divert key, expand
	// helper, hooks) is contained: a panic becomes a *step.PanicError that
	// spends the retry budget like a returned error.
	in, err := Contain(func() (any, error) { return node.Decode(g.Codec, job.Input, job.JoinInputs) })
	if err != nil {
		return e.fail(commitCtx, g, processID, job, &graph.DecodeError{Node: node.ID, Err: err}, isPanic(err), logger)
	}

	runCancelCtx, cancelRun := context.WithCancelCause(runCtx)
	defer cancelRun(nil)
	if !e.start(job.RunID, &cancelRun) {
		return Result{Cancelled: true}
	}
	ctx := runCancelCtx
	var cancel context.CancelFunc
	timeout := node.Options.Timeout
	if timeout <= 0 {
		timeout = opts.DefaultTimeout
	}
	grace := opts.StuckGrace
	if grace <= 0 {
		grace = DefaultStuckGrace
	}
	if timeout > 0 {
		// The cause tells the step (context.Cause) and the failure below
		// that its own timeout ended it.
		ctx, cancel = context.WithTimeoutCause(ctx, timeout, &step.TimeoutError{Step: node.ID, Timeout: timeout})
	} else {
		ctx, cancel = context.WithCancel(ctx)
	}
	defer cancel()
	sc := &stepContext{Context: ctx, e: e, job: job, logger: logger, codec: g.Codec, processID: processID}
	hctx, end := e.Hooks.stepStart(ctx, logger)
	sc.Context = hctx

	// produce runs the step and encodes its output and plan. Every call into
	// user code is contained.
	produce := func(sc *stepContext) ([]byte, backend.Plan, *failure) {
		// The step runs on a goroutine of its own, watched: one that ignores
		// the cancellation of its context is abandoned after the grace, so
		// that it holds neither the worker nor the shutdown.
		out, err := e.watch(ctx, grace, job, logger, opts.OnAbandon, func() (any, error) {
			return Contain(func() (any, error) {
				if e.Intercept != nil {
					return e.Intercept(sc, node, job.Scope, func() (any, error) { return node.Call(sc, in) })
				}
				return node.Call(sc, in)
			})
		})
		err = timeoutErr(ctx, err)
		if err != nil {
			return nil, backend.Plan{}, &failure{err: err, retryable: !step.IsPermanent(err), step: true}
		}
		outBytes, err := Contain(func() ([]byte, error) { return g.Codec.Marshal(out) })
		retryable := isPanic(err)
		if err == nil && e.MaxPayload > 0 && len(outBytes) > e.MaxPayload {
			err = &graph.PayloadTooLargeError{Node: node.ID, Size: len(outBytes), Max: e.MaxPayload}
		} else if err != nil {
			err = &graph.EncodeError{Node: node.ID, Err: err}
		}
		if err != nil {
			return nil, backend.Plan{}, &failure{err: err, retryable: retryable}
		}
		plan, err := Contain(func() (backend.Plan, error) { return g.Plan(node, job.Scope, out, outBytes) })
		if err != nil {
			// A panic in a divert key or an expand helper is the step's failure
			// and is retried; a plan error (fan-out limit, encoding) is final.
			return nil, backend.Plan{}, &failure{err: err, retryable: isPanic(err)}
		}
		return outBytes, plan, nil
	}
	// failed commits the outcome of an execution that produced nothing.
	failed := func(fl *failure) Result {
		if errors.Is(context.Cause(runCancelCtx), ErrRunCancelled) {
			// The run was cancelled while the step ran: CancelRun took the
			// claim, so there is nothing to commit, whatever the step returned.
			end(StepEnd{Cancelled: true})
			return Result{Cancelled: true, Err: ErrRunCancelled}
		}
		err := fl.err
		if fl.step && errors.Is(err, ErrSimulatedCrash) {
			// An injected crash: the execution is lost as if the process had
			// died; the step re-runs as a crash re-run, its retry budget intact.
			_, rerr := e.Backend.Release(commitCtx, &backend.ReleaseParams{JobID: job.ID, ProcessID: processID, Fence: job.Fence, Crashed: true})
			end(StepEnd{Err: err, Released: true})
			e.WakeAll()
			return Result{Released: rerr == nil, Err: rerr}
		}
		if fl.step && runCtx.Err() != nil && !errors.Is(err, context.DeadlineExceeded) {
			// Shutdown interrupted the step: not the step's fault.
			rerr := e.release(commitCtx, processID, job)
			end(StepEnd{Err: err, Released: true})
			return Result{Released: rerr == nil, Err: rerr}
		}
		res := e.fail(commitCtx, g, processID, job, err, fl.retryable, logger)
		end(StepEnd{Err: err, Retried: res.Retried, Halted: res.Halted, Stale: res.Stale})
		return res
	}

	var (
		outBytes []byte
		plan     backend.Plan
		fl       *failure
		inTx     func(ctx context.Context, tx any) ([]byte, backend.Plan, error)
	)
	if node.TxKind == "" {
		outBytes, plan, fl = produce(sc)
		cancel()
		e.finish(job.RunID, &cancelRun)
		if fl == nil && errors.Is(context.Cause(runCancelCtx), ErrRunCancelled) {
			fl = &failure{err: ErrRunCancelled, step: true}
		}
		if fl != nil {
			return failed(fl)
		}
		crashpoint.Hit(crashpoint.AfterStepBeforeCommit)
	} else {
		// A transactional step runs inside the completion: the backend has
		// locked the job and checked the claim before this is called, and
		// commits the step's writes with its output and plan, or rolls
		// them all back.
		inTx = func(_ context.Context, tx any) ([]byte, backend.Plan, error) {
			tsc := *sc
			tsc.Context = txstep.With(hctx, tx)
			out, p, f := produce(&tsc)
			fl = f
			if f != nil {
				return nil, backend.Plan{}, f.err
			}
			crashpoint.Hit(crashpoint.AfterStepBeforeCommit)
			return out, p, nil
		}
	}
	var cr *backend.CompleteResult
	err = e.retryCommit(commitCtx, logger, func(ctx context.Context) error {
		var end func([]*backend.Job)
		if opts.Tracker != nil && claimNext > 0 {
			end = opts.Tracker.BeginClaim()
		}
		var err error
		fl = nil
		cr, err = e.Backend.Complete(ctx, &backend.CompleteParams{
			JobID: job.ID, ProcessID: processID, Fence: job.Fence, Output: outBytes, Plan: plan, ClaimNext: claimNext,
			InTx: inTx, TxTimeout: timeout, Queue: node.Options.Queue,
		})
		if end != nil {
			if err != nil {
				end(nil)
			} else {
				end(cr.Claimed)
			}
		}
		if fl != nil {
			// The step (or its encoding) failed inside the transaction, which
			// was rolled back: not a commit to retry.
			return nil
		}
		return err
	})
	if inTx != nil {
		cancel()
		e.finish(job.RunID, &cancelRun)
		if fl != nil {
			return failed(fl)
		}
	}
	crashpoint.Hit(crashpoint.AfterCommit)
	if errors.Is(err, backend.ErrStaleClaim) {
		logger.get().WarnContext(commitCtx, "ductwork: result discarded, the claim was lost (reaped or re-claimed)")
		end(StepEnd{Stale: true})
		return Result{Stale: true, Err: err}
	}
	if backend.IsPermanent(err) {
		// The database refused the result itself (a value too long for its
		// column, a constraint): retrying cannot help; halt with the error.
		res := e.fail(commitCtx, g, processID, job, err, false, logger)
		end(StepEnd{Err: err, Halted: res.Halted, Stale: res.Stale})
		return res
	}
	if err != nil {
		e.abandon(commitCtx, processID, job, err, logger)
		end(StepEnd{Err: err})
		return Result{Err: err}
	}
	if cr.Replayed {
		logger.get().InfoContext(commitCtx, "ductwork: the commit whose reply was lost had landed; result kept")
	}
	end(StepEnd{RunCompleted: cr.RunCompleted})
	if cr.RunCompleted {
		e.runFinished(job.RunID)
	}
	for _, n := range cr.Claimed {
		// Same run: the backend need not repeat what the caller knows.
		if n.Pipeline == "" {
			n.Pipeline, n.Fingerprint, n.RunID = job.Pipeline, job.Fingerprint, job.RunID
		}
		if n.RunIdentity == "" {
			n.RunIdentity = job.RunIdentity
		}
		if n.Metadata == nil {
			n.Metadata = job.Metadata
		}
	}
	e.Hold(cr.Claimed...)
	if awaits(plan) && !cr.Replayed {
		// A signal sent before this branch reached its await is waiting
		// for it: deliver it now rather than at the next sweep.
		if _, err := e.Backend.DeliverSignals(commitCtx, &backend.DeliverSignalsParams{RunID: job.RunID}); err != nil {
			logger.get().WarnContext(commitCtx, "ductwork: delivering kept signals failed; the next sweep delivers them", slog.Any("error", err))
		}
	}
	return Result{Completed: true, NewJobs: cr.NewJobs, NextDelay: minDelay(plan), Next: cr.Claimed, Replayed: cr.Replayed}
}

// failure is an execution that produced nothing to complete with.
type failure struct {
	err       error
	retryable bool
	// step: the step itself failed (not its encoding or plan).
	step bool
}

// ErrSimulatedCrash, returned through Engine.Intercept, makes an execution
// end as a crash would.
var ErrSimulatedCrash = errors.New("ductwork: simulated crash")

// Contain runs fn, which calls user code, and turns a panic into a
// *step.PanicError carrying the stack.
func Contain[T any](fn func() (T, error)) (out T, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &step.PanicError{Value: r, Stack: string(debug.Stack())}
		}
	}()
	return fn()
}

func isPanic(err error) bool {
	var pe *step.PanicError
	return errors.As(err, &pe)
}

// definitionError: the stored job does not fit the registered definition.
type definitionError struct{ error }

func (e *definitionError) Unwrap() error { return e.error }

func crashBudget(g *graph.Graph, node *graph.Node) int {
	if node.Options.MaxCrashes != nil {
		return *node.Options.MaxCrashes
	}
	return g.MaxCrashes
}

// CauseOf classifies the error that halts a run.
func CauseOf(err error) backend.HaltCause {
	var (
		pe *step.PanicError
		cb *graph.CrashBudgetError
		fo *graph.FanOutError
		tl *graph.PayloadTooLargeError
		ee *graph.EncodeError
		de *graph.DecodeError
		df *definitionError
		to *step.TimeoutError
	)
	switch {
	case errors.As(err, &cb):
		return backend.HaltCrashBudget
	case errors.As(err, &to):
		return backend.HaltTimeout
	case errors.As(err, &pe):
		return backend.HaltPanic
	case errors.As(err, &fo):
		return backend.HaltFanOut
	case errors.As(err, &tl):
		return backend.HaltTooLarge
	case errors.As(err, &ee):
		return backend.HaltEncode
	case errors.As(err, &de):
		return backend.HaltDecode
	case errors.As(err, &df):
		return backend.HaltDefinition
	case step.IsPermanent(err):
		return backend.HaltPermanent
	case backend.IsPermanent(err):
		return backend.HaltBackend
	case errors.Is(err, context.DeadlineExceeded):
		return backend.HaltTimeout
	case errors.Is(err, context.Canceled):
		return backend.HaltCancelled
	}
	return backend.HaltRetriesExhausted
}

// MaxReasonBytes caps the stored reason of a failure; the panic stack is
// stored apart.
const MaxReasonBytes = 8 << 10

// SafeReason makes msg storable in any backend: invalid UTF-8 replaced, NUL
// bytes written as \0 (PostgreSQL text refuses both), cut to at most
// MaxReasonBytes on a character boundary.
func SafeReason(msg string) string {
	msg = strings.ToValidUTF8(msg, "\uFFFD")
	msg = strings.ReplaceAll(msg, "\x00", "\\0")
	if len(msg) > MaxReasonBytes {
		cut := MaxReasonBytes
		for cut > 0 && !utf8.RuneStart(msg[cut]) {
			cut--
		}
		msg = msg[:cut] + " ... (truncated)"
	}
	return msg
}

func (e *Engine) fail(ctx context.Context, g *graph.Graph, processID string, job *backend.Job, stepErr error, retryable bool, logger *jobLogger) Result {
	node := g.ByID[job.NodeID]
	retries, base, maxDelay := g.Retries, g.Backoff, g.MaxBackoff
	if node != nil {
		if node.Options.Retries != nil {
			retries = *node.Options.Retries
		}
		if node.Options.Backoff > 0 {
			base = node.Options.Backoff
		}
		if node.Options.MaxBackoff > 0 {
			maxDelay = node.Options.MaxBackoff
		}
	}
	params := &backend.FailParams{JobID: job.ID, ProcessID: processID, Fence: job.Fence, Error: SafeReason(stepErr.Error())}
	var pe *step.PanicError
	if errors.As(stepErr, &pe) {
		params.Stack = SafeReason(pe.Stack)
	}
	// The execution history tells an enforced timeout from other failures.
	var te *step.TimeoutError
	if errors.As(stepErr, &te) {
		params.Outcome = backend.OutcomeTimeout
	}
	// A revived job's budget counts from its revive (RetryBase).
	if spent := job.Attempt - job.RetryBase; retryable && spent <= retries {
		params.Retry = true
		params.RetryAfter = Backoff(spent, base, maxDelay)
	} else {
		params.Cause = CauseOf(stepErr)
		e.noteHalt(job, stepErr)
	}
	var fr *backend.FailResult
	commit := func(ctx context.Context) error {
		var err error
		fr, err = e.Backend.Fail(ctx, params)
		return err
	}
	err := e.retryCommit(ctx, logger, commit)
	if backend.IsPermanent(err) {
		// Even the failure could not be stored as it was: halt with a
		// minimal reason rather than run the step again for ever.
		logger.get().ErrorContext(ctx, "ductwork: the failure could not be stored; halting with a short reason", slog.Any("error", err))
		params.Retry, params.RetryAfter, params.Stack, params.Cause = false, 0, "", backend.HaltBackend
		params.Error = SafeReason(fmt.Sprintf("the failure of step %q could not be stored: %v", job.NodeID, err))
		e.noteHalt(job, stepErr)
		err = e.retryCommit(ctx, logger, commit)
	}
	if err != nil {
		e.forgetHalt(job)
	}
	if errors.Is(err, backend.ErrStaleClaim) {
		logger.get().WarnContext(ctx, "ductwork: failure discarded, the claim was lost (reaped or re-claimed)")
		return Result{Stale: true, Err: err}
	}
	if err != nil {
		e.abandon(ctx, processID, job, err, logger)
		return Result{Err: err}
	}
	if params.Retry {
		logger.get().InfoContext(ctx, "ductwork: step failed, will retry", slog.Any("error", stepErr), slog.Duration("retry_after", params.RetryAfter))
		return Result{Retried: true, RetryAfter: params.RetryAfter, Err: stepErr}
	}
	logger.get().WarnContext(ctx, "ductwork: step failed, run halts", slog.Any("error", stepErr), slog.String("cause", string(params.Cause)))
	if fr.Replayed {
		logger.get().InfoContext(ctx, "ductwork: the failure whose reply was lost had landed", slog.Bool("halted", fr.Halted))
	}
	if !fr.Halted {
		e.forgetHalt(job) // another failure halted the run first
	} else {
		defer e.runFinished(job.RunID)
		e.Hooks.runHalted(ctx, params.Error, logger)
		if g.OnHalt != nil {
			h := graph.Halt{RunID: job.RunID, Node: job.NodeID, Scope: job.Scope, Cause: params.Cause,
				Attempt: job.Attempt, Reason: params.Error, Err: stepErr}
			if _, perr := Contain(func() (struct{}, error) { g.OnHalt(ctx, h); return struct{}{}, nil }); perr != nil {
				stack := ""
				if pe := (*step.PanicError)(nil); errors.As(perr, &pe) {
					stack = pe.Stack
				}
				logger.get().ErrorContext(ctx, "ductwork: OnHalt panicked", slog.Any("error", perr), slog.String("stack", stack))
			}
		}
	}
	return Result{Halted: fr.Halted, Replayed: fr.Replayed, Err: stepErr}
}

// abandon gives up on committing job's outcome (the database stayed
// unreachable past the commit retries): the claim is released so that the
// step runs again, as a crash re-run. If even the release fails, it is kept
// for RetryReleases, so that a live process never sits on a claim it will not
// finish (its heartbeat would keep the reaper away for ever).
func (e *Engine) abandon(ctx context.Context, processID string, job *backend.Job, cause error, logger *jobLogger) {
	logger.get().ErrorContext(ctx, "ductwork: giving up on the commit; releasing the claim so the step runs again",
		slog.String("error", cause.Error()))
	if err := e.release(ctx, processID, job); err != nil && !errors.Is(err, backend.ErrStaleClaim) {
		e.omu.Lock()
		e.orphans = append(e.orphans, orphan{processID, job})
		e.omu.Unlock()
	}
}

type orphan struct {
	processID string
	job       *backend.Job
}

// RetryReleases retries the releases abandon could not make. Supervisors
// call it on every heartbeat.
func (e *Engine) RetryReleases(ctx context.Context) {
	e.omu.Lock()
	pending := e.orphans
	e.orphans = nil
	e.omu.Unlock()
	for i, o := range pending {
		err := e.release(ctx, o.processID, o.job)
		if err != nil && !errors.Is(err, backend.ErrStaleClaim) {
			e.omu.Lock()
			e.orphans = append(e.orphans, pending[i:]...)
			e.omu.Unlock()
			return
		}
	}
}

// Release gives a claimed job back without running it, and drops it (see
// Hold). A stale claim needs no release; a release that fails otherwise is
// retried by RetryReleases (a live process's claims are never reaped).
func (e *Engine) Release(ctx context.Context, processID string, job *backend.Job) {
	defer e.drop(job)
	err := e.release(ctx, processID, job)
	if err == nil || errors.Is(err, backend.ErrStaleClaim) {
		return
	}
	e.Logger.WarnContext(ctx, "ductwork: release failed; retrying on the next heartbeat", slog.String("error", err.Error()))
	e.omu.Lock()
	e.orphans = append(e.orphans, orphan{processID, job})
	e.omu.Unlock()
}

func (e *Engine) release(ctx context.Context, processID string, job *backend.Job) error {
	return e.releaseAs(ctx, processID, job, false)
}

func (e *Engine) releaseAs(ctx context.Context, processID string, job *backend.Job, crashed bool) error {
	ctx, cancel := e.WithCallTimeout(ctx)
	defer cancel()
	_, err := e.Backend.Release(ctx, &backend.ReleaseParams{JobID: job.ID, ProcessID: processID, Fence: job.Fence, Crashed: crashed})
	return err
}

// ReleaseLost gives back a claim whose execution was lost (a claim made by
// a call whose reply never arrived): a crash re-run, Crashes+1 and no retry
// spent. A stale claim needs no release; another failure is logged and left
// to the next reconciliation, which finds the claim again.
func (e *Engine) ReleaseLost(ctx context.Context, processID string, job *backend.Job) {
	err := e.releaseAs(ctx, processID, job, true)
	if err != nil && !errors.Is(err, backend.ErrStaleClaim) {
		e.Logger.WarnContext(ctx, "ductwork: release of a lost claim failed; retrying on the next heartbeat", slog.Any("error", err))
	}
}

// retryCommit retries fn while the database is unreachable, with capped
// exponential backoff, for up to two minutes or until ctx is done. Each
// attempt is bounded by the call timeout, so an attempt whose link went
// silent (packets dropped, never answered) is given up and retried; the
// backend's operations are idempotent per claim, so a retry after a commit
// whose reply was lost learns that it landed. A stale claim, a closed
// backend and a permanent error (backend.IsPermanent) are final.
func (e *Engine) retryCommit(ctx context.Context, logger *jobLogger, fn func(ctx context.Context) error) error {
	deadline := time.Now().Add(2 * time.Minute)
	delay := 50 * time.Millisecond
	for {
		actx, cancel := e.WithCallTimeout(ctx)
		err := fn(actx)
		cancel()
		if err == nil || errors.Is(err, backend.ErrStaleClaim) || errors.Is(err, backend.ErrClosed) ||
			backend.IsPermanent(err) || time.Now().After(deadline) {
			return err
		}
		if ctx.Err() != nil {
			return err
		}
		logger.get().WarnContext(ctx, "ductwork: commit failed, retrying", slog.String("error", err.Error()), slog.Duration("after", delay))
		select {
		case <-ctx.Done():
			return err
		case <-time.After(delay):
		}
		delay = min(delay*2, 5*time.Second)
	}
}

// Backoff is the delay before retry number attempt (1-based): base doubled
// per attempt, capped at maxDelay, with ±20% jitter.
func Backoff(attempt int, base, maxDelay time.Duration) time.Duration {
	d := base
	for i := 1; i < attempt && d < maxDelay; i++ {
		d *= 2
	}
	d = min(d, maxDelay)
	if d <= 0 {
		return 0
	}
	jitter := time.Duration(rand.Int64N(int64(d)/5 + 1))
	if rand.IntN(2) == 0 {
		return d - jitter
	}
	return min(d+jitter, maxDelay+maxDelay/5)
}

// awaits reports whether the plan inserts an await.
func awaits(p backend.Plan) bool {
	for _, j := range p.Jobs {
		if j.Wait == backend.WaitSignal {
			return true
		}
	}
	return false
}

// minDelay is the shortest wait among the plan's jobs, as a hint for a local
// wake-up (the database's clock decides when they are due).
func minDelay(p backend.Plan) time.Duration {
	var d time.Duration
	for _, j := range p.Jobs {
		delay := j.Delay
		if !j.DueAt.IsZero() {
			delay = max(time.Until(j.DueAt), time.Millisecond)
		}
		if delay >= backend.Forever {
			continue
		}
		if delay > 0 && (d == 0 || delay < d) {
			d = delay
		}
	}
	for _, j := range p.OpenJoins {
		if j.Expected == 0 && j.Delay > 0 && (d == 0 || j.Delay < d) {
			d = j.Delay
		}
	}
	return d
}

// jobLogger builds the job's logger (with its run, step and attempt
// attributes) only when something is logged: most jobs log nothing.
type jobLogger struct {
	base *slog.Logger
	job  *backend.Job
	once sync.Once
	l    *slog.Logger
	// exec is the hooks' view of job, made once.
	execOnce sync.Once
	exec     *ductworktype.Execution
}

// execution returns the hooks' view of the job, the same pointer for every
// hook of one execution.
func (j *jobLogger) execution() *ductworktype.Execution {
	j.execOnce.Do(func() { j.exec = Execution(j.job) })
	return j.exec
}

func (j *jobLogger) get() *slog.Logger {
	j.once.Do(func() {
		j.l = j.base.With(slog.Int64(AttrRunID, j.job.RunID), slog.Int64(AttrStepID, j.job.ID),
			slog.String(AttrStep, j.job.NodeID), slog.String(AttrPipeline, j.job.Pipeline), slog.Int(AttrAttempt, j.job.Attempt))
	})
	return j.l
}
