package mysql

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"sort"

	"github.com/ductwork-go/ductwork/backend"
)

const defaultListLimit = 100

// GetRun returns one run, or backend.ErrRunNotFound.
func (b *Backend) GetRun(ctx context.Context, params *backend.GetRunParams) (*backend.Run, error) {
	const op = "get run"
	if err := b.checkOpen(op); err != nil {
		return nil, err
	}
	run, err := scanRun(b.db.QueryRowContext(ctx, qGetRun, params.RunID))
	if err != nil {
		return nil, mapErr(op, notFound(err, backend.ErrRunNotFound))
	}
	return run, nil
}

type scanner interface{ Scan(dest ...any) error }

func scanRun(s scanner) (*backend.Run, error) {
	var (
		r                    backend.Run
		pipeline, fp, status string
		errText, meta        []byte
		identity             []byte
		created, updated     int64
		haltNode, haltScope  []byte
		haltCause, haltStack []byte
	)
	if err := s.Scan(&r.ID, &pipeline, &fp, &status, &r.Input, &r.Output, &errText, &meta, &created, &updated,
		&haltNode, &haltScope, &haltCause, &r.HaltAttempt, &haltStack, &identity); err != nil {
		return nil, err
	}
	r.Pipeline, r.Fingerprint, r.Status, r.Error, r.Identity = pipeline, fp, status, string(errText), string(identity)
	r.HaltNode, r.HaltScope, r.HaltCause, r.HaltStack = string(haltNode), string(haltScope), backend.HaltCause(haltCause), string(haltStack)
	if len(meta) > 0 {
		if err := json.Unmarshal(meta, &r.Metadata); err != nil {
			return nil, fmt.Errorf("decode metadata of run %d: %w", r.ID, err)
		}
	}
	r.CreatedAt, r.UpdatedAt = fromMicros(created), fromMicros(updated)
	return &r, nil
}

// ListRuns returns runs newest first (by ID), optionally filtered by pipeline
// and status, with IDs below BeforeID when it is set. Limit defaults to 100.
// Next is the last ID of a full page, 0 otherwise.
func (b *Backend) ListRuns(ctx context.Context, params *backend.ListRunsParams) (*backend.ListRunsResult, error) {
	const op = "list runs"
	if err := b.checkOpen(op); err != nil {
		return nil, err
	}
	limit := params.Limit
	if limit <= 0 {
		limit = defaultListLimit
	}
	q, args := qListRunsHead, []any{}
	if params.BeforeID > 0 {
		q += qFilterBeforeID
		args = append(args, params.BeforeID)
	}
	if params.Pipeline != "" {
		q += qFilterPipeline
		args = append(args, params.Pipeline)
	}
	if params.Status != "" {
		q += qFilterStatus
		args = append(args, params.Status)
	}
	if !params.CreatedFrom.IsZero() {
		q += qFilterFrom
		args = append(args, params.CreatedFrom.UnixMicro())
	}
	if !params.CreatedTo.IsZero() {
		q += qFilterTo
		args = append(args, params.CreatedTo.UnixMicro())
	}
	q += qListRunsTail
	args = append(args, limit+1)
	rows, err := b.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, mapErr(op, err)
	}
	defer rows.Close()
	res := &backend.ListRunsResult{Runs: []*backend.Run{}}
	for rows.Next() {
		r, err := scanRun(rows)
		if err != nil {
			return nil, mapErr(op, err)
		}
		res.Runs = append(res.Runs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, mapErr(op, err)
	}
	if len(res.Runs) > limit {
		res.Runs = res.Runs[:limit]
		res.Next = res.Runs[limit-1].ID
	}
	return res, nil
}

