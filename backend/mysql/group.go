package mysql

import (
	"database/sql"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/internal/groupcommit"
	"github.com/ductwork-go/ductwork/internal/sqlbackend"
)

// Group commit: concurrent completions of this Backend are applied in one
// transaction, each inside its own savepoint so that a stale claim rolls
// back only itself, and committed once (internal/groupcommit). Each stays
// fenced on its own token; a caller returns only after the commit that holds
// its completion. A deadlock rolls back the whole InnoDB transaction, so the
// group is then retried as a whole by withTx.

// completeReq is one caller's completion in a group.
type completeReq = sqlbackend.Completion

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
				r.Res, r.Err = b.completeOne(r.Ctx, r.Params)
				b.observeTx(time.Since(t0))
			})
		}
		wg.Wait()
		return
	}
	t0 := time.Now()
	defer func() { b.observeTx(time.Since(t0) / time.Duration(len(group))) }()
	ctx, cancel := groupcommit.Context(sqlbackend.Contexts(group))
	defer cancel()
	err := b.withTx(ctx, "complete", func(tx *sql.Tx) error {
		// A retryable error has rolled back the whole InnoDB transaction:
		// ApplyEach returns it and withTx reruns the group.
		return sqlbackend.ApplyEach(ctx, tx, group, func(r *completeReq, res *backend.CompleteResult) error {
			return b.completeTx(ctx, tx, r.Params, res)
		}, retryable, func(err error) error { return mapErr("complete", err) })
	})
	if err != nil {
		for _, r := range group {
			r.Res, r.Err = nil, err
		}
	}
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
