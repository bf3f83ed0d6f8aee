package ductwork

import (
	"context"
	"time"

	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/ductworktype"
)

// RunStatus is a run's state; see the Run* constants.
type RunStatus = ductworktype.RunStatus

// Run statuses, re-exported from package ductworktype.
const (
	RunRunning   = ductworktype.RunRunning
	RunWaiting   = ductworktype.RunWaiting
	RunCompleted = ductworktype.RunCompleted
	RunHalted    = ductworktype.RunHalted
	RunCancelled = ductworktype.RunCancelled
)

// StepStatus is a step instance's state; see the Step* constants.
type StepStatus = ductworktype.StepStatus

// Step statuses, re-exported from package ductworktype.
const (
	StepPending   = ductworktype.StepPending
	StepRunning   = ductworktype.StepRunning
	StepWaiting   = ductworktype.StepWaiting
	StepCompleted = ductworktype.StepCompleted
	StepFailed    = ductworktype.StepFailed
	StepCancelled = ductworktype.StepCancelled
)

// RunInfo is a stored run, as Inspect and ListRuns return it.
type RunInfo struct {
	ID int64
	// Pipeline and Fingerprint name the definition version the run started
	// with.
	Pipeline    string
	Fingerprint string
	Status      RunStatus
	// Input is the encoded trigger input; Output the encoded output of a
	// completed run.
	Input  []byte
	Output []byte
	// Error is the reason of a halted or cancelled run.
	Error    string
	Metadata map[string]string
	// CreatedAt and UpdatedAt are by the database's clock.
	CreatedAt time.Time
	UpdatedAt time.Time
	// Halt describes the failure that last halted the run; nil if it never
	// halted.
	Halt *HaltInfo
	// Known is true when this client registered the run's definition.
	Known bool
}

// HaltInfo describes the failure that halted a run, as stored with it.
type HaltInfo struct {
	// Node and Scope name the failed step instance.
	Node  string
	Scope string
	Cause HaltCause
	// Attempt is the failed execution's attempt number.
	Attempt int
	// Stack is the goroutine stack of a panic; empty otherwise.
	Stack string
}

// runInfo converts a stored run.
func (c *Client) runInfo(r *backend.Run) RunInfo {
	info := RunInfo{
		ID: r.ID, Pipeline: r.Pipeline, Fingerprint: r.Fingerprint, Status: RunStatus(r.Status),
		Input: r.Input, Output: r.Output, Error: r.Error, Metadata: r.Metadata,
		CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt,
	}
	if r.HaltCause != "" || r.HaltNode != "" {
		info.Halt = &HaltInfo{Node: r.HaltNode, Scope: r.HaltScope, Cause: r.HaltCause, Attempt: r.HaltAttempt, Stack: r.HaltStack}
	}
	_, info.Known = c.eng.Lookup(backend.DefinitionRef{Pipeline: r.Pipeline, Fingerprint: r.Fingerprint})
	return info
}

// Inspect returns a run's stored record, whatever its pipeline, or
// ErrRunNotFound. It reports Known false when this client has not registered
// the run's definition.
func (c *Client) Inspect(ctx context.Context, runID int64) (*RunInfo, error) {
	if c == nil {
		return nil, &ArgumentError{Func: "Inspect", Arg: "client", Reason: "is nil"}
	}
	r, err := c.b.GetRun(ctx, &backend.GetRunParams{RunID: runID})
	if err != nil {
		return nil, err
	}
	info := c.runInfo(r)
	return &info, nil
}

// RunFilter selects the runs ListRuns returns. The zero value lists every
// run, newest first, 100 at a time.
type RunFilter struct {
	// Pipeline and Status keep the runs of one pipeline, in one status,
	// when set.
	Pipeline string
	Status   RunStatus
	// CreatedFrom (inclusive) and CreatedTo (exclusive) bound the runs'
	// creation time, by the database's clock, when not zero.
	CreatedFrom time.Time
	CreatedTo   time.Time
	// Limit caps the page: 1 to 1000, 0 for 100.
	Limit int
	// Before continues a listing: RunPage.Next of the previous page.
	Before int64
}

// MaxListLimit is the largest RunFilter.Limit.
const MaxListLimit = 1000

