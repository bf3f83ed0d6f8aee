package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/internal/crashpoint"
)

// micros converts a duration for binding; the SQL adds it to now().
func micros(d time.Duration) int64 { return d.Microseconds() }

// Trigger inserts the run and its first job in one statement. params.Tx, when
// set, must be a pgx.Tx (a *pgxpool.Tx is one); the statement then runs in it
// and the caller commits, and when the first job is due at once the channel
// is notified in the same transaction, so listeners wake only after the
// commit. Anything else returns backend.ErrUnsupportedTx. Without Tx (and
// without a key), concurrent triggers share one transaction (group.go) and
// the channel is notified after its commit.
func (b *Backend) Trigger(ctx context.Context, params *backend.TriggerParams) (*backend.TriggerResult, error) {
	if err := b.checkOpen(); err != nil {
		return nil, err
	}
	if err := errors.Join(checkLen("Pipeline", params.Pipeline, Limits.MaxPipelineBytes),
		checkLen("First.NodeID", params.First.NodeID, Limits.MaxNodeIDBytes),
		checkLen("First.Scope", params.First.Scope, Limits.MaxScopeBytes)); err != nil {
		return nil, err
	}
	var q queryer = b.pool
	if params.Tx != nil {
		tx, ok := params.Tx.(pgx.Tx)
		if !ok {
			return nil, fmt.Errorf("ductwork/postgres: trigger: %w: got %T, want pgx.Tx", backend.ErrUnsupportedTx, params.Tx)
		}
		q = tx
	}
	meta := params.Metadata
	if meta == nil {
		meta = map[string]string{}
	}
	res := &backend.TriggerResult{}
	first := params.First
	gq, gated, gkey, glimit, grate := gateArgs(first.Queue, first.Gate)
	if params.Key != "" {
		return b.triggerKeyed(ctx, q, params, meta)
	}
	if params.Tx == nil {
		// Concurrent triggers share one transaction (group.go).
		res, err := b.groupTrigger(ctx, params, meta)
		if err != nil {
			return nil, err
		}
		if first.Delay <= 0 {
			b.notifyLater()
		}
		return res, nil
	}
	if first.Delay > 0 {
		err := q.QueryRow(ctx, b.q.trigger, params.Pipeline, params.Fingerprint, params.Input, meta,
			first.NodeID, first.Scope, int32(first.Priority), first.Input, micros(first.Delay), params.Identity, gq, gated, gkey, glimit, grate).Scan(&res.RunID, &res.JobID)
		if err != nil {
			return nil, mapErr("trigger", err)
		}
		return res, nil
	}
	// In the caller's transaction: the notification joins it, so it is
	// delivered if and when the caller commits.
	batch := &pgx.Batch{}
	batch.Queue(b.q.trigger, params.Pipeline, params.Fingerprint, params.Input, meta,
		first.NodeID, first.Scope, int32(first.Priority), first.Input, micros(first.Delay), params.Identity, gq, gated, gkey, glimit, grate).
		QueryRow(func(row pgx.Row) error { return row.Scan(&res.RunID, &res.JobID) })
	batch.Queue(b.q.notify, b.channel)
	if err := sendBatch(ctx, q, batch); err != nil {
		return nil, mapErr("trigger", err)
	}
	return res, nil
}

// triggerKeyed is Trigger with an idempotency key: the insert does nothing
// on a key already used in the pipeline, and the existing run is read back.
func (b *Backend) triggerKeyed(ctx context.Context, q queryer, params *backend.TriggerParams, meta map[string]string) (*backend.TriggerResult, error) {
	for attempt := 0; ; attempt++ {
		res, finished, err := b.triggerKeyedOnce(ctx, q, params, meta)
		if err != nil || !finished || !params.KeyWhileActive {
			return res, err
		}
		if attempt == 10 {
			return nil, fmt.Errorf("ductwork/postgres: trigger %s key %q: the key kept moving between runs", params.Pipeline, params.Key)
		}
		// The key's run has finished: take the key from it and try again (a
		// concurrent trigger may take it first; then its run is returned).
		if res.RunID != 0 {
			if _, err := q.Exec(ctx, b.q.releaseKey, res.RunID); err != nil {
				return nil, mapErr("trigger", err)
			}
		}
	}
}

