package ductworktest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ductwork-go/ductwork"
	"github.com/ductwork-go/ductwork/backend/sqlite"
	"github.com/ductwork-go/ductwork/flow"
	"github.com/ductwork-go/ductwork/step"
	"github.com/ductwork-go/ductwork/supervisor"
)

// Option configures New, Run and Halt.
type Option func(*config)

type config struct {
	faults  []fault
	timeout time.Duration
	workers int
	logger  *slog.Logger
}

// Timeout bounds how long Run, Halt and Env.Wait wait for a run to finish.
// Default 30 s, or less when the test's deadline is nearer.
func Timeout(d time.Duration) Option { return func(c *config) { c.timeout = d } }

// Workers sets the supervisor's worker count. Default 4.
func Workers(n int) Option { return func(c *config) { c.workers = n } }

// Logger receives the client's and the supervisor's logs. Default: discarded
// (failures are reported through the Report instead).
func Logger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// Env is a private Ductwork installation for one test: an in-memory SQLite
// database, a Client and a running supervisor, all stopped when the test ends.
type Env struct {
	// Client is the Env's client; use it for anything Env does not wrap.
	Client *ductwork.Client
	// Backend is the in-memory database.
	Backend *sqlite.Backend

	t   testing.TB
	cfg config
}

// New starts an Env for t. The supervisor stops (and the database is
// dropped) when t's cleanup runs.
func New(t testing.TB, opts ...Option) *Env {
	t.Helper()
	cfg := config{timeout: 30 * time.Second, workers: 4}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.logger == nil {
		cfg.logger = slog.New(slog.DiscardHandler)
	}
	ctx := context.Background()
	b, err := sqlite.Open(sqlite.Memory, nil)
	if err != nil {
		t.Fatalf("ductworktest: open database: %v", err)
	}
	if err := b.Migrate(ctx); err != nil {
		_ = b.Close(ctx)
		t.Fatalf("ductworktest: migrate: %v", err)
	}
	client, err := ductwork.NewClient(b, &ductwork.Config{Logger: cfg.logger})
	if err != nil {
		_ = b.Close(ctx)
		t.Fatalf("ductworktest: client: %v", err)
	}
	if len(cfg.faults) > 0 {
		client.Engine().Intercept = newInjector(cfg.faults).intercept
	}
	sup, err := supervisor.New(client, &supervisor.Config{
		Workers:       cfg.workers,
		PollInterval:  5 * time.Millisecond,
		ShutdownGrace: time.Second,
	})
	if err != nil {
		_ = b.Close(ctx)
		t.Fatalf("ductworktest: supervisor: %v", err)
	}
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var runErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		runErr = sup.Run(runCtx)
	}()
	t.Cleanup(func() {
		stop()
		wg.Wait()
		if runErr != nil && !errors.Is(runErr, context.Canceled) {
			t.Errorf("ductworktest: supervisor: %v", runErr)
		}
		if err := b.Close(ctx); err != nil {
			t.Errorf("ductworktest: close database: %v", err)
		}
	})
	return &Env{Client: client, Backend: b, t: t, cfg: cfg}
}

// Start registers def with env's client (if it is not yet) and triggers a run
// with input in. It fails the test if the trigger fails.
func Start[In, Out any](env *Env, def *flow.Definition[In, Out], in In) *ductwork.Run[Out] {
	env.t.Helper()
	if def == nil {
		env.t.Fatal("ductworktest: Start: nil definition")
	}
	if err := env.Client.Register(def); err != nil {
		env.t.Fatalf("ductworktest: register %s: %v", def.Name(), err)
	}
	run, err := ductwork.Trigger(context.Background(), env.Client, def, in)
	if err != nil {
		env.t.Fatalf("ductworktest: trigger %s: %v", def.Name(), err)
	}
	return run
}

// Wait waits for run to finish (complete, halt or be cancelled) and returns
// what Run.Wait returns. It fails the test if the run is still going after
// the Env's timeout.
func Wait[Out any](env *Env, run *ductwork.Run[Out]) (Out, error) {
	env.t.Helper()
	ctx, cancel := env.waitContext()
	defer cancel()
	out, err := run.Wait(ctx)
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		env.t.Fatalf("ductworktest: run %d did not finish within %v\n%s", run.ID, env.cfg.timeout, env.Report(run.ID))
	}
	return out, err
}