// ListJobs returns the jobs of one run by ascending ID (creation order), with
// IDs above AfterID, optionally filtered by status. Limit defaults to 100.
// Next is the last ID of a full page, 0 otherwise. An unknown run has no jobs.
func (b *Backend) ListJobs(ctx context.Context, params *backend.ListJobsParams) (*backend.ListJobsResult, error) {
	const op = "list jobs"
	if err := b.checkOpen(op); err != nil {
		return nil, err
	}
	limit := params.Limit
	if limit <= 0 {
		limit = defaultListLimit
	}
	q, args := qListJobsHead, []any{params.RunID, params.AfterID}
	if params.Status != "" {
		q += qFilterStatus
		args = append(args, params.Status)
	}
	q += qListJobsTail
	args = append(args, limit+1)
	rows, err := b.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, mapErr(op, err)
	}
	defer rows.Close()
	res := &backend.ListJobsResult{Jobs: []*backend.JobInfo{}}
	for rows.Next() {
		var (
			j                   backend.JobInfo
			node, scope, status string
			errText, proc       []byte
			stack               []byte
			created, due        int64
			started, finished   sql.NullInt64
		)
		if err := rows.Scan(&j.ID, &j.RunID, &node, &scope, &status, &j.Input, &j.Output, &errText, &stack, &j.Join,
			&j.Attempt, &j.RetryBase, &j.Crashes, &j.Fence, &proc, &created, &due, &started, &finished); err != nil {
			return nil, mapErr(op, err)
		}
		j.NodeID, j.Scope, j.Status, j.Error, j.ProcessID = node, scope, status, string(errText), string(proc)
		j.Stack = string(stack)
		j.CreatedAt, j.DueAt = fromMicros(created), fromMicros(due)
		j.StartedAt, j.FinishedAt = fromNullMicros(started), fromNullMicros(finished)
		res.Jobs = append(res.Jobs, &j)
	}
	if err := rows.Err(); err != nil {
		return nil, mapErr(op, err)
	}
	if len(res.Jobs) > limit {
		res.Jobs = res.Jobs[:limit]
		res.Next = res.Jobs[limit-1].ID
	}
	return res, nil
}

