package sqlite

import (
	"context"

	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/internal/groupcommit"
)

// Group commit. All writes go through one connection, so concurrent
// completions queue for it anyway; instead of one transaction each, the
// first waiting caller (the leader) applies every completion queued so far in
// one transaction, each inside its own savepoint so that one stale claim or
// failed plan rolls back only itself, and commits once. Every completion is
// still fenced on its own token; a caller returns only after the commit that
// holds its completion (internal/groupcommit).

type completeReq struct {
	ctx    context.Context
	params *backend.CompleteParams
	res    *backend.CompleteResult
	err    error
}

// maxGroup bounds the completions applied in one transaction.
const maxGroup = 64

func (b *Backend) groupComplete(ctx context.Context, params *backend.CompleteParams) (*backend.CompleteResult, error) {
	req := &completeReq{ctx: ctx, params: params}
	b.group.Do(req, b.commitGroup)
	return req.res, req.err
}

func (b *Backend) commitGroup(group []*completeReq) {
	if len(group) == 1 {
		// Alone: no savepoint needed, a failure rolls back the transaction.
		r := group[0]
		res := &backend.CompleteResult{}
		err := b.inTx(r.ctx, func(t *txn) error { return b.completeIn(t, r.params, res) })
		if err != nil {
			r.res, r.err = nil, mapErr("complete", err)
		} else {
			r.res, r.err = res, nil
		}
		return
	}
	ctx, cancel := groupcommit.Context(contexts(group))
	defer cancel()
	err := b.inTx(ctx, func(t *txn) error {
		for _, r := range group {
			r.res, r.err = nil, nil
			if err := r.ctx.Err(); err != nil {
				r.err = err
				continue
			}
			if _, err := t.tx.ExecContext(t.ctx, "SAVEPOINT dw_complete"); err != nil {
				return err
			}
			res := &backend.CompleteResult{}
			if err := b.completeIn(t, r.params, res); err != nil {
				r.err = mapErr("complete", err)
				if _, err := t.tx.ExecContext(t.ctx, "ROLLBACK TO dw_complete"); err != nil {
					return err
				}
			} else {
				r.res = res
			}
			if _, err := t.tx.ExecContext(t.ctx, "RELEASE dw_complete"); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		err = mapErr("complete", err)
		for _, r := range group {
			r.res, r.err = nil, err
		}
	}
}

// contexts lists the callers' contexts of a group.
func contexts(group []*completeReq) []context.Context {
	out := make([]context.Context, len(group))
	for i, r := range group {
		out[i] = r.ctx
	}
	return out
}
