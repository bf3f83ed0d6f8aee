package mysql

import (
	"context"
	"database/sql"
	"errors"
	"strings"

	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/internal/crashpoint"
)

// The completions of a group whose plan only completes the job, inserts
// plain jobs (a chain's next step, a small fan-out) and changes the run's
// outstanding work (a run's last step) are applied together: one UPDATE of
// their jobs, one read of their runs and one multi-row INSERT ... RETURNING
// of their new jobs (MariaDB), one locking read and one UPDATE of the runs
// whose work changes, whatever their number, instead of two or more
// statements each. What is written is what completeTx would write applying
// them one after another.

// setShaped reports whether p's completion can be applied with a set: no
// join to open or arrive at, nothing to settle, and new jobs only when the
// server returns inserted rows (returning), none of them waiting, at most
// maxRows of them.
func setShaped(p *backend.CompleteParams, returning bool, maxRows int) bool {
	pl := &p.Plan
	if len(pl.OpenJoins) != 0 || pl.Arrive != nil || pl.Settle {
		return false
	}
	if len(pl.Jobs) == 0 {
		return true
	}
	if !returning || len(pl.Jobs) > maxRows {
		return false
	}
	for i := range pl.Jobs {
		if pl.Jobs[i].Wait != "" {
			return false
		}
	}
	return true
}

// setInsertBytes bounds the input bytes one set inserts.
const setInsertBytes = 4 << 20

// errSetStale: the jobs UPDATE of a set matched fewer rows than the set has
// completions (a stale claim among them, or one job twice). The group is
// then applied one completion per transaction, where each gets its answer.
var errSetStale = errors.New("ductwork/mysql: a completion of the set is stale")

