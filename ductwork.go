package ductwork

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"time"

	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/ductworktype"
	"github.com/ductwork-go/ductwork/flow"
	"github.com/ductwork-go/ductwork/internal/engine"
	"github.com/ductwork-go/ductwork/internal/graph"
)

// Config configures a Client. The zero value is valid.
type Config struct {
	// Logger receives the client's and its supervisors' logs. Default
	// slog.Default().
	Logger *slog.Logger
	// Hooks observe the client's work and that of its supervisors: each
	// implements one or more of the hook interfaces of package ductworktype
	// (package otel provides one), and every event calls, in list order,
	// the hooks that implement its interface. NewClient refuses a nil hook,
	// or one that implements none, with *ArgumentError.
	Hooks []Hook
	// MaxPayloadBytes caps the encoded size of a run's input and of every
	// step's output. A trigger above it fails with *PayloadTooLargeError and
	// writes nothing; a step output above it halts the run with that error
	// and writes nothing of the output. Zero means 16 MiB; negative, no cap.
	// It is lowered to what the backend can store
	// (backend.Capabilities.Limits.MaxPayloadBytes) when that is smaller.
	MaxPayloadBytes int
	// CallTimeout bounds each database call made without a deadline of the
	// caller's: a Trigger whose context has none, and every call of the
	// supervisors on this client (one commit attempt, a claim, a heartbeat).
	// A link that goes silent then fails the call instead of hanging it.
	// Zero means 10s.
	CallTimeout time.Duration
}

// DefaultMaxPayloadBytes is the payload cap of a zero Config.
const DefaultMaxPayloadBytes = 16 << 20

// Hook is a value implementing one or more of the hook interfaces of
// package ductworktype (TriggerHook, StepHook, HaltHook, ReviveHook,
// ClaimHook, ReapHook).
type Hook = ductworktype.Hook

// Client is the entry point: it registers definitions, triggers runs and
// inspects them. A supervisor (package supervisor) executes the work. A
// Client is safe for concurrent use.
type Client struct {
	// clientEngine gives package supervisor the engine; it is not part of
	// the API.
	clientEngine
	b      backend.Backend
	eng    *engine.Engine
	logger *slog.Logger
}

// clientEngine is embedded under an unexported name: its method is promoted
// for the module's own packages and stays out of this package's
// documentation.
type clientEngine = engine.Carrier

