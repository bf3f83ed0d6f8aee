package step

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"time"

	"github.com/ductwork-go/ductwork/backend"
)

// Step is one unit of work of a pipeline: it receives the previous step's
// output as In and hands Out to the next. Its Name is its stable identity in
// the database; renaming a step changes the pipeline's definition.
//
// A Step may run more than once for the same step instance (after a crash);
// use Context.IdempotencyKey to make external side effects repeatable.
type Step[In, Out any] interface {
	Name() string
	Execute(ctx Context, in In) (Out, error)
}

// Optioned is implemented by steps that carry Options. Steps made by New do;
// a custom Step type can implement it too, or be wrapped with WithOptions.
type Optioned interface {
	StepOptions() Options
}

// Transactional is implemented by transactional steps, made by a backend's
// TxStep (postgres.TxStep, mysql.TxStep, sqlite.TxStep). Such a step runs
// inside the transaction that records its result: its writes to the
// pipeline's own database commit atomically with its output and the run's
// advancement, or not at all (a failed execution, a lost claim and a crash
// leave no trace of them; a retry starts clean). What it costs: the
// transaction, with a lock on the job's row, is held while the step runs, so
// keep such steps short; its Timeout (DefaultTxTimeout when none is set)
// bounds it. Other side effects (an HTTP call, a message, another database)
// stay at-least-once. TxKind names the backend kind it needs (a backend's
// Capabilities.TxKind); registering it on a backend of another kind fails.
type Transactional interface {
	TxKind() string
}

// DefaultTxTimeout bounds an execution of a transactional step that sets no
// Timeout.
const DefaultTxTimeout = 30 * time.Second

// Func is the signature of a step function.
type Func[In, Out any] func(ctx Context, in In) (Out, error)

// New returns a Step named name that runs fn.
func New[In, Out any](name string, fn Func[In, Out], opts ...Option) Step[In, Out] {
	s := &funcStep[In, Out]{name: name, fn: fn}
	for _, o := range opts {
		o(&s.opts)
	}
	return s
}

type funcStep[In, Out any] struct {
	name string
	fn   Func[In, Out]
	opts Options
}

func (s *funcStep[In, Out]) Name() string { return s.name }

func (s *funcStep[In, Out]) Execute(ctx Context, in In) (Out, error) {
	if s.fn == nil {
		var zero Out
		return zero, fmt.Errorf("step %q has no function", s.name)
	}
	return s.fn(ctx, in)
}

func (s *funcStep[In, Out]) StepOptions() Options { return s.opts }

// WithOptions returns s with opts applied on top of any options it already has.
func WithOptions[In, Out any](s Step[In, Out], opts ...Option) Step[In, Out] {
	w := &optionedStep[In, Out]{Step: s}
	if o, ok := s.(Optioned); ok {
		w.opts = o.StepOptions()
	}
	for _, o := range opts {
		o(&w.opts)
	}
	if t, ok := s.(Transactional); ok {
		return &optionedTxStep[In, Out]{optionedStep: w, kind: t.TxKind()}
	}
	return w
}

type optionedTxStep[In, Out any] struct {
	*optionedStep[In, Out]
	kind string
}

func (s *optionedTxStep[In, Out]) TxKind() string { return s.kind }

type optionedStep[In, Out any] struct {
	Step[In, Out]
	opts Options
}

func (s *optionedStep[In, Out]) StepOptions() Options { return s.opts }

// Options are per-step settings fixed at definition time. The zero value means
// "use the pipeline's defaults".
type Options struct {
	// Retries is how many times a failed execution is retried (so a step runs
	// at most Retries+1 times for errors). Nil means the pipeline default.
	Retries *int
	// Backoff is the base delay before the first retry; it doubles with each
	// retry, with jitter, up to MaxBackoff. Zero means the pipeline default.
	Backoff    time.Duration
	MaxBackoff time.Duration
	// Timeout bounds one execution; zero means the supervisor's
	// StepTimeout (none by default). It is enforced: when it expires the
	// step's context is cancelled, and a step that has not returned shortly
	// after is abandoned; the execution fails with a *TimeoutError.
	Timeout time.Duration
	// Delay postpones the step's start after its input is ready.
	Delay time.Duration
	// Priority orders due steps; higher runs first.
	Priority int
	// MaxCrashes is the crash budget: how many times an execution of one
	// step instance may be lost to a dead process (os.Exit, a fatal runtime
	// error, a kill) and re-run before the run halts instead. Graceful
	// releases (shutdown) do not count. Nil means the pipeline default;
	// negative means no budget.
	MaxCrashes *int
	// Queue is the queue the step's jobs are claimed from; only supervisors
	// serving it run them. "" is the default queue.
	Queue string
	// Concurrency, when above 0, is the most executions of this step that
	// run at once across every process (see Concurrency).
	Concurrency int
	// ConcurrencyKey, when set, limits executions per key instead (see
	// ConcurrencyKey).
	ConcurrencyKey *KeyLimit
	// RateLimit, when set, paces the step's starts (see RateLimit).
	RateLimit *Rate
}

