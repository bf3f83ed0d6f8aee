package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/ductwork-go/ductwork/backend"
)

// Signals and waits. SQLite has one writer, so a send, a completion that
// inserts an await and a delivery sweep never run at once: a signal sent
// before its await is reached is delivered by the DeliverSignals that
// follows that completion.

const (
	// qMarkWait turns a job a completion just inserted into one that waits
	// (see backend.NewJob.Wait); ?4 is an absolute due time or NULL.
	qMarkWait = `UPDATE ductwork_jobs SET wait_kind = ?1, signal_name = ?2, signal_key = ?3, due_at = COALESCE(?4, due_at)
WHERE run_id = ?5 AND node_id = ?6 AND scope = ?7`

	// activeJob is true when the run (?1) has work that does not wait.
	activeJob = `EXISTS (SELECT 1 FROM ductwork_jobs AS a WHERE a.run_id = ?1
    AND (a.status = 'running' OR (a.status = 'pending' AND a.wait_kind = '')))`

	// qSettleRun sets a running or waiting run's status from its jobs.
	qSettleRun = `UPDATE ductwork_runs
SET status = CASE WHEN ` + activeJob + ` THEN 'running' ELSE 'waiting' END, updated_at = ` + nowUS + `
WHERE id = ?1 AND status IN ('running', 'waiting')
  AND status <> CASE WHEN ` + activeJob + ` THEN 'running' ELSE 'waiting' END`

	qRunStatus = `SELECT status FROM ductwork_runs WHERE id = ?`

	qInsertSignal = `INSERT INTO ductwork_signals (run_id, name, target_kind, target, payload, created_at)
VALUES (?, ?, ?, ?, ?, ` + nowUS + `)`

	// signalMatch is true when the job j is one the signal s may be
	// delivered to: an await of its name, waiting (pending, none delivered,
	// deadline not passed), within the signal's target.
	signalMatch = `j.run_id = s.run_id AND j.signal_name = s.name AND j.status = 'pending' AND j.signal_id IS NULL
  AND j.due_at > ` + nowUS + `
  AND (s.target_kind IN (0, 3) OR (s.target_kind = 1 AND j.scope = s.target) OR (s.target_kind = 2 AND j.signal_key = s.target))`

	// qSignalCandidates lists (signal, job) pairs that can be delivered, of
	// one run (?1) or of every run (?1 = 0), oldest signal first.
	qSignalCandidates = `SELECT s.id, j.id, s.target_kind, s.run_id
FROM ductwork_signals AS s
JOIN ductwork_jobs AS j ON ` + signalMatch + `
WHERE s.consumed_job_id IS NULL AND (?1 = 0 OR s.run_id = ?1)
ORDER BY s.id, j.id
LIMIT ?2`

	// qDeliverSignal gives signal ?1 to job ?2 if the job still waits and the
	// signal is still open.
	qDeliverSignal = `UPDATE ductwork_jobs
SET signal_id = ?1, signal_payload = (SELECT payload FROM ductwork_signals WHERE id = ?1), due_at = ` + nowUS + `
WHERE id = ?2 AND status = 'pending' AND signal_id IS NULL AND due_at > ` + nowUS + `
  AND EXISTS (SELECT 1 FROM ductwork_signals WHERE id = ?1 AND consumed_job_id IS NULL)`

	// qConsumeSignal marks a signal (not TargetAll) consumed by a job.
	qConsumeSignal = `UPDATE ductwork_signals SET consumed_job_id = ?1, consumed_at = ` + nowUS + `
WHERE id = ?2 AND consumed_job_id IS NULL AND target_kind <> 3`

	qWakeRun = `UPDATE ductwork_runs SET status = 'running', updated_at = ` + nowUS + `
WHERE id = ? AND status = 'waiting'`

	// qRetireSignals closes the open signals of finished runs (consumed by
	// job 0), so the sweep no longer reads them.
	qRetireSignals = `UPDATE ductwork_signals SET consumed_job_id = 0, consumed_at = ` + nowUS + `
WHERE consumed_job_id IS NULL
  AND EXISTS (SELECT 1 FROM ductwork_runs AS r WHERE r.id = ductwork_signals.run_id AND r.status IN ('completed', 'cancelled'))`

	qReceiveSignal = `SELECT signal_id, signal_payload FROM ductwork_jobs` + fenced
)

// markWaits applies the wait fields of the plan's jobs (inserted just
// before, in the same transaction).
func markWaits(t *txn, runID int64, jobs []backend.NewJob) error {
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
		if _, err := t.exec(qMarkWait, j.Wait, name, key, due, runID, j.NodeID, j.Scope); err != nil {
			return fmt.Errorf("mark wait (%s, %q): %w", j.NodeID, j.Scope, err)
		}
	}
	return nil
}

// settleRun applies backend.Plan.Settle.
func settleRun(t *txn, runID int64) error {
	_, err := t.exec(qSettleRun, runID)
	return err
}

