package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/internal/txstep"
	"github.com/ductwork-go/ductwork/step"
)

// TxKind is this backend's Capabilities.TxKind: transactional steps receive
// the backend's *sql.Tx.
const TxKind = "mysql"

// TxStep returns a transactional step (see step.Transactional) named name:
// fn runs inside the transaction (READ COMMITTED) that records its result, on
// the database of the Backend it is registered with, and its writes through
// tx commit atomically with the step's output and the run's advancement, or
// not at all. A stale claim (the step was reaped, or the run cancelled) is
// detected before fn runs; an error from fn rolls its writes back and is
// retried like any step error; a crash before the commit leaves nothing. A
// deadlock reruns fn in a fresh transaction.
//
// The transaction, and a lock on the job's row, are held while fn runs: keep
// fn short. Its Timeout (step.DefaultTxTimeout when none is set) bounds it,
// and the server closes the connection of a process that stops talking to it
// for longer. Use tx for every statement that must be exactly-once; anything
// else fn does stays at-least-once. Do not commit or roll back tx.
func TxStep[In, Out any](name string, fn func(ctx step.Context, tx *sql.Tx, in In) (Out, error), opts ...step.Option) step.Step[In, Out] {
	return txstep.New[In, Out, *sql.Tx](TxKind, name, fn, opts...)
}

const qLockClaim = "SELECT 1 FROM ductwork_jobs" + fenced + " FOR UPDATE"

// completeInTx is Complete with params.InTx: lock and check the claim, run
// InTx, then apply its output and plan with completeTx, in one transaction.
func (b *Backend) completeInTx(ctx context.Context, params *backend.CompleteParams) (*backend.CompleteResult, error) {
	timeout := params.TxTimeout
	if timeout <= 0 {
		timeout = step.DefaultTxTimeout
	}
	idle := int64((timeout + 10*time.Second + time.Second - 1) / time.Second)
	var res backend.CompleteResult
	var stepErr error
	err := b.withTx(ctx, "complete", func(tx *sql.Tx) error {
		res, stepErr = backend.CompleteResult{}, nil
		var one int
		err := tx.QueryRowContext(ctx, qLockClaim, params.JobID, params.Fence, params.ProcessID).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("job %d fence %d: %w", params.JobID, params.Fence, backend.ErrStaleClaim)
		}
		if err != nil {
			return err
		}
		// A process stopped while it holds the transaction would hold the
		// job's lock for ever: the server closes an idle connection.
		if _, err := tx.ExecContext(ctx, "SET SESSION wait_timeout = ?", idle); err != nil {
			return err
		}
		defer func() {
			cctx, cancel := cleanupCtx(ctx)
			defer cancel()
			_, _ = tx.ExecContext(cctx, "SET SESSION wait_timeout = DEFAULT")
		}()
		out, plan, err := params.InTx(ctx, tx)
		if err != nil {
			stepErr = err
			return err
		}
		if err := validatePlan(&plan); err != nil {
			return err
		}
		p := *params
		p.Output, p.Plan, p.InTx = out, plan, nil
		return b.completeTx(ctx, tx, &p, &res)
	})
	if stepErr != nil {
		return nil, stepErr
	}
	if err != nil {
		return nil, err
	}
	return &res, nil
}
