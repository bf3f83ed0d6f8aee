package sqlite

import (
	"context"

	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/internal/groupcommit"
	"github.com/ductwork-go/ductwork/internal/sqlbackend"
)

// Group commit. All writes go through one connection, so concurrent
// completions queue for it anyway; instead of one transaction each, the
// first waiting caller (the leader) applies every completion queued so far in
// one transaction, each inside its own savepoint so that one stale claim or
// failed plan rolls back only itself, and commits once. Every completion is
// still fenced on its own token; a caller returns only after the commit that
// holds its completion (internal/groupcommit).

// completeReq is one caller's completion in a group.
type completeReq = sqlbackend.Completion

// maxGroup bounds the completions applied in one transaction.
const maxGroup = 64

func (b *Backend) groupComplete(ctx context.Context, params *backend.CompleteParams) (*backend.CompleteResult, error) {
	req := &completeReq{Ctx: ctx, Params: params}
	b.group.Do(req, b.commitGroup)
	return req.Res, req.Err
}

func (b *Backend) commitGroup(group []*completeReq) {
	if len(group) == 1 {
		// Alone: no savepoint needed, a failure rolls back the transaction.
		r := group[0]
		res := &backend.CompleteResult{}
		err := b.inTx(r.Ctx, func(t *txn) error { return b.completeIn(t, r.Params, res) })
		if err != nil {
			r.Res, r.Err = nil, mapErr("complete", err)
		} else {
			r.Res, r.Err = res, nil
		}
		return
	}
	ctx, cancel := groupcommit.Context(sqlbackend.Contexts(group))
	defer cancel()
	err := b.inTx(ctx, func(t *txn) error {
		return sqlbackend.ApplyEach(t.ctx, t.tx, group, func(r *completeReq, res *backend.CompleteResult) error {
			return b.completeIn(t, r.Params, res)
		}, nil, func(err error) error { return mapErr("complete", err) })
	})
	if err != nil {
		err = mapErr("complete", err)
		for _, r := range group {
			r.Res, r.Err = nil, err
		}
	}
}
