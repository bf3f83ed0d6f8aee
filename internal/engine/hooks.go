package engine

import (
	"context"

	"github.com/ductwork-go/ductwork/backend"
)

// StepEnd describes how a step execution ended, for hooks.
type StepEnd struct {
	Err      error
	Retried  bool
	Halted   bool
	Released bool
	Stale    bool
}

// StepTracer is called around every step execution. Start returns the
// context the step runs with.
type StepTracer interface {
	StepStart(ctx context.Context, job *backend.Job) (context.Context, func(StepEnd))
}

// HaltTracer is called after a run halts (once, in the process that halted it).
type HaltTracer interface {
	RunHalted(ctx context.Context, job *backend.Job, reason string)
}

// Hooks are the observers plugged into an Engine. Nil fields are skipped.
type Hooks struct {
	Step StepTracer
	Halt HaltTracer
}

func (h *Hooks) stepStart(ctx context.Context, job *backend.Job) (context.Context, func(StepEnd)) {
	if h == nil || h.Step == nil {
		return ctx, func(StepEnd) {}
	}
	return h.Step.StepStart(ctx, job)
}

func (h *Hooks) halt(ctx context.Context, job *backend.Job, reason string) {
	if h != nil && h.Halt != nil {
		h.Halt.RunHalted(ctx, job, reason)
	}
}
