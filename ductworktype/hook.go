package ductworktype

import (
	"context"
	"time"
)

// Hook is a value that implements one or more of the hook interfaces of this
// package: TriggerHook, StepHook, HaltHook, ReviveHook, ClaimHook, ReapHook,
// StuckHook.
// A client takes a list of hooks (ductwork.Config.Hooks); each event calls,
// in list order, the hooks that implement its interface, so several
// observers (tracing, metrics, a test's recorder) compose without knowing of
// each other. A value implementing none of them is refused by
// ductwork.NewClient.
//
// Hooks observe; they cannot change the work. A hook that panics is logged
// with its stack and skipped, and the work goes on as if it had returned.
// Hooks run on the goroutine doing the work, so a slow hook slows it.
type Hook any

// TriggerHook is called around every trigger. TriggerStart returns the
// context the trigger continues with (nil keeps ctx) and a function called
// once with the new run's ID (0 on error) and the trigger's error. With
// several trigger hooks, each receives the context the previous returned, and
// the end functions are called in reverse order.
type TriggerHook interface {
	TriggerStart(ctx context.Context, info *TriggerInfo) (context.Context, func(runID int64, err error))
}

// TriggerInfo describes a run being triggered. A TriggerHook may add entries
// to Metadata: they are stored with the run and handed back with each of its
// step executions (Execution.Metadata), which is how a trace context travels
// between processes.
type TriggerInfo struct {
	Pipeline    string
	Fingerprint string
	Metadata    map[string]string
}

// StepHook is called around every step execution. StepStart returns the
// context the step runs with (nil keeps ctx) and a function called once with
// the outcome. With several step hooks, each receives the context the
// previous returned, and the end functions are called in reverse order.
type StepHook interface {
	StepStart(ctx context.Context, exec *Execution) (context.Context, func(StepEnd))
}

// HaltHook is called after a run halts: once, in the process whose commit
// halted it. exec is the execution that failed; for a halt inside a step
// execution it is the same pointer StepStart received.
type HaltHook interface {
	RunHalted(ctx context.Context, exec *Execution, reason string)
}

// ReviveHook is called after a run was revived, with the number of failed
// steps made due again.
type ReviveHook interface {
	RunRevived(ctx context.Context, runID int64, steps int)
}

// ClaimHook is called after a supervisor claimed step executions (never for
// an empty claim).
type ClaimHook interface {
	Claimed(ctx context.Context, processID string, execs []*Execution)
}

// ReapHook is called after a supervisor's reaper recovered the work of dead
// processes.
type ReapHook interface {
	Reaped(ctx context.Context, processID string, reap *Reap)
}

// StuckHook is told when a step is abandoned: its context was cancelled
// (its timeout expired, its run was cancelled, shutdown's grace ran out) and
// it had not returned after the grace that follows. The execution has failed
// (or been released) without it; its goroutine runs on. StepStuck returns a
// function called when that goroutine returns at last (never, if it never
// does, or if its process is recycled first). err is the execution's
// failure: a *step.TimeoutError with Abandoned set, or an error naming the
// cancellation.
type StuckHook interface {
	StepStuck(ctx context.Context, exec *Execution, err error) (returned func())
}

// Execution is one claimed execution of a step instance, as hooks see it.
type Execution struct {
	// StepID identifies the step instance (ductwork.StepInfo.ID); RunID its
	// run.
	StepID int64
	RunID  int64
	// Pipeline and Fingerprint name the run's definition version.
	Pipeline    string
	Fingerprint string
	// Node is the step's name; Scope its expansion path ("" at the top
	// level, "3" in the fourth element of an expand, "3.0" one level
	// deeper).
	Node  string
	Scope string
	// Join is true for the step that gathers a collapse or a combine.
	Join bool
	// Attempt is 1 for the first execution and grows with each retry;
	// Crashes counts the executions of this step instance lost with their
	// process (a crash re-run when > 0).
	Attempt int
	Crashes int
	// Fence is the claim's fencing token: every claim of a step instance
	// draws a new one, and only the holder of the current one can commit,
	// so two executions of one instance (a zombie and its re-run) differ.
	Fence int64
	// Metadata is the run's metadata (see TriggerInfo).
	Metadata map[string]string
	// DueAt is when the step became due and ClaimedAt when this execution
	// claimed it, both by the database's clock (zero when unknown).
	DueAt     time.Time
	ClaimedAt time.Time
}

// StepEnd describes how a step execution ended.
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

// Reap is what a reaper recovered.
type Reap struct {
	// Processes are the IDs of the dead processes reaped.
	Processes []string
	// Steps counts their running steps made due again.
	Steps int
}
