package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/internal/txstep"
	"github.com/ductwork-go/ductwork/step"
)

// TxKind is this backend's Capabilities.TxKind: transactional steps receive
// the backend's *sql.Tx.
const TxKind = "sqlite"

// TxStep returns a transactional step (see step.Transactional) named name:
// fn runs inside the write transaction that records its result, on the
// database of the Backend it is registered with, and its writes through tx
// commit atomically with the step's output and the run's advancement, or not
// at all. A stale claim (the step was reaped, or the run cancelled) is
// detected before fn runs; an error from fn rolls its writes back and is
// retried like any step error; a crash before the commit leaves nothing.
//
// SQLite has one writer: while fn runs, every other write to the database,
// from this process (completions, claims, heartbeats) and from others,
// waits. Keep fn very short; its Timeout (step.DefaultTxTimeout when none is
// set) bounds it. A process stopped (not killed) while it holds the
// transaction holds the write lock until it resumes or dies. Use tx for
// every statement that must be exactly-once; anything else fn does stays
// at-least-once. Do not commit or roll back tx.
func TxStep[In, Out any](name string, fn func(ctx step.Context, tx *sql.Tx, in In) (Out, error), opts ...step.Option) step.Step[In, Out] {
	return txstep.New[In, Out, *sql.Tx](TxKind, name, fn, opts...)
}

const qLockClaim = "SELECT 1 FROM ductwork_jobs" + fenced

// completeInTx is Complete with params.InTx: check the claim inside the
// write transaction, run InTx, then apply its output and plan with
// completeIn, in the same transaction.
func (b *Backend) completeInTx(ctx context.Context, params *backend.CompleteParams) (*backend.CompleteResult, error) {
	res := &backend.CompleteResult{}
	var stepErr error
	err := b.inTx(ctx, func(t *txn) error {
		*res, stepErr = backend.CompleteResult{}, nil
		var one int
		err := t.queryRow(qLockClaim, params.JobID, params.Fence, params.ProcessID).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("job %d fence %d: %w", params.JobID, params.Fence, backend.ErrStaleClaim)
		}
		if err != nil {
			return err
		}
		out, plan, err := params.InTx(ctx, t.tx)
		if err != nil {
			stepErr = err
			return err
		}
		p := *params
		p.Output, p.Plan, p.InTx = out, plan, nil
		return b.completeIn(t, &p, res)
	})
	if stepErr != nil {
		return nil, stepErr
	}
	if err != nil {
		return nil, mapErr("complete", err)
	}
	return res, nil
}