// applySet applies the completions of set (at least two, each setShaped) in
// tx and stores each one's result in its Res. It returns errSetStale, having
// changed rows, if any claim is stale.
func (b *Backend) applySet(ctx context.Context, sqlTx *sql.Tx, set []*completeReq) error {
	tx := b.preparedTx(sqlTx)
	n := len(set)
	// UPDATE ductwork_jobs SET ..., output = CASE id WHEN ? THEN ? ... END
	// WHERE id IN (...) AND (id, fence, process_id) IN (...).
	var q strings.Builder
	args := make([]any, 0, 6*n)
	q.WriteString("UPDATE ductwork_jobs SET status = 'completed', output = CASE id")
	for _, r := range set {
		q.WriteString(" WHEN ? THEN ?")
		args = append(args, r.Params.JobID, r.Params.Output)
	}
	q.WriteString(" END, finished_at = " + nowUS + " WHERE status = 'running' AND id IN (" + placeholders("?", n) + ")")
	for _, r := range set {
		args = append(args, r.Params.JobID)
	}
	q.WriteString(" AND (id, fence, process_id) IN (" + placeholders("(?, ?, ?)", n) + ")")
	for _, r := range set {
		args = append(args, r.Params.JobID, r.Params.Fence, r.Params.ProcessID)
	}
	res, err := tx.ExecContext(ctx, q.String(), args...)
	if err != nil {
		return err
	}
	if got, err := res.RowsAffected(); err != nil {
		return err
	} else if got != int64(n) {
		return errSetStale
	}
	crashpoint.Hit(crashpoint.CompleteTx)
	for _, r := range set {
		r.Res = &backend.CompleteResult{}
	}
	if err := b.insertSetJobs(ctx, tx, set); err != nil {
		return err
	}

	// The runs whose outstanding work changes, read and locked.
	var moving []*completeReq
	for _, r := range set {
		if r.Params.Plan.CompleteRun || r.Params.Plan.Detached != 0 {
			moving = append(moving, r)
		}
	}
	if len(moving) == 0 {
		return nil
	}
	type runState struct {
		status      string
		outstanding int
		output      []byte
		setOutput   bool
		changed     bool
	}
	runOf := make(map[int64]int64, len(moving)) // job -> run
	runs := make(map[int64]*runState, len(moving))
	args = args[:0]
	for _, r := range moving {
		args = append(args, r.Params.JobID)
	}
	rows, err := tx.QueryContext(ctx, `SELECT j.id, r.id, r.status, r.outstanding FROM ductwork_jobs j
JOIN ductwork_runs r ON r.id = j.run_id WHERE j.id IN (`+placeholders("?", len(moving))+`) FOR UPDATE`, args...)
	if err != nil {
		return err
	}
	for rows.Next() {
		var (
			jobID, runID int64
			st           runState
		)
		if err := rows.Scan(&jobID, &runID, &st.status, &st.outstanding); err != nil {
			rows.Close()
			return err
		}
		runOf[jobID] = runID
		if runs[runID] == nil {
			runs[runID] = &st
		}
	}
	if err := errors.Join(rows.Close(), rows.Err()); err != nil {
		return err
	}
	// Each completion in turn, as advanceRun would apply it.
	var order []int64
	for _, r := range moving {
		runID, ok := runOf[r.Params.JobID]
		if !ok {
			return errors.New("ductwork/mysql: a completed job has no run")
		}
		st := runs[runID]
		switch st.status {
		case backend.RunRunning, backend.RunWaiting, backend.RunHalted:
		default:
			continue // a cancelled or completed run is left as it is
		}
		if !st.changed {
			st.changed = true
			order = append(order, runID)
		}
		plan := &r.Params.Plan
		st.outstanding += plan.Detached - boolInt(plan.CompleteRun)
		if plan.CompleteRun {
			st.output, st.setOutput = r.Params.Output, true
		}
		if (st.status == backend.RunRunning || st.status == backend.RunWaiting) && st.outstanding == 0 {
			st.status = backend.RunCompleted
			r.Res.RunCompleted = true
		}
	}
	if len(order) == 0 {
		return nil
	}
	// UPDATE ductwork_runs SET status = CASE id ..., output = CASE id ...,
	// outstanding = CASE id ... WHERE id IN (...).
	q.Reset()
	args = args[:0]
	q.WriteString("UPDATE ductwork_runs SET status = CASE id")
	for _, id := range order {
		q.WriteString(" WHEN ? THEN ?")
		args = append(args, id, runs[id].status)
	}
	q.WriteString(" END, output = CASE id")
	for _, id := range order {
		q.WriteString(" WHEN ? THEN IF(?, ?, output)")
		args = append(args, id, runs[id].setOutput, runs[id].output)
	}
	q.WriteString(" END, outstanding = CASE id")
	for _, id := range order {
		q.WriteString(" WHEN ? THEN ?")
		args = append(args, id, runs[id].outstanding)
	}
	q.WriteString(" END, updated_at = " + nowUS + " WHERE id IN (" + placeholders("?", len(order)) + ")")
	for _, id := range order {
		args = append(args, id)
	}
	_, err = tx.ExecContext(ctx, q.String(), args...)
	return err
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// insertSetJobs inserts the new jobs of the completions of set in one
// statement, each due at its completion's time plus its delay, the one
// ClaimNext takes (claimableJob) inserted claimed when its run is running,
// and stores the claimed jobs and counts in the completions' results.
func (b *Backend) insertSetJobs(ctx context.Context, tx ptx, set []*completeReq) error {
	var adding []*completeReq
	for _, r := range set {
		if len(r.Params.Plan.Jobs) > 0 {
			adding = append(adding, r)
		}
	}
	if len(adding) == 0 {
		return nil
	}
	type jobRun struct {
		runID, now int64
		running    bool
	}
	runs := make(map[int64]jobRun, len(adding))
	args := make([]any, 0, len(adding))
	for _, r := range adding {
		args = append(args, r.Params.JobID)
	}
	rows, err := tx.QueryContext(ctx, `SELECT j.id, j.run_id, j.finished_at, r.status FROM ductwork_jobs j
JOIN ductwork_runs r ON r.id = j.run_id WHERE j.id IN (`+placeholders("?", len(adding))+")", args...)
	if err != nil {
		return err
	}
	for rows.Next() {
		var (
			jobID  int64
			jr     jobRun
			status []byte
		)
		if err := rows.Scan(&jobID, &jr.runID, &jr.now, &status); err != nil {
			rows.Close()
			return err
		}
		jr.running = string(status) == backend.RunRunning
		runs[jobID] = jr
	}
	if err := errors.Join(rows.Close(), rows.Err()); err != nil {
		return err
	}
	type rowKey struct {
		runID       int64
		node, scope string
	}
	claimed := map[rowKey]*completeReq{}
	n := 0
	args = args[:0]
	for _, r := range adding {
		jr, ok := runs[r.Params.JobID]
		if !ok {
			return errors.New("ductwork/mysql: a completed job has no run")
		}
		k := -1
		if r.Params.ClaimNext > 0 && jr.running {
			k = claimableJob(&r.Params.Plan, r.Params.Queue)
		}
		for i := range r.Params.Plan.Jobs {
			j := &r.Params.Plan.Jobs[i]
			if i == k {
				args = append(args, jr.runID, j.NodeID, j.Scope, "running", j.Priority, j.Input, jr.now, jr.now, 1, r.Params.ProcessID, jr.now)
				claimed[rowKey{jr.runID, j.NodeID, j.Scope}] = r
			} else {
				args = append(args, jr.runID, j.NodeID, j.Scope, "pending", j.Priority, j.Input, jr.now, jr.now+micros(j.Delay), 0, nil, nil)
			}
			args = append(args, gateArgs(j.Queue, j.Gate)...)
			n++
		}
		r.Res.NewJobs = len(r.Params.Plan.Jobs)
	}
	rows, err = tx.QueryContext(ctx, qInsertSetJobsHead+placeholders(insertSetJobRow, n)+" RETURNING id, run_id, node_id, scope", args...)
	if err != nil {
		return err
	}
	for rows.Next() {
		var (
			id, runID   int64
			node, scope []byte
		)
		if err := rows.Scan(&id, &runID, &node, &scope); err != nil {
			rows.Close()
			return err
		}
		r := claimed[rowKey{runID, string(node), string(scope)}]
		if r == nil {
			continue
		}
		jr := runs[r.Params.JobID]
		nj := &r.Params.Plan.Jobs[claimableJob(&r.Params.Plan, r.Params.Queue)]
		t := fromMicros(jr.now)
		r.Res.Claimed = []*backend.Job{{ID: id, RunID: runID, NodeID: nj.NodeID, Scope: nj.Scope, Input: nj.Input,
			Attempt: 1, Fence: 1, CreatedAt: t, DueAt: t, ClaimedAt: t}}
	}
	if err := errors.Join(rows.Close(), rows.Err()); err != nil {
		return err
	}
	crashpoint.Hit(crashpoint.FanoutInsert)
	return nil
}
