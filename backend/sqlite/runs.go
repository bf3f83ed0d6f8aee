package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/ductwork-go/ductwork/backend"
)

// defaultPageSize is the Limit of ListRuns and ListJobs when none is given.
const defaultPageSize = 100

// scanner is *sql.Row or *sql.Rows.
type scanner interface{ Scan(dest ...any) error }

func scanRun(s scanner) (*backend.Run, error) {
	var (
		r                backend.Run
		meta             string
		created, updated int64
	)
	if err := s.Scan(&r.ID, &r.Pipeline, &r.Fingerprint, &r.Status, &r.Input, &r.Output, &r.Error,
		&meta, &created, &updated, &r.HaltNode, &r.HaltScope, &r.HaltCause, &r.HaltAttempt, &r.HaltStack, &r.Identity); err != nil {
		return nil, err
	}
	var err error
	if r.Metadata, err = decodeMetadata(meta); err != nil {
		return nil, err
	}
	r.CreatedAt, r.UpdatedAt = fromMicros(created), fromMicros(updated)
	return &r, nil
}

// GetRun returns one run from the read pool, or backend.ErrRunNotFound.
func (b *Backend) GetRun(ctx context.Context, params *backend.GetRunParams) (*backend.Run, error) {
	if b.closed.Load() {
		return nil, errClosed("get run")
	}
	row, err := b.readRow(ctx, qGetRun, params.RunID)
	if err != nil {
		return nil, mapErr("get run", err)
	}
	r, err := scanRun(row)
	if errors.Is(err, sql.ErrNoRows) {
		err = fmt.Errorf("run %d: %w", params.RunID, backend.ErrRunNotFound)
	}
	if err != nil {
		return nil, mapErr("get run", err)
	}
	return r, nil
}

// pageSize applies the default page size.
func pageSize(limit int) int {
	if limit <= 0 {
		return defaultPageSize
	}
	return limit
}

