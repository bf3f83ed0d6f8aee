package supervisor

import (
	"context"
	"sync"
	"time"

	"github.com/ductwork-go/ductwork/backend"
)

// ledger records the claims this process runs or is about to run (queued),
// and the calls in flight that may claim jobs for it (a batch claim, a
// completion with ClaimNext). Reconciliation compares it with the claims the
// database says the process owns: a claim the database holds for the process
// that the ledger does not know was made by a call whose reply was lost, and
// nobody in the process will ever run it, so it is released.
//
// The database's list is a snapshot taken some time before its reply
// arrives; a claim the process finished (and dropped) after the snapshot
// is in the list but no longer in the ledger, and is no stray. So drops are
// remembered with the generation of the snapshot window they fell in (see
// mark), and strays skips a claim dropped since the snapshot was asked for:
// if its outcome really was lost, the next reconciliation finds it.
type ledger struct {
	mu      sync.Mutex
	held    map[int64]int64 // job ID → fence
	ops     map[uint64]chan struct{}
	next    uint64
	gen     uint64
	dropped map[int64]dropMark // job ID → its fence and the generation of its drop
}

type dropMark struct {
	fence int64
	gen   uint64
}

func newLedger() *ledger {
	return &ledger{held: map[int64]int64{}, ops: map[uint64]chan struct{}{}, dropped: map[int64]dropMark{}}
}

// mark opens a new snapshot window, to be called just before asking the
// database which claims the process owns, and returns it for strays. Drops
// older than the previous window are forgotten.
func (l *ledger) mark() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	for id, d := range l.dropped {
		if d.gen < l.gen {
			delete(l.dropped, id)
		}
	}
	l.gen++
	return l.gen
}

// BeginClaim records a claiming call in flight; the returned function ends
// it and records the claims it made (none if the call failed).
func (l *ledger) BeginClaim() func(claimed []*backend.Job) {
	l.mu.Lock()
	id := l.next
	l.next++
	done := make(chan struct{})
	l.ops[id] = done
	l.mu.Unlock()
	return func(claimed []*backend.Job) {
		l.mu.Lock()
		for _, j := range claimed {
			l.held[j.ID] = j.Fence
		}
		delete(l.ops, id)
		l.mu.Unlock()
		close(done)
	}
}

// drop forgets a claim: its job was executed to an outcome, or released.
func (l *ledger) drop(job *backend.Job) {
	l.mu.Lock()
	if f, ok := l.held[job.ID]; ok && f == job.Fence {
		delete(l.held, job.ID)
		l.dropped[job.ID] = dropMark{fence: f, gen: l.gen}
	}
	l.mu.Unlock()
}

// settle waits, up to max, until every claiming call in flight now has
// ended. It reports whether they all did.
func (l *ledger) settle(ctx context.Context, max time.Duration) bool {
	l.mu.Lock()
	waits := make([]chan struct{}, 0, len(l.ops))
	for _, ch := range l.ops {
		waits = append(waits, ch)
	}
	l.mu.Unlock()
	if len(waits) == 0 {
		return true
	}
	t := time.NewTimer(max)
	defer t.Stop()
	for _, ch := range waits {
		select {
		case <-ch:
		case <-t.C:
			return false
		case <-ctx.Done():
			return false
		}
	}
	return true
}

// strays returns the claims in owned that the ledger does not hold and did
// not drop since window (the value mark returned before owned was read).
func (l *ledger) strays(owned []backend.OwnedJob, window uint64) []backend.OwnedJob {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []backend.OwnedJob
	for _, o := range owned {
		if f, ok := l.held[o.JobID]; ok && f == o.Fence {
			continue
		}
		if d, ok := l.dropped[o.JobID]; ok && d.fence == o.Fence && d.gen >= window {
			continue // finished after the snapshot was asked for
		}
		out = append(out, o)
	}
	return out
}