// NewClient returns a Client on b. It does no I/O; run the backend's Migrate
// first.
func NewClient(b backend.Backend, cfg *Config) (*Client, error) {
	if b == nil {
		return nil, &ArgumentError{Func: "NewClient", Arg: "backend", Reason: "is nil"}
	}
	var c Config
	if cfg != nil {
		c = *cfg
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	switch {
	case c.MaxPayloadBytes == 0:
		c.MaxPayloadBytes = DefaultMaxPayloadBytes
	case c.MaxPayloadBytes < 0:
		c.MaxPayloadBytes = 0
	}
	if max := b.Capabilities().Limits.MaxPayloadBytes; max > 0 && (c.MaxPayloadBytes <= 0 || c.MaxPayloadBytes > max) {
		// The backend cannot store more: refuse larger payloads up front
		// (*PayloadTooLargeError) rather than fail their commits.
		c.MaxPayloadBytes = max
	}
	if c.CallTimeout < 0 {
		return nil, &ArgumentError{Func: "NewClient", Arg: "Config.CallTimeout", Reason: "is negative"}
	}
	hooks, err := engine.NewHooks(c.Hooks)
	if err != nil {
		return nil, &ArgumentError{Func: "NewClient", Arg: "Config.Hooks", Reason: err.Error()}
	}
	eng := engine.New(b, c.Logger, hooks)
	eng.MaxPayload = c.MaxPayloadBytes
	eng.CallTimeout = c.CallTimeout
	return &Client{clientEngine: clientEngine{E: eng}, b: b, eng: eng, logger: c.Logger}, nil
}

// Backend returns the client's backend.
func (c *Client) Backend() backend.Backend { return c.b }

// Definition is implemented by *flow.Definition of any type (and by no
// other type: Register refuses others with *ArgumentError).
type Definition interface {
	Name() string
	Fingerprint() string
}

// erasedDefinition is what *flow.Definition implements besides Definition.
type erasedDefinition interface {
	Erased() *graph.Graph
}

// graphOf returns the erased graph of d, nil when d is nil or not a
// *flow.Definition.
func graphOf(d Definition) *graph.Graph {
	e, ok := d.(erasedDefinition)
	if !ok {
		return nil
	}
	if v := reflect.ValueOf(d); v.Kind() == reflect.Pointer && v.IsNil() {
		return nil
	}
	return e.Erased()
}

// Register makes definitions known to this client, so its supervisors claim
// their work. Several versions of one pipeline can be registered side by side
// (during a rolling deploy); each run continues on the version it started
// with. A definition whose pipeline name or a step name is longer than the
// backend stores (backend.Capabilities.Limits) is refused with *LimitError,
// and a nil definition with *ArgumentError; then none of defs is registered.
func (c *Client) Register(defs ...Definition) error {
	if c == nil {
		return &ArgumentError{Func: "Register", Arg: "client", Reason: "is nil"}
	}
	for i, d := range defs {
		if graphOf(d) == nil {
			return &ArgumentError{Func: "Register", Arg: fmt.Sprintf("definition %d", i), Reason: "is nil or not a *flow.Definition"}
		}
		if err := checkLimits(c.b.Capabilities(), graphOf(d)); err != nil {
			return err
		}
		if err := checkTxKind(c.b.Capabilities(), graphOf(d)); err != nil {
			return err
		}
	}
	for _, d := range defs {
		c.eng.Register(graphOf(d))
	}
	return nil
}

// SaveDefinitions stores the shape of every definition registered with c
// (once per version; a version already stored costs a read), so tools such
// as the dashboard draw its runs without the pipeline's code. A supervisor
// does this when it starts; call it when runs are triggered from a process
// that runs no supervisor.
func (c *Client) SaveDefinitions(ctx context.Context) error {
	defs, err := c.eng.StoredDefinitions()
	if err != nil {
		return fmt.Errorf("ductwork: save definitions: %w", err)
	}
	_, err = c.b.SaveDefinitions(ctx, &backend.SaveDefinitionsParams{Definitions: defs})
	return err
}

// Definition returns the stored shape of a definition version, or
// ErrDefinitionNotFound.
func (c *Client) Definition(ctx context.Context, ref backend.DefinitionRef) (*backend.Shape, error) {
	d, err := c.b.GetDefinition(ctx, &backend.GetDefinitionParams{Ref: ref})
	if err != nil {
		return nil, err
	}
	var s backend.Shape
	if err := json.Unmarshal(d.Shape, &s); err != nil {
		return nil, fmt.Errorf("ductwork: stored shape of %s@%s: %w", ref.Pipeline, ref.Fingerprint, err)
	}
	return &s, nil
}

// checkTxKind refuses a definition with a transactional step made for a
// backend of another kind than the client's.
func checkTxKind(caps backend.Capabilities, g *graph.Graph) error {
	for _, n := range g.Nodes {
		if n.TxKind != "" && n.TxKind != caps.TxKind {
			return &TxKindError{Pipeline: g.Pipeline, Node: n.ID, StepKind: n.TxKind, Backend: caps.Name, BackendKind: caps.TxKind}
		}
	}
	return nil
}

// checkLimits refuses a definition whose names the backend cannot store.
func checkLimits(caps backend.Capabilities, g *graph.Graph) error {
	l := caps.Limits
	if l.MaxPipelineBytes > 0 && len(g.Pipeline) > l.MaxPipelineBytes {
		return &LimitError{Backend: caps.Name, Limit: "MaxPipelineBytes", Pipeline: g.Pipeline, Len: len(g.Pipeline), Max: l.MaxPipelineBytes}
	}
	for _, n := range g.Nodes {
		if l.MaxNodeIDBytes > 0 && len(n.ID) > l.MaxNodeIDBytes {
			return &LimitError{Backend: caps.Name, Limit: "MaxNodeIDBytes", Pipeline: g.Pipeline, Node: n.ID, Len: len(n.ID), Max: l.MaxNodeIDBytes}
		}
	}
	return nil
}

// TriggerOption modifies a trigger: WithMetadata, WithKey. Its
// implementations are this package's own.
type TriggerOption interface {
	applyTrigger(*triggerOptions)
}

// triggerOptions is what the options of one trigger set.
type triggerOptions struct {
	metadata map[string]string
	key      string
	// keyWhileActive and errorIfExists are WithKey's KeyOptions.
	keyWhileActive, errorIfExists bool
}

type triggerOptionFunc func(*triggerOptions)

func (f triggerOptionFunc) applyTrigger(o *triggerOptions) { f(o) }

// WithMetadata attaches string metadata to the run (for example a trace
// context); it travels with the run through the database. Several
// WithMetadata options merge, later ones winning on a key.
func WithMetadata(md map[string]string) TriggerOption {
	return triggerOptionFunc(func(o *triggerOptions) {
		if o.metadata == nil {
			o.metadata = map[string]string{}
		}
		for k, v := range md {
			o.metadata[k] = v
		}
	})
}

// WithKey deduplicates triggers: key is stored with the run, unique per
// pipeline, and a trigger with a key already bound to a run of the pipeline
// starts nothing. By default it returns that run's handle with Run.Existing
// set (or ErrKeyConflict if that run's input differs), so a retried HTTP
// handler, or a trigger that failed without telling whether the run was
// written (a connection lost before the reply), never starts a duplicate.
// Options choose how long the key binds (KeyWhileActive) and what a
// duplicate returns (KeyErrorIfExists). It works the same inside TriggerTx,
// where a duplicate leaves the caller's transaction usable.
//
// By default the key stays bound to its run as long as the run's row
// exists ("ever").
func WithKey(key string, opts ...KeyOption) TriggerOption {
	var ko KeyOption
	for _, x := range opts {
		ko |= x
	}
	return triggerOptionFunc(func(o *triggerOptions) {
		o.key = key
		o.keyWhileActive = ko&KeyWhileActive != 0
		o.errorIfExists = ko&KeyErrorIfExists != 0
	})
}

// KeyOption modifies WithKey.
type KeyOption int

const (
	// KeyWhileActive binds the key to its run only while the run is active
	// (running, waiting or halted, which Revive can resume): once it has
	// completed or been cancelled, a trigger with the key starts a new run
	// (the finished run gives up the key), whatever its input.
	KeyWhileActive KeyOption = 1 << iota
	// KeyErrorIfExists makes a duplicate trigger return a *DuplicateRunError
	// (matching ErrDuplicateRun, naming the existing run) instead of the
	// existing run's handle.
	KeyErrorIfExists
)

// ErrDuplicateRun matches a *DuplicateRunError.
var ErrDuplicateRun = errors.New("ductwork: a run with this trigger key exists")

// DuplicateRunError is returned by a trigger with WithKey(key,
// KeyErrorIfExists) whose key is bound to an existing run: nothing was
// written. RunID is that run (Open it for a handle).
type DuplicateRunError struct {
	Pipeline string
	Key      string
	RunID    int64
}

func (e *DuplicateRunError) Error() string {
	return fmt.Sprintf("ductwork: trigger %s: key %q is bound to run %d", e.Pipeline, e.Key, e.RunID)
}

// Is makes errors.Is(err, ErrDuplicateRun) true.
func (e *DuplicateRunError) Is(target error) bool { return target == ErrDuplicateRun }

// Trigger starts a run of d with input in: the run and its first step are
// written in one transaction. The definition need not be registered with c to
// be triggered, but only processes that registered it will run it.
func Trigger[In, Out any](ctx context.Context, c *Client, d *flow.Definition[In, Out], in In, opts ...TriggerOption) (*Run[Out], error) {
	return trigger(ctx, c, d, nil, in, opts)
}

// TriggerTx is Trigger inside the caller's transaction: the run exists only
// if tx commits. tx is the backend's transaction type (*sql.Tx for SQLite and
// MySQL, pgx.Tx for PostgreSQL); another type returns ErrUnsupportedTx.
func TriggerTx[In, Out any](ctx context.Context, c *Client, tx any, d *flow.Definition[In, Out], in In, opts ...TriggerOption) (*Run[Out], error) {
	if err := checkClientDef("TriggerTx", c, d); err != nil {
		return nil, err
	}
	if tx == nil {
		return nil, fmt.Errorf("ductwork: TriggerTx: nil transaction: %w", ErrUnsupportedTx)
	}
	return trigger(ctx, c, d, tx, in, opts)
}

// checkClientDef returns *ArgumentError for a nil client or definition.
func checkClientDef[In, Out any](fn string, c *Client, d *flow.Definition[In, Out]) error {
	switch {
	case c == nil:
		return &ArgumentError{Func: fn, Arg: "client", Reason: "is nil"}
	case d == nil || d.Erased() == nil:
		return &ArgumentError{Func: fn, Arg: "definition", Reason: "is nil"}
	}
	return nil
}

// newIdentity draws a run's identity: 16 random bytes, hex-encoded.
func newIdentity() string {
	var buf [16]byte
	_, _ = rand.Read(buf[:]) // never fails (crypto/rand panics instead)
	return hex.EncodeToString(buf[:])
}

func trigger[In, Out any](ctx context.Context, c *Client, d *flow.Definition[In, Out], tx any, in In, opts []TriggerOption) (*Run[Out], error) {
	if err := checkClientDef("Trigger", c, d); err != nil {
		return nil, err
	}
	g := d.Erased()
	p, err := c.triggerParams(g, in)
	if err != nil {
		return nil, err
	}
	p.Tx = tx
	var o triggerOptions
	for _, opt := range opts {
		if opt != nil {
			opt.applyTrigger(&o)
		}
	}
	p.Metadata, p.Key, p.KeyWhileActive = o.metadata, o.key, o.keyWhileActive
	info := &engine.TriggerInfo{Pipeline: g.Pipeline, Fingerprint: g.Fingerprint, Metadata: p.Metadata}
	if info.Metadata == nil {
		info.Metadata = map[string]string{}
	}
	ctx, end := c.eng.Hooks.TriggerStart(ctx, c.logger, info)
	p.Metadata = info.Metadata
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = c.eng.WithCallTimeout(ctx)
		defer cancel()
	}
	res, err := c.b.Trigger(ctx, p)
	if err != nil {
		end(0, err)
		return nil, fmt.Errorf("ductwork: trigger %s: %w", g.Pipeline, err)
	}
	end(res.RunID, nil)
	if res.Existing && o.errorIfExists {
		return nil, &DuplicateRunError{Pipeline: g.Pipeline, Key: p.Key, RunID: res.RunID}
	}
	if tx == nil && !res.Existing {
		c.eng.WakeAll()
	}
	return &Run[Out]{ID: res.RunID, Existing: res.Existing, c: c, g: g}, nil
}