// ListRuns returns runs newest first from the read pool, filtered by
// pipeline and status when set, continuing below params.BeforeID. Next is
// the BeforeID of the next page when this page is full.
func (b *Backend) ListRuns(ctx context.Context, params *backend.ListRunsParams) (*backend.ListRunsResult, error) {
	if b.closed.Load() {
		return nil, errClosed("list runs")
	}
	limit := pageSize(params.Limit)
	before := params.BeforeID
	if before <= 0 {
		before = math.MaxInt64
	}
	from, to := int64(math.MinInt64), int64(math.MaxInt64)
	if !params.CreatedFrom.IsZero() {
		from = params.CreatedFrom.UnixMicro()
	}
	if !params.CreatedTo.IsZero() {
		to = params.CreatedTo.UnixMicro()
	}
	rows, err := b.readRows(ctx, qListRuns, before, params.Pipeline, params.Pipeline,
		params.Status, params.Status, from, to, limit+1)
	if err != nil {
		return nil, mapErr("list runs", err)
	}
	defer rows.Close()
	res := &backend.ListRunsResult{Runs: []*backend.Run{}}
	for rows.Next() {
		r, err := scanRun(rows)
		if err != nil {
			return nil, mapErr("list runs", err)
		}
		res.Runs = append(res.Runs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, mapErr("list runs", err)
	}
	if len(res.Runs) > limit {
		res.Runs = res.Runs[:limit]
		res.Next = res.Runs[limit-1].ID
	}
	return res, nil
}

// ListJobs returns the jobs of one run by ascending ID from the read pool,
// filtered by status when set, continuing above params.AfterID. Next is the
// AfterID of the next page when this page is full. An unknown run has no
// jobs.
func (b *Backend) ListJobs(ctx context.Context, params *backend.ListJobsParams) (*backend.ListJobsResult, error) {
	if b.closed.Load() {
		return nil, errClosed("list jobs")
	}
	limit := pageSize(params.Limit)
	rows, err := b.readRows(ctx, qListJobs, params.RunID, params.AfterID, params.Status, params.Status, limit+1)
	if err != nil {
		return nil, mapErr("list jobs", err)
	}
	defer rows.Close()
	res := &backend.ListJobsResult{Jobs: []*backend.JobInfo{}}
	for rows.Next() {
		var (
			j                 backend.JobInfo
			process           sql.NullString
			created, due      int64
			started, finished sql.NullInt64
		)
		if err := rows.Scan(&j.ID, &j.RunID, &j.NodeID, &j.Scope, &j.Status, &j.Input, &j.Output, &j.Error,
			&j.Stack, &j.Join, &j.Attempt, &j.RetryBase, &j.Crashes, &j.Fence, &process, &created, &due, &started, &finished); err != nil {
			return nil, mapErr("list jobs", err)
		}
		j.ProcessID = process.String
		j.CreatedAt, j.DueAt = fromMicros(created), fromMicros(due)
		j.StartedAt, j.FinishedAt = fromNullMicros(started), fromNullMicros(finished)
		res.Jobs = append(res.Jobs, &j)
	}
	if err := rows.Err(); err != nil {
		return nil, mapErr("list jobs", err)
	}
	if len(res.Jobs) > limit {
		res.Jobs = res.Jobs[:limit]
		res.Next = res.Jobs[limit-1].ID
	}
	return res, nil
}

// ListExecutions returns a run's executions (those of params.JobID when
// set) by job then fence from the read pool, continuing after
// params.AfterID, in one statement: the history rows (the (run_id, job_id,
// fence) index) and the job rows' latest executions (the (run_id, id)
// index), a job row left out when a history row holds its execution.
func (b *Backend) ListExecutions(ctx context.Context, params *backend.ListExecutionsParams) (*backend.ListExecutionsResult, error) {
	if b.closed.Load() {
		return nil, errClosed("list executions")
	}
	limit := pageSize(params.Limit)
	afterJob, afterFence := backend.ExecutionKey(params.AfterID)
	rows, err := b.readRows(ctx, qListExecutions, params.RunID, params.JobID, afterJob, afterFence, limit+1)
	if err != nil {
		return nil, mapErr("list executions", err)
	}
	defer rows.Close()
	res := &backend.ListExecutionsResult{Executions: []*backend.Execution{}}
	for rows.Next() {
		var (
			e        backend.Execution
			outcome  string
			started  sql.NullInt64
			finished sql.NullInt64
		)
		if err := rows.Scan(&e.JobID, &e.RunID, &e.NodeID, &e.Scope, &e.Attempt, &e.Crashes, &e.Fence, &e.ProcessID,
			&started, &finished, &outcome, &e.Error, &e.Stack); err != nil {
			return nil, mapErr("list executions", err)
		}
		if started.Valid {
			e.StartedAt = fromMicros(started.Int64)
		}
		if finished.Valid {
			e.FinishedAt = fromMicros(finished.Int64)
		}
		e.ID, e.Outcome = backend.ExecutionID(e.JobID, e.Fence), backend.Outcome(outcome)
		res.Executions = append(res.Executions, &e)
	}
	if err := rows.Err(); err != nil {
		return nil, mapErr("list executions", err)
	}
	if len(res.Executions) > limit {
		res.Executions = res.Executions[:limit]
		res.Next = res.Executions[limit-1].ID
	}
	return res, nil
}

// PruneExecutions deletes, among the params.Limit oldest executions by ID,
// those that finished more than params.OlderThan ago, in one statement.
func (b *Backend) PruneExecutions(ctx context.Context, params *backend.PruneExecutionsParams) (*backend.PruneExecutionsResult, error) {
	if b.closed.Load() {
		return nil, errClosed("prune executions")
	}
	limit, err := params.PruneLimit()
	if err != nil {
		return nil, err
	}
	r, err := b.writeExec(ctx, qPruneExecutions, micros(params.OlderThan), limit)
	if err != nil {
		return nil, mapErr("prune executions", err)
	}
	n, err := r.RowsAffected()
	if err != nil {
		return nil, mapErr("prune executions", err)
	}
	return &backend.PruneExecutionsResult{Deleted: int(n)}, nil
}

// runStateErr tells apart a missing run (backend.ErrRunNotFound) from one in
// the wrong state (backend.ErrRunState) after a guarded update changed
// nothing. Runs are never deleted, so the answer cannot go stale.
func runStateErr(t *txn, runID int64) error {
	var one int
	err := t.queryRow(qRunExists, runID).Scan(&one)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("run %d: %w", runID, backend.ErrRunNotFound)
	case err != nil:
		return err
	}
	return fmt.Errorf("run %d: %w", runID, backend.ErrRunState)
}

// CancelRun moves a running, waiting or halted run to cancelled with
// params.Reason as its error, and its pending and running jobs to cancelled,
// in one transaction. SQLite's single writer orders it against every
// Complete: one that commits later finds its job cancelled and returns
// backend.ErrStaleClaim. It returns backend.ErrRunNotFound, or
// backend.ErrRunState if the run already finished.
func (b *Backend) CancelRun(ctx context.Context, params *backend.CancelRunParams) (*backend.CancelRunResult, error) {
	if b.closed.Load() {
		return nil, errClosed("cancel run")
	}
	err := b.inTx(ctx, func(t *txn) error {
		n, err := t.execCount(qCancelRun, params.Reason, params.RunID)
		if err != nil {
			return err
		}
		if n == 0 {
			return runStateErr(t, params.RunID)
		}
		_, err = t.exec(qCancelJobs, params.RunID)
		return err
	})
	if err != nil {
		return nil, mapErr("cancel run", err)
	}
	return &backend.CancelRunResult{}, nil
}