// triggerKeyedOnce inserts the keyed run, or reads the run holding the key
// and reports whether it has finished.
func (b *Backend) triggerKeyedOnce(ctx context.Context, q queryer, params *backend.TriggerParams, meta map[string]string) (*backend.TriggerResult, bool, error) {
	res := &backend.TriggerResult{}
	first := params.First
	gq, gated, gkey, glimit, grate := gateArgs(first.Queue, first.Gate)
	err := q.QueryRow(ctx, b.q.triggerKeyed, params.Pipeline, params.Fingerprint, params.Input, meta,
		first.NodeID, first.Scope, int32(first.Priority), first.Input, micros(first.Delay), params.Identity, params.Key,
		gq, gated, gkey, glimit, grate).Scan(&res.RunID, &res.JobID)
	if err == nil {
		if first.Delay <= 0 {
			if params.Tx == nil {
				b.notifyLater()
			} else if _, err := q.Exec(ctx, b.q.notify, b.channel); err != nil {
				return nil, false, mapErr("trigger", err)
			}
		}
		return res, false, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return nil, false, mapErr("trigger", err)
	}
	var (
		input    []byte
		finished bool
	)
	err = q.QueryRow(ctx, b.q.triggerExisting, params.Pipeline, params.Key).Scan(&res.RunID, &res.JobID, &input, &finished)
	if errors.Is(err, pgx.ErrNoRows) && params.KeyWhileActive {
		// A concurrent trigger took the key from a finished run and has not
		// inserted its own yet: insert again.
		return res, true, nil
	}
	if err != nil {
		return nil, false, mapErr("trigger", err)
	}
	if finished && params.KeyWhileActive {
		return res, true, nil
	}
	if !bytes.Equal(input, params.Input) {
		return nil, false, fmt.Errorf("ductwork/postgres: trigger %s key %q: %w", params.Pipeline, params.Key, backend.ErrKeyConflict)
	}
	res.Existing = true
	return res, false, nil
}

// claimOutcome reads what became of the claim (jobID, fence, processID)
// after a fenced write matched nothing: the job's status if the claim still
// names it ("" if it moved on), and whether that claim halted the run.
func (b *Backend) claimOutcome(ctx context.Context, jobID, fence int64, processID string) (status string, halted bool, runStatus string, err error) {
	err = b.pool.QueryRow(ctx, b.q.claimOutcome, jobID, fence, processID).Scan(&status, &runStatus, &halted)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", false, "", nil
	}
	return status, halted, runStatus, err
}

// replayComplete is called when a completion matched no running claim: if
// the job is completed under this claim, an earlier call committed (its reply
// was lost) and the completion is reported as replayed.
func (b *Backend) replayComplete(ctx context.Context, params *backend.CompleteParams, cause error) (*backend.CompleteResult, error) {
	status, _, runStatus, err := b.claimOutcome(ctx, params.JobID, params.Fence, params.ProcessID)
	if err != nil || status != backend.JobCompleted {
		return nil, cause
	}
	return &backend.CompleteResult{Replayed: true,
		RunCompleted: (params.Plan.CompleteRun || params.InTx != nil) && runStatus == backend.RunCompleted}, nil
}

// sendBatch runs batch on a pool (as one implicit transaction) or in a tx.
func sendBatch(ctx context.Context, q queryer, batch *pgx.Batch) error {
	type batcher interface {
		SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
	}
	return q.(batcher).SendBatch(ctx, batch).Close()
}

// Claim takes up to params.Limit due jobs in one statement (UPDATE ... WHERE
// id IN (SELECT ... FOR UPDATE SKIP LOCKED LIMIT n)) that also returns the
// arrivals' outputs of the join jobs among them. An empty Definitions list or a
// non-positive Limit claims nothing.
func (b *Backend) Claim(ctx context.Context, params *backend.ClaimParams) (*backend.ClaimResult, error) {
	if err := b.checkOpen(); err != nil {
		return nil, err
	}
	res := &backend.ClaimResult{}
	if params.Limit <= 0 || len(params.Definitions) == 0 {
		return res, nil
	}
	pipelines := make([]string, len(params.Definitions))
	fingerprints := make([]string, len(params.Definitions))
	for i, d := range params.Definitions {
		pipelines[i], fingerprints[i] = d.Pipeline, d.Fingerprint
	}
	if params.Gated {
		return b.claimGated(ctx, params, pipelines, fingerprints)
	}
	rows, err := b.pool.Query(ctx, b.q.claim, params.ProcessID, pipelines, fingerprints, params.Limit, params.Queue)
	if err != nil {
		return nil, mapErr("claim", err)
	}
	return scanClaimed(rows)
}

// scanClaimed reads the rows of sqlClaim (or sqlGatedClaim) into a result,
// in claim order.
func scanClaimed(rows pgx.Rows) (*backend.ClaimResult, error) {
	res := &backend.ClaimResult{}
	type claimed struct {
		job      *backend.Job
		priority int32
	}
	var cs []claimed
	var attempt, retryBase, crashes int32
	var joinID *int64
	for rows.Next() {
		j := &backend.Job{}
		var c claimed
		if err := rows.Scan(&j.ID, &j.RunID, &j.Pipeline, &j.Fingerprint, &j.RunIdentity, &j.NodeID, &j.Scope, &j.Input, &j.Join,
			&joinID, &attempt, &retryBase, &crashes, &j.Fence, &j.Metadata, &j.CreatedAt, &j.DueAt, &j.ClaimedAt, &c.priority,
			&j.JoinInputs); err != nil {
			rows.Close()
			return nil, mapErr("claim", err)
		}
		j.Attempt, j.RetryBase, j.Crashes = int(attempt), int(retryBase), int(crashes)
		if j.Join && j.JoinInputs == nil {
			j.JoinInputs = [][]byte{}
		}
		c.job = j
		cs = append(cs, c)
	}
	if err := rows.Err(); err != nil {
		return nil, mapErr("claim", err)
	}
	// RETURNING order is unspecified; restore the claim order.
	sort.Slice(cs, func(x, y int) bool {
		a, b := cs[x], cs[y]
		if a.priority != b.priority {
			return a.priority > b.priority
		}
		if !a.job.DueAt.Equal(b.job.DueAt) {
			return a.job.DueAt.Before(b.job.DueAt)
		}
		return a.job.ID < b.job.ID
	})
	res.Jobs = make([]*backend.Job, len(cs))
	for i, c := range cs {
		res.Jobs[i] = c.job
	}
	return res, nil
}

