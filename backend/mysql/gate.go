package mysql

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/internal/gate"
)

// The gated claim (see Claim): candidates in claim order, locked with SKIP
// LOCKED, without those whose concurrency key is already full (so that one
// key's backlog does not hide the jobs of other keys behind it; the
// subquery reads without locking). The claim counts again under the key's
// lock before it decides (internal/gate).
var qGatedSelectHead = strings.Replace(strings.Replace(qClaimSelectHead,
	"  "+nowUS+"\nFROM", "  "+nowUS+", COALESCE(j.gate_key, ''), j.gate_limit, COALESCE(j.rate_key, '')\nFROM", 1),
	"j.gated = 0 AND j.queue = ?", `j.gated = 1 AND j.queue = ?
  AND (j.gate_key IS NULL OR (SELECT COUNT(*) FROM ductwork_jobs g FORCE INDEX (ductwork_jobs_gate_running)
       WHERE g.gate_key = j.gate_key AND g.status = 'running') < j.gate_limit)`, 1)

const (
	// qLimitRow creates a limit's row if needed; the upsert locks it.
	// qLimitRead then reads it (a locking read: the newest committed state).
	// Every gated claimer locks the rows it needs in one sorted order.
	qLimitRow  = `INSERT INTO ductwork_limits (name, tat) VALUES (?, 0) ON DUPLICATE KEY UPDATE tat = tat`
	qLimitRead = `SELECT tat, ` + nowUS + ` FROM ductwork_limits WHERE name = ? FOR UPDATE`
	// qGateRunning counts a concurrency key's running jobs; READ COMMITTED
	// reads the newest committed rows, so it sees every claim committed by
	// the claimer that held the key's lock before.
	qGateRunning = `SELECT COUNT(*) FROM ductwork_jobs WHERE gate_key = ? AND status = 'running'`
	qLimitSetTAT = `UPDATE ductwork_limits SET tat = ? WHERE name = ?`
)

// gateArgs are the queue, gated, gate_key, gate_limit and rate_key values of
// a job with queue and gate g.
func gateArgs(queue string, g backend.Gate) []any {
	var key, rate any
	if g.ConcurrencyKey != "" {
		key = g.ConcurrencyKey
	}
	if g.RateLimit != "" {
		rate = g.RateLimit
	}
	return []any{queue, g.Gated(), key, g.Concurrency, rate}
}

// joinGate is a join's queue and gate as stored on its row.
type joinGate struct {
	queue     []byte
	key, rate sql.NullString
	limit     int
}

func (g joinGate) gate() backend.Gate {
	return backend.Gate{ConcurrencyKey: g.key.String, Concurrency: g.limit, RateLimit: g.rate.String}
}

// claimGated is Claim with params.Gated, in one READ COMMITTED transaction:
// it locks the candidates (SKIP LOCKED), then each limit's row in sorted
// order, reads the running counts and rate states, and claims the jobs
// internal/gate.Pick lets start.
func (b *Backend) claimGated(ctx context.Context, params *backend.ClaimParams, defs []backend.DefinitionRef) (*backend.ClaimResult, error) {
	selectQ := qGatedSelectHead + placeholders("(?, ?)", len(defs)) + qClaimSelectTail
	args := make([]any, 0, 2*len(defs)+2)
	args = append(args, params.Queue)
	for _, d := range defs {
		args = append(args, d.Pipeline, d.Fingerprint)
	}
	args = append(args, gate.PageSize(min(params.Limit, MaxClaimLimit)))
	var res *backend.ClaimResult
	err := b.withTx(ctx, "claim", func(tx *sql.Tx) error {
		res = &backend.ClaimResult{Jobs: []*backend.Job{}}
		q := b.preparedTx(tx)
		rows, err := q.QueryContext(ctx, selectQ, args...)
		if err != nil {
			return err
		}
		var cands []gate.Candidate
		byID := map[int64]*backend.Job{}
		joinIDs := map[int64]int64{}
		var now int64
		for rows.Next() {
			var (
				j                backend.Job
				c                gate.Candidate
				pipeline, fp     []byte
				identity, meta   []byte
				joinID           sql.NullInt64
				createdAt, dueAt int64
			)
			if err := rows.Scan(&j.ID, &j.RunID, &j.NodeID, &j.Scope, &j.Input, &j.Join, &joinID,
				&j.Attempt, &j.RetryBase, &j.Crashes, &j.Fence, &createdAt, &dueAt, &pipeline, &identity, &fp, &meta, &now,
				&c.Key, &c.Limit, &c.Rate); err != nil {
				rows.Close()
				return err
			}
			j.Pipeline, j.Fingerprint, j.RunIdentity = string(pipeline), string(fp), string(identity)
			if len(meta) > 0 {
				if err := json.Unmarshal(meta, &j.Metadata); err != nil {
					rows.Close()
					return fmt.Errorf("decode metadata of run %d: %w", j.RunID, err)
				}
			}
			j.CreatedAt, j.DueAt = fromMicros(createdAt), fromMicros(dueAt)
			if j.Join && joinID.Valid {
				joinIDs[j.ID] = joinID.Int64
			}
			c.ID = j.ID
			cands = append(cands, c)
			byID[j.ID] = &j
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
			if _, err := q.ExecContext(ctx, qLimitRow, row); err != nil {
				return err
			}
			var tat, dbNow int64
			if err := q.QueryRowContext(ctx, qLimitRead, row).Scan(&tat, &dbNow); err != nil {
				return err
			}
			st.Now = fromMicros(dbNow)
			switch row[:2] {
			case "c:":
				var n int
				if err := q.QueryRowContext(ctx, qGateRunning, row[2:]).Scan(&n); err != nil {
					return err
				}
				st.Running[row[2:]] = n
			case "r:":
				if tat != 0 {
					st.TAT[row[2:]] = fromMicros(tat)
				}
			}
		}
		ids, changed, retryIn := gate.Pick(cands, st, gate.RateMap(params.RateLimits), min(params.Limit, MaxClaimLimit))
		res.RetryIn = retryIn
		for name, tat := range changed {
			if _, err := q.ExecContext(ctx, qLimitSetTAT, tat.UnixMicro(), gate.RateRow(name)); err != nil {
				return err
			}
		}
		if len(ids) == 0 {
			return nil
		}
		uargs := make([]any, 0, len(ids)+2)
		uargs = append(uargs, params.ProcessID, now)
		for _, id := range ids {
			uargs = append(uargs, id)
		}
		r, err := q.ExecContext(ctx, qClaimUpdateHead+placeholders("?", len(ids))+")", uargs...)
		if err != nil {
			return err
		}
		if n, err := r.RowsAffected(); err != nil {
			return err
		} else if n != int64(len(ids)) {
			return fmt.Errorf("claimed %d rows, updated %d", len(ids), n)
		}
		loads := map[int64]*backend.Job{}
		for _, id := range ids {
			j := byID[id]
			j.Fence++
			j.ClaimedAt = fromMicros(now)
			if j.Join {
				j.JoinInputs = [][]byte{}
				if jid, ok := joinIDs[id]; ok {
					loads[jid] = j
				}
			}
			res.Jobs = append(res.Jobs, j)
		}
		if len(loads) > 0 {
			return loadJoinInputs(ctx, q, loads)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}
