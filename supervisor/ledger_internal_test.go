package supervisor

import (
	"context"
	"testing"
	"time"

	"github.com/ductwork-go/ductwork/backend"
)

// TestLedgerStrays: a claim the database lists for the process is a stray
// only if the process neither holds it nor finished it after the list was
// asked for (the list is older than its reply; over a slow link a step can
// complete in between, and releasing it then was a needless, misleading
// call).
func TestLedgerStrays(t *testing.T) {
	l := newLedger()
	end := l.BeginClaim()
	a, b := &backend.Job{ID: 1, Fence: 3}, &backend.Job{ID: 2, Fence: 5}
	end([]*backend.Job{a, b})
	owned := []backend.OwnedJob{{JobID: 1, Fence: 3}, {JobID: 2, Fence: 5}, {JobID: 9, Fence: 1}}

	w := l.mark()
	l.drop(a) // finished while the heartbeat was on its way
	if got := l.strays(owned, w); len(got) != 1 || got[0].JobID != 9 {
		t.Fatalf("strays = %+v; want only job 9 (job 1 finished after the snapshot, job 2 is held)", got)
	}
	// The next snapshot still lists job 1: its outcome was lost after all.
	w = l.mark()
	if got := l.strays(owned, w); len(got) != 2 || got[0].JobID != 1 || got[1].JobID != 9 {
		t.Fatalf("strays = %+v; want jobs 1 and 9", got)
	}
	// A later fence of the same job is another claim.
	w = l.mark()
	l.drop(b)
	if got := l.strays([]backend.OwnedJob{{JobID: 2, Fence: 6}}, w); len(got) != 1 {
		t.Fatalf("strays = %+v; want job 2 at fence 6 (not the claim dropped at fence 5)", got)
	}
}

// TestLedgerSettleWaitsForClaimsInFlight: reconciliation waits for claiming
// calls in flight, so a claim whose reply is on its way is not a stray.
func TestLedgerSettleWaitsForClaimsInFlight(t *testing.T) {
	l := newLedger()
	end := l.BeginClaim()
	settled := make(chan bool)
	go func() { settled <- l.settle(context.Background(), time.Minute) }()
	end([]*backend.Job{{ID: 4, Fence: 1}})
	if !<-settled {
		t.Fatal("settle gave up although the claim ended")
	}
	if got := l.strays([]backend.OwnedJob{{JobID: 4, Fence: 1}}, l.mark()); len(got) != 0 {
		t.Fatalf("strays = %+v; want none", got)
	}
	end2 := l.BeginClaim()
	defer end2(nil)
	if l.settle(context.Background(), 10*time.Millisecond) {
		t.Fatal("settle reported a claim in flight as ended")
	}
}