// Complete records the output and applies the plan in one round trip: its
// statements are pipelined in one batch, which PostgreSQL runs as one
// implicit transaction. The first statement is the fenced update; when it
// matches no row it raises an error that aborts the batch server side, and
// backend.ErrStaleClaim is returned with nothing changed. The plan's jobs are
// inserted in one statement from arrays. When due jobs are inserted the
// channel is notified in the same transaction.
func (b *Backend) Complete(ctx context.Context, params *backend.CompleteParams) (*backend.CompleteResult, error) {
	if err := b.checkOpen(); err != nil {
		return nil, err
	}
	var res *backend.CompleteResult
	var err error
	if params.InTx != nil {
		res, err = b.completeInTx(ctx, params)
	} else {
		if err := checkPlan(&params.Plan); err != nil {
			return nil, err
		}
		res, err = b.groupComplete(ctx, params)
	}
	if errors.Is(err, backend.ErrStaleClaim) {
		return b.replayComplete(ctx, params, err)
	}
	return res, err
}

// checkLen refuses, before any statement runs, a value above its limit (see
// Limits): a permanent error.
func checkLen(field, v string, max int) error {
	if max > 0 && len(v) > max {
		return backend.Permanent(fmt.Errorf("ductwork/postgres: %s is %d bytes long, the limit is %d", field, len(v), max))
	}
	return nil
}

func checkPlan(p *backend.Plan) error {
	for i, j := range p.Jobs {
		if err := errors.Join(checkLen("Plan.Jobs["+strconv.Itoa(i)+"].NodeID", j.NodeID, Limits.MaxNodeIDBytes),
			checkLen("Plan.Jobs["+strconv.Itoa(i)+"].Scope", j.Scope, Limits.MaxScopeBytes)); err != nil {
			return err
		}
	}
	for i, j := range p.OpenJoins {
		if err := errors.Join(checkLen("Plan.OpenJoins["+strconv.Itoa(i)+"].NodeID", j.NodeID, Limits.MaxNodeIDBytes),
			checkLen("Plan.OpenJoins["+strconv.Itoa(i)+"].Scope", j.Scope, Limits.MaxScopeBytes)); err != nil {
			return err
		}
	}
	return nil
}

// completeSingle runs one completion as one pipelined batch: its own implicit
// transaction, one round trip.
func (b *Backend) completeSingle(ctx context.Context, params *backend.CompleteParams) (*backend.CompleteResult, bool, error) {
	res := &backend.CompleteResult{}
	batch := &pgx.Batch{}
	notify := b.queueComplete(batch, params, res, false)
	br := b.pool.SendBatch(ctx, batch)
	crashInFlight(params)
	if err := br.Close(); err != nil {
		return nil, false, completeErr(params, err)
	}
	return res, notify, nil
}

// crashInFlight passes the crash points of completion transactions that
// were sent (a pipelined batch commits at its Sync, with or without its
// client) and whose replies were not read.
func crashInFlight(params ...*backend.CompleteParams) {
	if !crashpoint.Compiled {
		return
	}
	crashpoint.Hit(crashpoint.CompleteTx)
	for _, p := range params {
		if len(p.Plan.Jobs) > 0 {
			crashpoint.Hit(crashpoint.FanoutInsert)
		}
		if p.Plan.Arrive != nil {
			crashpoint.Hit(crashpoint.JoinUpdate)
		}
	}
}

func completeErr(params *backend.CompleteParams, err error) error {
	err = mapErr("complete", err)
	if a := params.Plan.Arrive; a != nil && errors.Is(err, errJoinNotFound) {
		err = fmt.Errorf("%w (arrival at join node %q scope %q)", err, a.NodeID, a.Scope)
	}
	return err
}

