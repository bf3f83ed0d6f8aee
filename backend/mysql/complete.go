package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"

	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/internal/crashpoint"
)

// errJoinNotFound is returned (wrapped) by Complete when Plan.Arrive names a
// join that was never opened in the run. The transaction is rolled back.
var errJoinNotFound = errors.New("ductwork/mysql: arrival at a join that was not opened")

// errJoinFired is returned (wrapped) by Complete when Plan.Arrive names a
// join that already received all its arrivals and fired; the completion is
// rolled back.
var errJoinFired = errors.New("ductwork/mysql: arrival at a join that already fired")

// errStaleUnchanged is the stale-claim answer of a completion's first
// statement, the fenced update of the job: it matched nothing, so the
// completion changed nothing and its group goes on without it.
var errStaleUnchanged = fmt.Errorf("%w", backend.ErrStaleClaim)

// Complete records the job's output and applies params.Plan in one
// transaction fenced by (JobID, Fence, ProcessID, status running): if the
// fence or owner no longer match it returns backend.ErrStaleClaim and changes
// nothing. In order it opens Plan.OpenJoins (a join with Expected 0 gets its
// join job at once), inserts Plan.Jobs with multi-row INSERTs of at most
// Config.InsertBatchRows rows, counts Plan.Arrive (the arrival that brings the
// join to its expected count inserts the join job, so a join fires once) and
// applies Plan.CompleteRun. New jobs are due at the completion time plus their
// delay. An arrival at a join that was never opened, or a job whose (node,
// scope) already exists in the run, is an error and rolls everything back. The
// transaction is rerun as a whole after a deadlock.
func (b *Backend) Complete(ctx context.Context, params *backend.CompleteParams) (*backend.CompleteResult, error) {
	const op = "complete"
	if err := b.checkOpen(op); err != nil {
		return nil, err
	}
	req := &completeReq{Ctx: ctx, Params: params}
	if params.InTx != nil {
		req.Res, req.Err = b.completeInTx(ctx, params)
	} else {
		if err := validatePlan(&params.Plan); err != nil {
			return nil, err
		}
		b.canReturn(ctx)
		b.group.Do(req, b.commitGroup)
	}
	if errors.Is(req.Err, backend.ErrStaleClaim) {
		status, _, runStatus, err := b.claimOutcome(ctx, params.JobID, params.Fence, params.ProcessID)
		if err == nil && status == backend.JobCompleted {
			// An earlier call with this claim committed; its reply was lost.
			return &backend.CompleteResult{Replayed: true,
				RunCompleted: (params.Plan.CompleteRun || params.InTx != nil) && runStatus == backend.RunCompleted}, nil
		}
	}
	return req.Res, req.Err
}

// claimOutcome reads what became of the claim (jobID, fence, processID)
// after a fenced write matched nothing: the job's status if the claim still
// names it ("" if the job moved on), whether that claim halted the run, and
// the run's status.
func (b *Backend) claimOutcome(ctx context.Context, jobID, fence int64, processID string) (status string, halted bool, runStatus string, err error) {
	var st, rs []byte
	err = b.db.QueryRowContext(ctx, qClaimOutcome, jobID, fence, processID).Scan(&st, &rs, &halted)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, "", nil
	}
	return string(st), halted, string(rs), err
}

func (b *Backend) completeOne(ctx context.Context, params *backend.CompleteParams) (*backend.CompleteResult, error) {
	var res backend.CompleteResult
	err := b.withTx(ctx, "complete", func(tx *sql.Tx) error {
		res = backend.CompleteResult{}
		return b.completeTx(ctx, tx, params, &res)
	})
	if err != nil {
		return nil, err
	}
	return &res, nil
}

