package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/ductwork-go/ductwork/backend"
)

// Signals and waits. A send delivers, in the sender's transaction, the run's
// kept signals (oldest first, the new one last) to the awaits waiting for
// them; what no waiting await takes is kept, and DeliverSignals, run after
// every completion that inserts awaits and periodically by every supervisor,
// delivers it when an await reaches it. Each delivery locks the signal row
// first and re-checks the job, so a signal is consumed once and an await
// receives one signal, however many deliver at once.

const (
	qMarkWait = `UPDATE ductwork_jobs SET wait_kind = ?, signal_name = ?, signal_key = ?, due_at = COALESCE(?, due_at)
WHERE run_id = ? AND node_id = ? AND scope = ?`

	// qLockRunSettle serializes the settling of one run's status.
	qLockRunSettle = `SELECT id FROM ductwork_runs WHERE id = ? FOR UPDATE`

	// qRunActive is 1 when the run has work that does not wait.
	qRunActive = `SELECT EXISTS (SELECT 1 FROM ductwork_jobs WHERE run_id = ?
  AND (status = 'running' OR (status = 'pending' AND wait_kind = '')))`

	qSetRunWaiting = `UPDATE ductwork_runs SET status = ?, updated_at = ` + nowUS + `
WHERE id = ? AND status IN ('running', 'waiting') AND status <> ?`

	qSignalRunStatus = `SELECT status FROM ductwork_runs WHERE id = ?`

	qInsertSignal = `INSERT INTO ductwork_signals (run_id, name, target_kind, target, payload, created_at)
VALUES (?, ?, ?, ?, ?, ` + nowUS + `)`

	// qGiveSignal gives a signal's payload to a job that still waits.
	qGiveSignal = `UPDATE ductwork_jobs
SET signal_id = ?, signal_payload = (SELECT payload FROM ductwork_signals WHERE id = ?), due_at = ` + nowUS + `
WHERE id = ? AND status = 'pending' AND signal_id IS NULL AND due_at > ` + nowUS

	qConsumeSignal = `UPDATE ductwork_signals SET consumed_job_id = ?, consumed_at = ` + nowUS + `
WHERE id = ? AND consumed_job_id IS NULL AND target_kind <> 3`

	qWakeRun = `UPDATE ductwork_runs SET status = 'running', updated_at = ` + nowUS + `
WHERE id = ? AND status = 'waiting'`

	// qSignalCandidates lists (signal, job) pairs that can be delivered, of
	// one run or of every run (0), oldest signal first. The jobs are found
	// through the unique (run_id, node_id, scope) index.
	qSignalCandidates = `SELECT s.id, j.id
FROM ductwork_signals s
JOIN ductwork_jobs j ON j.run_id = s.run_id AND j.signal_name = s.name AND j.status = 'pending'
  AND j.signal_id IS NULL AND j.due_at > ` + nowUS + `
  AND (s.target_kind IN (0, 3) OR (s.target_kind = 1 AND j.scope = s.target) OR (s.target_kind = 2 AND j.signal_key = s.target))
WHERE s.consumed_job_id IS NULL AND (? = 0 OR s.run_id = ?)
ORDER BY s.id, j.id
LIMIT ?`

	qLockOpenSignal = `SELECT run_id, target_kind FROM ductwork_signals WHERE id = ? AND consumed_job_id IS NULL FOR UPDATE`

	// qRetireSignals closes the open signals of finished runs (consumed by
	// job 0), so the sweep no longer reads them.
	qRetireSignals = `UPDATE ductwork_signals s SET consumed_job_id = 0, consumed_at = ` + nowUS + `
WHERE s.consumed_job_id IS NULL
  AND EXISTS (SELECT 1 FROM ductwork_runs r WHERE r.id = s.run_id AND r.status IN ('completed', 'cancelled'))`

	qReceiveSignal = `SELECT signal_id, signal_payload FROM ductwork_jobs` + fenced
)

// markWaits applies the wait fields of the plan's jobs, inserted just before
// in the same transaction.
func markWaits(ctx context.Context, tx querier, runID int64, jobs []backend.NewJob) error {
	for i := range jobs {
		j := &jobs[i]
		if j.Wait == "" {
			continue
		}
		var due, name, key any
		if !j.DueAt.IsZero() {
			due = j.DueAt.UnixMicro()
		}
		if j.Wait == backend.WaitSignal {
			name, key = j.Signal, j.SignalKey
		}
		if _, err := tx.ExecContext(ctx, qMarkWait, j.Wait, name, key, due, runID, j.NodeID, j.Scope); err != nil {
			return err
		}
	}
	return nil
}

// settleRun applies backend.Plan.Settle. It locks the run row first: two
// branches settling at once would otherwise each read the other's step as
// still running (READ COMMITTED does not see an uncommitted completion) and
// both leave the run running, although every branch then waits. Locked,
// the second waits for the first to commit, and its read sees it.
func settleRun(ctx context.Context, tx querier, runID int64) error {
	var locked int64
	if err := tx.QueryRowContext(ctx, qLockRunSettle, runID).Scan(&locked); err != nil {
		return err
	}
	var active bool
	if err := tx.QueryRowContext(ctx, qRunActive, runID).Scan(&active); err != nil {
		return err
	}
	status := backend.RunWaiting
	if active {
		status = backend.RunRunning
	}
	_, err := tx.ExecContext(ctx, qSetRunWaiting, status, runID, status)
	return err
}

