package ductworktype

// RunStatus is the state of a run.
//
// A run is running while it has work that is due or executing, waiting while
// all of its remaining work waits on something outside it (a signal, a
// sleep, a limit), and ends completed, halted or cancelled. A halted run
// changes again only when it is revived (back to running) or cancelled.
type RunStatus string

// Run statuses.
const (
	RunRunning RunStatus = "running"
	// RunWaiting: the run holds no claim and no worker; a signal, a sleep
	// or a limit will make its work due again.
	RunWaiting   RunStatus = "waiting"
	RunCompleted RunStatus = "completed"
	RunHalted    RunStatus = "halted"
	RunCancelled RunStatus = "cancelled"
)

// RunStatuses lists every run status, in lifecycle order.
func RunStatuses() []RunStatus {
	return []RunStatus{RunRunning, RunWaiting, RunCompleted, RunHalted, RunCancelled}
}

// Valid reports whether s is one of the run statuses.
func (s RunStatus) Valid() bool {
	switch s {
	case RunRunning, RunWaiting, RunCompleted, RunHalted, RunCancelled:
		return true
	}
	return false
}

// Terminal reports whether a run in status s has stopped progressing on its
// own: true for RunCompleted, RunCancelled and RunHalted (a halted run stays
// halted unless it is revived), false for RunRunning and RunWaiting (and for
// any other value).
func (s RunStatus) Terminal() bool {
	return s == RunCompleted || s == RunCancelled || s == RunHalted
}

// StepStatus is the state of one step instance of a run.
type StepStatus string

// Step statuses.
const (
	// StepPending: the step is due, or will be after its delay or backoff.
	StepPending StepStatus = "pending"
	// StepRunning: a supervisor claimed the step and executes it.
	StepRunning StepStatus = "running"
	// StepWaiting: the step waits on something outside the run (a signal,
	// a sleep, a limit) and holds no claim.
	StepWaiting   StepStatus = "waiting"
	StepCompleted StepStatus = "completed"
	// StepFailed: the step spent its retry budget (or failed for good) and
	// halted its run; a revive makes it pending again.
	StepFailed StepStatus = "failed"
	// StepCancelled: the run was cancelled before the step finished.
	StepCancelled StepStatus = "cancelled"
)

// StepStatuses lists every step status, in lifecycle order.
func StepStatuses() []StepStatus {
	return []StepStatus{StepPending, StepRunning, StepWaiting, StepCompleted, StepFailed, StepCancelled}
}

// Valid reports whether s is one of the step statuses.
func (s StepStatus) Valid() bool {
	switch s {
	case StepPending, StepRunning, StepWaiting, StepCompleted, StepFailed, StepCancelled:
		return true
	}
	return false
}

// Terminal reports whether a step in status s will not run again on its
// own: true for StepCompleted, StepFailed (unless its run is revived) and
// StepCancelled.
func (s StepStatus) Terminal() bool {
	return s == StepCompleted || s == StepFailed || s == StepCancelled
}