// KeyLimit is a concurrency limit per key: at most Limit executions whose
// input has the same Key run at once.
type KeyLimit struct {
	// Key computes the key from the step's input (boxed). It must be quick
	// and deterministic; a panic is a step failure.
	Key   func(in any) string
	Limit int
	// InType is the input type Key was written for; it must be the step's.
	InType reflect.Type
}

// Rate is a named rate limit: at most N starts per Per, Burst of them at
// once after an idle period. Steps naming the same limit share it, across
// every process and pipeline.
type Rate struct {
	Name  string
	N     int
	Per   time.Duration
	Burst int
}

// Interval is the time one start costs (Per / N).
func (r *Rate) Interval() time.Duration { return r.Per / time.Duration(r.N) }

// Option sets one of Options.
type Option func(*Options)

// Retries sets how many times a failed execution is retried.
func Retries(n int) Option { return func(o *Options) { o.Retries = &n } }

// Backoff sets the base and maximum retry delay.
func Backoff(base, maxDelay time.Duration) Option {
	return func(o *Options) { o.Backoff, o.MaxBackoff = base, maxDelay }
}

// Timeout bounds one execution of the step (see Options.Timeout and
// TimeoutError).
func Timeout(d time.Duration) Option { return func(o *Options) { o.Timeout = d } }

// Delay postpones the step's start after its input is ready.
func Delay(d time.Duration) Option { return func(o *Options) { o.Delay = d } }

// Priority orders due steps; higher runs first.
func Priority(p int) Option { return func(o *Options) { o.Priority = p } }

// MaxCrashes sets the step's crash budget (see Options.MaxCrashes).
func MaxCrashes(n int) Option { return func(o *Options) { o.MaxCrashes = &n } }

// Queue puts the step on the named queue: its jobs are claimed only by
// supervisors that serve the queue (supervisor.Config.Queues), so heavy work
// can run on processes or hosts of its own. Priorities order the jobs
// within a queue.
func Queue(name string) Option { return func(o *Options) { o.Queue = name } }

// Concurrency limits the step to n executions running at once, counted
// across every process and every pipeline that uses a step of this name.
// The limit is decided in the database when a step is claimed: an
// execution over it waits (pending, holding no worker) until one finishes,
// fails, is released or is reaped. n must be at least 1.
func Concurrency(n int) Option { return func(o *Options) { o.Concurrency = n } }

// ConcurrencyKey limits the step to n executions running at once per key,
// the key being computed from the step's input by key (for example a tenant
// ID). Like Concurrency it holds across every process and pipeline using a
// step of this name; executions over the limit wait, and one key's backlog
// does not hold back the other keys. The input type In must be the step's.
// It cannot be combined with Concurrency, nor set on a join step (Collapse,
// Combine), whose input is not known until it starts.
func ConcurrencyKey[In any](key func(In) string, n int) Option {
	var kl KeyLimit
	kl.Limit = n
	kl.InType = reflect.TypeOf((*In)(nil)).Elem()
	if key != nil {
		kl.Key = func(in any) string { return key(in.(In)) }
	}
	return func(o *Options) { o.ConcurrencyKey = &kl }
}

// RateLimit paces the step with the rate limit called name: at most n starts
// per period per, across every process, shared by every step (of any
// pipeline) naming the same limit. Starts are spaced by per/n, so no window
// of length per holds more than n starts (a burst of 1; RateLimitBurst lets
// more start at once). Work over the limit waits, pending, and starts in
// claim order (priority, then due time); the database's clock decides.
// Steps sharing a name must state the same rate.
func RateLimit(name string, n int, per time.Duration) Option {
	return RateLimitBurst(name, n, per, 1)
}

// RateLimitBurst is RateLimit letting up to burst starts happen at once after
// the limit has been idle; after that starts are spaced by per/n again. A
// window of length per then holds at most burst+n-1 starts.
func RateLimitBurst(name string, n int, per time.Duration, burst int) Option {
	return func(o *Options) { o.RateLimit = &Rate{Name: name, N: n, Per: per, Burst: burst} }
}