// triggerParams encodes in as the input of a run of g and builds its
// trigger (without key, metadata or transaction).
func (c *Client) triggerParams(g *graph.Graph, in any) (*backend.TriggerParams, error) {
	input, err := engine.Contain(func() ([]byte, error) { return g.Codec.Marshal(in) })
	if err != nil {
		return nil, &EncodeError{Node: g.Start.ID, Err: fmt.Errorf("pipeline input: %w", err)}
	}
	if max := c.eng.MaxPayload; max > 0 && len(input) > max {
		return nil, &PayloadTooLargeError{Node: g.Start.ID, Size: len(input), Max: max}
	}
	first, err := engine.Contain(func() (backend.NewJob, error) { return g.FirstJob(input, in) })
	if err != nil {
		return nil, fmt.Errorf("ductwork: trigger %s: %w", g.Pipeline, err)
	}
	return &backend.TriggerParams{
		Pipeline: g.Pipeline, Fingerprint: g.Fingerprint, Input: input, Identity: newIdentity(), First: first,
	}, nil
}

// Open returns the handle of an existing run of d. It returns ErrRunNotFound,
// or *UnknownDefinitionError when the run belongs to another pipeline or to a
// version of d that this client has not registered and that differs from d.
func Open[In, Out any](ctx context.Context, c *Client, d *flow.Definition[In, Out], runID int64) (*Run[Out], error) {
	if err := checkClientDef("Open", c, d); err != nil {
		return nil, err
	}
	r, err := c.b.GetRun(ctx, &backend.GetRunParams{RunID: runID})
	if err != nil {
		return nil, err
	}
	ref := backend.DefinitionRef{Pipeline: r.Pipeline, Fingerprint: r.Fingerprint}
	if r.Pipeline != d.Name() {
		return nil, &UnknownDefinitionError{RunID: runID, Pipeline: r.Pipeline, Fingerprint: r.Fingerprint, Expected: d.Erased().Ref()}
	}
	g := d.Erased()
	if r.Fingerprint != d.Fingerprint() {
		known, ok := c.eng.Lookup(ref)
		if !ok {
			return nil, &UnknownDefinitionError{RunID: runID, Pipeline: r.Pipeline, Fingerprint: r.Fingerprint, Expected: g.Ref()}
		}
		g = known
	}
	return &Run[Out]{ID: runID, c: c, g: g}, nil
}