// queueComplete queues the statements of one completion on batch, filling
// res as their results arrive. It reports whether other workers should be
// woken after the commit.
//
// With locked, the batch already holds the owner's and the run's locks
// (queueGroupLocks); otherwise they are queued first.
func (b *Backend) queueComplete(batch *pgx.Batch, params *backend.CompleteParams, res *backend.CompleteResult, locked bool) (wake bool) {
	plan := &params.Plan
	if !locked {
		batch.Queue(b.q.lockOwner, params.ProcessID)
		batch.Queue(b.q.lockRun, params.JobID)
	}
	var ok int64
	// A completion that only ends its run (or changes its outstanding count)
	// does both in one statement.
	endsOnly := plan.Arrive == nil && len(plan.Jobs) == 0 && len(plan.OpenJoins) == 0 && (plan.CompleteRun || plan.Detached != 0)
	if endsOnly {
		delta := int32(plan.Detached)
		if plan.CompleteRun {
			delta--
		}
		batch.Queue(b.q.completeJobRun, params.JobID, params.Fence, params.ProcessID, params.Output, plan.CompleteRun, delta).
			QueryRow(func(row pgx.Row) error { return row.Scan(&res.RunCompleted) })
	} else if a := plan.Arrive; a != nil {
		batch.Queue(b.q.completeJobArrive, params.JobID, params.Fence, params.ProcessID, params.Output,
			a.NodeID, a.Scope, int32(a.Slot)).QueryRow(func(row pgx.Row) error { return row.Scan(&ok) })
	} else {
		batch.Queue(b.q.completeJob, params.JobID, params.Fence, params.ProcessID, params.Output).
			QueryRow(func(row pgx.Row) error { return row.Scan(&ok) })
	}
	notify, claimedAtInsert := false, false
	if n := len(plan.Jobs); n > 0 {
		nodes, scopes := make([]string, n), make([]string, n)
		prios, inputs, delays := make([]int32, n), make([][]byte, n), make([]int64, n)
		gatedPlan := false
		for i, j := range plan.Jobs {
			nodes[i], scopes[i], prios[i], inputs[i], delays[i] = j.NodeID, j.Scope, int32(j.Priority), j.Input, micros(j.Delay)
			notify = notify || j.Delay <= 0
			gatedPlan = gatedPlan || j.Queue != "" || j.Gate.Gated()
		}
		count := func(tag pgconn.CommandTag) error { res.NewJobs += int(tag.RowsAffected()); return nil }
		if k := params.ClaimOnInsert(); k >= 0 && !gatedPlan {
			claimedAtInsert = true
			nj := &plan.Jobs[k]
			batch.Queue(b.q.insertJobsClaim, params.JobID, nodes, scopes, prios, inputs, delays, int64(k+1), params.ProcessID).
				QueryRow(func(row pgx.Row) error {
					var (
						n     int64
						id    *int64
						j     backend.Job
						input []byte
					)
					var created, due, started *time.Time
					if err := row.Scan(&n, &id, &j.RunID, &input, &created, &due, &started); err != nil {
						return err
					}
					res.NewJobs += int(n)
					if id != nil {
						j.ID, j.NodeID, j.Scope, j.Input, j.Attempt, j.Fence = *id, nj.NodeID, nj.Scope, input, 1, 1
						j.CreatedAt, j.DueAt, j.ClaimedAt = *created, *due, *started
						res.Claimed = append(res.Claimed, &j)
					}
					return nil
				})
		} else if !gatedPlan {
			batch.Queue(b.q.insertJobs, params.JobID, nodes, scopes, prios, inputs, delays).Exec(count)
		} else {
			queues, keys, limits, rates := make([]string, n), make([]*string, n), make([]int32, n), make([]*string, n)
			for i, j := range plan.Jobs {
				queues[i], keys[i], limits[i], rates[i] = j.Queue, nullable(j.Gate.ConcurrencyKey), int32(j.Gate.Concurrency), nullable(j.Gate.RateLimit)
			}
			batch.Queue(b.q.insertJobsGated, params.JobID, nodes, scopes, prios, inputs, delays, queues, keys, limits, rates).Exec(count)
		}
	}
	if n := len(plan.OpenJoins); n > 0 {
		nodes, scopes := make([]string, n), make([]string, n)
		expected, prios, delays := make([]int32, n), make([]int32, n), make([]int64, n)
		queues, keys, limits, rates := make([]string, n), make([]*string, n), make([]int32, n), make([]*string, n)
		for i, o := range plan.OpenJoins {
			nodes[i], scopes[i], expected[i], prios[i], delays[i] = o.NodeID, o.Scope, int32(o.Expected), int32(o.Priority), micros(o.Delay)
			queues[i], keys[i], limits[i], rates[i] = o.Queue, nullable(o.Gate.ConcurrencyKey), int32(o.Gate.Concurrency), nullable(o.Gate.RateLimit)
			notify = notify || (o.Expected <= 0 && o.Delay <= 0)
		}
		batch.Queue(b.q.openJoins, params.JobID, nodes, scopes, expected, prios, delays, queues, keys, limits, rates).
			QueryRow(func(row pgx.Row) error {
				var fired int64
				err := row.Scan(&fired)
				res.NewJobs += int(fired)
				return err
			})
	}
	if plan.Arrive != nil {
		batch.Queue(b.q.arrive, params.JobID).QueryRow(func(row pgx.Row) error {
			var found, fired int64
			err := row.Scan(&found, &fired)
			res.NewJobs += int(fired)
			res.JoinFired = fired > 0
			return err
		})
	}
	b.queueWaits(batch, params)
	if !endsOnly && (plan.CompleteRun || plan.Detached != 0) {
		delta := int32(plan.Detached)
		if plan.CompleteRun {
			delta--
		}
		batch.Queue(b.q.completeRun, params.JobID, params.Output, plan.CompleteRun, delta).
			QueryRow(func(row pgx.Row) error {
				err := row.Scan(&res.RunCompleted)
				if errors.Is(err, pgx.ErrNoRows) {
					return nil // a cancelled run: nothing to complete
				}
				return err
			})
	}
	b.queueSettle(batch, params)
	if node, scope, ok := plan.NextDue(params.Queue); ok && params.ClaimNext > 0 && !claimedAtInsert {
		batch.Queue(b.q.claimNext, params.JobID, node, scope, params.ProcessID).Query(func(rows pgx.Rows) error {
			defer rows.Close()
			for rows.Next() {
				j := &backend.Job{NodeID: node, Scope: scope}
				var attempt, retryBase, crashes int32
				if err := rows.Scan(&j.ID, &j.RunID, &j.Input, &j.Join, &attempt, &retryBase, &crashes, &j.Fence,
					&j.CreatedAt, &j.DueAt, &j.ClaimedAt, &j.JoinInputs); err != nil {
					return err
				}
				j.Attempt, j.RetryBase, j.Crashes = int(attempt), int(retryBase), int(crashes)
				if j.Join && j.JoinInputs == nil {
					j.JoinInputs = [][]byte{}
				}
				res.Claimed = append(res.Claimed, j)
			}
			return rows.Err()
		})
	}
	// Wake other workers for what this process does not run next itself;
	// decided once the results are in (see the callers).
	return notify || plan.Arrive != nil
}