// Context is the context a step executes with. It is a context.Context
// (cancelled on timeout, shutdown or when the claim is lost) that also
// describes the execution.
type Context interface {
	context.Context
	// IdempotencyKey is the same for every execution of this step instance:
	// retries and crash re-runs alike. It includes a random identity drawn
	// when the run was triggered, so it is unique across databases too (a
	// reset database, or staging and production, whose run IDs collide).
	IdempotencyKey() string
	// Attempt is 1 for the first execution and grows with each retry. Crash
	// re-runs keep the attempt number.
	Attempt() int
	// Crashes counts earlier executions of this attempt lost to a dead process.
	Crashes() int
	// RunID identifies the run; StepID the step instance.
	RunID() int64
	StepID() int64
	// Pipeline and Node name what is executing.
	Pipeline() string
	Node() string
	// Get decodes the run context value stored under key into dst. It reports
	// false when the key is not set. A value that does not decode into dst
	// returns an error naming the key.
	Get(key string, dst any) (bool, error)
	// Set stores v under key in the run context. Keys are write-once:
	// setting a key that exists returns ErrValueExists unless Overwrite is
	// passed. A key must be 1 to MaxKeyLen bytes long, or Set returns a
	// *KeyError and stores nothing.
	Set(key string, v any, opts ...SetOption) error
	// Logger is a logger carrying run and step attributes.
	Logger() *slog.Logger
}

// SetOption modifies Context.Set.
type SetOption int

// Overwrite lets Context.Set replace an existing key.
const Overwrite SetOption = 1

// ErrValueExists is returned by Context.Set for a key that is already set.
var ErrValueExists = backend.ErrValueExists

// MaxKeyLen is the longest run context key, in bytes: the shortest limit
// among the bundled backends (MySQL stores keys as VARBINARY(255)).
const MaxKeyLen = 255

// KeyError reports a run context key that Context.Set refuses: empty, or
// longer than MaxKeyLen bytes.
type KeyError struct {
	Key    string
	Reason string
}

func (e *KeyError) Error() string {
	k := e.Key
	if len(k) > 40 {
		k = k[:40] + "..."
	}
	return fmt.Sprintf("run context key %q: %s", k, e.Reason)
}

// CheckKey returns a *KeyError if key is not a valid run context key.
func CheckKey(key string) error {
	switch {
	case key == "":
		return &KeyError{Key: key, Reason: "empty"}
	case len(key) > MaxKeyLen:
		return &KeyError{Key: key, Reason: fmt.Sprintf("%d bytes, longer than %d", len(key), MaxKeyLen)}
	}
	return nil
}

// PanicError is the error recorded when a step panics. The panic counts as a
// step error: it spends the retry budget like any other.
type PanicError struct {
	Value any
	Stack string
}

func (e *PanicError) Error() string { return fmt.Sprintf("step panicked: %v", e.Value) }

// Permanent marks err as not worth retrying: the step fails at once and the
// run halts, whatever budget is left.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// IsPermanent reports whether err was marked with Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// TimeoutError is the failure of an execution that outlived its timeout
// (Options.Timeout, or the supervisor's default StepTimeout). It is also the
// cause of the step's context when the timeout expires
// (context.Cause(ctx)), while ctx.Err() is context.DeadlineExceeded.
//
// A timeout spends the retry budget like any error; when the budget is
// spent the run halts with cause "timeout". Match it with errors.As, or
// with errors.Is(err, context.DeadlineExceeded).
type TimeoutError struct {
	// Step is the step's name.
	Step string
	// Timeout is the limit the execution exceeded.
	Timeout time.Duration
	// Abandoned is true when the step did not return within the grace that
	// follows the cancellation of its context: its goroutine was left
	// running (and, in a child process, the process was recycled) and the
	// execution failed without it.
	Abandoned bool
	// Err is what the step returned after its context was cancelled; nil
	// when it was abandoned.
	Err error
}

func (e *TimeoutError) Error() string {
	switch {
	case e.Timeout == 0 && e.Err != nil:
		return e.Err.Error() // rebuilt from a stored reason
	case e.Abandoned:
		return fmt.Sprintf("step %q exceeded its timeout of %s and did not return after its context was cancelled; abandoned", e.Step, e.Timeout)
	case e.Err != nil:
		return fmt.Sprintf("step %q exceeded its timeout of %s: %v", e.Step, e.Timeout, e.Err)
	}
	return fmt.Sprintf("step %q exceeded its timeout of %s", e.Step, e.Timeout)
}

// Is makes errors.Is(err, context.DeadlineExceeded) true.
func (e *TimeoutError) Is(target error) bool { return target == context.DeadlineExceeded }

// Unwrap returns what the step returned, if anything.
func (e *TimeoutError) Unwrap() error { return e.Err }
