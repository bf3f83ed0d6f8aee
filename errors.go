package ductwork

import (
	"errors"
	"fmt"
	"strings"

	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/ductworktype"
	"github.com/ductwork-go/ductwork/flow"
	"github.com/ductwork-go/ductwork/step"
)

// Sentinel errors, re-exported from package backend so callers need only this
// package. Use errors.Is.
var (
	ErrStaleClaim      = backend.ErrStaleClaim
	ErrRunNotFound     = backend.ErrRunNotFound
	ErrRunState        = backend.ErrRunState
	ErrValueExists     = backend.ErrValueExists
	ErrUnsupportedTx   = backend.ErrUnsupportedTx
	ErrClosed          = backend.ErrClosed
	ErrProcessNotFound = backend.ErrProcessNotFound
	// ErrDefinitionNotFound: no stored shape for a definition version.
	ErrDefinitionNotFound = backend.ErrDefinitionNotFound
	// ErrNotMigrated: the backend's tables do not exist; run its Migrate.
	// Every backend returns it (wrapped) from every operation then.
	ErrNotMigrated = backend.ErrNotMigrated
	// ErrKeyConflict: WithKey named a run of the pipeline that was started
	// with another input; nothing was written.
	ErrKeyConflict = backend.ErrKeyConflict
	// ErrCancelled is returned by Run.Wait for a cancelled run. It is also
	// the context.Cause of a step's context when its run is cancelled while
	// the step runs.
	ErrCancelled = ductworktype.ErrCancelled
)

// ArgumentError reports a nil or invalid argument to a call of this package
// (a nil client, definition or run handle, ...). Nothing was written.
type ArgumentError struct {
	// Func is the function or method called, Arg the argument at fault.
	Func, Arg string
	// Reason says what is wrong with it.
	Reason string
}

func (e *ArgumentError) Error() string {
	return fmt.Sprintf("ductwork: %s: %s %s", e.Func, e.Arg, e.Reason)
}

// KeyError reports a run context key that step.Context.Set refuses (empty,
// or longer than step.MaxKeyLen bytes).
type KeyError = step.KeyError

// DefinitionError reports a pipeline definition that breaks a rule; see
// package flow.
type DefinitionError = flow.DefinitionError

// PanicError is recorded when a step panics; see package step.
type PanicError = step.PanicError

// TimeoutError is the failure of an execution that outlived its timeout;
// see package step. A run it halts has cause HaltTimeout.
type TimeoutError = step.TimeoutError

// FanOutError halts a run whose Expand exceeds the pipeline's max fan-out.
type FanOutError = ductworktype.FanOutError

// EncodeError reports a value the pipeline's codec cannot encode: a trigger
// input (returned by Trigger, nothing is written) or a step output (the run
// halts with it as the reason; nothing of the output is written).
type EncodeError = ductworktype.EncodeError

// PayloadTooLargeError reports an encoded input or output above
// Config.MaxPayloadBytes.
type PayloadTooLargeError = ductworktype.PayloadTooLargeError

// CrashBudgetError halts a run whose step instance kept killing its process
// (see step.MaxCrashes and flow.MaxCrashes).
type CrashBudgetError = ductworktype.CrashBudgetError

// DecodeError reports a stored step input the pipeline's codec cannot
// decode.
type DecodeError = ductworktype.DecodeError

// HaltCause says why a run halted; see the Halt* constants.
type HaltCause = backend.HaltCause

// Halt causes, re-exported from package backend.
const (
	HaltRetriesExhausted = backend.HaltRetriesExhausted
	HaltPanic            = backend.HaltPanic
	HaltPermanent        = backend.HaltPermanent
	HaltCrashBudget      = backend.HaltCrashBudget
	HaltFanOut           = backend.HaltFanOut
	HaltCancelled        = backend.HaltCancelled
	HaltTimeout          = backend.HaltTimeout
	HaltEncode           = backend.HaltEncode
	HaltDecode           = backend.HaltDecode
	HaltTooLarge         = backend.HaltTooLarge
	HaltBackend          = backend.HaltBackend
	HaltDefinition       = backend.HaltDefinition
)

