package engine

import (
	"context"
	"log/slog"
	"runtime/debug"

	"github.com/ductwork-go/ductwork/backend"
)

// StepEnd describes how a step execution ended, for hooks.
type StepEnd struct {
	// Err is the step's error (or the commit's), nil on success.
	Err error
	// Retried: the failure was scheduled for another attempt.
	Retried bool
	// Halted: the failure halted the run.
	Halted bool
	// Released: shutdown interrupted the step and its claim was given back.
	Released bool
	// Stale: the claim had been lost; nothing was committed.
	Stale bool
	// Cancelled: the run was cancelled while the step executed; its context
	// was cancelled and nothing was committed.
	Cancelled bool
	// RunCompleted: the step's commit completed the run.
	RunCompleted bool
}

// TriggerInfo describes a run being triggered. A TriggerTracer may add
// entries to Metadata; they are stored with the run and handed back with
// each of its jobs (backend.Job.Metadata), which is how a trace context
// travels between processes.
type TriggerInfo struct {
	Pipeline    string
	Fingerprint string
	Metadata    map[string]string
}

// TriggerTracer is called around Trigger. The returned function receives the
// new run's ID (0 on error) and the error.
type TriggerTracer interface {
	TriggerStart(ctx context.Context, info *TriggerInfo) (context.Context, func(runID int64, err error))
}

// StepTracer is called around every step execution. StepStart returns the
// context the step runs with and a function called once with the outcome.
type StepTracer interface {
	StepStart(ctx context.Context, job *backend.Job) (context.Context, func(StepEnd))
}

// HaltTracer is called after a run halts (once, in the process that halted it).
type HaltTracer interface {
	RunHalted(ctx context.Context, job *backend.Job, reason string)
}

// ReviveTracer is called after a run was revived.
type ReviveTracer interface {
	RunRevived(ctx context.Context, runID int64, jobs int)
}

// ClaimTracer is called after a supervisor claimed jobs (not for empty claims).
type ClaimTracer interface {
	Claimed(ctx context.Context, processID string, jobs []*backend.Job)
}

// ReapTracer is called after a supervisor reaped dead processes.
type ReapTracer interface {
	Reaped(ctx context.Context, processID string, res *backend.ReapResult)
}

// StuckTracer is told when a step is abandoned: its context was cancelled
// (its timeout expired, its run was cancelled, shutdown's grace ran out) and
// it had not returned after the grace that follows. The execution has failed
// (or been released) without it; its goroutine runs on. StepStuck returns a
// function called when that goroutine returns at last (never, if it never
// does, or if its process is recycled first). err is the execution's
// failure: a *step.TimeoutError with Abandoned set, or an error naming the
// cancellation.
type StuckTracer interface {
	StepStuck(ctx context.Context, job *backend.Job, err error) (returned func())
}

// Hooks are the observers plugged into a client. Nil fields are skipped.
// Package otel provides an implementation of all of them.
type Hooks struct {
	Trigger TriggerTracer
	Step    StepTracer
	Halt    HaltTracer
	Revive  ReviveTracer
	Claim   ClaimTracer
	Reap    ReapTracer
	Stuck   StuckTracer
}

// TriggerStart calls the trigger hook, if any.
func (h *Hooks) TriggerStart(ctx context.Context, logger *slog.Logger, info *TriggerInfo) (context.Context, func(int64, error)) {
	if h == nil || h.Trigger == nil {
		return ctx, func(int64, error) {}
	}
	hctx, end := ctx, func(int64, error) {}
	SafeCall(ctx, logger, "trigger hook", func() {
		c, f := h.Trigger.TriggerStart(ctx, info)
		if c != nil {
			hctx = c
		}
		if f != nil {
			end = f
		}
	})
	return hctx, func(id int64, err error) { SafeCall(ctx, logger, "trigger hook end", func() { end(id, err) }) }
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

func (h *Hooks) stepStart(ctx context.Context, job *backend.Job, jl *jobLogger) (context.Context, func(StepEnd)) {
	if h == nil || h.Step == nil {
		return ctx, func(StepEnd) {}
	}
	hctx, end := ctx, func(StepEnd) {}
	SafeCall(ctx, jl.get(), "step hook", func() {
		c, f := h.Step.StepStart(ctx, job)
		if c != nil {
			hctx = c
		}
		if f != nil {
			end = f
		}
	})
	return hctx, func(se StepEnd) { SafeCall(ctx, jl.get(), "step hook end", func() { end(se) }) }
}

func (h *Hooks) halt(ctx context.Context, job *backend.Job, reason string, jl *jobLogger) {
	if h != nil && h.Halt != nil {
		SafeCall(ctx, jl.get(), "halt hook", func() { h.Halt.RunHalted(ctx, job, reason) })
	}
}

// Revived calls the revive hook, if any.
func (h *Hooks) Revived(ctx context.Context, logger *slog.Logger, runID int64, jobs int) {
	if h != nil && h.Revive != nil {
		SafeCall(ctx, logger, "revive hook", func() { h.Revive.RunRevived(ctx, runID, jobs) })
	}
}

// Claimed calls the claim hook, if any.
func (h *Hooks) Claimed(ctx context.Context, logger *slog.Logger, processID string, jobs []*backend.Job) {
	if h != nil && h.Claim != nil && len(jobs) > 0 {
		SafeCall(ctx, logger, "claim hook", func() { h.Claim.Claimed(ctx, processID, jobs) })
	}
}

// Reaped calls the reap hook, if any.
func (h *Hooks) Reaped(ctx context.Context, logger *slog.Logger, processID string, res *backend.ReapResult) {
	if h != nil && h.Reap != nil {
		SafeCall(ctx, logger, "reap hook", func() { h.Reap.Reaped(ctx, processID, res) })
	}
}

func (h *Hooks) stepStuck(ctx context.Context, job *backend.Job, err error, jl *jobLogger) func() {
	if h == nil || h.Stuck == nil {
		return func() {}
	}
	returned := func() {}
	SafeCall(ctx, jl.get(), "stuck hook", func() {
		if f := h.Stuck.StepStuck(ctx, job, err); f != nil {
			returned = f
		}
	})
	return func() { SafeCall(context.WithoutCancel(ctx), jl.get(), "stuck hook end", returned) }
}
