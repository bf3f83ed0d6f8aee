package flow

import (
	"context"
	"reflect"
	"time"

	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/internal/graph"
	"github.com/ductwork-go/ductwork/step"
)

// Pipeline is the builder handed to a definition function. Its type parameter
// is the pipeline's input type.
type Pipeline[In any] struct{ b *builder }

// Node is a typed handle on a step of a pipeline being defined: T is the
// step's output type. Nodes are made by the transitions (Start, Chain, ...).
type Node[T any] struct{ n *bnode }

// ID returns the node's stable identifier (its step name).
func (n Node[T]) ID() string {
	if n.n == nil {
		return ""
	}
	return n.n.g.ID
}

// End is the node a definition function returns: its output is the run's
// output.
type End[T any] = Node[T]

// Diversion is a node whose output is routed to one of several cases by a key.
type Diversion[T any] struct{ n *bnode }

// Pair is the input of a step that combines two heterogeneous branches.
type Pair[A, B any] struct {
	First  A `json:"first"`
	Second B `json:"second"`
}

// Triple is the input of a step that combines three heterogeneous branches.
type Triple[A, B, C any] struct {
	First  A `json:"first"`
	Second B `json:"second"`
	Third  C `json:"third"`
}

// Option configures a pipeline at definition time.
type Option func(*options)

type options struct {
	retries    int
	backoff    time.Duration
	maxBackoff time.Duration
	maxFanOut  int
	maxCrashes int
	codec      step.Codec
	onHalt     func(ctx context.Context, info Halt)
	version    string
}

// Halt describes a halted run, for OnHalt.
type Halt struct {
	Pipeline string
	RunID    int64
	// Node and Scope name the step instance whose failure halted the run.
	Node  string
	Scope string
	// Cause says why, Attempt on which attempt.
	Cause   backend.HaltCause
	Attempt int
	// Reason is the stored reason: the error's message (a panic's stack is
	// kept apart, in Err and in the run's record).
	Reason string
	// Err is the failure (a *step.PanicError, an error marked with
	// step.Permanent, ...); errors.Is and errors.As reach what it wraps.
	Err error
}

// Retries sets how many times a failed step is retried when the step sets
// no budget of its own. The default is 3.
func Retries(n int) Option { return func(o *options) { o.retries = n } }

// Backoff sets the default retry delay: base doubles each retry, with
// jitter, up to maxDelay. Defaults: 100ms and 30s.
func Backoff(base, maxDelay time.Duration) Option {
	return func(o *options) { o.backoff, o.maxBackoff = base, maxDelay }
}

// MaxFanOut caps the number of branches one Expand may open; an expansion
// above it halts the run with a clear reason. Zero means 100,000.
func MaxFanOut(n int) Option { return func(o *options) { o.maxFanOut = n } }

// MaxCrashes sets the crash budget of steps that set none (see
// step.Options.MaxCrashes). The default is 10; negative means no budget.
func MaxCrashes(n int) Option { return func(o *options) { o.maxCrashes = n } }

// Version marks a version of the pipeline's code. It enters the fingerprint,
// so that a definition whose steps changed in a way that must not mix with
// runs started by the old code (the same names, types and wiring, but other
// behaviour) gets a fingerprint of its own: a process runs only the runs of
// the versions it registered, and runs of the old version wait for a
// process that has registered it (see Fingerprint). The default, "", leaves
// the fingerprint as it is without a version.
func Version(v string) Option { return func(o *options) { o.version = v } }

// WithCodec replaces the default encoding/json codec.
func WithCodec(c step.Codec) Option { return func(o *options) { o.codec = c } }

// OnHalt registers a handler that runs at most once per halt of a run of this
// pipeline, in the process whose commit halted it, after that commit.
func OnHalt(fn func(ctx context.Context, h Halt)) Option {
	return func(o *options) { o.onHalt = fn }
}

// Definition is a validated, immutable pipeline definition with input In and
// output Out. Register it with a ductwork.Client; trigger it with
// ductwork.Trigger.
type Definition[In, Out any] struct {
	erased // the erased graph, for package ductwork
}

// erased is embedded under an unexported name: its method is promoted for the
// module's own packages and stays out of this package's documentation.
type erased = graph.Carrier

// Name returns the pipeline's name ("" for a nil Definition).
func (d *Definition[In, Out]) Name() string {
	if d == nil || d.G == nil {
		return ""
	}
	return d.G.Pipeline
}

// Fingerprint identifies this version of the definition. It changes when a
// step is added, removed, renamed, retyped or rewired, or when Version
// changes. It is computed from the definition's shape and cannot see code: a
// step whose function changed behind the same name and types keeps the
// fingerprint, and runs started by the old code are run by the new. Mark such
// a change with Version. "" for a nil Definition.
func (d *Definition[In, Out]) Fingerprint() string {
	if d == nil || d.G == nil {
		return ""
	}
	return d.G.Fingerprint
}

// NodeIDs lists the node IDs in definition order.
func (d *Definition[In, Out]) NodeIDs() []string {
	ids := make([]string, len(d.G.Nodes))
	for i, n := range d.G.Nodes {
		ids[i] = n.ID
	}
	return ids
}

// Define runs fn to build the pipeline called name and validates it. Every
// rule the compiler cannot check is checked here; a broken rule is reported
// as a *DefinitionError naming the pipeline, the node and the rule.
func Define[In, Out any](name string, fn func(p *Pipeline[In]) End[Out], opts ...Option) (*Definition[In, Out], error) {
	o := options{retries: 3, backoff: 100 * time.Millisecond, maxBackoff: 30 * time.Second, maxFanOut: 100_000, maxCrashes: 10, codec: step.JSON}
	for _, opt := range opts {
		opt(&o)
	}
	b := &builder{name: name, codec: o.codec, ids: map[string]*bnode{}}
	if name == "" {
		return nil, b.errf(nil, RuleEmptyPipelineName, "")
	}
	if fn == nil {
		return nil, b.errf(nil, RuleNilDefine, "")
	}
	p := &Pipeline[In]{b: b}
	b.inType = reflect.TypeFor[In]()
	end := fn(p)
	b.sealed = true
	if b.err != nil {
		return nil, b.err
	}
	g, err := b.finish(end.n, reflect.TypeFor[Out]())
	if err != nil {
		return nil, err
	}
	g.Retries, g.Backoff, g.MaxBackoff, g.MaxFanOut = o.retries, o.backoff, o.maxBackoff, o.maxFanOut
	g.MaxCrashes = o.maxCrashes
	if o.version != "" {
		g.Version = o.version
		g.Fingerprint = g.ComputeFingerprint()
	}
	if o.onHalt != nil {
		h := o.onHalt
		g.OnHalt = func(ctx context.Context, gh graph.Halt) {
			h(ctx, Halt{Pipeline: name, RunID: gh.RunID, Node: gh.Node, Scope: gh.Scope, Cause: gh.Cause,
				Attempt: gh.Attempt, Reason: gh.Reason, Err: gh.Err})
		}
	}
	return &Definition[In, Out]{erased{G: g}}, nil
}

// MustDefine is Define that panics on error, for package-level variables.
func MustDefine[In, Out any](name string, fn func(p *Pipeline[In]) End[Out], opts ...Option) *Definition[In, Out] {
	d, err := Define(name, fn, opts...)
	if err != nil {
		panic(err)
	}
	return d
}