// ownerBatch starts a batch with the owner lock (see sqlLockOwner). A batch
// runs as one implicit transaction in one round trip.
func (b *Backend) ownerBatch(processID string) *pgx.Batch {
	batch := &pgx.Batch{}
	batch.Queue(b.q.lockOwner, processID)
	return batch
}

// Fail records a failed execution, fenced like Complete, in one round trip.
// With params.Retry the job is due again after RetryAfter with its attempt
// count grown; otherwise the job fails and the run halts, and Halted reports
// whether this statement moved the run to halted.
func (b *Backend) Fail(ctx context.Context, params *backend.FailParams) (*backend.FailResult, error) {
	if err := b.checkOpen(); err != nil {
		return nil, err
	}
	batch := b.ownerBatch(params.ProcessID)
	var failed, halted int64
	if params.Retry {
		batch.Queue(b.q.failRetry, params.JobID, params.Fence, params.ProcessID, params.Error, micros(params.RetryAfter), params.Stack,
			params.FailOutcome()).
			QueryRow(func(row pgx.Row) error { return row.Scan(&failed) })
	} else {
		batch.Queue(b.q.failHalt, params.JobID, params.Fence, params.ProcessID, params.Error, params.Stack, string(params.Cause),
			params.FailOutcome()).
			QueryRow(func(row pgx.Row) error { return row.Scan(&failed, &halted) })
	}
	if err := b.pool.SendBatch(ctx, batch).Close(); err != nil {
		return nil, mapErr("fail", err)
	}
	if failed == 0 {
		stale := fmt.Errorf("ductwork/postgres: fail: %w", backend.ErrStaleClaim)
		if params.Retry {
			return nil, stale
		}
		status, byThis, _, err := b.claimOutcome(ctx, params.JobID, params.Fence, params.ProcessID)
		if err != nil || status != backend.JobFailed {
			return nil, stale
		}
		return &backend.FailResult{Replayed: true, Halted: byThis}, nil
	}
	return &backend.FailResult{Halted: halted > 0}, nil
}

// Release gives a claimed job back, fenced like Complete: it is due at once,
// and its retry and crash counts are untouched (a release is not a crash). Waiting workers are
// notified.
func (b *Backend) Release(ctx context.Context, params *backend.ReleaseParams) (*backend.ReleaseResult, error) {
	if err := b.checkOpen(); err != nil {
		return nil, err
	}
	var released, notified int64
	batch := b.ownerBatch(params.ProcessID)
	batch.Queue(b.q.release, params.JobID, params.Fence, params.ProcessID, b.channel, params.CrashIncrement()).
		QueryRow(func(row pgx.Row) error { return row.Scan(&released, &notified) })
	if err := b.pool.SendBatch(ctx, batch).Close(); err != nil {
		return nil, mapErr("release", err)
	}
	if released == 0 {
		return nil, fmt.Errorf("ductwork/postgres: release: %w", backend.ErrStaleClaim)
	}
	return &backend.ReleaseResult{}, nil
}

// RegisterProcess upserts the process row with a fresh heartbeat. For an
// existing ID it refreshes host, pid, definitions and heartbeat and keeps the
// original StartedAt.
func (b *Backend) RegisterProcess(ctx context.Context, params *backend.RegisterProcessParams) (*backend.RegisterProcessResult, error) {
	if err := b.checkOpen(); err != nil {
		return nil, err
	}
	if err := checkLen("ProcessID", params.ProcessID, Limits.MaxProcessIDBytes); err != nil {
		return nil, err
	}
	defs := params.Definitions
	if defs == nil {
		defs = []backend.DefinitionRef{}
	}
	res := &backend.RegisterProcessResult{}
	err := b.pool.QueryRow(ctx, b.q.registerProcess, params.ProcessID, params.Host, int32(params.PID), defs).Scan(&res.StartedAt)
	if err != nil {
		return nil, mapErr("register process", err)
	}
	return res, nil
}

