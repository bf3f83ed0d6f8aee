package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
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
		b.completeEach(group)
		return
	}
	t0 := time.Now()
	defer func() { b.observeTx(time.Since(t0) / time.Duration(len(group))) }()
	ctx, cancel := groupcommit.Context(sqlbackend.Contexts(group))
	defer cancel()
	err := b.withTx(ctx, "complete", func(tx *sql.Tx) error { return b.applyGroup(ctx, tx, group) })
	if errors.Is(err, errRegroup) {
		// One completion failed part-way: the group was rolled back, and
		// each completion now runs alone, so that only that one fails.
		b.completeEach(group)
		return
	}
	if err != nil {
		for _, r := range group {
			r.Res, r.Err = nil, err
		}
	}
}

// completeEach applies each completion of group in a transaction of its own,
// all at once.
func (b *Backend) completeEach(group []*completeReq) {
	var wg sync.WaitGroup
	for _, r := range group {
		wg.Go(func() {
			t0 := time.Now()
			r.Res, r.Err = b.completeOne(r.Ctx, r.Params)
			b.observeTx(time.Since(t0))
		})
	}
	wg.Wait()
}

// errRegroup: a completion of a group failed after it had changed rows.
var errRegroup = errors.New("ductwork/mysql: a completion of the group failed part-way")

// applyGroup applies the completions of group in tx, one after another,
// without savepoints (each would cost two round trips): a completion whose
// claim is stale fails at its first statement, having changed nothing, and
// the others go on; a deadlock has rolled back the whole transaction and is
// returned for withTx to rerun it; any other failure returns errRegroup, and
// the group is applied again one completion per transaction. The
// completions that add no work are applied first, together (applySet); a
// stale claim among them also sends the group back one completion per
// transaction. A member whose caller has given up is skipped with its
// context's error. Every member's Res and Err are reset first.
func (b *Backend) applyGroup(ctx context.Context, tx *sql.Tx, group []*completeReq) error {
	var set, rest []*completeReq
	returning, maxRows := b.returning.Load(), b.cfg.InsertBatchRows
	setRows, setBytes := 0, 0
	for _, r := range group {
		r.Res, r.Err = nil, nil
		if err := r.Ctx.Err(); err != nil {
			r.Err = err
			continue
		}
		if setShaped(r.Params, returning, maxRows) && setRows+len(r.Params.Plan.Jobs) <= maxRows &&
			setBytes+planBytes(&r.Params.Plan) <= setInsertBytes {
			set = append(set, r)
			setRows += len(r.Params.Plan.Jobs)
			setBytes += planBytes(&r.Params.Plan)
		} else {
			rest = append(rest, r)
		}
	}
	if len(set) > 1 {
		switch err := b.applySet(ctx, tx, set); {
		case err == nil:
		case retryable(err):
			return err
		default:
			return fmt.Errorf("%w: %w", errRegroup, err)
		}
	} else {
		rest = append(set, rest...)
	}
	for _, r := range rest {
		res := &backend.CompleteResult{}
		switch err := b.completeTx(ctx, tx, r.Params, res); {
		case err == nil:
			r.Res = res
		case errors.Is(err, errStaleUnchanged):
			r.Err = mapErr("complete", err)
		case retryable(err):
			return err
		default:
			return fmt.Errorf("%w: %w", errRegroup, err)
		}
	}
	return nil
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

// planBytes is the size of the inputs a plan inserts.
func planBytes(p *backend.Plan) int {
	n := 0
	for i := range p.Jobs {
		n += len(p.Jobs[i].Input)
	}
	return n
}