// ReviveRun moves a halted run back to running and makes its failed jobs
// pending and due at once, in one transaction: their attempt count goes on
// (the re-run is the next attempt), their last error is kept, and their retry
// budget starts afresh from RetryBase, the attempt they failed on. It returns backend.ErrRunNotFound, or backend.ErrRunState if
// the run is not halted.
func (b *Backend) ReviveRun(ctx context.Context, params *backend.ReviveRunParams) (*backend.ReviveRunResult, error) {
	if b.closed.Load() {
		return nil, errClosed("revive run")
	}
	res := &backend.ReviveRunResult{}
	err := b.inTx(ctx, func(t *txn) error {
		n, err := t.execCount(qReviveRun, params.RunID)
		if err != nil {
			return err
		}
		if n == 0 {
			return runStateErr(t, params.RunID)
		}
		if _, err := t.exec(qRecordRevivedExecutions, params.RunID); err != nil {
			return err
		}
		n, err = t.execCount(qReviveJobs, params.RunID)
		res.Jobs = int(n)
		return err
	})
	if err != nil {
		return nil, mapErr("revive run", err)
	}
	return res, nil
}

// SetValue writes one key of a run's context in one statement. Without
// params.Overwrite an existing key is kept and backend.ErrValueExists is
// returned; SQLite's single writer makes exactly one of concurrent writers of
// a new key win.
func (b *Backend) SetValue(ctx context.Context, params *backend.SetValueParams) error {
	if b.closed.Load() {
		return errClosed("set value")
	}
	q := qSetValue
	if params.Overwrite {
		q = qSetValueOverwrite
	}
	r, err := b.writeExec(ctx, q, params.RunID, params.Key, params.Value)
	if err != nil {
		return mapErr("set value", err)
	}
	n, err := r.RowsAffected()
	if err != nil {
		return mapErr("set value", err)
	}
	if n == 0 {
		// No row written: the run does not exist, or (without Overwrite)
		// the key does. A run is never deleted while its values are
		// written, so a read after the write tells which.
		row, err := b.readRow(ctx, qRunExists, params.RunID)
		if err != nil {
			return mapErr("set value", err)
		}
		var one int
		if err := row.Scan(&one); errors.Is(err, sql.ErrNoRows) {
			return mapErr("set value", fmt.Errorf("run %d: %w", params.RunID, backend.ErrRunNotFound))
		} else if err != nil {
			return mapErr("set value", err)
		}
		return mapErr("set value", fmt.Errorf("run %d key %q: %w", params.RunID, params.Key, backend.ErrValueExists))
	}
	return nil
}

// GetValue reads one key of a run's context from the read pool, or returns
// backend.ErrValueNotFound.
func (b *Backend) GetValue(ctx context.Context, params *backend.GetValueParams) (*backend.GetValueResult, error) {
	if b.closed.Load() {
		return nil, errClosed("get value")
	}
	row, err := b.readRow(ctx, qGetValue, params.RunID, params.Key)
	if err != nil {
		return nil, mapErr("get value", err)
	}
	res := &backend.GetValueResult{}
	if err := row.Scan(&res.Value); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			err = fmt.Errorf("run %d key %q: %w", params.RunID, params.Key, backend.ErrValueNotFound)
		}
		return nil, mapErr("get value", err)
	}
	return res, nil
}

// StrandedDefinitions lists, from the read pool, the (pipeline, fingerprint)
// pairs of running or waiting runs that are not in params.Known, with their
// number of runs, ordered by pipeline and fingerprint. It changes nothing.
func (b *Backend) StrandedDefinitions(ctx context.Context, params *backend.StrandedDefinitionsParams) (*backend.StrandedDefinitionsResult, error) {
	if b.closed.Load() {
		return nil, errClosed("stranded definitions")
	}
	known, err := definitionsJSON(params.Known)
	if err != nil {
		return nil, fmt.Errorf("sqlite: stranded definitions: %w", err)
	}
	rows, err := b.readRows(ctx, qStranded, known)
	if err != nil {
		return nil, mapErr("stranded definitions", err)
	}
	defer rows.Close()
	res := &backend.StrandedDefinitionsResult{}
	for rows.Next() {
		var d backend.StrandedDefinition
		if err := rows.Scan(&d.Pipeline, &d.Fingerprint, &d.Runs); err != nil {
			return nil, mapErr("stranded definitions", err)
		}
		res.Definitions = append(res.Definitions, d)
	}
	if err := rows.Err(); err != nil {
		return nil, mapErr("stranded definitions", err)
	}
	return res, nil
}

// Now returns SQLite's clock (millisecond resolution, in UTC) read through
// the read pool.
func (b *Backend) Now(ctx context.Context) (time.Time, error) {
	if b.closed.Load() {
		return time.Time{}, errClosed("now")
	}
	row, err := b.readRow(ctx, qNow)
	if err != nil {
		return time.Time{}, mapErr("now", err)
	}
	var us int64
	if err := row.Scan(&us); err != nil {
		return time.Time{}, mapErr("now", err)
	}
	return fromMicros(us), nil
}
