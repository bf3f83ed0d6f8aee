package backend

import (
	"fmt"
	"time"
)

// Wait kinds of a job (NewJob.Wait): a job that waits holds no claim and no
// worker until the database's clock, or a signal, makes it due. While every
// outstanding job of a run waits, the run's status is RunWaiting.
const (
	// WaitSleep: a durable sleep; the job is due at its due time.
	WaitSleep = "sleep"
	// WaitSignal: an await; the job is due when a signal is delivered to it
	// (SendSignal, DeliverSignals), or at its due time (the await's
	// timeout), whichever comes first by the database's clock.
	WaitSignal = "signal"
)

// Forever is the delay of an await without a timeout: its job is due only
// when a signal is delivered to it.
const Forever = 100 * 365 * 24 * time.Hour

// Signal targets (SignalTarget.Kind).
const (
	// TargetAny: the signal is consumed by one await of its name in the run,
	// whatever its scope or key (the first waiting, else the first to
	// arrive).
	TargetAny = 0
	// TargetScope: only an await at the scope SignalTarget.Value consumes it.
	TargetScope = 1
	// TargetKey: only an await whose key (NewJob.SignalKey) is
	// SignalTarget.Value consumes it.
	TargetKey = 2
	// TargetAll: the signal is delivered to every await of its name in the
	// run, waiting now or arriving later, once each; it is never consumed.
	TargetAll = 3
)

// ErrRunFinished: the run is completed or cancelled, so nothing in it can
// receive a signal any more. It matches ErrRunState too.
var ErrRunFinished = fmt.Errorf("%w: it already finished (completed or cancelled)", ErrRunState)

// SignalTarget says which awaits of a run a signal is for.
type SignalTarget struct {
	// Kind is TargetAny, TargetScope, TargetKey or TargetAll.
	Kind int
	// Value is the scope (TargetScope) or the key (TargetKey).
	Value string
}

// SendSignalParams are the arguments of Backend.SendSignal.
type SendSignalParams struct {
	RunID int64
	// Name is the signal's name (flow.Signal).
	Name string
	// Payload is the encoded payload, handed as is to the await that
	// consumes it.
	Payload []byte
	Target  SignalTarget
	// Tx, if non-nil, is a transaction of the backend's own type that the
	// signal joins (as TriggerParams.Tx): it is stored and delivered if and
	// when the caller commits.
	Tx any
}

// SendSignalResult is the result of Backend.SendSignal.
type SendSignalResult struct {
	// SignalID identifies the stored signal.
	SignalID int64
	// Delivered counts the waiting awaits that received it at once (0 when
	// it is kept for an await that has not been reached yet).
	Delivered int
}

// ReceiveSignalParams are the arguments of Backend.ReceiveSignal: a claimed
// await job, presented with its claim.
type ReceiveSignalParams struct {
	JobID     int64
	ProcessID string
	Fence     int64
}

// ReceiveSignalResult is the result of Backend.ReceiveSignal.
type ReceiveSignalResult struct {
	// Delivered is false when the await timed out: its job became due at its
	// deadline with no signal delivered.
	Delivered bool
	SignalID  int64
	Payload   []byte
}

// DeliverSignalsParams are the arguments of Backend.DeliverSignals.
type DeliverSignalsParams struct {
	// RunID limits the delivery to one run; 0 means every run.
	RunID int64
	// Limit caps the deliveries made by one call (default 100).
	Limit int
}

// DeliverSignalsResult is the result of Backend.DeliverSignals.
type DeliverSignalsResult struct {
	// Delivered counts the awaits that received a signal.
	Delivered int
}