// Heartbeat sets the process's heartbeat to the database's clock and reads
// which of params.Runs are cancelled, in one statement, or returns
// backend.ErrProcessNotFound when the row is gone.
func (b *Backend) Heartbeat(ctx context.Context, params *backend.HeartbeatParams) (*backend.HeartbeatResult, error) {
	if err := b.checkOpen(); err != nil {
		return nil, err
	}
	res := &backend.HeartbeatResult{}
	runs := params.Runs
	if runs == nil {
		runs = []int64{}
	}
	var err error
	if params.Owned {
		err = b.heartbeatOwned(ctx, params.ProcessID, runs, res)
	} else {
		err = b.pool.QueryRow(ctx, b.q.heartbeat, params.ProcessID, runs).Scan(&res.At, &res.CancelledRuns)
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("ductwork/postgres: heartbeat %q: %w", params.ProcessID, backend.ErrProcessNotFound)
	}
	if err != nil {
		return nil, mapErr("heartbeat", err)
	}
	return res, nil
}

// heartbeatOwned refreshes the heartbeat and lists the owned jobs in one
// round trip (a pipelined batch).
func (b *Backend) heartbeatOwned(ctx context.Context, processID string, runs []int64, res *backend.HeartbeatResult) error {
	batch := &pgx.Batch{}
	batch.Queue(b.q.heartbeat, processID, runs).QueryRow(func(row pgx.Row) error { return row.Scan(&res.At, &res.CancelledRuns) })
	batch.Queue(b.q.owned, processID).Query(func(rows pgx.Rows) error {
		defer rows.Close()
		res.Owned = []backend.OwnedJob{}
		for rows.Next() {
			var o backend.OwnedJob
			if err := rows.Scan(&o.JobID, &o.Fence); err != nil {
				return err
			}
			res.Owned = append(res.Owned, o)
		}
		return rows.Err()
	})
	return b.pool.SendBatch(ctx, batch).Close()
}

// DeregisterProcess releases the process's running jobs (due at once,
// counts unchanged, as Release) and deletes its row, in one statement. Idempotent.
func (b *Backend) DeregisterProcess(ctx context.Context, params *backend.DeregisterProcessParams) error {
	if err := b.checkOpen(); err != nil {
		return err
	}
	var jobs, procs, notified int64
	err := b.pool.QueryRow(ctx, b.q.deregisterProcess, params.ProcessID, b.channel).Scan(&jobs, &procs, &notified)
	return mapErr("deregister process", err)
}

// Reap deletes processes (other than params.ProcessID) whose heartbeat is
// older than params.Threshold and resets their running jobs, and running jobs
// older than the threshold whose owner has no row, in one statement. The
// DELETE re-checks staleness on the current row, so concurrent reapers reap
// each process once.
func (b *Backend) Reap(ctx context.Context, params *backend.ReapParams) (*backend.ReapResult, error) {
	if err := b.checkOpen(); err != nil {
		return nil, err
	}
	res := &backend.ReapResult{}
	var jobs, notified int64
	// A batch of one, so that the crash point sits between sending the
	// reaper's statement (its own transaction) and reading its reply.
	batch := &pgx.Batch{}
	batch.Queue(b.q.reap, params.ProcessID, micros(params.Threshold), b.channel).
		QueryRow(func(row pgx.Row) error { return row.Scan(&res.Processes, &jobs, &notified) })
	br := b.pool.SendBatch(ctx, batch)
	crashpoint.Hit(crashpoint.ReapTx)
	err := br.Close()
	if err != nil {
		return nil, mapErr("reap", err)
	}
	res.Jobs = int(jobs)
	return res, nil
}

func scanRun(row pgx.Row) (*backend.Run, error) {
	r := &backend.Run{}
	var cause string
	var attempt int32
	err := row.Scan(&r.ID, &r.Pipeline, &r.Fingerprint, &r.Status, &r.Input, &r.Output, &r.Error, &r.Metadata, &r.CreatedAt, &r.UpdatedAt,
		&r.HaltNode, &r.HaltScope, &cause, &attempt, &r.HaltStack, &r.Identity)
	r.HaltCause, r.HaltAttempt = backend.HaltCause(cause), int(attempt)
	return r, err
}

// GetRun returns one run, or backend.ErrRunNotFound.
func (b *Backend) GetRun(ctx context.Context, params *backend.GetRunParams) (*backend.Run, error) {
	if err := b.checkOpen(); err != nil {
		return nil, err
	}
	r, err := scanRun(b.pool.QueryRow(ctx, b.q.getRun, params.RunID))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("ductwork/postgres: run %d: %w", params.RunID, backend.ErrRunNotFound)
	}
	if err != nil {
		return nil, mapErr("get run", err)
	}
	return r, nil
}

const defaultPageSize = 100

// ListRuns returns runs newest first, filtered by pipeline and status when
// set; Next is set when the page is full.
func (b *Backend) ListRuns(ctx context.Context, params *backend.ListRunsParams) (*backend.ListRunsResult, error) {
	if err := b.checkOpen(); err != nil {
		return nil, err
	}
	limit := params.Limit
	if limit <= 0 {
		limit = defaultPageSize
	}
	var from, to *time.Time
	if !params.CreatedFrom.IsZero() {
		from = &params.CreatedFrom
	}
	if !params.CreatedTo.IsZero() {
		to = &params.CreatedTo
	}
	rows, err := b.pool.Query(ctx, b.q.listRuns, params.Pipeline, params.Status, params.BeforeID, limit+1, from, to)
	if err != nil {
		return nil, mapErr("list runs", err)
	}
	runs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*backend.Run, error) { return scanRun(row) })
	if err != nil {
		return nil, mapErr("list runs", err)
	}
	res := &backend.ListRunsResult{Runs: runs}
	if len(runs) > limit {
		res.Runs = runs[:limit]
		res.Next = runs[limit-1].ID
	}
	return res, nil
}

