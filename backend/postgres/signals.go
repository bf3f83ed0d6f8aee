package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ductwork-go/ductwork/backend"
)

// Signals and waits. A send delivers in the sender's transaction to the
// awaits that are waiting and not locked (SKIP LOCKED: one being claimed at
// its deadline, or being given another signal, is left alone); what it
// cannot deliver is kept, and DeliverSignals, run after every completion
// that inserts awaits and periodically by every supervisor, delivers it when
// an await reaches it. A delivery is one statement that locks the signal row
// and re-checks the job, so a signal is consumed once and an await receives
// one signal, however many deliver at once.

const sqlMarkWait = `
UPDATE {schema}.ductwork_jobs AS j
SET wait_kind = u.kind, signal_name = u.name, signal_key = u.key, due_at = coalesce(u.due, j.due_at)
FROM (SELECT run_id FROM {schema}.ductwork_jobs WHERE id = $1) AS src,
	unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::timestamptz[]) AS u(node_id, scope, kind, name, key, due)
WHERE j.run_id = src.run_id AND j.node_id = u.node_id AND j.scope = u.scope`

// sqlActive is true when the run $1 has work that does not wait.
const sqlActive = `EXISTS (SELECT 1 FROM {schema}.ductwork_jobs AS a WHERE a.run_id = r.id
	AND (a.status = 'running' OR (a.status = 'pending' AND a.wait_kind = '')))`

// sqlLockRunSettle serializes the settling of one run's status ($1 is the
// completing job): two branches settling at once would otherwise each read
// the other's step as still running (READ COMMITTED does not see an
// uncommitted completion) and both leave the run running, although every
// branch then waits. Locked, the second waits for the first to commit, and
// its next statement sees it. NO KEY UPDATE does not conflict with the KEY
// SHARE lock every completion takes on its run.
const sqlLockRunSettle = `SELECT 1 FROM {schema}.ductwork_runs
WHERE id = (SELECT run_id FROM {schema}.ductwork_jobs WHERE id = $1) FOR NO KEY UPDATE`

// sqlSettleRun sets a running or waiting run's status from its jobs (see
// backend.Plan.Settle); $1 is the completing job.
const sqlSettleRun = `
UPDATE {schema}.ductwork_runs AS r
SET status = CASE WHEN ` + sqlActive + ` THEN 'running' ELSE 'waiting' END, updated_at = now()
WHERE r.id = (SELECT run_id FROM {schema}.ductwork_jobs WHERE id = $1) AND r.status IN ('running', 'waiting')
  AND r.status <> CASE WHEN ` + sqlActive + ` THEN 'running' ELSE 'waiting' END`

// sqlSignalRun locks the run against CancelRun (KEY SHARE, as a completion
// does) and reads its status.
const sqlSignalRun = `SELECT status FROM {schema}.ductwork_runs WHERE id = $1 FOR KEY SHARE`

const sqlInsertSignal = `
INSERT INTO {schema}.ductwork_signals (run_id, name, target_kind, target, payload)
VALUES ($1, $2, $3, $4, $5) RETURNING id`

// sqlSignalMatch: job j may receive signal s (an await of its name, still
// waiting by the database's clock, within the signal's target).
const sqlSignalMatch = `j.run_id = s.run_id AND j.signal_name = s.name AND j.status = 'pending' AND j.signal_id IS NULL
	AND j.due_at > now()
	AND (s.target_kind IN (0, 3) OR (s.target_kind = 1 AND j.scope = s.target) OR (s.target_kind = 2 AND j.signal_key = s.target))`

// sqlSignalCandidates lists (signal, job) pairs that can be delivered, of
// one run ($1) or of every run ($1 = 0), oldest signal first.
const sqlSignalCandidates = `
SELECT s.id, j.id
FROM {schema}.ductwork_signals AS s
JOIN {schema}.ductwork_jobs AS j ON ` + sqlSignalMatch + `
WHERE s.consumed_job_id IS NULL AND ($1::bigint = 0 OR s.run_id = $1::bigint)
ORDER BY s.id, j.id
LIMIT $2`

// sqlDeliverPair gives signal $1 to job $2 when the signal is still open
// (its row locked first) and the job still waits.
const sqlDeliverPair = `
WITH s AS (
	SELECT id, run_id, target_kind, payload FROM {schema}.ductwork_signals
	WHERE id = $1 AND consumed_job_id IS NULL
	FOR UPDATE
), u AS (
	UPDATE {schema}.ductwork_jobs AS j
	SET signal_id = s.id, signal_payload = s.payload, due_at = now()
	FROM s
	WHERE j.id = $2 AND j.status = 'pending' AND j.signal_id IS NULL AND j.due_at > now()
	RETURNING j.id
), cs AS (
	UPDATE {schema}.ductwork_signals AS x
	SET consumed_job_id = $2, consumed_at = now()
	FROM s
	WHERE x.id = s.id AND s.target_kind <> 3 AND EXISTS (SELECT 1 FROM u)
	RETURNING 1
), w AS (
	UPDATE {schema}.ductwork_runs AS r
	SET status = 'running', updated_at = now()
	FROM s
	WHERE r.id = s.run_id AND r.status = 'waiting' AND EXISTS (SELECT 1 FROM u)
	RETURNING 1
)
SELECT (SELECT count(*) FROM u), (SELECT count(*) FROM cs), (SELECT count(*) FROM w)`

