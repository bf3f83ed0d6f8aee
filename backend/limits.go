package backend

import "time"

// Gate holds a job back until its limits let it start. The zero Gate holds
// nothing: such a job is claimed by Claim without Gated, which never reads a
// limit. A job with a non-zero Gate is claimed only by Claim with Gated set,
// which applies its limits in the claim transaction.
type Gate struct {
	// ConcurrencyKey, when non-empty, names a concurrency limit: at most
	// Concurrency jobs with this key are running (claimed and not yet
	// completed, failed, released, reaped or cancelled) at any time, across
	// every process. The count is of job rows, so a job that stops running
	// for any reason (a crash reaped included) gives its slot back in the
	// transaction that moves it.
	ConcurrencyKey string
	Concurrency    int
	// RateLimit, when non-empty, names a rate limit (ClaimParams.RateLimits
	// describes it): the job starts only when the limit has a token.
	RateLimit string
}

// Gated reports whether g holds anything back.
func (g Gate) Gated() bool { return g.ConcurrencyKey != "" || g.RateLimit != "" }

// RateLimit describes a named rate limit, as the claimer knows it: at most
// Burst starts at once, and one more per Interval after that (a generic cell
// rate algorithm: the limit's state is one "theoretical arrival time" per
// name, stored in the database and advanced by the database's clock).
type RateLimit struct {
	Name string
	// Interval is the time one start costs: the period divided by the
	// number of starts allowed per period.
	Interval time.Duration
	// Burst is how many starts may happen at once after the limit has been
	// idle (at least 1).
	Burst int
}

// MaxQueueBytes is the longest queue name every bundled backend stores.
const MaxQueueBytes = 64

// MaxLimitKeyBytes is the longest concurrency key or rate limit name every
// bundled backend stores.
const MaxLimitKeyBytes = 255