// CancelRun moves a running, waiting or halted run to cancelled with
// params.Reason as its error, and its pending and running jobs to cancelled,
// in one transaction (rerun on deadlock). The job update is a locking read:
// it waits for a completion that holds one of the run's jobs and then sees
// the jobs that completion inserted, so they are cancelled too; a completion
// that comes after it finds its job cancelled and returns
// backend.ErrStaleClaim. It returns backend.ErrRunNotFound, or
// backend.ErrRunState when the run has finished.
func (b *Backend) CancelRun(ctx context.Context, params *backend.CancelRunParams) (*backend.CancelRunResult, error) {
	const op = "cancel run"
	err := b.withTx(ctx, op, func(tx *sql.Tx) error {
		r, err := tx.ExecContext(ctx, qCancelRun, params.Reason, params.RunID)
		if err != nil {
			return err
		}
		if err := b.runStateErr(ctx, r, params.RunID); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, qCancelJobs, params.RunID)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &backend.CancelRunResult{}, nil
}

// ReviveRun, in one transaction, moves a halted run back to running (clearing
// its error) and makes its failed jobs pending and due at once, their attempt
// count going on, their last error kept and a fresh retry budget starting
// from RetryBase, the attempt they failed on; completed jobs are kept.
// It returns backend.ErrRunNotFound, or backend.ErrRunState when the run is
// not halted. Result.Jobs counts the jobs made due.
func (b *Backend) ReviveRun(ctx context.Context, params *backend.ReviveRunParams) (*backend.ReviveRunResult, error) {
	var res backend.ReviveRunResult
	err := b.withTx(ctx, "revive run", func(tx *sql.Tx) error {
		r, err := tx.ExecContext(ctx, qReviveRun, params.RunID)
		if err != nil {
			return err
		}
		if err := b.runStateErr(ctx, r, params.RunID); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, qRecordRevived, params.RunID); err != nil {
			return err
		}
		r, err = tx.ExecContext(ctx, qReviveJobs, params.RunID)
		if err != nil {
			return err
		}
		n, err := r.RowsAffected()
		res.Jobs = int(n)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &res, nil
}

// runStateErr explains a conditional run update: nil when it changed the
// row, backend.ErrRunNotFound when there is no such run, else
// backend.ErrRunState.
func (b *Backend) runStateErr(ctx context.Context, r sql.Result, runID int64) error {
	n, err := r.RowsAffected()
	if err != nil || n == 1 {
		return err
	}
	var status string
	if err := b.db.QueryRowContext(ctx, qRunStatus, runID).Scan(&status); err != nil {
		return notFound(err, backend.ErrRunNotFound)
	}
	return fmt.Errorf("%w: run %d is %s", backend.ErrRunState, runID, status)
}

// SetValue writes one key of a run's context in one statement. Without
// Overwrite an existing key is kept and backend.ErrValueExists returned; of
// concurrent writers of a new key exactly one succeeds (the primary key
// decides). It returns backend.ErrRunNotFound for an unknown run.
func (b *Backend) SetValue(ctx context.Context, params *backend.SetValueParams) error {
	const op = "set value"
	if err := checkLen("Key", params.Key); err != nil {
		return err
	}
	q := qInsertValue
	if params.Overwrite {
		q = qUpsertValue
	}
	return b.retry(ctx, op, func() error {
		r, err := b.db.ExecContext(ctx, q, params.Key, params.Value, params.RunID)
		if isDuplicate(err) {
			return backend.ErrValueExists
		}
		if err != nil {
			return err
		}
		n, err := r.RowsAffected()
		if err != nil || n > 0 {
			return err
		}
		// No row: no such run, or (with Overwrite) the same value again.
		err = b.db.QueryRowContext(ctx, qRunStatus, params.RunID).Scan(new(string))
		return notFound(err, backend.ErrRunNotFound)
	})
}

// GetValue reads one key of a run's context, or backend.ErrValueNotFound.
func (b *Backend) GetValue(ctx context.Context, params *backend.GetValueParams) (*backend.GetValueResult, error) {
	const op = "get value"
	if err := b.checkOpen(op); err != nil {
		return nil, err
	}
	var res backend.GetValueResult
	if err := b.db.QueryRowContext(ctx, qGetValue, params.RunID, params.Key).Scan(&res.Value); err != nil {
		return nil, mapErr(op, notFound(err, backend.ErrValueNotFound))
	}
	return &res, nil
}

// StrandedDefinitions lists the (pipeline, fingerprint) pairs of running or
// waiting runs that are not in params.Known, with their run counts, ordered
// by pipeline and fingerprint. It changes nothing.
func (b *Backend) StrandedDefinitions(ctx context.Context, params *backend.StrandedDefinitionsParams) (*backend.StrandedDefinitionsResult, error) {
	const op = "stranded definitions"
	if err := b.checkOpen(op); err != nil {
		return nil, err
	}
	known := make(map[backend.DefinitionRef]bool, len(params.Known))
	for _, d := range params.Known {
		known[d] = true
	}
	rows, err := b.db.QueryContext(ctx, qUnfinishedDefinitions)
	if err != nil {
		return nil, mapErr(op, err)
	}
	defer rows.Close()
	res := &backend.StrandedDefinitionsResult{Definitions: []backend.StrandedDefinition{}}
	for rows.Next() {
		var d backend.StrandedDefinition
		if err := rows.Scan(&d.Pipeline, &d.Fingerprint, &d.Runs); err != nil {
			return nil, mapErr(op, err)
		}
		if !known[d.DefinitionRef] {
			res.Definitions = append(res.Definitions, d)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, mapErr(op, err)
	}
	// The database orders by bytes; keep Go's order regardless of collation.
	sort.Slice(res.Definitions, func(i, j int) bool {
		a, c := res.Definitions[i], res.Definitions[j]
		return a.Pipeline < c.Pipeline || a.Pipeline == c.Pipeline && a.Fingerprint < c.Fingerprint
	})
	return res, nil
}
