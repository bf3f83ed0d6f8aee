package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/internal/gate"
)

// sqlGatedSelect locks, in claim order, gated due jobs of running runs of the
// given definitions ($1, $2) on queue $3, skipping rows other claimers hold.
// Jobs whose concurrency key is already full are left out here, so that one
// key's backlog does not hide the jobs of other keys behind it; the claim
// counts again under the key's lock before it decides (internal/gate).
const sqlGatedSelect = `
SELECT c.id, coalesce(c.gate_key, ''), c.gate_limit, coalesce(c.rate_key, '')
FROM {schema}.ductwork_jobs AS c
WHERE c.status = 'pending' AND c.gated AND c.queue = $3
  AND c.due_at + interval '0' <= now()
  AND EXISTS (
	SELECT 1 FROM {schema}.ductwork_runs AS cr
	WHERE cr.id = c.run_id AND cr.status IN ('running', 'waiting')
	  AND (cr.pipeline, cr.fingerprint) IN (SELECT d.p, d.f FROM unnest($1::text[], $2::text[]) AS d(p, f))
	OFFSET 0)
  AND (c.gate_key IS NULL OR (SELECT count(*) FROM {schema}.ductwork_jobs AS g
	WHERE g.gate_key = c.gate_key AND g.status = 'running') < c.gate_limit)
ORDER BY c.priority DESC, c.due_at, c.id
LIMIT $4
FOR UPDATE OF c SKIP LOCKED`

// sqlLimitRow creates a limit's row if needed and locks it (an upsert that
// updates takes the row lock), returning its state and the database's now.
// Every gated claimer locks the rows it needs in one sorted order.
const sqlLimitRow = `
INSERT INTO {schema}.ductwork_limits (name) VALUES ($1)
ON CONFLICT (name) DO UPDATE SET name = excluded.name
RETURNING tat, now()`

// sqlGateRunning counts a concurrency key's running jobs. Under READ
// COMMITTED it runs with a snapshot taken after the key's row was locked, so
// it sees every claim committed by the claimer that held the lock before.
const sqlGateRunning = `SELECT count(*) FROM {schema}.ductwork_jobs WHERE gate_key = $1 AND status = 'running'`

const sqlLimitSetTAT = `UPDATE {schema}.ductwork_limits SET tat = $2 WHERE name = $1`

// sqlGatedClaim claims the jobs a gated claim picked (locked by sqlGatedSelect
// in the same transaction), returning what sqlClaim returns.
const sqlGatedClaim = `
UPDATE {schema}.ductwork_jobs AS j
SET status = 'running', fence = j.fence + 1, process_id = $1, started_at = now()
FROM {schema}.ductwork_runs AS r
WHERE j.id = ANY($2::bigint[]) AND r.id = j.run_id AND j.status = 'pending'
RETURNING j.id, j.run_id, r.pipeline, r.fingerprint, r.identity, j.node_id, j.scope, j.input, j.is_join, j.join_id,
	j.attempt, j.retry_base, j.crashes, j.fence, r.metadata, j.created_at, j.due_at, j.started_at, j.priority,
	CASE WHEN j.is_join THEN ARRAY(
		SELECT a.output FROM {schema}.ductwork_jobs AS a
		WHERE a.arrival_join_id = j.join_id
		ORDER BY a.arrival_slot) END`

// gateArgs are the queue, gated, gate_key, gate_limit and rate_key values of
// a job with queue and gate g.
func gateArgs(queue string, g backend.Gate) (string, bool, *string, int32, *string) {
	return queue, g.Gated(), nullable(g.ConcurrencyKey), int32(g.Concurrency), nullable(g.RateLimit)
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// claimGated is Claim with params.Gated, in one transaction: it locks the
// candidates (SKIP LOCKED), then each limit's row in sorted order, reads
// the running counts and rate states, and claims the jobs internal/gate.Pick
// lets start.
func (b *Backend) claimGated(ctx context.Context, params *backend.ClaimParams, pipelines, fingerprints []string) (*backend.ClaimResult, error) {
	var res *backend.ClaimResult
	err := pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		res = &backend.ClaimResult{}
		rows, err := tx.Query(ctx, b.q.gatedSelect, pipelines, fingerprints, params.Queue, gate.PageSize(params.Limit))
		if err != nil {
			return err
		}
		cands, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (gate.Candidate, error) {
			var c gate.Candidate
			var limit int32
			err := row.Scan(&c.ID, &c.Key, &limit, &c.Rate)
			c.Limit = int(limit)
			return c, err
		})
		if err != nil || len(cands) == 0 {
			return err
		}
		st := &gate.State{Running: map[string]int{}, TAT: map[string]time.Time{}}
		for _, row := range gate.Rows(cands) {
			var tat *time.Time
			if err := tx.QueryRow(ctx, b.q.limitRow, row).Scan(&tat, &st.Now); err != nil {
				return err
			}
			switch row[:2] {
			case "c:":
				var n int64
				if err := tx.QueryRow(ctx, b.q.gateRunning, row[2:]).Scan(&n); err != nil {
					return err
				}
				st.Running[row[2:]] = int(n)
			case "r:":
				if tat != nil {
					st.TAT[row[2:]] = *tat
				}
			}
		}
		ids, changed, retryIn := gate.Pick(cands, st, gate.RateMap(params.RateLimits), params.Limit)
		for name, tat := range changed {
			if _, err := tx.Exec(ctx, b.q.limitSetTAT, gate.RateRow(name), tat); err != nil {
				return err
			}
		}
		if len(ids) > 0 {
			rows, err := tx.Query(ctx, b.q.gatedClaim, params.ProcessID, ids)
			if err != nil {
				return err
			}
			if res, err = scanClaimed(rows); err != nil {
				return err
			}
		}
		res.RetryIn = retryIn
		return nil
	})
	if err != nil {
		return nil, mapErr("claim", err)
	}
	return res, nil
}
