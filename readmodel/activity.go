package readmodel

import (
	"context"
	"fmt"
	"time"
)

// MaxActivityRows bounds the rows Activity reads from each source: the
// newest history rows by ID (the order they ended in) and the newest job
// rows by ID (the order they were created in), from the primary keys.
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
// newest history rows and of the newest finished job rows (a job's latest
// execution), walking each primary key backwards, so its cost does not grow
// with the tables. An execution a job ran long before it was created's
// neighbours ended can be missed when the window holds more than
// MaxActivityRows jobs.
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
	type row struct {
		JobID      int64  `bun:"job_id"`
		Fence      int64  `bun:"fence"`
		FinishedAt Time   `bun:"finished_at"`
		Outcome    string `bun:"outcome"`
	}
	var hist, jobs []row
	ht, hargs := s.table("ductwork_executions", "e")
	err = s.db.NewSelect().TableExpr(ht, hargs...).ColumnExpr("e.job_id, e.fence, e.finished_at, e.outcome").
		OrderExpr("e.id DESC").Limit(MaxActivityRows).Scan(ctx, &hist)
	if err != nil {
		return nil, fmt.Errorf("readmodel: activity: %w", err)
	}
	jt, jargs := s.table("ductwork_jobs", "j")
	err = s.db.NewSelect().TableExpr(jt, jargs...).
		ColumnExpr("j.id AS job_id, j.fence, j.finished_at, j.status AS outcome").
		Where("j.status IN ('completed', 'failed') AND j.fence > 0").
		OrderExpr("j.id DESC").Limit(MaxActivityRows).Scan(ctx, &jobs)
	if err != nil {
		return nil, fmt.Errorf("readmodel: activity: %w", err)
	}
	// A history row and a job row can hold the same execution (a halt by
	// a timeout; rows written before the job row kept it): counted once.
	seen := make(map[[2]int64]bool, len(hist))
	for _, r := range hist {
		seen[[2]int64{r.JobID, r.Fence}] = true
	}
	rows := hist
	for _, r := range jobs {
		if !seen[[2]int64{r.JobID, r.Fence}] {
			rows = append(rows, r)
		}
	}
	oldest := now
	for _, src := range [][]row{hist, jobs} {
		if len(src) == MaxActivityRows {
			for _, r := range src {
				if r.FinishedAt.Before(oldest) {
					oldest = r.FinishedAt.Time
				}
			}
		}
	}
	for _, r := range rows {
		at := r.FinishedAt.Time
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
	full := len(hist) == MaxActivityRows || len(jobs) == MaxActivityRows
	if full && !oldest.Before(a.From) {
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
