package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/internal/crashpoint"
)

// Trigger inserts a run (status running) and the job of its first step in
// one transaction. With a non-nil params.Tx, which must be a *sql.Tx on this
// database (see DB), the inserts join it and the caller commits or rolls
// back; any other type returns backend.ErrUnsupportedTx.
func (b *Backend) Trigger(ctx context.Context, params *backend.TriggerParams) (*backend.TriggerResult, error) {
	if b.closed.Load() {
		return nil, errClosed("trigger")
	}
	meta, err := json.Marshal(params.Metadata)
	if err != nil {
		return nil, fmt.Errorf("sqlite: trigger: metadata: %w", err)
	}
	var res backend.TriggerResult
	var key any
	if params.Key != "" {
		key = params.Key
	}
	insert := func(t *txn) error {
		res = backend.TriggerResult{}
		if params.Key != "" {
			var (
				input    []byte
				finished bool
			)
			err := t.queryRow(qTriggerExisting, params.Pipeline, params.Key).Scan(&res.RunID, &res.JobID, &input, &finished)
			if err == nil && finished && params.KeyWhileActive {
				if _, err := t.exec(qReleaseKey, res.RunID); err != nil {
					return err
				}
				res = backend.TriggerResult{}
				err = sql.ErrNoRows
			}
			if err == nil {
				if !bytes.Equal(input, params.Input) {
					return fmt.Errorf("trigger %s key %q: %w", params.Pipeline, params.Key, backend.ErrKeyConflict)
				}
				res.Existing = true
				return nil
			}
			if !errors.Is(err, sql.ErrNoRows) {
				return err
			}
		}
		runFloor, jobFloor := b.ids.floors()
		r, err := t.exec(qInsertRun, runFloor, params.Pipeline, params.Fingerprint, params.Input, string(meta), params.Identity, key)
		if err != nil {
			return err
		}
		if res.RunID, err = r.LastInsertId(); err != nil {
			return err
		}
		f := &params.First
		if f.Queue == "" && !f.Gate.Gated() {
			r, err = t.exec(qInsertFirstJob, jobFloor, res.RunID, f.NodeID, f.Scope, f.Priority, f.Input, micros(f.Delay))
		} else {
			r, err = t.exec(qInsertFirstJobGated, append([]any{jobFloor, res.RunID, f.NodeID, f.Scope, f.Priority, f.Input, micros(f.Delay)},
				gateArgs(f.Queue, f.Gate)...)...)
		}
		if err != nil {
			return err
		}
		res.JobID, err = r.LastInsertId()
		return err
	}
	if params.Tx != nil {
		tx, ok := params.Tx.(*sql.Tx)
		if !ok || tx == nil {
			return nil, fmt.Errorf("sqlite: trigger: %T is not a *sql.Tx: %w", params.Tx, backend.ErrUnsupportedTx)
		}
		if err := insert(&txn{ctx: ctx, tx: tx}); err != nil {
			return nil, mapErr("trigger", err)
		}
		// The caller may roll back: remember the IDs, so that they are not
		// handed out again (ids.go).
		b.ids.handedOut(res.RunID, res.JobID)
		return &res, nil
	}
	if err := b.inTx(ctx, insert); err != nil {
		return nil, mapErr("trigger", err)
	}
	return &res, nil
}

// definitionsJSON encodes definitions as a JSON array of [pipeline,
// fingerprint] pairs, bound as one parameter and read with json_each.
func definitionsJSON(defs []backend.DefinitionRef) (string, error) {
	pairs := make([][2]string, len(defs))
	for i, d := range defs {
		pairs[i] = [2]string{d.Pipeline, d.Fingerprint}
	}
	b, err := json.Marshal(pairs)
	return string(b), err
}

// decodeMetadata decodes a run's metadata column.
func decodeMetadata(s string) (map[string]string, error) {
	var m map[string]string
	if s == "" {
		return nil, nil
	}
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		return nil, fmt.Errorf("metadata: %w", err)
	}
	return m, nil
}