// completeTx applies one completion in tx. The completed execution stays
// on the job row (its claim's start, owner and fence, its end): a
// completion writes no history row.
func (b *Backend) completeTx(ctx context.Context, sqlTx *sql.Tx, p *backend.CompleteParams, res *backend.CompleteResult) error {
	tx := b.preparedTx(sqlTx)
	r, err := tx.ExecContext(ctx, qCompleteJob, p.Output, p.JobID, p.Fence, p.ProcessID)
	if err != nil {
		return err
	}
	if err := expectOne(r, errStaleUnchanged); err != nil {
		return err
	}
	crashpoint.Hit(crashpoint.CompleteTx)
	plan := &p.Plan
	if len(plan.Jobs) == 0 && len(plan.OpenJoins) == 0 && plan.Arrive == nil && !plan.Settle {
		if plan.CompleteRun || plan.Detached != 0 {
			// The last step of a run: one more statement, which finds the
			// run through the job.
			return advanceRun(ctx, tx, plan, p.Output, p.JobID, res)
		}
		return nil
	}
	if b.returning.Load() && p.ClaimNext > 0 && len(plan.Jobs) == 1 && len(plan.OpenJoins) == 0 &&
		plan.Arrive == nil && !plan.Settle && claimableJob(plan, p.Queue) == 0 {
		// A chain's step: the next step's job inserted claimed in one
		// statement that finds the run and the time through the completed
		// job. When the run is not running it inserts nothing, and the
		// general path below inserts the job unclaimed.
		j, err := b.insertClaimedReturning(ctx, tx, p, &plan.Jobs[0])
		if err != nil {
			return err
		}
		if j != nil {
			res.Claimed = []*backend.Job{j}
			res.NewJobs = 1
			if plan.CompleteRun || plan.Detached != 0 {
				return advanceRun(ctx, tx, plan, p.Output, p.JobID, res)
			}
			return nil
		}
	}
	// The completion time, read back from the row, is the "now" every new
	// job's due time is computed from: the database's clock, read once.
	var (
		runID, now int64
		runStatus  []byte
	)
	if err := tx.QueryRowContext(ctx, qJobRunAndFinish, p.JobID).Scan(&runID, &now, &runStatus); err != nil {
		return err
	}
	// The job the completion hands its process (ClaimNext) is, when it is
	// one of the plan's new jobs, inserted claimed: one statement instead of
	// an insert, a select and an update. Only a running run's job is
	// claimed, as Claim would.
	jobs := plan.Jobs
	var claimed *backend.Job
	if p.ClaimNext > 0 && string(runStatus) == backend.RunRunning {
		if k := claimableJob(plan, p.Queue); k >= 0 {
			j, err := b.insertClaimed(ctx, tx, p, runID, now, &jobs[k])
			if err != nil {
				return err
			}
			claimed = j
			res.Claimed = []*backend.Job{j}
			res.NewJobs++
			jobs = append(append(make([]backend.NewJob, 0, len(jobs)-1), jobs[:k]...), jobs[k+1:]...)
		}
	}

	for _, oj := range plan.OpenJoins {
		ga := gateArgs(oj.Queue, oj.Gate)
		r, err := tx.ExecContext(ctx, qInsertJoin, runID, oj.NodeID, oj.Scope, oj.Expected, oj.Priority, micros(oj.Delay),
			oj.Queue, ga[2], ga[3], ga[4])
		if err != nil {
			return err
		}
		if oj.Expected > 0 {
			continue
		}
		joinID, err := r.LastInsertId()
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, qInsertJoinJob, append([]any{runID, oj.NodeID, oj.Scope, oj.Priority, joinID,
			now, now + micros(oj.Delay)}, ga...)...); err != nil {
			return err
		}
		res.NewJobs++
	}

	if err := b.insertJobs(ctx, tx, runID, now, jobs); err != nil {
		return err
	}
	res.NewJobs += len(jobs)
	if len(plan.Jobs) > 0 {
		crashpoint.Hit(crashpoint.FanoutInsert)
	}
	if err := markWaits(ctx, tx, runID, plan.Jobs); err != nil {
		return err
	}

	if a := plan.Arrive; a != nil {
		r, err := tx.ExecContext(ctx, qArriveJoin, runID, a.NodeID, a.Scope)
		if err != nil {
			return err
		}
		if err := expectOne(r, errJoinNotFound); err != nil {
			return fmt.Errorf("%w (node %q, scope %q)", err, a.NodeID, a.Scope)
		}
		var joinID, delay int64
		var expected, arrived, priority int
		var jg joinGate
		if err := tx.QueryRowContext(ctx, qJoinRow, runID, a.NodeID, a.Scope).
			Scan(&joinID, &expected, &arrived, &priority, &delay, &jg.queue, &jg.key, &jg.limit, &jg.rate); err != nil {
			return err
		}
		if arrived > expected {
			return fmt.Errorf("%w (node %q, scope %q, %d expected)", errJoinFired, a.NodeID, a.Scope, expected)
		}
		if _, err := tx.ExecContext(ctx, qMarkArrival, joinID, a.Slot, p.JobID); err != nil {
			return err
		}
		crashpoint.Hit(crashpoint.JoinUpdate)
		if arrived == expected {
			if _, err := tx.ExecContext(ctx, qInsertJoinJob, append([]any{runID, a.NodeID, a.Scope, priority, joinID,
				now, now + delay}, gateArgs(string(jg.queue), jg.gate())...)...); err != nil {
				return err
			}
			res.NewJobs++
			res.JoinFired = true
		}
	}
	if p.ClaimNext > 0 && res.NewJobs > 0 && claimed == nil {
		next, err := b.claimNext(ctx, tx, p, runID, now)
		if err != nil {
			return err
		}
		if next != nil {
			res.Claimed = []*backend.Job{next}
		}
	}

	if plan.CompleteRun || plan.Detached != 0 {
		if err := advanceRun(ctx, tx, plan, p.Output, p.JobID, res); err != nil {
			return err
		}
	}
	if plan.Settle {
		return settleRun(ctx, tx, runID)
	}
	return nil
}