// SendSignal stores the signal and delivers it to waiting awaits in one
// write transaction (or in params.Tx, a *sql.Tx on this database).
func (b *Backend) SendSignal(ctx context.Context, params *backend.SendSignalParams) (*backend.SendSignalResult, error) {
	if b.closed.Load() {
		return nil, errClosed("send signal")
	}
	var res backend.SendSignalResult
	send := func(t *txn) error {
		res = backend.SendSignalResult{}
		var status string
		err := t.queryRow(qRunStatus, params.RunID).Scan(&status)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("signal %q to run %d: %w", params.Name, params.RunID, backend.ErrRunNotFound)
		}
		if err != nil {
			return err
		}
		if status == backend.RunCompleted || status == backend.RunCancelled {
			return fmt.Errorf("signal %q to run %d (%s): %w", params.Name, params.RunID, status, backend.ErrRunFinished)
		}
		r, err := t.exec(qInsertSignal, params.RunID, params.Name, params.Target.Kind, params.Target.Value, params.Payload)
		if err != nil {
			return err
		}
		if res.SignalID, err = r.LastInsertId(); err != nil {
			return err
		}
		n, err := deliver(t, params.RunID, -1)
		res.Delivered = n
		return err
	}
	if params.Tx != nil {
		tx, ok := params.Tx.(*sql.Tx)
		if !ok || tx == nil {
			return nil, fmt.Errorf("sqlite: send signal: %T is not a *sql.Tx: %w", params.Tx, backend.ErrUnsupportedTx)
		}
		if err := send(&txn{ctx: ctx, tx: tx}); err != nil {
			return nil, mapErr("send signal", err)
		}
		return &res, nil
	}
	if err := b.inTx(ctx, send); err != nil {
		return nil, mapErr("send signal", err)
	}
	return &res, nil
}

// deliver delivers up to limit (-1: no limit) open signals of run (0: every
// run) to the awaits they match, and wakes their runs.
func deliver(t *txn, run int64, limit int) (int, error) {
	type pair struct{ sig, job, kind, run int64 }
	rows, err := t.query(qSignalCandidates, run, limit)
	if err != nil {
		return 0, err
	}
	var pairs []pair
	for rows.Next() {
		var p pair
		if err := rows.Scan(&p.sig, &p.job, &p.kind, &p.run); err != nil {
			rows.Close()
			return 0, err
		}
		pairs = append(pairs, p)
	}
	if err := rows.Close(); err != nil {
		return 0, err
	}
	if err := rows.Err(); err != nil {
		return 0, err
	}
	n := 0
	for _, p := range pairs {
		got, err := t.execCount(qDeliverSignal, p.sig, p.job)
		if err != nil {
			return n, err
		}
		if got == 0 {
			continue
		}
		n++
		if _, err := t.exec(qConsumeSignal, p.job, p.sig); err != nil {
			return n, err
		}
		if _, err := t.exec(qWakeRun, p.run); err != nil {
			return n, err
		}
	}
	return n, nil
}

// ReceiveSignal reads the signal delivered to a claimed await job.
func (b *Backend) ReceiveSignal(ctx context.Context, params *backend.ReceiveSignalParams) (*backend.ReceiveSignalResult, error) {
	if b.closed.Load() {
		return nil, errClosed("receive signal")
	}
	row, err := b.readRow(ctx, qReceiveSignal, params.JobID, params.Fence, params.ProcessID)
	if err != nil {
		return nil, mapErr("receive signal", err)
	}
	var id sql.NullInt64
	res := &backend.ReceiveSignalResult{}
	err = row.Scan(&id, &res.Payload)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("sqlite: receive signal: job %d fence %d: %w", params.JobID, params.Fence, backend.ErrStaleClaim)
	}
	if err != nil {
		return nil, mapErr("receive signal", err)
	}
	res.Delivered, res.SignalID = id.Valid, id.Int64
	if !res.Delivered {
		res.Payload = nil
	}
	return res, nil
}

// DeliverSignals delivers kept signals to awaits reached since, in one write
// transaction; a sweep of every run (RunID 0) first closes the open signals
// of finished runs.
func (b *Backend) DeliverSignals(ctx context.Context, params *backend.DeliverSignalsParams) (*backend.DeliverSignalsResult, error) {
	if b.closed.Load() {
		return nil, errClosed("deliver signals")
	}
	limit := params.Limit
	if limit <= 0 {
		limit = 100
	}
	res := &backend.DeliverSignalsResult{}
	err := b.inTx(ctx, func(t *txn) error {
		if params.RunID == 0 {
			if _, err := t.exec(qRetireSignals); err != nil {
				return err
			}
		}
		n, err := deliver(t, params.RunID, limit)
		res.Delivered = n
		return err
	})
	if err != nil {
		return nil, mapErr("deliver signals", err)
	}
	return res, nil
}
