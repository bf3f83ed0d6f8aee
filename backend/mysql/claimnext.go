package mysql

import (
	"context"
	"database/sql"
	"errors"

	"github.com/ductwork-go/ductwork/backend"
)

const (
	qClaimNextSelect = `SELECT id, input, is_join, join_id, attempt, retry_base, crashes, fence, created_at, due_at
FROM ductwork_jobs WHERE run_id = ? AND node_id = ? AND scope = ? AND status = 'pending' AND due_at <= ?
  AND (SELECT r.status FROM ductwork_runs r WHERE r.id = ?) = 'running'`
	qClaimNextUpdate = `UPDATE ductwork_jobs SET status = 'running', fence = fence + 1, process_id = ?, started_at = ?
WHERE id = ? AND status = 'pending'`
)

// claimNext claims, inside the completion transaction, the first job the
// completion created that is due at once, for the completing process: the
// caller runs it next without a separate claim. Only a running run's job is
// claimed. The job was inserted by this transaction, so no other claimer can
// see, let alone hold, it.
func (b *Backend) claimNext(ctx context.Context, tx ptx, p *backend.CompleteParams, runID, now int64) (*backend.Job, error) {
	node, scope, ok := p.Plan.NextDue(p.Queue)
	if !ok {
		return nil, nil
	}
	var (
		j                backend.Job
		joinID           sql.NullInt64
		createdAt, dueAt int64
	)
	err := tx.QueryRowContext(ctx, qClaimNextSelect, runID, node, scope, now, runID).
		Scan(&j.ID, &j.Input, &j.Join, &joinID, &j.Attempt, &j.RetryBase, &j.Crashes, &j.Fence, &createdAt, &dueAt)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	r, err := tx.ExecContext(ctx, qClaimNextUpdate, p.ProcessID, now, j.ID)
	if err != nil {
		return nil, err
	}
	if err := expectOne(r, errors.New("claim next: job changed under the transaction")); err != nil {
		return nil, err
	}
	j.RunID, j.NodeID, j.Scope = runID, node, scope
	j.Fence++
	j.CreatedAt, j.DueAt, j.ClaimedAt = fromMicros(createdAt), fromMicros(dueAt), fromMicros(now)
	if j.Join {
		j.JoinInputs = [][]byte{}
		if joinID.Valid {
			if err := loadJoinInputs(ctx, tx, map[int64]*backend.Job{joinID.Int64: &j}); err != nil {
				return nil, err
			}
		}
	}
	return &j, nil
}