// Cancel cancels a running, waiting or halted run, with reason as its error
// ("cancelled" if empty). Its pending and running steps get the status
// cancelled in the same transaction, so no step of it is claimed afterwards
// and a completion that lands after the cancel commits nothing and creates
// no new steps. Supervisors in this process start none of the run's steps
// they had already claimed, and cancel the context of those executing
// (context.Cause is ErrCancelled) at once. Supervisors in other processes
// learn of the cancel from their next heartbeat (Config.HeartbeatInterval)
// and then do the same: until then, a step they had claimed may still start
// and runs until that heartbeat. What a cancelled step returns is discarded.
// Cancel returns ErrRunNotFound, or ErrRunState if the run already completed
// or was cancelled.
func (c *Client) Cancel(ctx context.Context, runID int64, reason string) error {
	if c == nil {
		return &ArgumentError{Func: "Cancel", Arg: "client", Reason: "is nil"}
	}
	if reason == "" {
		reason = "cancelled"
	}
	if _, err := c.b.CancelRun(ctx, &backend.CancelRunParams{RunID: runID, Reason: reason}); err != nil {
		return err
	}
	c.eng.RunCancelled(runID)
	return nil
}

// Revive resumes a halted run: completed steps are kept and the failed steps
// run again. A revived step keeps its attempt count (its re-run is the next
// attempt, StepInfo.Attempt goes on) and its last error until it fails
// again; its retry budget starts afresh from the attempt it failed on
// (StepInfo.RetryBase).
func (c *Client) Revive(ctx context.Context, runID int64) error {
	if c == nil {
		return &ArgumentError{Func: "Revive", Arg: "client", Reason: "is nil"}
	}
	res, err := c.b.ReviveRun(ctx, &backend.ReviveRunParams{RunID: runID})
	if err != nil {
		return err
	}
	c.eng.Hooks.Revived(ctx, c.logger, runID, res.Jobs)
	c.eng.WakeAll()
	return nil
}

