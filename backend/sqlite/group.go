package sqlite

import (
	"context"

	"github.com/ductwork-go/ductwork/backend"
)

// Group commit. All writes go through one connection, so concurrent
// completions queue for it anyway; instead of one transaction each, the
// first waiting caller (the leader) applies every completion queued so far in
// one transaction, each inside its own savepoint so that one stale claim or
// failed plan rolls back only itself, and commits once. Every completion is
// still fenced on its own token; a caller returns only after the commit that
// holds its completion. No goroutine is started: leadership passes to the
// first caller still waiting.

type completeReq struct {
	ctx      context.Context
	params   *backend.CompleteParams
	res      *backend.CompleteResult
	err      error
	promoted bool
	signal   chan struct{} // closed when done, or when promoted to leader
}

// maxGroup bounds the completions applied in one transaction.
const maxGroup = 64

func (b *Backend) groupComplete(ctx context.Context, params *backend.CompleteParams) (*backend.CompleteResult, error) {
	req := &completeReq{ctx: ctx, params: params, signal: make(chan struct{})}
	b.gmu.Lock()
	b.pending = append(b.pending, req)
	lead := !b.leading
	b.leading = true
	b.gmu.Unlock()
	if !lead {
		<-req.signal
		if !req.promoted {
			return req.res, req.err
		}
	}
	b.leadOnce()
	return req.res, req.err
}

// leadOnce commits one group (which includes the leader's own request) and
// hands leadership to the next waiting caller, if any.
func (b *Backend) leadOnce() {
	b.gmu.Lock()
	n := min(len(b.pending), maxGroup)
	group := b.pending[:n:n]
	b.pending = b.pending[n:]
	b.gmu.Unlock()

	b.commitGroup(group)

	b.gmu.Lock()
	if len(b.pending) > 0 {
		next := b.pending[0]
		next.promoted = true
		close(next.signal)
	} else {
		b.leading = false
	}
	b.gmu.Unlock()
	for _, r := range group {
		if !r.promoted {
			close(r.signal)
		}
	}
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
	err := b.inTx(context.Background(), func(t *txn) error {
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
