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
// of their new jobs (MariaDB), a locking read and two UPDATEs for their
// arrivals at joins, one locking read and one UPDATE of the runs
// whose work changes, whatever their number, instead of two or more
// statements each. What is written is what completeTx would write applying
// them one after another.

// setShaped reports whether p's completion can be applied with a set: no
// join to open, nothing to settle, and new jobs or an arrival at a join only
// on a server that returns inserted rows (returning; the statements are
// MariaDB's), no new job waiting, at most maxRows of them.
func setShaped(p *backend.CompleteParams, returning bool, maxRows int) bool {
	pl := &p.Plan
	if len(pl.OpenJoins) != 0 || pl.Settle || pl.Arrive != nil && !returning {
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
	all := padded(set)
	// UPDATE ductwork_jobs SET ..., output = CASE id WHEN ? THEN ? ... END
	// WHERE id IN (...) AND (id, fence, process_id) IN (...).
	var q strings.Builder
	args := make([]any, 0, 6*n)
	q.WriteString("UPDATE ductwork_jobs SET status = 'completed', output = CASE id")
	for _, r := range all {
		q.WriteString(" WHEN ? THEN ?")
		args = append(args, r.Params.JobID, r.Params.Output)
	}
	q.WriteString(" END, finished_at = " + nowUS + " WHERE status = 'running' AND id IN (" + placeholders("?", len(all)) + ")")
	for _, r := range all {
		args = append(args, r.Params.JobID)
	}
	q.WriteString(" AND (id, fence, process_id) IN (" + placeholders("(?, ?, ?)", len(all)) + ")")
	for _, r := range all {
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
	runs, err := readJobRuns(ctx, tx, set)
	if err != nil {
		return err
	}
	if err := insertSetJobs(ctx, tx, set, runs); err != nil {
		return err
	}
	if err := arriveSet(ctx, tx, set, runs); err != nil {
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
	states := make(map[int64]*runState, len(moving))
	args = args[:0]
	for _, r := range padded(moving) {
		args = append(args, r.Params.JobID)
	}
	rows, err := tx.QueryContext(ctx, `SELECT j.id, r.id, r.status, r.outstanding FROM ductwork_jobs j
JOIN ductwork_runs r ON r.id = j.run_id WHERE j.id IN (`+placeholders("?", len(args))+`) FOR UPDATE`, args...)
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
		if states[runID] == nil {
			states[runID] = &st
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
		st := states[runID]
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
	order = padded(order)
	q.WriteString("UPDATE ductwork_runs SET status = CASE id")
	for _, id := range order {
		q.WriteString(" WHEN ? THEN ?")
		args = append(args, id, states[id].status)
	}
	q.WriteString(" END, output = CASE id")
	for _, id := range order {
		q.WriteString(" WHEN ? THEN IF(?, ?, output)")
		args = append(args, id, states[id].setOutput, states[id].output)
	}
	q.WriteString(" END, outstanding = CASE id")
	for _, id := range order {
		q.WriteString(" WHEN ? THEN ?")
		args = append(args, id, states[id].outstanding)
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

// jobRun is what a set reads of a completed job: its run, its completion
// time and whether the run is running.
type jobRun struct {
	runID, now int64
	running    bool
}

// readJobRuns reads, without locking, the run and completion time of the
// completed jobs of set that insert jobs or arrive at a join.
func readJobRuns(ctx context.Context, tx ptx, set []*completeReq) (map[int64]jobRun, error) {
	args := make([]any, 0, len(set))
	for _, r := range set {
		if len(r.Params.Plan.Jobs) > 0 || r.Params.Plan.Arrive != nil {
			args = append(args, r.Params.JobID)
		}
	}
	if len(args) == 0 {
		return nil, nil
	}
	want := len(args)
	args = padded(args)
	runs := make(map[int64]jobRun, want)
	rows, err := tx.QueryContext(ctx, `SELECT j.id, j.run_id, j.finished_at, r.status FROM ductwork_jobs j
JOIN ductwork_runs r ON r.id = j.run_id WHERE j.id IN (`+placeholders("?", len(args))+")", args...)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var (
			jobID  int64
			jr     jobRun
			status []byte
		)
		if err := rows.Scan(&jobID, &jr.runID, &jr.now, &status); err != nil {
			rows.Close()
			return nil, err
		}
		jr.running = string(status) == backend.RunRunning
		runs[jobID] = jr
	}
	if err := errors.Join(rows.Close(), rows.Err()); err != nil {
		return nil, err
	}
	if len(runs) != want {
		return nil, errors.New("ductwork/mysql: a completed job has no run")
	}
	return runs, nil
}

// insertSetJobs inserts the new jobs of the completions of set in one
// statement, each due at its completion's time plus its delay, the one
// ClaimNext takes (claimableJob) inserted claimed when its run is running,
// and stores the claimed jobs and counts in the completions' results.
func insertSetJobs(ctx context.Context, tx ptx, set []*completeReq, runs map[int64]jobRun) error {
	var adding []*completeReq
	for _, r := range set {
		if len(r.Params.Plan.Jobs) > 0 {
			adding = append(adding, r)
		}
	}
	if len(adding) == 0 {
		return nil
	}
	var args []any
	type rowKey struct {
		runID       int64
		node, scope string
	}
	claimed := map[rowKey]*completeReq{}
	n := 0
	args = args[:0]
	for _, r := range adding {
		jr := runs[r.Params.JobID]
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
	rows, err := tx.QueryContext(ctx, qInsertSetJobsHead+placeholders(insertSetJobRow, n)+" RETURNING id, run_id, node_id, scope", args...)
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

// joinKey names a join of a run.
type joinKey struct {
	runID       int64
	node, scope string
}

// joinRow is a join row a set reads and counts arrivals at.
type joinRow struct {
	key                         joinKey
	id                          int64
	expected, arrived, priority int
	delay                       int64
	jg                          joinGate
	firedAt                     int64 // the completion time of the arrival that fired it
}

// arriveSet counts the arrivals of the completions of set at their joins:
// one locking read of the joins, one UPDATE of their counts, one UPDATE
// marking the arriving jobs with their join and slot, and the join job of
// each join the set brings to its expected count (inserted unclaimed:
// ClaimNext may claim fewer). An arrival at a join that is missing or has
// fired fails the set (errRegroup then gives that completion its error).
func arriveSet(ctx context.Context, tx ptx, set []*completeReq, runs map[int64]jobRun) error {
	var arriving []*completeReq
	joins := map[joinKey]*joinRow{}
	var keys []joinKey
	for _, r := range set {
		if a := r.Params.Plan.Arrive; a != nil {
			arriving = append(arriving, r)
			k := joinKey{runs[r.Params.JobID].runID, a.NodeID, a.Scope}
			if joins[k] == nil {
				joins[k] = &joinRow{}
				keys = append(keys, k)
			}
		}
	}
	if len(arriving) == 0 {
		return nil
	}
	args := make([]any, 0, 3*len(keys))
	for _, k := range padded(keys) {
		args = append(args, k.runID, k.node, k.scope)
	}
	rows, err := tx.QueryContext(ctx, `SELECT run_id, node_id, scope, id, expected, arrived, priority, delay_us, queue, gate_key,
  gate_limit, rate_key FROM ductwork_joins WHERE (run_id, node_id, scope) IN (`+placeholders("(?, ?, ?)", len(args)/3)+`) FOR UPDATE`, args...)
	if err != nil {
		return err
	}
	found := 0
	for rows.Next() {
		var (
			k           joinKey
			node, scope []byte
			j           joinRow
		)
		if err := rows.Scan(&k.runID, &node, &scope, &j.id, &j.expected, &j.arrived, &j.priority, &j.delay,
			&j.jg.queue, &j.jg.key, &j.jg.limit, &j.jg.rate); err != nil {
			rows.Close()
			return err
		}
		k.node, k.scope = string(node), string(scope)
		if row := joins[k]; row != nil {
			j.key = k
			*row = j
			found++
		}
	}
	if err := errors.Join(rows.Close(), rows.Err()); err != nil {
		return err
	}
	if found != len(keys) {
		return errJoinNotFound
	}
	// Each arrival in turn, as completeTx would count it.
	type mark struct {
		job, join int64
		slot      int
	}
	var marks []mark
	var fired []*joinRow
	for _, r := range arriving {
		a := r.Params.Plan.Arrive
		jr := runs[r.Params.JobID]
		j := joins[joinKey{jr.runID, a.NodeID, a.Scope}]
		j.arrived++
		if j.arrived > j.expected {
			return errJoinFired
		}
		marks = append(marks, mark{r.Params.JobID, j.id, a.Slot})
		if j.arrived == j.expected {
			j.firedAt = jr.now
			fired = append(fired, j)
			r.Res.NewJobs++
			r.Res.JoinFired = true
		}
	}
	var q strings.Builder
	args = args[:0]
	keys = padded(keys)
	q.WriteString("UPDATE ductwork_joins SET arrived = CASE id")
	for _, k := range keys {
		q.WriteString(" WHEN ? THEN ?")
		args = append(args, joins[k].id, joins[k].arrived)
	}
	q.WriteString(" END WHERE id IN (" + placeholders("?", len(keys)) + ")")
	for _, k := range keys {
		args = append(args, joins[k].id)
	}
	if _, err := tx.ExecContext(ctx, q.String(), args...); err != nil {
		return err
	}
	crashpoint.Hit(crashpoint.JoinUpdate)
	q.Reset()
	args = args[:0]
	marks = padded(marks)
	q.WriteString("UPDATE ductwork_jobs SET arrival_join_id = CASE id")
	for _, m := range marks {
		q.WriteString(" WHEN ? THEN ?")
		args = append(args, m.job, m.join)
	}
	q.WriteString(" END, arrival_slot = CASE id")
	for _, m := range marks {
		q.WriteString(" WHEN ? THEN ?")
		args = append(args, m.job, m.slot)
	}
	q.WriteString(" END WHERE id IN (" + placeholders("?", len(marks)) + ")")
	for _, m := range marks {
		args = append(args, m.job)
	}
	if _, err := tx.ExecContext(ctx, q.String(), args...); err != nil {
		return err
	}
	for _, j := range fired {
		if _, err := tx.ExecContext(ctx, qInsertJoinJob, append([]any{j.key.runID, j.key.node, j.key.scope, j.priority, j.id,
			j.firedAt, j.firedAt + j.delay}, gateArgs(string(j.jg.queue), j.jg.gate())...)...); err != nil {
			return err
		}
	}
	return nil
}

// padded returns s lengthened to the next power of two (at least 2) by
// repeating its last element. The statements of a set list their rows
// (IN lists, CASE arms), where a repeat changes nothing; padding keeps their
// texts to a few per statement, so they stay prepared (see prepared.go)
// instead of one text, and one preparation per connection, per set size.
func padded[T any](s []T) []T {
	if len(s) == 0 {
		return s
	}
	n := 2
	for n < len(s) {
		n *= 2
	}
	out := make([]T, len(s), n)
	copy(out, s)
	for len(out) < n {
		out = append(out, s[len(s)-1])
	}
	return out
}
