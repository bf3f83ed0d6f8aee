package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/step"
)

// DefaultStuckGrace is how long a step may take to return once its context
// is cancelled (its timeout expired, its run was cancelled, shutdown's grace
// ran out) before it is abandoned, when no grace is configured.
const DefaultStuckGrace = 2 * time.Second

// AbandonedError is the failure of an execution whose step did not return
// within the grace after its context was cancelled by something other than
// its timeout (a shutdown, a cancelled run). Its goroutine was left running.
// A step abandoned at its timeout fails with a *step.TimeoutError instead.
type AbandonedError struct {
	Step  string
	Cause error
}

func (e *AbandonedError) Error() string {
	return fmt.Sprintf("step %q did not return after its context was cancelled (%v); abandoned", e.Step, e.Cause)
}

// Unwrap returns the cause of the cancellation.
func (e *AbandonedError) Unwrap() error { return e.Cause }

// Stuck returns how many step goroutines this engine abandoned that have not
// returned yet.
func (e *Engine) Stuck() int { return int(e.stuck.Load()) }

// watch runs call, the step, on a goroutine of its own and waits for it.
// When ctx ends and call has not returned within grace, watch stops
// waiting: the execution fails (with a *step.TimeoutError when ctx's cause
// is the step's timeout, an *AbandonedError otherwise) and the worker slot
// is free again. The goroutine is left behind, counted by Stuck and
// reported to the StuckTracer and to onAbandon, until it returns.
func (e *Engine) watch(ctx context.Context, grace time.Duration, job *backend.Job, logger *jobLogger,
	onAbandon func(*backend.Job, error), call func() (any, error)) (any, error) {
	type result struct {
		out any
		err error
	}
	done := make(chan result, 1)
	go func() {
		out, err := call()
		done <- result{out, err}
	}()
	select {
	case r := <-done:
		return r.out, r.err
	case <-ctx.Done():
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case r := <-done:
		return r.out, r.err
	case <-t.C:
	}
	cause := context.Cause(ctx)
	var err error
	if te := (*step.TimeoutError)(nil); errors.As(cause, &te) {
		err = &step.TimeoutError{Step: te.Step, Timeout: te.Timeout, Abandoned: true}
	} else {
		err = &AbandonedError{Step: job.NodeID, Cause: cause}
	}
	e.stuck.Add(1)
	logger.get().ErrorContext(ctx, "ductwork: step ignored the cancellation of its context; abandoning its goroutine",
		slog.Any("error", err), slog.Duration("grace", grace))
	returned := e.Hooks.stepStuck(ctx, err, logger)
	if onAbandon != nil {
		SafeCall(ctx, logger.get(), "abandon callback", func() { onAbandon(job, err) })
	}
	go func() {
		<-done
		e.stuck.Add(-1)
		logger.get().WarnContext(context.WithoutCancel(ctx), "ductwork: an abandoned step returned at last")
		returned()
	}()
	return nil, err
}

// timeoutErr wraps err, returned by a step after its context's timeout
// expired, in a *step.TimeoutError (unless it is one already or a panic).
func timeoutErr(ctx context.Context, err error) error {
	var te *step.TimeoutError
	if err == nil || ctx.Err() == nil || errors.As(err, &te) || isPanic(err) {
		return err
	}
	if errors.As(context.Cause(ctx), &te) {
		return &step.TimeoutError{Step: te.Step, Timeout: te.Timeout, Err: err}
	}
	return err
}