// Run is a handle on one run whose output type is Out.
type Run[Out any] struct {
	ID int64
	// Existing is true when Trigger was given a key (WithKey) that an
	// earlier trigger of the pipeline used: no run was started, and this is
	// the run that trigger started.
	Existing bool
	c        *Client
	g        *graph.Graph
}

// check returns *ArgumentError for a nil handle or one not made by this
// package.
func (r *Run[Out]) check(fn string) error {
	if r == nil || r.c == nil || r.g == nil {
		return &ArgumentError{Func: fn, Arg: "run", Reason: "is nil or was not made by Trigger or Open"}
	}
	return nil
}

// Status reads the run's status from the database.
func (r *Run[Out]) Status(ctx context.Context) (RunStatus, error) {
	if err := r.check("Run.Status"); err != nil {
		return "", err
	}
	run, err := r.c.b.GetRun(ctx, &backend.GetRunParams{RunID: r.ID})
	if err != nil {
		return "", err
	}
	return RunStatus(run.Status), nil
}

// Wait blocks until the run finishes and returns its output. A halted run
// returns *HaltedError, a cancelled one ErrCancelled. Wait polls the
// database, and returns early when a supervisor in this process finishes the
// run.
func (r *Run[Out]) Wait(ctx context.Context) (Out, error) {
	var zero Out
	if err := r.check("Run.Wait"); err != nil {
		return zero, err
	}
	done, stop := r.c.eng.WaitChan(r.ID)
	defer stop()
	delay := 5 * time.Millisecond
	for {
		run, err := r.c.b.GetRun(ctx, &backend.GetRunParams{RunID: r.ID})
		if err != nil {
			return zero, err
		}
		switch run.Status {
		case backend.RunCompleted:
			var out Out
			if _, err := engine.Contain(func() (struct{}, error) { return struct{}{}, r.g.Codec.Unmarshal(run.Output, &out) }); err != nil {
				return zero, fmt.Errorf("ductwork: decode output of run %d: %w", r.ID, err)
			}
			return out, nil
		case backend.RunHalted:
			return zero, r.c.haltedError(run)
		case backend.RunCancelled:
			return zero, ErrCancelled
		}
		select {
		case <-ctx.Done():
			return zero, ctx.Err()
		case <-done:
			done, stop = r.c.eng.WaitChan(r.ID)
			defer stop()
		case <-time.After(delay):
			delay = min(delay*2, 250*time.Millisecond)
		}
	}
}
