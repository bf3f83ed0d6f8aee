package mysql

import (
	"context"
	"database/sql"
	"errors"

	"github.com/ductwork-go/ductwork/backend"
)

// endRunning records, with outcome, the executions of the running jobs that
// the locking query sel picks (SELECT id ... FOR UPDATE), then makes those
// jobs pending with their crash count grown by crash. Locking first, then
// recording and resetting by ID, keeps the record and the reset to the same
// rows: a commit that lands between them cannot make a job both completed
// and crashed. It returns how many jobs it reset.
func endRunning(ctx context.Context, tx *sql.Tx, outcome backend.Outcome, crash int, sel string, args ...any) (int, error) {
	rows, err := tx.QueryContext(ctx, sel, args...)
	if err != nil {
		return 0, err
	}
	var ids []any
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return 0, err
		}
		ids = append(ids, id)
	}
	if err := rows.Close(); err != nil {
		return 0, err
	}
	if err := rows.Err(); err != nil {
		return 0, err
	}
	const chunk = 1000
	total := 0
	for len(ids) > 0 {
		part := ids[:min(chunk, len(ids))]
		ids = ids[len(part):]
		in := placeholders("?", len(part)) + ")"
		if _, err := tx.ExecContext(ctx, qRecordEndedHead+in, append([]any{string(outcome)}, part...)...); err != nil {
			return 0, err
		}
		r, err := tx.ExecContext(ctx, qResetJobsHead+in, append([]any{crash}, part...)...)
		if err != nil {
			return 0, err
		}
		n, err := r.RowsAffected()
		if err != nil {
			return 0, err
		}
		total += int(n)
	}
	return total, nil
}

// ListExecutions returns a run's executions (those of params.JobID when
// set) by job then fence, in one statement: the history rows (the (run_id,
// job_id, fence) key) and the job rows' latest executions (the (run_id, id)
// key), a job row left out when a history row holds its execution.
func (b *Backend) ListExecutions(ctx context.Context, params *backend.ListExecutionsParams) (*backend.ListExecutionsResult, error) {
	const op = "list executions"
	if err := b.checkOpen(op); err != nil {
		return nil, err
	}
	limit := params.Limit
	if limit <= 0 {
		limit = defaultListLimit
	}
	aj, af := backend.ExecutionKey(params.AfterID)
	rows, err := b.db.QueryContext(ctx, qListExecutions, params.RunID, params.JobID, params.JobID, aj, aj, af,
		params.RunID, params.JobID, params.JobID, aj, aj, af, limit+1)
	if err != nil {
		return nil, mapErr(op, err)
	}
	defer rows.Close()
	res := &backend.ListExecutionsResult{Executions: []*backend.Execution{}}
	for rows.Next() {
		var (
			e                          backend.Execution
			node, scope, proc, outcome []byte
			errText, stack             []byte
			started                    sql.NullInt64
			finished                   sql.NullInt64
		)
		if err := rows.Scan(&e.JobID, &e.RunID, &node, &scope, &e.Attempt, &e.Crashes, &e.Fence, &proc,
			&started, &finished, &outcome, &errText, &stack); err != nil {
			return nil, mapErr(op, err)
		}
		e.NodeID, e.Scope, e.ProcessID, e.Outcome = string(node), string(scope), string(proc), backend.Outcome(outcome)
		e.Error, e.Stack = string(errText), string(stack)
		if started.Valid {
			e.StartedAt = fromMicros(started.Int64)
		}
		if finished.Valid {
			e.FinishedAt = fromMicros(finished.Int64)
		}
		e.ID = backend.ExecutionID(e.JobID, e.Fence)
		res.Executions = append(res.Executions, &e)
	}
	if err := rows.Err(); err != nil {
		return nil, mapErr(op, err)
	}
	if len(res.Executions) > limit {
		res.Executions = res.Executions[:limit]
		res.Next = res.Executions[limit-1].ID
	}
	return res, nil
}

// PruneExecutions deletes, among the params.Limit oldest executions by ID,
// those that finished more than params.OlderThan ago: it reads the highest
// ID among them, then deletes a range of the primary key.
func (b *Backend) PruneExecutions(ctx context.Context, params *backend.PruneExecutionsParams) (*backend.PruneExecutionsResult, error) {
	const op = "prune executions"
	if err := b.checkOpen(op); err != nil {
		return nil, err
	}
	limit, err := params.PruneLimit()
	if err != nil {
		return nil, err
	}
	var deleted int64
	err = b.retry(ctx, op, func() error {
		var bound sql.NullInt64
		if err := b.db.QueryRowContext(ctx, qPruneBound, limit).Scan(&bound); err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if !bound.Valid {
			return nil
		}
		r, err := b.db.ExecContext(ctx, qPruneExecutions, bound.Int64, micros(params.OlderThan))
		if err != nil {
			return err
		}
		deleted, err = r.RowsAffected()
		return err
	})
	if err != nil {
		return nil, err
	}
	return &backend.PruneExecutionsResult{Deleted: int(deleted)}, nil
}
