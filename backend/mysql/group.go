package mysql

import (
	"context"
	"database/sql"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/internal/groupcommit"
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
	if len(group) == 1 || b.linkSlow() {
		// A group applies its completions one after another, each several
		// round trips: over a slow link that serializes them (16 grouped
		// completions at 400 ms a round trip took longer than any caller's
		// deadline, and none ever committed). Then each gets its own
		// transaction, on its own connection, at once.
		var wg sync.WaitGroup
		for _, r := range group {
			wg.Go(func() {
				t0 := time.Now()
				r.res, r.err = b.completeOne(r.ctx, r.params)
				b.observeTx(time.Since(t0))
			})
		}
		wg.Wait()
		return
	}
	t0 := time.Now()
	defer func() { b.observeTx(time.Since(t0) / time.Duration(len(group))) }()
	ctx, cancel := groupcommit.Context(contexts(group))
	defer cancel()
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

// contexts lists the callers' contexts of a group.
func contexts(group []*completeReq) []context.Context {
	out := make([]context.Context, len(group))
	for i, r := range group {
		out[i] = r.ctx
	}
	return out
}

// slowLinkTx is the time per write transaction above which the link to the
// database is taken to be slow (a local server takes a few milliseconds).
const slowLinkTx = 25 * time.Millisecond

// txTime is a moving average of the time a write transaction takes (per
// completion in a group), in nanoseconds.
type txTime struct{ avg atomic.Int64 }

// observeTx adds one transaction's duration to the moving average.
func (b *Backend) observeTx(d time.Duration) {
	old := b.txTime.avg.Load()
	b.txTime.avg.Store(old - old/8 + int64(d)/8)
}

// linkSlow reports whether transactions have lately been slow enough that
// grouping completions would serialize round trips rather than save commits.
func (b *Backend) linkSlow() bool { return time.Duration(b.txTime.avg.Load()) > slowLinkTx }
