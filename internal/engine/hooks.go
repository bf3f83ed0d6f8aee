package engine

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"

	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/ductworktype"
)

// StepEnd and TriggerInfo are the public hook values.
type (
	StepEnd     = ductworktype.StepEnd
	TriggerInfo = ductworktype.TriggerInfo
)

// Hooks are the hooks plugged into a client, sorted by the events they
// observe. The zero value (and nil) observes nothing.
type Hooks struct {
	trigger []ductworktype.TriggerHook
	step    []ductworktype.StepHook
	halt    []ductworktype.HaltHook
	revive  []ductworktype.ReviveHook
	claim   []ductworktype.ClaimHook
	reap    []ductworktype.ReapHook
	stuck   []ductworktype.StuckHook
}

// NewHooks sorts hooks by the interfaces they implement. It returns an
// error naming the position of a nil hook or of one that implements none.
func NewHooks(hooks []ductworktype.Hook) (*Hooks, error) {
	h := &Hooks{}
	for i, v := range hooks {
		any := false
		if x, ok := v.(ductworktype.TriggerHook); ok {
			h.trigger, any = append(h.trigger, x), true
		}
		if x, ok := v.(ductworktype.StepHook); ok {
			h.step, any = append(h.step, x), true
		}
		if x, ok := v.(ductworktype.HaltHook); ok {
			h.halt, any = append(h.halt, x), true
		}
		if x, ok := v.(ductworktype.ReviveHook); ok {
			h.revive, any = append(h.revive, x), true
		}
		if x, ok := v.(ductworktype.ClaimHook); ok {
			h.claim, any = append(h.claim, x), true
		}
		if x, ok := v.(ductworktype.ReapHook); ok {
			h.reap, any = append(h.reap, x), true
		}
		if x, ok := v.(ductworktype.StuckHook); ok {
			h.stuck, any = append(h.stuck, x), true
		}
		if !any {
			return nil, fmt.Errorf("hook %d (%T) implements none of the hook interfaces of package ductworktype", i, v)
		}
	}
	return h, nil
}

// Execution returns the hooks' view of a claimed job.
func Execution(job *backend.Job) *ductworktype.Execution {
	return &ductworktype.Execution{
		StepID: job.ID, RunID: job.RunID, Pipeline: job.Pipeline, Fingerprint: job.Fingerprint,
		Node: job.NodeID, Scope: job.Scope, Join: job.Join, Attempt: job.Attempt, Crashes: job.Crashes, Fence: job.Fence,
		Metadata: job.Metadata, DueAt: job.DueAt, ClaimedAt: job.ClaimedAt,
	}
}

// TriggerStart calls the trigger hooks, if any.
func (h *Hooks) TriggerStart(ctx context.Context, logger *slog.Logger, info *TriggerInfo) (context.Context, func(int64, error)) {
	if h == nil || len(h.trigger) == 0 {
		return ctx, func(int64, error) {}
	}
	ends := make([]func(int64, error), 0, len(h.trigger))
	hctx := ctx
	for _, t := range h.trigger {
		SafeCall(ctx, logger, "trigger hook", func() {
			c, f := t.TriggerStart(hctx, info)
			if c != nil {
				hctx = c
			}
			if f != nil {
				ends = append(ends, f)
			}
		})
	}
	return hctx, func(id int64, err error) {
		for i := len(ends) - 1; i >= 0; i-- {
			SafeCall(ctx, logger, "trigger hook end", func() { ends[i](id, err) })
		}
	}
}

// Hooks are observers: a hook that panics is logged (with its stack) and
// skipped, and the work it observed goes on as if it had returned. Logging
// needs a logger; hooks called without one only recover.

// SafeCall runs fn, user code, and logs a panic instead of letting it
// unwind through the caller. It reports whether fn returned normally.
func SafeCall(ctx context.Context, logger *slog.Logger, what string, fn func()) (ok bool) {
	defer func() {
		if r := recover(); r != nil {
			ok = false
			if logger != nil {
				logger.ErrorContext(ctx, "ductwork: "+what+" panicked; ignored", slog.Any("panic", r), slog.String("stack", string(debug.Stack())))
			}
		}
	}()
	fn()
	return true
}

func (h *Hooks) stepStart(ctx context.Context, jl *jobLogger) (context.Context, func(StepEnd)) {
	if h == nil || len(h.step) == 0 {
		return ctx, func(StepEnd) {}
	}
	exec := jl.execution()
	ends := make([]func(StepEnd), 0, len(h.step))
	hctx := ctx
	for _, s := range h.step {
		SafeCall(ctx, jl.get(), "step hook", func() {
			c, f := s.StepStart(hctx, exec)
			if c != nil {
				hctx = c
			}
			if f != nil {
				ends = append(ends, f)
			}
		})
	}
	return hctx, func(se StepEnd) {
		for i := len(ends) - 1; i >= 0; i-- {
			SafeCall(ctx, jl.get(), "step hook end", func() { ends[i](se) })
		}
	}
}

func (h *Hooks) runHalted(ctx context.Context, reason string, jl *jobLogger) {
	if h == nil {
		return
	}
	for _, x := range h.halt {
		SafeCall(ctx, jl.get(), "halt hook", func() { x.RunHalted(ctx, jl.execution(), reason) })
	}
}

// Revived calls the revive hooks, if any.
func (h *Hooks) Revived(ctx context.Context, logger *slog.Logger, runID int64, jobs int) {
	if h == nil {
		return
	}
	for _, x := range h.revive {
		SafeCall(ctx, logger, "revive hook", func() { x.RunRevived(ctx, runID, jobs) })
	}
}

// Claimed calls the claim hooks, if any.
func (h *Hooks) Claimed(ctx context.Context, logger *slog.Logger, processID string, jobs []*backend.Job) {
	if h == nil || len(h.claim) == 0 || len(jobs) == 0 {
		return
	}
	execs := make([]*ductworktype.Execution, len(jobs))
	for i, j := range jobs {
		execs[i] = Execution(j)
	}
	for _, x := range h.claim {
		SafeCall(ctx, logger, "claim hook", func() { x.Claimed(ctx, processID, execs) })
	}
}

// Reaped calls the reap hooks, if any.
func (h *Hooks) Reaped(ctx context.Context, logger *slog.Logger, processID string, res *backend.ReapResult) {
	if h == nil || len(h.reap) == 0 {
		return
	}
	r := &ductworktype.Reap{Processes: res.Processes, Steps: res.Jobs}
	for _, x := range h.reap {
		SafeCall(ctx, logger, "reap hook", func() { x.Reaped(ctx, processID, r) })
	}
}

// stepStuck calls the stuck hooks, if any, and returns the function to call
// when the abandoned step's goroutine returns at last.
func (h *Hooks) stepStuck(ctx context.Context, err error, jl *jobLogger) func() {
	if h == nil || len(h.stuck) == 0 {
		return func() {}
	}
	var returned []func()
	for _, x := range h.stuck {
		SafeCall(ctx, jl.get(), "stuck hook", func() {
			if f := x.StepStuck(ctx, jl.execution(), err); f != nil {
				returned = append(returned, f)
			}
		})
	}
	return func() {
		for i := len(returned) - 1; i >= 0; i-- {
			SafeCall(context.WithoutCancel(ctx), jl.get(), "stuck hook end", returned[i])
		}
	}
}
