// Package gate holds what the backends share about gated claims: which of a
// claim's candidate jobs their concurrency and rate limits let start, and in
// which order to lock the limits' rows.
package gate

import (
	"sort"
	"time"

	"github.com/ductwork-go/ductwork/backend"
)

// Candidate is a pending gated job a claim may take, in claim order.
type Candidate struct {
	ID    int64
	Key   string // concurrency key, "" for none
	Limit int    // the key's limit
	Rate  string // rate limit name, "" for none
}

// ConcurrencyRow and RateRow name the ductwork_limits rows of a concurrency
// key and a rate limit (one table, two name spaces).
func ConcurrencyRow(key string) string { return "c:" + key }

// RateRow: see ConcurrencyRow.
func RateRow(name string) string { return "r:" + name }

// Rows returns the ductwork_limits rows the candidates need, sorted: every
// claimer locks them in this order, so claimers never deadlock on them.
func Rows(cs []Candidate) []string {
	seen := map[string]bool{}
	var rows []string
	add := func(r string) {
		if !seen[r] {
			seen[r] = true
			rows = append(rows, r)
		}
	}
	for _, c := range cs {
		if c.Key != "" {
			add(ConcurrencyRow(c.Key))
		}
		if c.Rate != "" {
			add(RateRow(c.Rate))
		}
	}
	sort.Strings(rows)
	return rows
}

// State is what the claim read under the limits' locks: the running jobs per
// concurrency key and the theoretical arrival time per rate limit (the zero
// time for a limit never used), with the database's now.
type State struct {
	Running map[string]int
	TAT     map[string]time.Time
	Now     time.Time
}

// Pick walks cs in claim order and returns the IDs of at most max jobs whose
// limits let them start, advancing s (running counts and arrival times) as
// it takes them. A job held back by a limit holds back the later candidates
// of that limit, so each limit's jobs start in claim order. retryIn is, when
// a rate limit held a job back, how long until that limit has a token again.
//
// The rate limit is a generic cell rate algorithm: with interval T and burst
// B, a start at now is allowed when max(tat, now) <= now + (B-1)T, and then
// moves tat to max(tat, now) + T. So at most B starts happen at once after an
// idle period, and one per T after that.
func Pick(cs []Candidate, s *State, rates map[string]backend.RateLimit, max int) (ids []int64, changed map[string]time.Time, retryIn time.Duration) {
	held := map[string]bool{}
	changed = map[string]time.Time{}
	for _, c := range cs {
		if len(ids) >= max {
			break
		}
		ck, rk := "", ""
		if c.Key != "" {
			ck = ConcurrencyRow(c.Key)
		}
		if c.Rate != "" {
			rk = RateRow(c.Rate)
		}
		if (ck != "" && held[ck]) || (rk != "" && held[rk]) {
			continue
		}
		if ck != "" && s.Running[c.Key] >= c.Limit {
			held[ck] = true
			continue
		}
		var next time.Time
		if rk != "" {
			rl, ok := rates[c.Rate]
			if !ok || rl.Interval <= 0 {
				held[rk] = true // a limit this claimer does not know: not its to start
				continue
			}
			burst := max1(rl.Burst)
			tat := s.TAT[c.Rate]
			if tat.Before(s.Now) {
				tat = s.Now
			}
			allowAt := tat.Add(-time.Duration(burst-1) * rl.Interval)
			if allowAt.After(s.Now) {
				held[rk] = true
				if w := allowAt.Sub(s.Now); retryIn == 0 || w < retryIn {
					retryIn = w
				}
				continue
			}
			next = tat.Add(rl.Interval)
		}
		if ck != "" {
			s.Running[c.Key]++
		}
		if rk != "" {
			s.TAT[c.Rate] = next
			changed[c.Rate] = next
		}
		ids = append(ids, c.ID)
	}
	return ids, changed, retryIn
}

func max1(n int) int {
	if n < 1 {
		return 1
	}
	return n
}

// RateMap indexes rate limits by name.
func RateMap(rs []backend.RateLimit) map[string]backend.RateLimit {
	m := make(map[string]backend.RateLimit, len(rs))
	for _, r := range rs {
		m[r.Name] = r
	}
	return m
}

// PageSize is how many candidates a gated claim reads for limit jobs wanted.
func PageSize(limit int) int { return min(max(4*limit, 64), 1000) }
