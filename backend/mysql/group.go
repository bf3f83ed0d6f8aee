package mysql

import (
	"context"
	"database/sql"

	"github.com/ductwork-go/ductwork/backend"
)

// Group commit: concurrent completions of this Backend are applied in one
// transaction, each inside its own savepoint so that a stale claim rolls
// back only itself, and committed once (internal/groupcommit). Each stays
// fenced on its own token; a caller returns only after the commit that holds
// its completion. A deadlock rolls back the whole InnoDB transaction, so the
// group is then retried as a whole by withTx.

type completeReq struct {
	ctx    context.Context
	params *backend.CompleteParams
	res    *backend.CompleteResult
	err    error
}

// maxGroup bounds the completions applied in one transaction.
const maxGroup = 32

func (b *Backend) commitGroup(group []*completeReq) {
	if len(group) == 1 {
		r := group[0]
		r.res, r.err = b.completeOne(r.ctx, r.params)
		return
	}
	ctx := context.Background()
	err := b.withTx(ctx, "complete", func(tx *sql.Tx) error {
		for _, r := range group {
			r.res, r.err = nil, nil
			if err := r.ctx.Err(); err != nil {
				r.err = err
				continue
			}
			if _, err := tx.ExecContext(ctx, "SAVEPOINT dw_complete"); err != nil {
				return err
			}
			res := &backend.CompleteResult{}
			if err := b.completeTx(ctx, tx, r.params, res); err != nil {
				if retryable(err) {
					return err // InnoDB rolled back the whole transaction
				}
				r.err = mapErr("complete", err)
				if _, err := tx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT dw_complete"); err != nil {
					return err
				}
			} else {
				r.res = res
			}
			if _, err := tx.ExecContext(ctx, "RELEASE SAVEPOINT dw_complete"); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		for _, r := range group {
			r.res, r.err = nil, err
		}
	}
}
