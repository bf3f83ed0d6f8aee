package readmodel

import (
	"context"
	"fmt"
	"time"

	"github.com/uptrace/bun"
)

// ExecutionFilter selects executions of one run. Zero fields other than
// RunID do not filter.
type ExecutionFilter struct {
	RunID int64
	// JobID keeps the executions of one step instance; Node those of every
	// instance of one node (step name).
	JobID int64
	Node  string
	// After is the keyset cursor: only executions with a larger ID (the Next
	// of the previous page).
	After int64
	// Limit is the page size: DefaultPageSize when 0, at most MaxPageSize.
	Limit int
}

// Execution is one execution of a step instance: one claim, from the claim
// to the write that ended it (the execution history; a running execution
// has no row yet: its step is running).
type Execution struct {
	ID    int64  `bun:"id" json:"id"`
	RunID int64  `bun:"run_id" json:"run_id"`
	JobID int64  `bun:"job_id" json:"job_id"`
	Node  string `bun:"node_id" json:"node"`
	Scope string `bun:"scope" json:"scope"`
	// Attempt is the attempt the execution ran as; Crashes the crash
	// re-runs of its step instance before it.
	Attempt    int    `bun:"attempt" json:"attempt"`
	Crashes    int    `bun:"crashes" json:"crashes"`
	Fence      int64  `bun:"fence" json:"fence"`
	ProcessID  string `bun:"process_id" json:"process_id"`
	StartedAt  Time   `bun:"started_at" json:"started_at"`
	FinishedAt Time   `bun:"finished_at" json:"finished_at"`
	// Outcome: completed, failed, timeout, crashed, released or cancelled.
	Outcome string `bun:"outcome" json:"outcome"`
	Error   string `bun:"error" json:"error,omitempty"`
	Stack   string `bun:"error_stack" json:"stack,omitempty"`
}

// Duration is how long the execution ran.
func (e *Execution) Duration() time.Duration {
	if e.StartedAt.IsZero() || e.FinishedAt.IsZero() {
		return 0
	}
	return e.FinishedAt.Sub(e.StartedAt.Time)
}

// ExecutionPage is one page of executions, oldest first. Next is the
// cursor of the next page (ExecutionFilter.After), 0 on the last page.
type ExecutionPage struct {
	Executions []Execution `json:"executions"`
	Next       int64       `json:"next,omitempty"`
}

// Executions lists the executions of one run matching f, oldest first, one
// page at a time: a range of the (run_id, id) index that stops after Limit
// rows.
func (s *Store) Executions(ctx context.Context, f *ExecutionFilter) (*ExecutionPage, error) {
	q, limit := s.executionsQuery(f)
	var execs []Execution
	if err := q.Scan(ctx, &execs); err != nil {
		return nil, fmt.Errorf("readmodel: executions of run %d: %w", f.RunID, err)
	}
	page := &ExecutionPage{Executions: execs}
	if len(execs) > limit {
		page.Executions = execs[:limit]
		page.Next = execs[limit-1].ID
	}
	if page.Executions == nil {
		page.Executions = []Execution{}
	}
	return page, nil
}

// executionsQuery composes the listing query of f and returns it with the
// page size; it selects one row more than the page.
func (s *Store) executionsQuery(f *ExecutionFilter) (*bun.SelectQuery, int) {
	limit := f.Limit
	switch {
	case limit <= 0:
		limit = DefaultPageSize
	case limit > MaxPageSize:
		limit = MaxPageSize
	}
	t, args := s.table("ductwork_executions", "e")
	q := s.db.NewSelect().TableExpr(t, args...).
		ColumnExpr("e.id, e.run_id, e.job_id, e.node_id, e.scope, e.attempt, e.crashes, e.fence, e.process_id, e.started_at, e.finished_at, e.outcome, e.error, e.error_stack").
		Where("e.run_id = ?", f.RunID)
	if f.JobID != 0 {
		q = q.Where("e.job_id = ?", f.JobID)
	}
	if f.Node != "" {
		q = q.Where("e.node_id = ?", f.Node)
	}
	if f.After > 0 {
		q = q.Where("e.id > ?", f.After)
	}
	return q.OrderExpr("e.id").Limit(int64(limit + 1)), limit
}
