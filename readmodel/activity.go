package readmodel

import (
	"context"
	"fmt"
	"time"
)

// MaxActivityRows bounds the executions Activity reads: the newest ones, by
// ID (the order they ended in), from the primary key.
const MaxActivityRows = 20_000

// ActivityBucket counts the executions that ended in one interval.
type ActivityBucket struct {
	Start time.Time `json:"start"`
	// Completed counts completed executions; Failed those that failed,
	// timed out or crashed.
	Completed int `json:"completed"`
	Failed    int `json:"failed"`
}

// Activity is the execution history of a recent window, in equal buckets,
// oldest first.
type Activity struct {
	From    time.Time        `json:"from"`
	To      time.Time        `json:"to"`
	Step    time.Duration    `json:"step"`
	Buckets []ActivityBucket `json:"buckets"`
	// Partial is set when the window held more than MaxActivityRows
	// executions: only the newest were counted, back to Since.
	Partial bool      `json:"partial,omitempty"`
	Since   time.Time `json:"since,omitempty"`
}

// Activity counts the executions that ended in the last window (by the
// database's clock), in n buckets. It reads at most MaxActivityRows of the
// newest executions, walking the primary key backwards, so its cost does
// not grow with the table.
func (s *Store) Activity(ctx context.Context, window time.Duration, n int) (*Activity, error) {
	if window <= 0 || n <= 0 {
		return nil, fmt.Errorf("readmodel: activity: window %v and buckets %d must be positive", window, n)
	}
	now, err := s.Now(ctx)
	if err != nil {
		return nil, err
	}
	a := &Activity{To: now, From: now.Add(-window), Step: window / time.Duration(n), Buckets: make([]ActivityBucket, n)}
	for i := range a.Buckets {
		a.Buckets[i].Start = a.From.Add(time.Duration(i) * a.Step)
	}
	var rows []struct {
		FinishedAt Time   `bun:"finished_at"`
		Outcome    string `bun:"outcome"`
	}
	t, args := s.table("ductwork_executions", "e")
	err = s.db.NewSelect().TableExpr(t, args...).ColumnExpr("e.finished_at, e.outcome").
		OrderExpr("e.id DESC").Limit(MaxActivityRows).Scan(ctx, &rows)
	if err != nil {
		return nil, fmt.Errorf("readmodel: activity: %w", err)
	}
	oldest := now
	for _, r := range rows {
		at := r.FinishedAt.Time
		if at.Before(oldest) {
			oldest = at
		}
		if at.Before(a.From) {
			continue
		}
		i := min(int(at.Sub(a.From)/a.Step), n-1)
		switch r.Outcome {
		case "completed":
			a.Buckets[i].Completed++
		case "failed", "timeout", "crashed":
			a.Buckets[i].Failed++
		}
	}
	if len(rows) == MaxActivityRows && !oldest.Before(a.From) {
		a.Partial, a.Since = true, oldest
	}
	return a, nil
}

// Totals sums the buckets.
func (a *Activity) Totals() (completed, failed int) {
	for _, b := range a.Buckets {
		completed += b.Completed
		failed += b.Failed
	}
	return completed, failed
}