// ListJobs returns a run's jobs in creation (ID) order, filtered by status
// when set; Next is set when the page is full.
func (b *Backend) ListJobs(ctx context.Context, params *backend.ListJobsParams) (*backend.ListJobsResult, error) {
	if err := b.checkOpen(); err != nil {
		return nil, err
	}
	limit := params.Limit
	if limit <= 0 {
		limit = defaultPageSize
	}
	rows, err := b.pool.Query(ctx, b.q.listJobs, params.RunID, params.Status, params.AfterID, limit+1)
	if err != nil {
		return nil, mapErr("list jobs", err)
	}
	jobs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*backend.JobInfo, error) {
		j := &backend.JobInfo{}
		var attempt, retryBase, crashes int32
		err := row.Scan(&j.ID, &j.RunID, &j.NodeID, &j.Scope, &j.Status, &j.Input, &j.Output, &j.Error, &j.Stack, &j.Join,
			&attempt, &retryBase, &crashes, &j.Fence, &j.ProcessID, &j.CreatedAt, &j.DueAt, &j.StartedAt, &j.FinishedAt)
		j.Attempt, j.RetryBase, j.Crashes = int(attempt), int(retryBase), int(crashes)
		return j, err
	})
	if err != nil {
		return nil, mapErr("list jobs", err)
	}
	res := &backend.ListJobsResult{Jobs: jobs}
	if len(jobs) > limit {
		res.Jobs = jobs[:limit]
		res.Next = jobs[limit-1].ID
	}
	return res, nil
}

// ListExecutions returns a run's executions (those of params.JobID when
// set) by job then fence, in one statement: the history rows, from the
// (run_id, job_id, fence) index, and the job rows' latest executions, from
// the (run_id, id) index, a job row left out when a history row holds its
// execution.
func (b *Backend) ListExecutions(ctx context.Context, params *backend.ListExecutionsParams) (*backend.ListExecutionsResult, error) {
	if err := b.checkOpen(); err != nil {
		return nil, err
	}
	limit := params.Limit
	if limit <= 0 {
		limit = defaultPageSize
	}
	afterJob, afterFence := backend.ExecutionKey(params.AfterID)
	rows, err := b.pool.Query(ctx, b.q.listExecutions, params.RunID, params.JobID, afterJob, afterFence, limit+1)
	if err != nil {
		return nil, mapErr("list executions", err)
	}
	execs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*backend.Execution, error) {
		e := &backend.Execution{}
		var attempt, crashes int32
		var started, finished *time.Time
		var outcome string
		err := row.Scan(&e.JobID, &e.RunID, &e.NodeID, &e.Scope, &attempt, &crashes, &e.Fence, &e.ProcessID,
			&started, &finished, &outcome, &e.Error, &e.Stack)
		e.ID = backend.ExecutionID(e.JobID, e.Fence)
		e.Attempt, e.Crashes, e.Outcome = int(attempt), int(crashes), backend.Outcome(outcome)
		if started != nil {
			e.StartedAt = *started
		}
		if finished != nil {
			e.FinishedAt = *finished
		}
		return e, err
	})
	if err != nil {
		return nil, mapErr("list executions", err)
	}
	res := &backend.ListExecutionsResult{Executions: execs}
	if len(execs) > limit {
		res.Executions = execs[:limit]
		res.Next = execs[limit-1].ID
	}
	return res, nil
}

// PruneExecutions deletes, among the params.Limit oldest executions by ID,
// those that finished more than params.OlderThan ago, in one statement.
func (b *Backend) PruneExecutions(ctx context.Context, params *backend.PruneExecutionsParams) (*backend.PruneExecutionsResult, error) {
	if err := b.checkOpen(); err != nil {
		return nil, err
	}
	limit, err := params.PruneLimit()
	if err != nil {
		return nil, err
	}
	tag, err := b.pool.Exec(ctx, b.q.pruneExecutions, micros(params.OlderThan), limit)
	if err != nil {
		return nil, mapErr("prune executions", err)
	}
	return &backend.PruneExecutionsResult{Deleted: int(tag.RowsAffected())}, nil
}

// runStateErr tells a missing run (backend.ErrRunNotFound) from one in the
// wrong state (backend.ErrRunState) after a conditional update matched nothing.
func (b *Backend) runStateErr(ctx context.Context, op string, runID int64) error {
	var exists bool
	if err := b.pool.QueryRow(ctx, b.q.runExists, runID).Scan(&exists); err != nil {
		return mapErr(op, err)
	}
	if !exists {
		return fmt.Errorf("ductwork/postgres: %s: run %d: %w", op, runID, backend.ErrRunNotFound)
	}
	return fmt.Errorf("ductwork/postgres: %s: run %d: %w", op, runID, backend.ErrRunState)
}