// SendSignal stores the signal and delivers the run's kept signals to the
// waiting awaits in one transaction (params.Tx, a *sql.Tx, when set).
func (b *Backend) SendSignal(ctx context.Context, params *backend.SendSignalParams) (*backend.SendSignalResult, error) {
	const op = "send signal"
	if err := checkLen("Name", params.Name); err != nil {
		return nil, err
	}
	var res backend.SendSignalResult
	send := func(tx *sql.Tx) error {
		res = backend.SendSignalResult{}
		var status []byte
		err := tx.QueryRowContext(ctx, qSignalRunStatus, params.RunID).Scan(&status)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("ductwork/mysql: signal %q to run %d: %w", params.Name, params.RunID, backend.ErrRunNotFound)
		}
		if err != nil {
			return err
		}
		if s := string(status); s == backend.RunCompleted || s == backend.RunCancelled {
			return fmt.Errorf("ductwork/mysql: signal %q to run %d (%s): %w", params.Name, params.RunID, s, backend.ErrRunFinished)
		}
		r, err := tx.ExecContext(ctx, qInsertSignal, params.RunID, params.Name, params.Target.Kind, params.Target.Value, params.Payload)
		if err != nil {
			return err
		}
		if res.SignalID, err = r.LastInsertId(); err != nil {
			return err
		}
		// Older signals kept for the run go first, so awaits receive
		// signals in the order they were sent.
		pairs, err := signalCandidates(ctx, tx, params.RunID, 1000)
		if err != nil {
			return err
		}
		for _, p := range pairs {
			ok, err := deliverPair(ctx, tx, p)
			if err != nil {
				return err
			}
			if ok && p.sig == res.SignalID {
				res.Delivered++
			}
		}
		return nil
	}
	if params.Tx != nil {
		tx, ok := params.Tx.(*sql.Tx)
		if !ok || tx == nil {
			return nil, fmt.Errorf("ductwork/mysql: send signal: %T is not a *sql.Tx: %w", params.Tx, backend.ErrUnsupportedTx)
		}
		if err := send(tx); err != nil {
			return nil, mapErr(op, err)
		}
		return &res, nil
	}
	if err := b.withTx(ctx, op, send); err != nil {
		return nil, err
	}
	return &res, nil
}

// ReceiveSignal reads the signal delivered to a claimed await job.
func (b *Backend) ReceiveSignal(ctx context.Context, params *backend.ReceiveSignalParams) (*backend.ReceiveSignalResult, error) {
	const op = "receive signal"
	if err := b.checkOpen(op); err != nil {
		return nil, err
	}
	var id sql.NullInt64
	res := &backend.ReceiveSignalResult{}
	err := b.db.QueryRowContext(ctx, qReceiveSignal, params.JobID, params.Fence, params.ProcessID).Scan(&id, &res.Payload)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("ductwork/mysql: receive signal: job %d fence %d: %w", params.JobID, params.Fence, backend.ErrStaleClaim)
	}
	if err != nil {
		return nil, mapErr(op, err)
	}
	res.Delivered, res.SignalID = id.Valid, id.Int64
	if !res.Delivered {
		res.Payload = nil
	}
	return res, nil
}

// DeliverSignals delivers kept signals to awaits reached since, each
// delivery in a transaction of its own; a sweep of every run (RunID 0) first
// closes the open signals of finished runs.
func (b *Backend) DeliverSignals(ctx context.Context, params *backend.DeliverSignalsParams) (*backend.DeliverSignalsResult, error) {
	const op = "deliver signals"
	if err := b.checkOpen(op); err != nil {
		return nil, err
	}
	limit := params.Limit
	if limit <= 0 {
		limit = 100
	}
	if params.RunID == 0 {
		if err := b.retry(ctx, op, func() error {
			_, err := b.db.ExecContext(ctx, qRetireSignals)
			return err
		}); err != nil {
			return nil, err
		}
	}
	pairs, err := signalCandidates(ctx, b.db, params.RunID, limit)
	if err != nil {
		return nil, mapErr(op, err)
	}
	res := &backend.DeliverSignalsResult{}
	for _, p := range pairs {
		var ok bool
		err := b.withTx(ctx, op, func(tx *sql.Tx) error {
			var err error
			ok, err = deliverPair(ctx, tx, p)
			return err
		})
		if err != nil {
			return res, err
		}
		if ok {
			res.Delivered++
		}
	}
	return res, nil
}

// signalPair is a signal that may be delivered to an await's job.
type signalPair struct{ sig, job int64 }

// signalCandidates lists the (signal, job) pairs that can be delivered, of
// one run or of every run (0), oldest signal first.
func signalCandidates(ctx context.Context, q querier, runID int64, limit int) ([]signalPair, error) {
	rows, err := q.QueryContext(ctx, qSignalCandidates, runID, runID, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var pairs []signalPair
	for rows.Next() {
		var p signalPair
		if err := rows.Scan(&p.sig, &p.job); err != nil {
			return nil, err
		}
		pairs = append(pairs, p)
	}
	return pairs, rows.Err()
}

// deliverPair gives signal p.sig to job p.job in tx: the signal row is
// locked first and must still be open, the job must still wait. It reports
// false, changing nothing, when either moved on.
func deliverPair(ctx context.Context, tx querier, p signalPair) (bool, error) {
	var runID int64
	var kind int
	err := tx.QueryRowContext(ctx, qLockOpenSignal, p.sig).Scan(&runID, &kind)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	r, err := tx.ExecContext(ctx, qGiveSignal, p.sig, p.sig, p.job)
	if err != nil {
		return false, err
	}
	if n, err := r.RowsAffected(); err != nil || n == 0 {
		return false, err
	}
	if _, err := tx.ExecContext(ctx, qConsumeSignal, p.job, p.sig); err != nil {
		return false, err
	}
	_, err = tx.ExecContext(ctx, qWakeRun, runID)
	return true, err
}