func (env *Env) waitContext() (context.Context, context.CancelFunc) {
	d := env.cfg.timeout
	if tt, ok := env.t.(interface{ Deadline() (time.Time, bool) }); ok {
		if dl, ok := tt.Deadline(); ok {
			if left := time.Until(dl) - time.Second; left > 0 && left < d {
				d = left
			}
		}
	}
	return context.WithTimeout(context.Background(), d)
}

// Revive revives a halted run (see Client.Revive); it fails the test if the
// run cannot be revived.
func (env *Env) Revive(runID int64) {
	env.t.Helper()
	if err := env.Client.Revive(context.Background(), runID); err != nil {
		env.t.Fatalf("ductworktest: revive run %d: %v", runID, err)
	}
}

// Run executes def on input in, in a new Env, and returns its output and the
// Report of its steps. It fails the test if the run does not complete.
func Run[In, Out any](t testing.TB, def *flow.Definition[In, Out], in In, opts ...Option) (Out, *Report) {
	t.Helper()
	env := New(t, opts...)
	run := Start(env, def, in)
	out, err := Wait(env, run)
	report := env.Report(run.ID)
	if err != nil {
		t.Fatalf("ductworktest: run %d of %s did not complete: %v\n%s", run.ID, def.Name(), err, report)
	}
	return out, report
}

// Halt executes def on input in, in a new Env, expecting the run to halt. It
// returns the halt (match its cause with errors.Is and errors.As) and the
// Report. It fails the test if the run completes or is cancelled instead.
func Halt[In, Out any](t testing.TB, def *flow.Definition[In, Out], in In, opts ...Option) (*ductwork.HaltedError, *Report) {
	t.Helper()
	env := New(t, opts...)
	run := Start(env, def, in)
	_, err := Wait(env, run)
	report := env.Report(run.ID)
	var herr *ductwork.HaltedError
	if !errors.As(err, &herr) {
		t.Fatalf("ductworktest: run %d of %s: want a halt, got err = %v\n%s", run.ID, def.Name(), err, report)
	}
	return herr, report
}

// Report describes a run and each of its step instances, in creation order.
type Report struct {
	RunID  int64
	Status ductwork.RunStatus
	Steps  []ductwork.StepInfo
	codec  step.Codec
}

// Report reads the current state of a run. It fails the test if the run
// cannot be read.
func (env *Env) Report(runID int64) *Report {
	env.t.Helper()
	ctx := context.Background()
	info, err := env.Client.Inspect(ctx, runID)
	if err != nil {
		env.t.Fatalf("ductworktest: inspect run %d: %v", runID, err)
	}
	steps, err := env.Client.Steps(ctx, runID)
	if err != nil {
		env.t.Fatalf("ductworktest: steps of run %d: %v", runID, err)
	}
	return &Report{RunID: runID, Status: info.Status, Steps: steps, codec: step.JSON}
}

// Step returns the step instance of the named step at scope (the expansion
// path: "" outside any expand, "2" for the third element, "2.0" one level
// deeper). The second result is false if there is none.
func (r *Report) Step(name string, scope string) (ductwork.StepInfo, bool) {
	for _, s := range r.Steps {
		if s.Node == name && s.Scope == scope {
			return s, true
		}
	}
	return ductwork.StepInfo{}, false
}

// Instances returns every instance of the named step, in creation order.
func (r *Report) Instances(name string) []ductwork.StepInfo {
	var out []ductwork.StepInfo
	for _, s := range r.Steps {
		if s.Node == name {
			out = append(out, s)
		}
	}
	return out
}

// Output decodes the committed output of the named step at scope into a T.
func Output[T any](r *Report, name string, scope string) (T, error) {
	var v T
	s, ok := r.Step(name, scope)
	if !ok {
		return v, fmt.Errorf("ductworktest: run %d has no step %q at scope %q", r.RunID, name, scope)
	}
	if s.Output == nil {
		return v, fmt.Errorf("ductworktest: step %q at scope %q has no output (status %s)", name, scope, s.Status)
	}
	err := r.codec.Unmarshal(s.Output, &v)
	return v, err
}

// String renders the report as a table, for test failure messages.
func (r *Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "run %d: %s\n", r.RunID, r.Status)
	for _, s := range r.Steps {
		scope := s.Scope
		if scope == "" {
			scope = "-"
		}
		fmt.Fprintf(&b, "  %-24s scope %-6s %-10s attempt %d, crash re-runs %d", s.Node, scope, s.Status, s.Attempt, s.CrashReruns)
		if s.Error != "" {
			msg, _, _ := strings.Cut(s.Error, "\n")
			fmt.Fprintf(&b, ", error: %s", msg)
		}
		b.WriteByte('\n')
	}
	return b.String()
}