// advanceRun applies the completion's change to the run's outstanding work
// (backend.Plan.Detached) and completes the run when none is left. A halted
// run keeps the count and the output for when it is revived; a cancelled or
// completed run is left as it is. The run is the completed job's (jobID).
// The common case, the work that completes the run, is one statement that
// matches only then; otherwise a second one moves the count.
func advanceRun(ctx context.Context, tx querier, plan *backend.Plan, output []byte, jobID int64, res *backend.CompleteResult) error {
	delta := plan.Detached
	if plan.CompleteRun {
		delta--
	}
	r, err := tx.ExecContext(ctx, qFinishRun, plan.CompleteRun, output, jobID, delta)
	if err != nil {
		return err
	}
	if n, err := r.RowsAffected(); err != nil {
		return err
	} else if n == 1 {
		res.RunCompleted = true
		return nil
	}
	_, err = tx.ExecContext(ctx, qShiftRun, plan.CompleteRun, output, delta, jobID)
	return err
}

// claimableJob returns the index in plan.Jobs of the job ClaimNext claims
// (backend.Plan.NextDue), or -1 when that job is not one of plan.Jobs or
// will wait (a job the plan parks for a signal or a time is never claimed).
func claimableJob(plan *backend.Plan, queue string) int {
	for k, j := range plan.Jobs {
		if j.Delay <= 0 && j.Queue == queue && !j.Gate.Gated() {
			if j.Wait != "" {
				return -1
			}
			return k
		}
	}
	return -1
}

