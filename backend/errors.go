package backend

import "errors"

// PermanentError marks a backend error that retrying cannot fix: the
// database refused the data itself (a constraint violation, a value too long
// for its column, bytes the column cannot hold, a statement it cannot parse).
// Callers stop retrying the operation; the engine halts the run with it.
// Each backend wraps such errors in one place (its error mapping function).
type PermanentError struct{ Err error }

// Error implements error.
func (e *PermanentError) Error() string { return e.Err.Error() }

// Unwrap returns the wrapped error.
func (e *PermanentError) Unwrap() error { return e.Err }

// TransientError marks a backend error that may succeed when the operation
// is retried: a lost connection, a deadlock, a serialization failure, a lock
// wait timeout, too many connections, a statement cancelled by a timeout.
type TransientError struct{ Err error }

// Error implements error.
func (e *TransientError) Error() string { return e.Err.Error() }

// Unwrap returns the wrapped error.
func (e *TransientError) Unwrap() error { return e.Err }

// Permanent wraps err in a *PermanentError. A nil error, or one already
// classified either way, is returned unchanged.
func Permanent(err error) error {
	if err == nil || IsPermanent(err) || IsTransient(err) {
		return err
	}
	return &PermanentError{Err: err}
}

// Transient wraps err in a *TransientError. A nil error, or one already
// classified either way, is returned unchanged.
func Transient(err error) error {
	if err == nil || IsPermanent(err) || IsTransient(err) {
		return err
	}
	return &TransientError{Err: err}
}

// IsPermanent reports whether err's chain holds a *PermanentError.
func IsPermanent(err error) bool {
	var p *PermanentError
	return errors.As(err, &p)
}

// IsTransient reports whether err's chain holds a *TransientError.
// An error that is neither transient nor permanent was not classified by
// its backend; callers treat it as transient (an unknown failure is more
// likely the database being away than the data being wrong), so only
// IsPermanent stops a retry.
func IsTransient(err error) bool {
	var t *TransientError
	return errors.As(err, &t)
}

// HaltCause says why a run halted. It is stored with the halted run
// (Run.HaltCause) as its string value.
type HaltCause string

// Halt causes.
const (
	// HaltRetriesExhausted: the step returned errors until its retry budget
	// was spent.
	HaltRetriesExhausted HaltCause = "retries_exhausted"
	// HaltPanic: user code (the step, a divert key, a codec, an expand
	// helper) panicked on every attempt of the retry budget.
	HaltPanic HaltCause = "panic"
	// HaltPermanent: the step returned an error marked with step.Permanent.
	HaltPermanent HaltCause = "permanent"
	// HaltCrashBudget: the step instance's executions killed their process
	// more times than its crash budget allows.
	HaltCrashBudget HaltCause = "crash_budget"
	// HaltFanOut: an expansion exceeded the pipeline's maximum fan-out.
	HaltFanOut HaltCause = "fan_out"
	// HaltCancelled: the step failed with context.Canceled on its last
	// attempt.
	HaltCancelled HaltCause = "cancelled"
	// HaltTimeout: the step exceeded its timeout on its last attempt.
	HaltTimeout HaltCause = "timeout"
	// HaltEncode: the step's output could not be encoded.
	HaltEncode HaltCause = "encode"
	// HaltDecode: the step's stored input could not be decoded.
	HaltDecode HaltCause = "decode"
	// HaltTooLarge: the step's encoded output was above the payload cap.
	HaltTooLarge HaltCause = "too_large"
	// HaltBackend: the database refused the step's commit with a permanent
	// error (see PermanentError).
	HaltBackend HaltCause = "backend"
	// HaltDefinition: the stored run does not fit the registered definition
	// (a node it names is missing).
	HaltDefinition HaltCause = "definition"
)

// Limits are the largest values a backend's schema stores, in bytes. A zero
// field means no limit. Clients check a definition against them when it is
// registered, so an over-long name is refused before any run exists.
type Limits struct {
	// MaxPipelineBytes bounds a pipeline name.
	MaxPipelineBytes int
	// MaxNodeIDBytes bounds a node ID (a step name).
	MaxNodeIDBytes int
	// MaxScopeBytes bounds a job's scope (its expansion path, which grows
	// with nested expansions).
	MaxScopeBytes int
	// MaxKeyBytes bounds a run context key.
	MaxKeyBytes int
	// MaxProcessIDBytes bounds a process ID.
	MaxProcessIDBytes int
	// MaxPayloadBytes bounds an encoded input or output.
	MaxPayloadBytes int
}
