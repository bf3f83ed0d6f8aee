package ductwork

import (
	"errors"
	"fmt"

	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/flow"
	"github.com/ductwork-go/ductwork/internal/graph"
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
	// ErrCancelled is returned by Run.Wait for a cancelled run.
	ErrCancelled = errors.New("ductwork: run cancelled")
)

// DefinitionError reports a pipeline definition that breaks a rule; see
// package flow.
type DefinitionError = flow.DefinitionError

// PanicError is recorded when a step panics; see package step.
type PanicError = step.PanicError

// FanOutError halts a run whose Expand exceeds the pipeline's max fan-out.
type FanOutError = graph.FanOutError

// EncodeError reports a value the pipeline's codec cannot encode: a trigger
// input (returned by Trigger, nothing is written) or a step output (the run
// halts with it as the reason; nothing of the output is written).
type EncodeError = graph.EncodeError

// PayloadTooLargeError reports an encoded input or output above
// Config.MaxPayloadBytes.
type PayloadTooLargeError = graph.PayloadTooLargeError

// HaltedError is returned by Run.Wait for a halted run.
type HaltedError struct {
	RunID  int64
	Reason string
}

func (e *HaltedError) Error() string {
	return fmt.Sprintf("ductwork: run %d halted: %s", e.RunID, e.Reason)
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
