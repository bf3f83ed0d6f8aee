package readmodel

import (
	"context"
	"fmt"
	"time"

	"github.com/uptrace/bun"

	"github.com/ductwork-go/ductwork/backend"
)

// ExecutionFilter selects executions of one run. Zero fields other than
// RunID do not filter.
type ExecutionFilter struct {
	RunID int64
	// JobID keeps the executions of one step instance; Node those of every
	// instance of one node (step name).
	JobID int64
	Node  string
	// After is the keyset cursor: only executions with a larger ID (by job,
	// then claim; the Next of the previous page).
	After int64
	// Limit is the page size: DefaultPageSize when 0, at most MaxPageSize.
	Limit int
}

// Execution is one execution of a step instance: one claim, from the claim
// to the write that ended it. A job's latest execution is read from its job
// row (a running one has outcome running and no end), the executions it
// left behind from the execution history.
type Execution struct {
	// ID is backend.ExecutionID(JobID, Fence).
	ID    int64  `bun:"-" json:"id"`
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
	// Outcome: running, completed, failed, timeout, crashed, released or
	// cancelled.
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

// Executions lists the executions of one run matching f, by job then
// claim, one page at a time, in one statement: the job rows' latest
// executions (a range of the jobs' (run_id, id) index) and the history rows
// (a range of its (run_id, job_id, fence) index), a job row left out when a
// history row holds its execution.
func (s *Store) Executions(ctx context.Context, f *ExecutionFilter) (*ExecutionPage, error) {
	q, limit := s.executionsQuery(f)
	var execs []Execution
	if err := q.Scan(ctx, &execs); err != nil {
		return nil, fmt.Errorf("readmodel: executions of run %d: %w", f.RunID, err)
	}
	for i := range execs {
		execs[i].ID = backend.ExecutionID(execs[i].JobID, execs[i].Fence)
	}
	page := &ExecutionPage{}
	page.Executions, page.Next = keysetPage(execs, limit, func(e *Execution) int64 { return e.ID })
	return page, nil
}

// executionsQuery composes the listing query of f and returns it with the
// page size; it selects one row more than the page.
func (s *Store) executionsQuery(f *ExecutionFilter) (*bun.SelectQuery, int) {
	limit := pageSize(f.Limit)
	afterJob, afterFence := backend.ExecutionKey(f.After)
	jt, jargs := s.table("ductwork_jobs", "j")
	ht, hargs := s.table("ductwork_executions", "h")
	jobs := s.db.NewSelect().TableExpr(jt, jargs...).
		ColumnExpr(jobExecution).
		Where("j.run_id = ?", f.RunID).
		Where(jobHasExecution).
		Where("NOT EXISTS (SELECT 1 FROM ? WHERE h.run_id = j.run_id AND h.job_id = j.id AND h.fence = j.fence)",
			bun.SafeQuery(ht, hargs...))
	hist := s.db.NewSelect().TableExpr(ht, hargs...).
		ColumnExpr("h.job_id, h.run_id, h.node_id, h.scope, h.attempt, h.crashes, h.fence, h.process_id, h.started_at, h.finished_at, h.outcome, h.error, h.error_stack").
		Where("h.run_id = ?", f.RunID)
	for _, part := range []struct {
		q   *bun.SelectQuery
		job string
		a   string
	}{{jobs, "j.id", "j"}, {hist, "h.job_id", "h"}} {
		if f.JobID != 0 {
			part.q.Where("? = ?", bun.Safe(part.job), f.JobID)
		}
		if f.Node != "" {
			part.q.Where("?.node_id = ?", bun.Safe(part.a), f.Node)
		}
		if f.After > 0 {
			part.q.Where("(? > ? OR (? = ? AND ?.fence > ?))", bun.Safe(part.job), afterJob, bun.Safe(part.job), afterJob,
				bun.Safe(part.a), afterFence)
		}
	}
	if s.dialect != SQLite {
		// Each part stops at the page too (SQLite takes no ORDER BY or
		// LIMIT inside a compound select), so the union holds at most two
		// pages.
		jobs.OrderExpr("j.id, j.fence").Limit(int64(limit + 1))
		hist.OrderExpr("h.job_id, h.fence").Limit(int64(limit + 1))
	}
	q := s.db.NewSelect().TableExpr("(?) AS x", jobs.UnionAll(hist)).ColumnExpr("x.*")
	return q.OrderExpr("x.job_id, x.fence").Limit(int64(limit + 1)), limit
}

// jobHasExecution holds for a job row (j) that holds its latest execution:
// running, or ended by a completion, a failure that halted or a cancel
// while it ran (a cancelled job that still names an owner). A pending job's
// previous executions, if any, are history rows.
const jobHasExecution = `j.fence > 0 AND (j.status IN ('running', 'completed', 'failed')
	OR (j.status = 'cancelled' AND j.process_id IS NOT NULL))`

// jobExecution renders the latest execution a job row (j) holds, in the
// columns of an execution row (job_id first); a running one has no end.
const jobExecution = `j.id AS job_id, j.run_id, j.node_id, j.scope, j.attempt, j.crashes, j.fence,
	COALESCE(j.process_id, '') AS process_id, j.started_at,
	CASE WHEN j.status = 'running' THEN NULL ELSE j.finished_at END AS finished_at,
	CASE j.status WHEN 'running' THEN 'running' WHEN 'failed' THEN 'failed' WHEN 'cancelled' THEN 'cancelled'
		ELSE 'completed' END AS outcome,
	CASE WHEN j.status = 'failed' THEN j.error ELSE NULL END AS error,
	CASE WHEN j.status = 'failed' THEN j.error_stack ELSE NULL END AS error_stack`
