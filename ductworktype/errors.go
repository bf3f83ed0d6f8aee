package ductworktype

import (
	"errors"
	"fmt"
)

// ErrCancelled is returned by ductwork.Run.Wait for a cancelled run. It is
// also the context.Cause of a step's context when its run is cancelled while
// the step runs.
var ErrCancelled = errors.New("ductwork: run cancelled")

// FanOutError halts a run whose Expand produced more elements than the
// pipeline's maximum fan-out (flow.MaxFanOut).
type FanOutError struct {
	// Node is the expanded step, Count the elements, Max the limit.
	Node  string
	Count int
	Max   int
}

func (e *FanOutError) Error() string {
	return fmt.Sprintf("expand into %q: %d elements exceed the pipeline's max fan-out of %d", e.Node, e.Count, e.Max)
}

// PayloadTooLargeError reports an encoded trigger input or step output above
// the client's cap (ductwork.Config.MaxPayloadBytes).
type PayloadTooLargeError struct {
	// Node is the step whose input (at trigger) or output it is.
	Node string
	// Size is the encoded size, Max the cap, in bytes.
	Size int
	Max  int
}

func (e *PayloadTooLargeError) Error() string {
	return fmt.Sprintf("payload of %q is %d bytes, above the limit of %d", e.Node, e.Size, e.Max)
}

// DecodeError is returned when a step's stored input cannot be decoded by
// the codec.
type DecodeError struct {
	// Node is the step whose input it is; Err is the codec's error.
	Node string
	Err  error
}

func (e *DecodeError) Error() string { return fmt.Sprintf("decode input of %q: %v", e.Node, e.Err) }
func (e *DecodeError) Unwrap() error { return e.Err }

// CrashBudgetError halts a step instance whose executions were lost to dead
// processes more often than its crash budget allows.
type CrashBudgetError struct {
	// Node and Scope name the step instance; Crashes counts its executions
	// lost to dead processes, Max is its budget.
	Node    string
	Scope   string
	Crashes int
	Max     int
}

func (e *CrashBudgetError) Error() string {
	return fmt.Sprintf("step %q (scope %q) was claimed again after %d crash re-runs; its crash budget is %d: its executions keep killing their process (os.Exit, a fatal runtime error, a cgo fault, out of memory)",
		e.Node, e.Scope, e.Crashes, e.Max)
}

// EncodeError is returned when a value cannot be encoded by the codec.
type EncodeError struct {
	// Node is the step whose value it is; Err is the codec's error.
	Node string
	Err  error
}

func (e *EncodeError) Error() string { return fmt.Sprintf("encode output of %q: %v", e.Node, e.Err) }
func (e *EncodeError) Unwrap() error { return e.Err }
