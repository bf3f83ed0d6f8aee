package sqlite

import (
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/internal/gate"
)

// gateArgs are the queue, gated, gate_key, gate_limit and rate_key values of
// a job with queue and gate g.
func gateArgs(queue string, g backend.Gate) []any {
	ga := joinGateArgs(g)
	return []any{queue, g.Gated(), ga[0], ga[1], ga[2]}
}

// joinGateArgs are the gate_key, gate_limit and rate_key values of g.
func joinGateArgs(g backend.Gate) [3]any {
	var key, rate any
	if g.ConcurrencyKey != "" {
		key = g.ConcurrencyKey
	}
	if g.RateLimit != "" {
		rate = g.RateLimit
	}
	return [3]any{key, g.Concurrency, rate}
}

// joinGate is a join's gate as stored on its row.
type joinGate struct {
	key, rate sql.NullString
	limit     int
}

func (g joinGate) gate() backend.Gate {
	return backend.Gate{ConcurrencyKey: g.key.String, Concurrency: g.limit, RateLimit: g.rate.String}
}

// claimGated is Claim with params.Gated, inside the write transaction t
// (which holds SQLite's write lock, so the counts read here cannot change
// before the claim commits): it reads candidates in claim order, each
// limit's state, and claims the jobs internal/gate.Pick lets start.
func (b *Backend) claimGated(t *txn, params *backend.ClaimParams, defs string, res *backend.ClaimResult) error {
	rows, err := t.query(qGatedSelect, params.Queue, defs, gate.PageSize(params.Limit))
	if err != nil {
		return err
	}
	var (
		cands []gate.Candidate
		info  = map[int64]*backend.Job{}
		metas = map[int64]string{}
	)
	for rows.Next() {
		var (
			j    = &backend.Job{}
			c    gate.Candidate
			meta string
		)
		if err := rows.Scan(&j.ID, &j.Pipeline, &j.Fingerprint, &meta, &j.RunIdentity, &c.Key, &c.Limit, &c.Rate); err != nil {
			rows.Close()
			return err
		}
		c.ID = j.ID
		cands = append(cands, c)
		info[j.ID], metas[j.ID] = j, meta
	}
	if err := rows.Close(); err != nil {
		return err
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if len(cands) == 0 {
		return nil
	}
	st := &gate.State{Running: map[string]int{}, TAT: map[string]time.Time{}}
	for _, row := range gate.Rows(cands) {
		var tat, now int64
		if err := t.queryRow(qLimitRow, row).Scan(&tat, &now); err != nil {
			return fmt.Errorf("limit %q: %w", row, err)
		}
		st.Now = fromMicros(now)
		switch row[:2] {
		case "c:":
			var n int
			if err := t.queryRow(qGateRunning, row[2:]).Scan(&n); err != nil {
				return fmt.Errorf("limit %q: %w", row, err)
			}
			st.Running[row[2:]] = n
		case "r:":
			if tat != 0 {
				st.TAT[row[2:]] = fromMicros(tat)
			}
		}
	}
	ids, changed, retryIn := gate.Pick(cands, st, gate.RateMap(params.RateLimits), params.Limit)
	res.RetryIn = retryIn
	for name, tat := range changed {
		if _, err := t.exec(qLimitSetTAT, tat.UnixMicro(), gate.RateRow(name)); err != nil {
			return err
		}
	}
	for _, id := range ids {
		j := info[id]
		var (
			joinID                sql.NullInt64
			created, due, started int64
		)
		err := t.queryRow(qClaimJob, params.ProcessID, j.ID).Scan(&j.RunID, &j.NodeID, &j.Scope, &j.Input,
			&j.Join, &joinID, &j.Attempt, &j.RetryBase, &j.Crashes, &j.Fence, &created, &due, &started)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			return fmt.Errorf("job %d: %w", j.ID, err)
		}
		j.CreatedAt, j.DueAt, j.ClaimedAt = fromMicros(created), fromMicros(due), fromMicros(started)
		if j.Metadata, err = decodeMetadata(metas[id]); err != nil {
			return err
		}
		if j.Join {
			if j.JoinInputs, err = joinInputs(t, joinID.Int64); err != nil {
				return err
			}
		}
		res.Jobs = append(res.Jobs, j)
	}
	return nil
}