// insertClaimedReturning inserts nj claimed by p.ProcessID, like
// insertClaimed, in the run of the completed job p.JobID, at its completion
// time, if that run is running; it returns nil when it is not (nothing
// inserted). One statement: INSERT ... SELECT ... RETURNING (MariaDB).
func (b *Backend) insertClaimedReturning(ctx context.Context, tx ptx, p *backend.CompleteParams, nj *backend.NewJob) (*backend.Job, error) {
	rows, err := tx.QueryContext(ctx, qInsertClaimedReturning, append(append([]any{nj.NodeID, nj.Scope, nj.Priority, nj.Input,
		p.ProcessID}, gateArgs(nj.Queue, nj.Gate)...), p.JobID)...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	if !rows.Next() {
		return nil, errors.Join(rows.Err(), rows.Close())
	}
	var id, runID, now int64
	if err := rows.Scan(&id, &runID, &now); err != nil {
		return nil, err
	}
	if err := errors.Join(rows.Close(), rows.Err()); err != nil {
		return nil, err
	}
	t := fromMicros(now)
	return &backend.Job{ID: id, RunID: runID, NodeID: nj.NodeID, Scope: nj.Scope, Input: nj.Input,
		Attempt: 1, Fence: 1, CreatedAt: t, DueAt: t, ClaimedAt: t}, nil
}

// insertClaimed inserts nj as a job of run runID already claimed by
// p.ProcessID (status running, fence 1, started now), as Claim would have
// claimed it, and returns it.
func (b *Backend) insertClaimed(ctx context.Context, tx querier, p *backend.CompleteParams, runID, now int64, nj *backend.NewJob) (*backend.Job, error) {
	r, err := tx.ExecContext(ctx, qInsertClaimedJob, append([]any{runID, nj.NodeID, nj.Scope, nj.Priority, nj.Input,
		now, now, p.ProcessID, now}, gateArgs(nj.Queue, nj.Gate)...)...)
	if err != nil {
		return nil, err
	}
	id, err := r.LastInsertId()
	if err != nil {
		return nil, err
	}
	t := fromMicros(now)
	return &backend.Job{ID: id, RunID: runID, NodeID: nj.NodeID, Scope: nj.Scope, Input: nj.Input,
		Attempt: 1, Fence: 1, CreatedAt: t, DueAt: t, ClaimedAt: t}, nil
}

// insertJobs inserts jobs with multi-row INSERTs of at most InsertBatchRows
// rows and about insertBatchBytes bytes of input each.
func (b *Backend) insertJobs(ctx context.Context, tx querier, runID, now int64, jobs []backend.NewJob) error {
	const insertBatchBytes = 4 << 20
	for len(jobs) > 0 {
		n, size := 0, 0
		for n < len(jobs) && n < b.cfg.InsertBatchRows && (n == 0 || size+len(jobs[n].Input) <= insertBatchBytes) {
			size += len(jobs[n].Input) + len(jobs[n].NodeID) + len(jobs[n].Scope)
			n++
		}
		args := make([]any, 0, n*insertJobParams)
		for _, j := range jobs[:n] {
			args = append(args, runID, j.NodeID, j.Scope, j.Priority, j.Input, now, now+micros(j.Delay))
			args = append(args, gateArgs(j.Queue, j.Gate)...)
		}
		if _, err := tx.ExecContext(ctx, qInsertJobsHead+placeholders(insertJobRow, n), args...); err != nil {
			return err
		}
		jobs = jobs[n:]
	}
	return nil
}

func validatePlan(p *backend.Plan) error {
	for i, j := range p.Jobs {
		if err := checkLen("Plan.Jobs["+strconv.Itoa(i)+"].NodeID", j.NodeID); err != nil {
			return err
		}
		if err := checkLen("Plan.Jobs["+strconv.Itoa(i)+"].Scope", j.Scope); err != nil {
			return err
		}
	}
	for i, j := range p.OpenJoins {
		if err := checkLen("Plan.OpenJoins["+strconv.Itoa(i)+"].NodeID", j.NodeID); err != nil {
			return err
		}
		if err := checkLen("Plan.OpenJoins["+strconv.Itoa(i)+"].Scope", j.Scope); err != nil {
			return err
		}
		if j.Expected < 0 {
			return backend.Permanent(fmt.Errorf("ductwork/mysql: Plan.OpenJoins[%d].Expected is negative (%d)", i, j.Expected))
		}
	}
	return nil
}

// expectOne returns sentinel unless the statement changed exactly one row.
// Every statement it guards changes a column (status, a counter), so
// "changed rows" and "matched rows" agree whatever the DSN's clientFoundRows.
func expectOne(r sql.Result, sentinel error) error {
	n, err := r.RowsAffected()
	if err != nil {
		return err
	}
	if n != 1 {
		return sentinel
	}
	return nil
}

// Fail records a failed execution, fenced like Complete (a stale fence or
// owner returns backend.ErrStaleClaim and changes nothing). With params.Retry
// the job becomes pending again, due at the database's now plus RetryAfter,
// with attempt+1, the error recorded and no owner. Otherwise, in one
// transaction, the job is marked failed and its run moves from running or
// waiting to halted with params.Error as its reason; Halted reports whether
// this call made that move.
func (b *Backend) Fail(ctx context.Context, params *backend.FailParams) (*backend.FailResult, error) {
	const op = "fail"
	if params.Retry {
		err := b.withTx(ctx, op, func(sqlTx *sql.Tx) error {
			tx := b.preparedTx(sqlTx)
			r, err := tx.ExecContext(ctx, qRetryJob, micros(params.RetryAfter), params.Error, params.Stack,
				params.JobID, params.Fence, params.ProcessID)
			if err != nil {
				return err
			}
			if err := expectOne(r, backend.ErrStaleClaim); err != nil {
				return err
			}
			_, err = tx.ExecContext(ctx, qRecordExecution, 1, 0, params.ProcessID, params.FailOutcome(), params.Error, params.Stack, params.JobID)
			return err
		})
		if err != nil {
			return nil, err
		}
		return &backend.FailResult{}, nil
	}
	var res backend.FailResult
	err := b.withTx(ctx, op, func(sqlTx *sql.Tx) error {
		tx := b.preparedTx(sqlTx)
		res = backend.FailResult{}
		r, err := tx.ExecContext(ctx, qFailJob, params.Error, params.Stack, params.JobID, params.Fence, params.ProcessID)
		if err != nil {
			return err
		}
		if err := expectOne(r, backend.ErrStaleClaim); err != nil {
			return err
		}
		// The failed execution stays on the job row, which says failed;
		// another outcome (a timeout) is a history row, which a listing
		// prefers.
		if params.FailOutcome() != string(backend.OutcomeFailed) {
			if _, err := tx.ExecContext(ctx, qRecordExecution, 0, 0, params.ProcessID, params.FailOutcome(), params.Error, params.Stack, params.JobID); err != nil {
				return err
			}
		}
		var (
			runID       int64
			node, scope []byte
			attempt     int
		)
		if err := tx.QueryRowContext(ctx, qJobRun, params.JobID).Scan(&runID, &node, &scope, &attempt); err != nil {
			return err
		}
		r, err = tx.ExecContext(ctx, qHaltRun, params.Error, node, scope, string(params.Cause), attempt, params.Stack, params.JobID, params.Fence, runID)
		if err != nil {
			return err
		}
		n, err := r.RowsAffected()
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
		return nil, err
	}
	return &res, nil
}

// Release gives a claimed job back, fenced like Complete: it becomes pending,
// due at once, without an owner, with its attempt count unchanged (the retry
// budget is not spent) and its crash count grown only for a Crashed release. A stale fence or owner returns
// backend.ErrStaleClaim.
func (b *Backend) Release(ctx context.Context, params *backend.ReleaseParams) (*backend.ReleaseResult, error) {
	outcome := backend.OutcomeReleased
	if params.Crashed {
		outcome = backend.OutcomeCrashed
	}
	err := b.withTx(ctx, "release", func(sqlTx *sql.Tx) error {
		tx := b.preparedTx(sqlTx)
		r, err := tx.ExecContext(ctx, qReleaseJob, params.CrashIncrement(), params.JobID, params.Fence, params.ProcessID)
		if err != nil {
			return err
		}
		if err := expectOne(r, backend.ErrStaleClaim); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, qRecordExecution, 0, params.CrashIncrement(), params.ProcessID, string(outcome), nil, nil, params.JobID)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &backend.ReleaseResult{}, nil
}
