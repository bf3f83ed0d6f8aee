package ductworktest

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"

	"github.com/ductwork-go/ductwork/step"
)

// StepContext is a step.Context for unit tests of one step, with no database:
// its attempt, crash count, identifiers and idempotency key are whatever the
// test sets, its run context is an in-memory map with the real write-once
// rules, and its logger records what the step logs.
//
//	sc := ductworktest.NewContext(t, ductworktest.Attempt(3))
//	out, err := LoadUser.Execute(sc, 42)
type StepContext struct {
	context.Context

	attempt, crashes int
	runID, stepID    int64
	pipeline, node   string
	key              string
	codec            step.Codec

	mu     sync.Mutex
	values map[string][]byte
	logs   *recorder
	logger *slog.Logger
}

var _ step.Context = (*StepContext)(nil)

// ContextOption configures NewContext.
type ContextOption func(*StepContext)

// Attempt sets the attempt number (default 1).
func Attempt(n int) ContextOption { return func(c *StepContext) { c.attempt = n } }

// Crashes sets the crash re-run count (default 0).
func Crashes(n int) ContextOption { return func(c *StepContext) { c.crashes = n } }

// IDs sets the run and step IDs (default 1 and 1).
func IDs(runID, stepID int64) ContextOption {
	return func(c *StepContext) { c.runID, c.stepID = runID, stepID }
}

// Node sets the pipeline and step names (default "test" and "step").
func Node(pipeline, node string) ContextOption {
	return func(c *StepContext) { c.pipeline, c.node = pipeline, node }
}

// IdempotencyKey sets the key (default derived from the pipeline, run, node).
func IdempotencyKey(key string) ContextOption { return func(c *StepContext) { c.key = key } }

// Value stores v in the run context before the step runs. NewContext fails
// the test if v cannot be encoded.
func Value(key string, v any) ContextOption {
	return func(c *StepContext) {
		b, err := c.codec.Marshal(v)
		if err != nil {
			panic(fmt.Sprintf("ductworktest: Value %q: %v", key, err))
		}
		c.values[key] = b
	}
}

// Parent sets the context the StepContext derives from (default: the test's
// context, cancelled when the test ends).
func Parent(ctx context.Context) ContextOption { return func(c *StepContext) { c.Context = ctx } }

// NewContext returns a StepContext for t.
func NewContext(t testing.TB, opts ...ContextOption) *StepContext {
	t.Helper()
	c := &StepContext{
		Context: t.Context(), attempt: 1, runID: 1, stepID: 1, pipeline: "test", node: "step",
		codec: step.JSON, values: map[string][]byte{}, logs: newRecorder(),
	}
	func() {
		defer func() {
			if r := recover(); r != nil {
				t.Fatalf("%v", r)
			}
		}()
		for _, o := range opts {
			o(c)
		}
	}()
	if c.key == "" {
		c.key = fmt.Sprintf("%s/%d/%s/", c.pipeline, c.runID, c.node)
	}
	c.logger = slog.New(c.logs)
	return c
}

// IdempotencyKey implements step.Context.
func (c *StepContext) IdempotencyKey() string { return c.key }

// Attempt implements step.Context.
func (c *StepContext) Attempt() int { return c.attempt }

// Crashes implements step.Context.
func (c *StepContext) Crashes() int { return c.crashes }

// RunID implements step.Context.
func (c *StepContext) RunID() int64 { return c.runID }

// StepID implements step.Context.
func (c *StepContext) StepID() int64 { return c.stepID }

// Pipeline implements step.Context.
func (c *StepContext) Pipeline() string { return c.pipeline }

// Node implements step.Context.
func (c *StepContext) Node() string { return c.node }

// Logger implements step.Context; Logs returns what was logged.
func (c *StepContext) Logger() *slog.Logger { return c.logger }

// Get implements step.Context.
func (c *StepContext) Get(key string, dst any) (bool, error) {
	c.mu.Lock()
	b, ok := c.values[key]
	c.mu.Unlock()
	if !ok {
		return false, nil
	}
	if err := c.codec.Unmarshal(b, dst); err != nil {
		return true, fmt.Errorf("decode run context value %q: %w", key, err)
	}
	return true, nil
}

// Set implements step.Context with the same rules as a real run: keys are
// write-once unless step.Overwrite is passed.
func (c *StepContext) Set(key string, v any, opts ...step.SetOption) error {
	// The same keys as a supervised step accepts.
	if err := step.CheckKey(key); err != nil {
		return err
	}
	b, err := c.codec.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode run context value %q: %w", key, err)
	}
	overwrite := false
	for _, o := range opts {
		if o == step.Overwrite {
			overwrite = true
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.values[key]; ok && !overwrite {
		return step.ErrValueExists
	}
	c.values[key] = b
	return nil
}

// Logs returns the records the step logged through Logger, in order.
func (c *StepContext) Logs() []slog.Record { return c.logs.records() }

// recorder is a slog.Handler that keeps records (attributes added with With
// are folded into each record).
type recorder struct {
	mu    *sync.Mutex
	recs  *[]slog.Record
	attrs []slog.Attr
}

func newRecorder() *recorder { return &recorder{mu: &sync.Mutex{}, recs: &[]slog.Record{}} }

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }

func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	rec = rec.Clone()
	rec.AddAttrs(r.attrs...)
	r.mu.Lock()
	defer r.mu.Unlock()
	*r.recs = append(*r.recs, rec)
	return nil
}

func (r *recorder) WithAttrs(attrs []slog.Attr) slog.Handler {
	n := *r
	n.attrs = append(append([]slog.Attr(nil), r.attrs...), attrs...)
	return &n
}

func (r *recorder) WithGroup(string) slog.Handler { return r }

func (r *recorder) records() []slog.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]slog.Record(nil), *r.recs...)
}