// Claim takes up to params.Limit due jobs of running runs of
// params.Definitions, in one write transaction (which holds SQLite's write
// lock, so no other claimer sees the same jobs): it marks them running, owned
// by params.ProcessID, with fence+1, and returns them in claim order
// (priority, then due time, then ID). Join jobs get their JoinInputs in slot
// order. A Limit below 1 or an empty Definitions list claims nothing.
func (b *Backend) Claim(ctx context.Context, params *backend.ClaimParams) (*backend.ClaimResult, error) {
	if b.closed.Load() {
		return nil, errClosed("claim")
	}
	res := &backend.ClaimResult{}
	if params.Limit < 1 || len(params.Definitions) == 0 {
		return res, nil
	}
	defs, err := definitionsJSON(params.Definitions)
	if err != nil {
		return nil, fmt.Errorf("sqlite: claim: %w", err)
	}
	err = b.inTx(ctx, func(t *txn) error {
		res.Jobs = res.Jobs[:0]
		if params.Gated {
			return b.claimGated(t, params, defs, res)
		}
		rows, err := t.query(qClaimSelect, params.Queue, defs, params.Limit)
		if err != nil {
			return err
		}
		var metas []string
		for rows.Next() {
			var (
				j    = &backend.Job{}
				meta string
			)
			if err := rows.Scan(&j.ID, &j.Pipeline, &j.Fingerprint, &meta, &j.RunIdentity); err != nil {
				rows.Close()
				return err
			}
			res.Jobs = append(res.Jobs, j)
			metas = append(metas, meta)
		}
		if err := rows.Close(); err != nil {
			return err
		}
		if err := rows.Err(); err != nil {
			return err
		}
		picked := res.Jobs
		res.Jobs = res.Jobs[:0]
		for i, j := range picked {
			var (
				joinID                sql.NullInt64
				created, due, started int64
			)
			err := t.queryRow(qClaimJob, params.ProcessID, j.ID).Scan(&j.RunID, &j.NodeID, &j.Scope, &j.Input,
				&j.Join, &joinID, &j.Attempt, &j.RetryBase, &j.Crashes, &j.Fence, &created, &due, &started)
			if errors.Is(err, sql.ErrNoRows) {
				continue // taken meanwhile: impossible under the write lock, harmless otherwise
			}
			if err != nil {
				return fmt.Errorf("job %d: %w", j.ID, err)
			}
			res.Jobs = append(res.Jobs, j)
			j.CreatedAt, j.DueAt, j.ClaimedAt = fromMicros(created), fromMicros(due), fromMicros(started)
			if j.Metadata, err = decodeMetadata(metas[i]); err != nil {
				return err
			}
			if j.Join {
				if j.JoinInputs, err = joinInputs(t, joinID.Int64); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, mapErr("claim", err)
	}
	return res, nil
}

// joinInputs returns the outputs of the arrivals at a join in slot order,
// never nil.
func joinInputs(t *txn, joinID int64) ([][]byte, error) {
	rows, err := t.query(qJoinInputs, joinID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	ins := [][]byte{}
	for rows.Next() {
		var out []byte
		if err := rows.Scan(&out); err != nil {
			return nil, err
		}
		ins = append(ins, out)
	}
	return ins, rows.Err()
}

// Complete records the job's output and applies params.Plan in one
// transaction guarded by the fence and owner: Plan.Jobs are inserted, joins
// opened (a join expecting 0 arrivals gets its job at once), the arrival
// counted (the last one inserts the join's job) and the run completed. A
// claim that is no longer current returns backend.ErrStaleClaim and changes
// nothing; an arrival at a join that is not open is an error and changes
// nothing.
func (b *Backend) Complete(ctx context.Context, params *backend.CompleteParams) (*backend.CompleteResult, error) {
	if b.closed.Load() {
		return nil, errClosed("complete")
	}
	var res *backend.CompleteResult
	var err error
	if params.InTx != nil {
		res, err = b.completeInTx(ctx, params)
	} else {
		res, err = b.groupComplete(ctx, params)
	}
	if errors.Is(err, backend.ErrStaleClaim) {
		status, _, runStatus, oerr := b.claimOutcome(ctx, params.JobID, params.Fence, params.ProcessID)
		if oerr == nil && status == backend.JobCompleted {
			// An earlier call with this claim committed; its reply was lost.
			return &backend.CompleteResult{Replayed: true,
				RunCompleted: (params.Plan.CompleteRun || params.InTx != nil) && runStatus == backend.RunCompleted}, nil
		}
	}
	return res, err
}

// claimOutcome reads what became of the claim (jobID, fence, processID)
// after a fenced write matched nothing: the job's status if the claim still
// names it ("" if the job moved on), whether that claim halted the run, and
// the run's status.
func (b *Backend) claimOutcome(ctx context.Context, jobID, fence int64, processID string) (status string, halted bool, runStatus string, err error) {
	row, err := b.readRow(ctx, qClaimOutcome, jobID, fence, processID)
	if err != nil {
		return "", false, "", err
	}
	err = row.Scan(&status, &runStatus, &halted)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, "", nil
	}
	return status, halted, runStatus, err
}

// completeIn applies one Complete inside the write transaction t.
func (b *Backend) completeIn(t *txn, params *backend.CompleteParams, res *backend.CompleteResult) error {
	plan := &params.Plan
	{
		var (
			runID  int64
			joinID sql.NullInt64
			err    error
		)
		if a := plan.Arrive; a != nil {
			err = t.queryRow(qCompleteJobArrive, params.Output, a.NodeID, a.Scope, a.Slot,
				params.JobID, params.Fence, params.ProcessID).Scan(&runID, &joinID)
		} else {
			err = t.queryRow(qCompleteJob, params.Output,
				params.JobID, params.Fence, params.ProcessID).Scan(&runID)
		}
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("job %d fence %d: %w", params.JobID, params.Fence, backend.ErrStaleClaim)
		}
		if err != nil {
			return err
		}
		crashpoint.Hit(crashpoint.CompleteTx)

		claimAt := params.ClaimOnInsert()
		if claimAt >= 0 && plan.Jobs[claimAt].Queue != "" {
			claimAt = -1 // a queue's job: inserted, then claimed
		}
		for i := range plan.Jobs {
			j := &plan.Jobs[i]
			var err error
			if i == claimAt {
				// The job ClaimNext takes, inserted claimed when the run
				// is running (one statement instead of an insert, a
				// select and an update).
				next := &backend.Job{RunID: runID, NodeID: j.NodeID, Scope: j.Scope, Input: j.Input}
				var (
					claimed               bool
					created, due, started sql.NullInt64
				)
				err = t.queryRow(qInsertJobClaimed, runID, j.NodeID, j.Scope, j.Priority, j.Input, params.ProcessID, runID).
					Scan(&next.ID, &claimed, &created, &due, &started)
				if err == nil && claimed {
					next.Attempt, next.Fence = 1, 1
					next.CreatedAt, next.DueAt, next.ClaimedAt = fromMicros(created.Int64), fromMicros(due.Int64), fromMicros(started.Int64)
					res.Claimed = []*backend.Job{next}
				}
			} else if j.Queue == "" && !j.Gate.Gated() {
				_, err = t.exec(qInsertJob, runID, j.NodeID, j.Scope, j.Priority, j.Input, micros(j.Delay))
			} else {
				_, err = t.exec(qInsertJobGated, append([]any{runID, j.NodeID, j.Scope, j.Priority, j.Input, micros(j.Delay)},
					gateArgs(j.Queue, j.Gate)...)...)
			}
			if err != nil {
				return fmt.Errorf("insert job (%s, %q): %w", j.NodeID, j.Scope, err)
			}
			res.NewJobs++
		}
		if len(plan.Jobs) > 0 {
			crashpoint.Hit(crashpoint.FanoutInsert)
		}
		if err := markWaits(t, runID, plan.Jobs); err != nil {
			return err
		}

		for i := range plan.OpenJoins {
			o := &plan.OpenJoins[i]
			ga := joinGateArgs(o.Gate)
			r, err := t.exec(qOpenJoin, runID, o.NodeID, o.Scope, o.Expected, o.Priority, micros(o.Delay), o.Queue, ga[0], ga[1], ga[2])
			if err != nil {
				return fmt.Errorf("open join (%s, %q): %w", o.NodeID, o.Scope, err)
			}
			if o.Expected > 0 {
				continue
			}
			id, err := r.LastInsertId()
			if err != nil {
				return err
			}
			if _, err := t.exec(qInsertJoinJob, append([]any{runID, o.NodeID, o.Scope, o.Priority, id, micros(o.Delay)},
				gateArgs(o.Queue, o.Gate)...)...); err != nil {
				return fmt.Errorf("insert join job (%s, %q): %w", o.NodeID, o.Scope, err)
			}
			res.NewJobs++
		}

		if a := plan.Arrive; a != nil {
			if !joinID.Valid {
				return backend.Permanent(fmt.Errorf("arrival at join (%s, %q) of run %d: no such join is open", a.NodeID, a.Scope, runID))
			}
			var (
				node, scope, queue          string
				expected, arrived, priority int
				delayUS                     int64
				gate                        joinGate
			)
			if err := t.queryRow(qArrive, joinID.Int64).Scan(&node, &scope, &expected, &arrived, &priority, &delayUS,
				&queue, &gate.key, &gate.limit, &gate.rate); err != nil {
				return fmt.Errorf("arrival at join (%s, %q): %w", a.NodeID, a.Scope, err)
			}
			crashpoint.Hit(crashpoint.JoinUpdate)
			switch {
			case arrived > expected:
				return backend.Permanent(fmt.Errorf("arrival at join (%s, %q): join expects %d arrivals and already fired", a.NodeID, a.Scope, expected))
			case arrived == expected:
				if _, err := t.exec(qInsertJoinJob, append([]any{runID, node, scope, priority, joinID.Int64, delayUS},
					gateArgs(queue, gate.gate())...)...); err != nil {
					return fmt.Errorf("insert join job (%s, %q): %w", node, scope, err)
				}
				res.NewJobs++
				res.JoinFired = true
			}
		}

		if plan.CompleteRun || plan.Detached != 0 {
			if err := advanceRun(t, plan, params.Output, runID, res); err != nil {
				return err
			}
		}
		if plan.Settle {
			if err := settleRun(t, runID); err != nil {
				return err
			}
		}
		if params.ClaimNext > 0 && res.NewJobs > 0 && claimAt < 0 {
			next, err := claimNext(t, params, runID)
			if err != nil {
				return err
			}
			if next != nil {
				res.Claimed = []*backend.Job{next}
			}
		}
		return nil
	}
}

// advanceRun applies the completion's change to the run's outstanding work
// (backend.Plan.Detached) and completes the run when none is left.
func advanceRun(t *txn, plan *backend.Plan, output []byte, runID int64, res *backend.CompleteResult) error {
	delta := plan.Detached
	if plan.CompleteRun {
		delta--
	}
	if _, err := t.exec(qAdvanceRun, delta, plan.CompleteRun, output, runID); err != nil {
		return err
	}
	n, err := t.execCount(qCompleteRun, runID)
	res.RunCompleted = n == 1
	return err
}

// claimNext claims, inside the completion transaction, the first job the
// completion created that is due at once (Plan.NextDue), for the
// completing process, so it runs next without a claim transaction of its
// own. The write lock is held, so nobody else can claim it meanwhile.
func claimNext(t *txn, p *backend.CompleteParams, runID int64) (*backend.Job, error) {
	node, scope, ok := p.Plan.NextDue(p.Queue)
	if !ok {
		return nil, nil
	}
	j := &backend.Job{RunID: runID}
	err := t.queryRow(qClaimNextPick, runID, node, scope).Scan(&j.ID)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var (
		joinID                sql.NullInt64
		created, due, started int64
	)
	if err := t.queryRow(qClaimJob, p.ProcessID, j.ID).Scan(&j.RunID, &j.NodeID, &j.Scope, &j.Input,
		&j.Join, &joinID, &j.Attempt, &j.RetryBase, &j.Crashes, &j.Fence, &created, &due, &started); err != nil {
		return nil, err
	}
	j.CreatedAt, j.DueAt, j.ClaimedAt = fromMicros(created), fromMicros(due), fromMicros(started)
	if j.Join {
		if j.JoinInputs, err = joinInputs(t, joinID.Int64); err != nil {
			return nil, err
		}
	}
	return j, nil
}

// Fail records a failed execution, fenced like Complete. With params.Retry
// the job becomes pending again, due after params.RetryAfter, with its
// attempt count grown (one statement). Otherwise the job is marked failed and
// the run halted with params.Error in one transaction; Result.Halted is true
// only for the call that moved the run to halted. A claim that is no longer
// current returns backend.ErrStaleClaim and changes nothing.
func (b *Backend) Fail(ctx context.Context, params *backend.FailParams) (*backend.FailResult, error) {
	if b.closed.Load() {
		return nil, errClosed("fail")
	}
	res := &backend.FailResult{}
	if params.Retry {
		err := b.inTx(ctx, func(t *txn) error {
			n, err := t.execCount(qFailRetry, micros(params.RetryAfter), params.Error, params.Stack,
				params.JobID, params.Fence, params.ProcessID)
			if err != nil {
				return err
			}
			if n == 0 {
				return fmt.Errorf("job %d fence %d: %w", params.JobID, params.Fence, backend.ErrStaleClaim)
			}
			_, err = t.exec(qRecordExecution, 1, 0, params.ProcessID, params.FailOutcome(), params.Error, params.Stack, params.JobID)
			return err
		})
		if err != nil {
			return nil, mapErr("fail", err)
		}
		return res, nil
	}
	err := b.inTx(ctx, func(t *txn) error {
		var (
			runID       int64
			node, scope string
			attempt     int
		)
		err := t.queryRow(qFailJob, params.Error, params.Stack, params.JobID, params.Fence, params.ProcessID).
			Scan(&runID, &node, &scope, &attempt)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("job %d fence %d: %w", params.JobID, params.Fence, backend.ErrStaleClaim)
		}
		if err != nil {
			return err
		}
		// The failed execution stays on the job row, which says failed;
		// another outcome (a timeout) is a history row, which a listing
		// prefers.
		if params.FailOutcome() != string(backend.OutcomeFailed) {
			if _, err := t.exec(qRecordExecution, 0, 0, params.ProcessID, params.FailOutcome(), params.Error, params.Stack, params.JobID); err != nil {
				return err
			}
		}
		n, err := t.execCount(qHaltRun, params.Error, node, scope, string(params.Cause), attempt, params.Stack, params.JobID, params.Fence, runID)
		res.Halted = n == 1
		return err
	})
	if errors.Is(err, backend.ErrStaleClaim) {
		status, byThis, _, oerr := b.claimOutcome(ctx, params.JobID, params.Fence, params.ProcessID)
		if oerr == nil && status == backend.JobFailed {
			// An earlier call with this claim committed; its reply was lost.
			return &backend.FailResult{Replayed: true, Halted: byThis}, nil
		}
	}
	if err != nil {
		return nil, mapErr("fail", err)
	}
	return res, nil
}

// Release gives a claimed job back, fenced like Complete: it becomes pending
// and due at once, with its attempt and crash counts unchanged. A claim
// that is no longer current returns backend.ErrStaleClaim.
func (b *Backend) Release(ctx context.Context, params *backend.ReleaseParams) (*backend.ReleaseResult, error) {
	if b.closed.Load() {
		return nil, errClosed("release")
	}
	outcome := backend.OutcomeReleased
	if params.Crashed {
		outcome = backend.OutcomeCrashed
	}
	err := b.inTx(ctx, func(t *txn) error {
		n, err := t.execCount(qRelease, params.CrashIncrement(), params.JobID, params.Fence, params.ProcessID)
		if err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("job %d fence %d: %w", params.JobID, params.Fence, backend.ErrStaleClaim)
		}
		_, err = t.exec(qRecordExecution, 0, params.CrashIncrement(), params.ProcessID, string(outcome), "", "", params.JobID)
		return err
	})
	if err != nil {
		return nil, mapErr("release", err)
	}
	return &backend.ReleaseResult{}, nil
}
