package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/internal/txstep"
	"github.com/ductwork-go/ductwork/step"
	"github.com/jackc/pgx/v5"
)

// TxKind is this backend's Capabilities.TxKind: transactional steps receive
// a pgx.Tx.
const TxKind = "postgres"

// TxStep returns a transactional step (see step.Transactional) named name:
// fn runs inside the transaction that records its result, on the database of
// the Backend it is registered with, and its writes through tx commit
// atomically with the step's output and the run's advancement, or not at
// all. A stale claim (the step was reaped, or the run cancelled) is detected
// before fn runs; an error from fn rolls its writes back and is retried like
// any step error; a crash before the commit leaves nothing.
//
// The transaction, and a lock on the job's row, are held while fn runs: keep
// fn short (a few statements). Its Timeout (step.DefaultTxTimeout when none
// is set) bounds it, and the server ends the transaction of a process that
// stops talking to it for longer. Use tx for every statement that must be
// exactly-once; anything else fn does (other databases, HTTP calls) stays
// at-least-once. Do not commit or roll back tx.
func TxStep[In, Out any](name string, fn func(ctx step.Context, tx pgx.Tx, in In) (Out, error), opts ...step.Option) step.Step[In, Out] {
	return txstep.New[In, Out, pgx.Tx](TxKind, name, fn, opts...)
}

// txMargin is added to a transactional step's timeout for the server-side
// bound of its transaction.
const txMargin = 10 * time.Second

// completeInTx is Complete with params.InTx: lock and check the claim, run
// InTx, then apply its output and plan with the statements of every
// completion (queueComplete), in one transaction.
func (b *Backend) completeInTx(ctx context.Context, params *backend.CompleteParams) (*backend.CompleteResult, error) {
	tx, err := b.pool.Begin(ctx)
	if err != nil {
		return nil, mapErr("complete", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	timeout := params.TxTimeout
	if timeout <= 0 {
		timeout = step.DefaultTxTimeout
	}
	batch := &pgx.Batch{}
	// A process stopped while it holds the transaction would hold the job's
	// lock (and block its reaping) for ever: the server ends the session.
	batch.Queue(fmt.Sprintf("SET LOCAL idle_in_transaction_session_timeout = %d", (timeout + txMargin).Milliseconds()))
	batch.Queue(b.q.lockOwner, params.ProcessID)
	batch.Queue(b.q.lockRun, params.JobID)
	var found bool
	batch.Queue(b.q.lockClaim, params.JobID, params.Fence, params.ProcessID).
		Query(func(rows pgx.Rows) error {
			defer rows.Close()
			found = rows.Next()
			return rows.Err()
		})
	if err := tx.SendBatch(ctx, batch).Close(); err != nil {
		return nil, mapErr("complete", err)
	}
	if !found {
		return nil, fmt.Errorf("ductwork/postgres: complete: job %d fence %d: %w", params.JobID, params.Fence, backend.ErrStaleClaim)
	}
	out, plan, err := params.InTx(ctx, tx)
	if err != nil {
		return nil, err
	}
	if err := checkPlan(&plan); err != nil {
		return nil, err
	}
	p := *params
	p.Output, p.Plan, p.InTx = out, plan, nil
	res := &backend.CompleteResult{}
	batch = &pgx.Batch{}
	wake := b.queueComplete(batch, &p, res, true) // the locks are held since the first batch
	if err := tx.SendBatch(ctx, batch).Close(); err != nil {
		return nil, completeErr(&p, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, mapErr("complete", err)
	}
	if wake && res.NewJobs > len(res.Claimed) {
		b.notifyLater()
	}
	return res, nil
}