// RunPage is one page of ListRuns.
type RunPage struct {
	// Runs are newest first (by ID).
	Runs []RunInfo
	// Next is the RunFilter.Before of the next page; 0 on the last page.
	Next int64
}

// ListRuns lists runs, newest first, one page at a time (keyset pagination
// on the run ID: a page is not shifted by runs triggered meanwhile). It
// returns *ArgumentError for an unknown status, a negative or too large
// limit, or a time range that ends before it starts.
func (c *Client) ListRuns(ctx context.Context, f RunFilter) (*RunPage, error) {
	if c == nil {
		return nil, &ArgumentError{Func: "ListRuns", Arg: "client", Reason: "is nil"}
	}
	switch {
	case f.Status != "" && !f.Status.Valid():
		return nil, &ArgumentError{Func: "ListRuns", Arg: "RunFilter.Status", Reason: "is not a run status: " + string(f.Status)}
	case f.Limit < 0 || f.Limit > MaxListLimit:
		return nil, &ArgumentError{Func: "ListRuns", Arg: "RunFilter.Limit", Reason: "is outside 0..1000"}
	case f.Before < 0:
		return nil, &ArgumentError{Func: "ListRuns", Arg: "RunFilter.Before", Reason: "is negative"}
	case !f.CreatedFrom.IsZero() && !f.CreatedTo.IsZero() && f.CreatedTo.Before(f.CreatedFrom):
		return nil, &ArgumentError{Func: "ListRuns", Arg: "RunFilter.CreatedTo", Reason: "is before CreatedFrom"}
	}
	res, err := c.b.ListRuns(ctx, &backend.ListRunsParams{
		Pipeline: f.Pipeline, Status: string(f.Status), Limit: f.Limit, BeforeID: f.Before,
		CreatedFrom: f.CreatedFrom, CreatedTo: f.CreatedTo,
	})
	if err != nil {
		return nil, err
	}
	page := &RunPage{Runs: make([]RunInfo, 0, len(res.Runs)), Next: res.Next}
	for _, r := range res.Runs {
		page.Runs = append(page.Runs, c.runInfo(r))
	}
	return page, nil
}

// StepInfo is one step instance of a run, as Steps lists it.
type StepInfo struct {
	ID     int64
	Node   string
	Scope  string
	Status StepStatus
	Input  []byte
	Output []byte
	Error  string
	// Stack is the goroutine stack of the last failure, when it was a panic.
	Stack string
	// Attempt counts executions spent on errors (1 = first try);
	// CrashReruns counts executions lost to dead processes, which do not
	// spend the retry budget but spend the crash budget (step.MaxCrashes).
	// Claims given back at shutdown count as neither. RetryBase is the
	// attempt a revive started a fresh retry budget from (0 if never
	// revived).
	Attempt     int
	RetryBase   int
	CrashReruns int
	CreatedAt   time.Time
	StartedAt   *time.Time
	FinishedAt  *time.Time
}

// Steps lists the run's step instances in creation order.
func (r *Run[Out]) Steps(ctx context.Context) ([]StepInfo, error) {
	if err := r.check("Run.Steps"); err != nil {
		return nil, err
	}
	return r.c.Steps(ctx, r.ID)
}

// Steps lists a run's step instances in creation order, whatever its
// pipeline. An unknown run has none.
func (c *Client) Steps(ctx context.Context, runID int64) ([]StepInfo, error) {
	if c == nil {
		return nil, &ArgumentError{Func: "Steps", Arg: "client", Reason: "is nil"}
	}
	var out []StepInfo
	var after int64
	for {
		res, err := c.b.ListJobs(ctx, &backend.ListJobsParams{RunID: runID, AfterID: after, Limit: 1000})
		if err != nil {
			return nil, err
		}
		for _, j := range res.Jobs {
			out = append(out, StepInfo{
				ID: j.ID, Node: j.NodeID, Scope: j.Scope, Status: StepStatus(j.Status), Input: j.Input, Output: j.Output,
				Error: j.Error, Stack: j.Stack, Attempt: j.Attempt, RetryBase: j.RetryBase, CrashReruns: j.Crashes, CreatedAt: j.CreatedAt,
				StartedAt: j.StartedAt, FinishedAt: j.FinishedAt,
			})
		}
		if res.Next == 0 {
			return out, nil
		}
		after = res.Next
	}
}