// sqlRetireSignals closes the open signals of finished runs (consumed by job
// 0), so the sweep no longer reads them.
const sqlRetireSignals = `
UPDATE {schema}.ductwork_signals AS s SET consumed_job_id = 0, consumed_at = now()
WHERE s.consumed_job_id IS NULL
  AND EXISTS (SELECT 1 FROM {schema}.ductwork_runs AS r WHERE r.id = s.run_id AND r.status IN ('completed', 'cancelled'))`

const sqlReceiveSignal = `
SELECT signal_id, signal_payload FROM {schema}.ductwork_jobs
WHERE id = $1 AND fence = $2 AND process_id = $3 AND status = 'running'`

// signalQueries are the statements of this file, rendered for one schema.
type signalQueries struct {
	markWait, lockSettle, settleRun, signalRun, insertSignal string
	candidates, deliverPair, retire, receive                 string
}

func renderSignalQueries(r *strings.Replacer) signalQueries {
	return signalQueries{
		markWait: r.Replace(sqlMarkWait), lockSettle: r.Replace(sqlLockRunSettle), settleRun: r.Replace(sqlSettleRun), signalRun: r.Replace(sqlSignalRun),
		insertSignal: r.Replace(sqlInsertSignal),
		candidates:   r.Replace(sqlSignalCandidates), deliverPair: r.Replace(sqlDeliverPair),
		retire: r.Replace(sqlRetireSignals), receive: r.Replace(sqlReceiveSignal),
	}
}

// queueWaits queues, on a completion's batch, the wait fields of the plan's
// jobs and the run's settling; it reports whether it queued anything.
func (b *Backend) queueWaits(batch *pgx.Batch, params *backend.CompleteParams) {
	plan := &params.Plan
	var nodes, scopes, kinds, names, keys []string
	var dues []*time.Time
	for i := range plan.Jobs {
		j := &plan.Jobs[i]
		if j.Wait == "" {
			continue
		}
		nodes, scopes, kinds = append(nodes, j.NodeID), append(scopes, j.Scope), append(kinds, j.Wait)
		names, keys = append(names, j.Signal), append(keys, j.SignalKey)
		var due *time.Time
		if !j.DueAt.IsZero() {
			d := j.DueAt
			due = &d
		}
		dues = append(dues, due)
	}
	if len(nodes) > 0 {
		batch.Queue(b.q.sig.markWait, params.JobID, nodes, scopes, kinds, names, keys, dues)
	}
}

// queueSettle queues backend.Plan.Settle on a completion's batch.
func (b *Backend) queueSettle(batch *pgx.Batch, params *backend.CompleteParams) {
	if params.Plan.Settle {
		batch.Queue(b.q.sig.lockSettle, params.JobID)
		batch.Queue(b.q.sig.settleRun, params.JobID)
	}
}

// SendSignal stores the signal and delivers it to the waiting awaits in one
// transaction (params.Tx, a pgx.Tx, when set). A delivery notifies the
// channel in the same transaction.
func (b *Backend) SendSignal(ctx context.Context, params *backend.SendSignalParams) (*backend.SendSignalResult, error) {
	if err := b.checkOpen(); err != nil {
		return nil, err
	}
	if err := errors.Join(checkLen("Name", params.Name, Limits.MaxNodeIDBytes)); err != nil {
		return nil, err
	}
	res := &backend.SendSignalResult{}
	send := func(tx pgx.Tx) error {
		var status string
		err := tx.QueryRow(ctx, b.q.sig.signalRun, params.RunID).Scan(&status)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("ductwork/postgres: signal %q to run %d: %w", params.Name, params.RunID, backend.ErrRunNotFound)
		}
		if err != nil {
			return mapErr("send signal", err)
		}
		if status == backend.RunCompleted || status == backend.RunCancelled {
			return fmt.Errorf("ductwork/postgres: signal %q to run %d (%s): %w", params.Name, params.RunID, status, backend.ErrRunFinished)
		}
		if err := tx.QueryRow(ctx, b.q.sig.insertSignal, params.RunID, params.Name, int16(params.Target.Kind),
			params.Target.Value, params.Payload).Scan(&res.SignalID); err != nil {
			return mapErr("send signal", err)
		}
		// Older signals kept for the run go first, so awaits receive
		// signals in the order they were sent.
		delivered, err := b.deliverRun(ctx, tx, params.RunID, res.SignalID)
		if err != nil {
			return err
		}
		res.Delivered = delivered
		if delivered > 0 {
			if _, err := tx.Exec(ctx, b.q.notify, b.channel); err != nil {
				return mapErr("send signal", err)
			}
		}
		return nil
	}
	if params.Tx != nil {
		tx, ok := params.Tx.(pgx.Tx)
		if !ok {
			return nil, fmt.Errorf("ductwork/postgres: send signal: %w: got %T, want pgx.Tx", backend.ErrUnsupportedTx, params.Tx)
		}
		// A savepoint, so that a refused send leaves the caller's
		// transaction usable.
		sp, err := tx.Begin(ctx)
		if err != nil {
			return nil, mapErr("send signal", err)
		}
		if err := send(sp); err != nil {
			_ = sp.Rollback(ctx)
			return nil, err
		}
		if err := sp.Commit(ctx); err != nil {
			return nil, mapErr("send signal", err)
		}
		return res, nil
	}
	err := pgx.BeginFunc(ctx, b.pool, send)
	if err != nil {
		return nil, err
	}
	return res, nil
}