// CancelRun moves a running, waiting or halted run to cancelled, with
// params.Reason as its error, and its pending and running jobs to cancelled,
// in one pipelined transaction. It locks the run row FOR UPDATE before it
// touches the jobs, which orders it against every Complete of the run (see
// sqlLockRun). It returns backend.ErrRunNotFound or backend.ErrRunState.
func (b *Backend) CancelRun(ctx context.Context, params *backend.CancelRunParams) (*backend.CancelRunResult, error) {
	if err := b.checkOpen(); err != nil {
		return nil, err
	}
	var cancelled int64
	batch := &pgx.Batch{}
	batch.Queue(b.q.cancelRun, params.RunID, params.Reason).
		Exec(func(tag pgconn.CommandTag) error { cancelled = tag.RowsAffected(); return nil })
	batch.Queue(b.q.cancelJobs, params.RunID)
	if err := b.pool.SendBatch(ctx, batch).Close(); err != nil {
		return nil, mapErr("cancel run", err)
	}
	if cancelled == 0 {
		return nil, b.runStateErr(ctx, "cancel run", params.RunID)
	}
	return &backend.CancelRunResult{}, nil
}

// ReviveRun moves a halted run back to running, clearing its error, and makes
// its failed jobs due at once, in one statement: their attempt count goes on,
// their last error is kept, and their retry budget starts afresh from
// RetryBase, the attempt they failed on. It returns backend.ErrRunNotFound or backend.ErrRunState.
func (b *Backend) ReviveRun(ctx context.Context, params *backend.ReviveRunParams) (*backend.ReviveRunResult, error) {
	if err := b.checkOpen(); err != nil {
		return nil, err
	}
	var runs, jobs, notified int64
	if err := b.pool.QueryRow(ctx, b.q.reviveRun, params.RunID, b.channel).Scan(&runs, &jobs, &notified); err != nil {
		return nil, mapErr("revive run", err)
	}
	if runs == 0 {
		return nil, b.runStateErr(ctx, "revive run", params.RunID)
	}
	return &backend.ReviveRunResult{Jobs: int(jobs)}, nil
}

// SetValue writes one key of the run's context. Without Overwrite it inserts
// with ON CONFLICT DO NOTHING, so of concurrent writers exactly one wins and
// the others get backend.ErrValueExists. A missing run returns
// backend.ErrRunNotFound.
func (b *Backend) SetValue(ctx context.Context, params *backend.SetValueParams) error {
	if err := b.checkOpen(); err != nil {
		return err
	}
	if err := checkLen("Key", params.Key, Limits.MaxKeyBytes); err != nil {
		return err
	}
	q := b.q.setValue
	if params.Overwrite {
		q = b.q.setValueOverwrite
	}
	tag, err := b.pool.Exec(ctx, q, params.RunID, params.Key, params.Value)
	if err != nil {
		return mapErr("set value", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("ductwork/postgres: set value %q: %w", params.Key, backend.ErrValueExists)
	}
	return nil
}

// GetValue reads one key of the run's context, or backend.ErrValueNotFound.
func (b *Backend) GetValue(ctx context.Context, params *backend.GetValueParams) (*backend.GetValueResult, error) {
	if err := b.checkOpen(); err != nil {
		return nil, err
	}
	res := &backend.GetValueResult{}
	err := b.pool.QueryRow(ctx, b.q.getValue, params.RunID, params.Key).Scan(&res.Value)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("ductwork/postgres: get value %q: %w", params.Key, backend.ErrValueNotFound)
	}
	if err != nil {
		return nil, mapErr("get value", err)
	}
	return res, nil
}

// StrandedDefinitions counts running and waiting runs per (pipeline,
// fingerprint) not in params.Known.
func (b *Backend) StrandedDefinitions(ctx context.Context, params *backend.StrandedDefinitionsParams) (*backend.StrandedDefinitionsResult, error) {
	if err := b.checkOpen(); err != nil {
		return nil, err
	}
	pipelines := make([]string, len(params.Known))
	fingerprints := make([]string, len(params.Known))
	for i, d := range params.Known {
		pipelines[i], fingerprints[i] = d.Pipeline, d.Fingerprint
	}
	rows, err := b.pool.Query(ctx, b.q.stranded, pipelines, fingerprints)
	if err != nil {
		return nil, mapErr("stranded definitions", err)
	}
	defs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (backend.StrandedDefinition, error) {
		var d backend.StrandedDefinition
		var n int64
		err := row.Scan(&d.Pipeline, &d.Fingerprint, &n)
		d.Runs = int(n)
		return d, err
	})
	if err != nil {
		return nil, mapErr("stranded definitions", err)
	}
	return &backend.StrandedDefinitionsResult{Definitions: defs}, nil
}

// Now returns the database's clock (clock_timestamp()).
func (b *Backend) Now(ctx context.Context) (time.Time, error) {
	if err := b.checkOpen(); err != nil {
		return time.Time{}, err
	}
	var t time.Time
	if err := b.pool.QueryRow(ctx, b.q.now).Scan(&t); err != nil {
		return time.Time{}, mapErr("now", err)
	}
	return t, nil
}
