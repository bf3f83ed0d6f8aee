package mysql

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/ductwork-go/ductwork/backend"
)

// Claim takes up to params.Limit (at most MaxClaimLimit) due pending jobs of
// running runs whose (pipeline, fingerprint) is in params.Definitions, in
// priority, due time and ID order, in one transaction: SELECT ... FOR UPDATE
// SKIP LOCKED, then one UPDATE that marks them running, owned by
// params.ProcessID, with fence+1 and started_at = the database's now. Rows
// locked by a concurrent claimer are skipped, never waited for, so each job is
// claimed by one caller. Join jobs come with JoinInputs, the arrivals' outputs
// in slot order. An empty Definitions list or a Limit below 1 claims nothing.
func (b *Backend) Claim(ctx context.Context, params *backend.ClaimParams) (*backend.ClaimResult, error) {
	const op = "claim"
	if err := b.checkOpen(op); err != nil {
		return nil, err
	}
	if params.Limit < 1 || len(params.Definitions) == 0 {
		return &backend.ClaimResult{Jobs: []*backend.Job{}}, nil
	}
	if err := checkLen("ProcessID", params.ProcessID); err != nil {
		return nil, err
	}
	limit := min(params.Limit, MaxClaimLimit)
	defs := dedupDefinitions(params.Definitions)
	if 2*len(defs)+1 > maxPlaceholders {
		return nil, fmt.Errorf("ductwork/mysql: %s: %d definitions, the limit is %d", op, len(defs), (maxPlaceholders-1)/2)
	}
	selectQ := qClaimSelectHead + placeholders("(?, ?)", len(defs)) + qClaimSelectTail
	if params.Gated {
		return b.claimGated(ctx, params, defs)
	}
	selectArgs := make([]any, 0, 2*len(defs)+2)
	selectArgs = append(selectArgs, params.Queue)
	for _, d := range defs {
		selectArgs = append(selectArgs, d.Pipeline, d.Fingerprint)
	}
	selectArgs = append(selectArgs, limit)

	var jobs []*backend.Job
	t0 := time.Now()
	defer func() { b.observeTx(time.Since(t0)) }()
	err := b.withTx(ctx, op, func(tx *sql.Tx) error {
		var err error
		jobs, err = claimTx(ctx, b.preparedTx(tx), params.ProcessID, selectQ, selectArgs)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &backend.ClaimResult{Jobs: jobs}, nil
}

func claimTx(ctx context.Context, tx querier, processID, selectQ string, selectArgs []any) ([]*backend.Job, error) {
	rows, err := tx.QueryContext(ctx, selectQ, selectArgs...)
	if err != nil {
		return nil, err
	}
	jobs := []*backend.Job{}
	joinIDs := map[int64]*backend.Job{}
	var now int64
	for rows.Next() {
		var (
			j                backend.Job
			node, scope      string
			pipeline, fp     []byte
			identity         []byte
			meta             []byte
			joinID           sql.NullInt64
			createdAt, dueAt int64
		)
		if err := rows.Scan(&j.ID, &j.RunID, &node, &scope, &j.Input, &j.Join, &joinID,
			&j.Attempt, &j.RetryBase, &j.Crashes, &j.Fence, &createdAt, &dueAt, &pipeline, &identity, &fp, &meta, &now); err != nil {
			rows.Close()
			return nil, err
		}
		j.NodeID, j.Scope = node, scope
		j.Pipeline, j.Fingerprint, j.RunIdentity = string(pipeline), string(fp), string(identity)
		if len(meta) > 0 {
			if err := json.Unmarshal(meta, &j.Metadata); err != nil {
				rows.Close()
				return nil, fmt.Errorf("decode metadata of run %d: %w", j.RunID, err)
			}
		}
		j.CreatedAt, j.DueAt = fromMicros(createdAt), fromMicros(dueAt)
		if j.Join {
			j.JoinInputs = [][]byte{}
			if joinID.Valid {
				joinIDs[joinID.Int64] = &j
			}
		}
		jobs = append(jobs, &j)
	}
	if err := rows.Close(); err != nil {
		return nil, err
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(jobs) == 0 {
		return jobs, nil
	}

	args := make([]any, 0, len(jobs)+2)
	args = append(args, processID, now)
	for _, j := range jobs {
		args = append(args, j.ID)
	}
	res, err := tx.ExecContext(ctx, qClaimUpdateHead+placeholders("?", len(jobs))+")", args...)
	if err != nil {
		return nil, err
	}
	if n, err := res.RowsAffected(); err != nil {
		return nil, err
	} else if n != int64(len(jobs)) {
		// Impossible while the rows are locked; refuse rather than hand
		// out a claim the database does not hold.
		return nil, fmt.Errorf("claimed %d rows, updated %d", len(jobs), n)
	}
	for _, j := range jobs {
		j.Fence++
		j.ClaimedAt = fromMicros(now)
	}

	if len(joinIDs) > 0 {
		if err := loadJoinInputs(ctx, tx, joinIDs); err != nil {
			return nil, err
		}
	}
	return jobs, nil
}

func loadJoinInputs(ctx context.Context, tx querier, byJoin map[int64]*backend.Job) error {
	args := make([]any, 0, len(byJoin))
	for id := range byJoin {
		args = append(args, id)
	}
	rows, err := tx.QueryContext(ctx, qJoinInputsHead+placeholders("?", len(args))+qJoinInputsTail, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			joinID int64
			out    []byte
		)
		if err := rows.Scan(&joinID, &out); err != nil {
			return err
		}
		if j := byJoin[joinID]; j != nil {
			j.JoinInputs = append(j.JoinInputs, out)
		}
	}
	return rows.Err()
}

func dedupDefinitions(defs []backend.DefinitionRef) []backend.DefinitionRef {
	seen := make(map[backend.DefinitionRef]struct{}, len(defs))
	out := make([]backend.DefinitionRef, 0, len(defs))
	for _, d := range defs {
		if _, ok := seen[d]; !ok {
			seen[d] = struct{}{}
			out = append(out, d)
		}
	}
	return out
}