// HaltedError is returned by Run.Wait for a halted run. It describes the
// failure that halted it, as stored with the run.
type HaltedError struct {
	RunID int64
	// Node and Scope name the step instance whose failure halted the run.
	Node  string
	Scope string
	// Cause says why (a panic, a permanent error, retries exhausted, the
	// crash budget, ...).
	Cause HaltCause
	// Attempt is the attempt number of the failed execution.
	Attempt int
	// Reason is the stored reason: the error's message, without stack.
	Reason string
	// Stack is the goroutine stack of a panic; empty otherwise.
	Stack string
	// Err is the failure. When this process halted the run it is the error
	// the step returned (or the *PanicError, the *CrashBudgetError, ...), so
	// errors.Is and errors.As reach the step's own errors. Otherwise it is
	// rebuilt from the stored record: a *PanicError for a panic (its Value
	// is the panic's text), an error marked with step.Permanent for a
	// permanent error, a plain error with the reason for the rest.
	Err error
}

func (e *HaltedError) Error() string {
	if e.Node == "" {
		return fmt.Sprintf("ductwork: run %d halted: %s", e.RunID, e.Reason)
	}
	where := fmt.Sprintf("step %q", e.Node)
	if e.Scope != "" {
		where += fmt.Sprintf(" (scope %q)", e.Scope)
	}
	return fmt.Sprintf("ductwork: run %d halted at %s, attempt %d (%s): %s", e.RunID, where, e.Attempt, e.Cause, e.Reason)
}

// Unwrap returns Err.
func (e *HaltedError) Unwrap() error { return e.Err }

// haltedError builds the *HaltedError of a halted run.
func (c *Client) haltedError(run *backend.Run) *HaltedError {
	he := &HaltedError{
		RunID: run.ID, Node: run.HaltNode, Scope: run.HaltScope, Cause: run.HaltCause,
		Attempt: run.HaltAttempt, Reason: run.Error, Stack: run.HaltStack,
	}
	he.Err = c.eng.HaltErr(run)
	if he.Err == nil {
		switch run.HaltCause {
		case HaltPanic:
			he.Err = &step.PanicError{Value: strings.TrimPrefix(run.Error, "step panicked: "), Stack: run.HaltStack}
		case HaltPermanent:
			he.Err = step.Permanent(errors.New(run.Error))
		case HaltTimeout:
			he.Err = &step.TimeoutError{Step: run.HaltNode, Err: errors.New(run.Error)}
		default:
			he.Err = errors.New(run.Error)
		}
	}
	return he
}

// LimitError reports a definition the backend cannot store: a name longer
// than its schema holds. Register returns it before any run exists.
type LimitError struct {
	// Backend names the backend (backend.Capabilities.Name).
	Backend string
	// Limit names the field of backend.Limits, such as "MaxNodeIDBytes".
	Limit    string
	Pipeline string
	// Node is the step name over the limit; empty for the pipeline name.
	Node string
	Len  int
	Max  int
}

func (e *LimitError) Error() string {
	what := fmt.Sprintf("pipeline name %q", e.Pipeline)
	if e.Node != "" {
		what = fmt.Sprintf("step name %q of pipeline %q", truncate(e.Node, 64), e.Pipeline)
	}
	return fmt.Sprintf("ductwork: %s is %d bytes; backend %s stores at most %d (%s)", what, e.Len, e.Backend, e.Max, e.Limit)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "..."
}

// UnknownDefinitionError reports a run whose pipeline, or whose version of
// it (fingerprint), this process does not know.
type UnknownDefinitionError struct {
	RunID       int64
	Pipeline    string
	Fingerprint string
	// Expected is the definition the caller asked for, if any.
	Expected backend.DefinitionRef
}

func (e *UnknownDefinitionError) Error() string {
	if e.Expected.Pipeline != "" && e.Expected.Pipeline != e.Pipeline {
		return fmt.Sprintf("ductwork: run %d belongs to pipeline %q, not %q", e.RunID, e.Pipeline, e.Expected.Pipeline)
	}
	return fmt.Sprintf("ductwork: run %d was started with definition %s@%s, which this process has not registered", e.RunID, e.Pipeline, e.Fingerprint)
}

// TxKindError is returned by Client.Register for a definition with a
// transactional step (postgres.TxStep, mysql.TxStep, sqlite.TxStep) made for a
// backend of another kind than the client's. Nothing is registered.
type TxKindError struct {
	Pipeline string
	Node     string
	// StepKind is the kind the step needs; BackendKind the kind the backend
	// runs (empty: it runs no transactional steps).
	StepKind    string
	Backend     string
	BackendKind string
}

func (e *TxKindError) Error() string {
	have := e.BackendKind
	if have == "" {
		have = "none"
	}
	return fmt.Sprintf("ductwork: pipeline %q: step %q is a transactional step for %s, but backend %s runs transactional steps of kind %s",
		e.Pipeline, e.Node, e.StepKind, e.Backend, have)
}