// ReceiveSignal reads the signal delivered to a claimed await job.
func (b *Backend) ReceiveSignal(ctx context.Context, params *backend.ReceiveSignalParams) (*backend.ReceiveSignalResult, error) {
	if err := b.checkOpen(); err != nil {
		return nil, err
	}
	var id *int64
	res := &backend.ReceiveSignalResult{}
	err := b.pool.QueryRow(ctx, b.q.sig.receive, params.JobID, params.Fence, params.ProcessID).Scan(&id, &res.Payload)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("ductwork/postgres: receive signal: job %d fence %d: %w", params.JobID, params.Fence, backend.ErrStaleClaim)
	}
	if err != nil {
		return nil, mapErr("receive signal", err)
	}
	if id != nil {
		res.Delivered, res.SignalID = true, *id
	} else {
		res.Payload = nil
	}
	return res, nil
}

// DeliverSignals delivers kept signals to awaits reached since, one
// statement (its own transaction) per delivery; a sweep of every run
// (RunID 0) first closes the open signals of finished runs.
func (b *Backend) DeliverSignals(ctx context.Context, params *backend.DeliverSignalsParams) (*backend.DeliverSignalsResult, error) {
	if err := b.checkOpen(); err != nil {
		return nil, err
	}
	limit := params.Limit
	if limit <= 0 {
		limit = 100
	}
	if params.RunID == 0 {
		if _, err := b.pool.Exec(ctx, b.q.sig.retire); err != nil {
			return nil, mapErr("deliver signals", err)
		}
	}
	pairs, err := b.signalCandidates(ctx, b.pool, params.RunID, limit)
	if err != nil {
		return nil, err
	}
	res := &backend.DeliverSignalsResult{}
	for _, p := range pairs {
		ok, err := b.deliverPair(ctx, b.pool, p)
		if err != nil {
			return res, err
		}
		if ok {
			res.Delivered++
		}
	}
	if res.Delivered > 0 {
		b.notifyLater()
	}
	return res, nil
}

// signalPair is a signal that may be delivered to an await's job.
type signalPair struct{ sig, job int64 }

// signalCandidates lists the (signal, job) pairs that can be delivered, of
// one run or of every run (0), oldest signal first.
func (b *Backend) signalCandidates(ctx context.Context, q queryer, runID int64, limit int) ([]signalPair, error) {
	rows, err := q.Query(ctx, b.q.sig.candidates, runID, limit)
	if err != nil {
		return nil, mapErr("deliver signals", err)
	}
	pairs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (signalPair, error) {
		var p signalPair
		return p, r.Scan(&p.sig, &p.job)
	})
	if err != nil {
		return nil, mapErr("deliver signals", err)
	}
	return pairs, nil
}

// deliverPair delivers one pair in one statement; false when the signal or
// the job moved on meanwhile.
func (b *Backend) deliverPair(ctx context.Context, q queryer, p signalPair) (bool, error) {
	var delivered, consumed, woken int64
	if err := q.QueryRow(ctx, b.q.sig.deliverPair, p.sig, p.job).Scan(&delivered, &consumed, &woken); err != nil {
		return false, mapErr("deliver signals", err)
	}
	return delivered > 0, nil
}

// deliverRun delivers the run's kept signals, oldest first, in tx, and
// returns how many awaits received signal sig.
func (b *Backend) deliverRun(ctx context.Context, tx pgx.Tx, runID, sig int64) (int, error) {
	pairs, err := b.signalCandidates(ctx, tx, runID, 1000)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, p := range pairs {
		ok, err := b.deliverPair(ctx, tx, p)
		if err != nil {
			return n, err
		}
		if ok && p.sig == sig {
			n++
		}
	}
	return n, nil
}
