package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/internal/groupcommit"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Group commit. Every commit waits for a WAL flush, and a join's counter row
// stays locked until its transaction's flush: with one transaction per
// completion, a 10,000-branch collapse ran at one arrival per flush. Here the
// first waiting caller of this Backend (the leader) applies every completion
// queued meanwhile in one transaction, each in its own savepoint so that a
// stale claim rolls back only itself, and commits once. Each completion stays
// fenced on its own token, and a caller returns only after the commit that
// holds its completion (internal/groupcommit).

type completeReq struct {
	ctx    context.Context
	params *backend.CompleteParams
	res    *backend.CompleteResult
	wake   bool
	err    error
}

// maxGroup bounds a group: each completion may become a subtransaction, and
// more than 64 of them in one transaction overflow PostgreSQL's per-backend
// subtransaction cache.
const maxGroup = 32

// maxTriggerGroup bounds a group of triggers (no subtransactions there).
const maxTriggerGroup = 64

func (b *Backend) groupComplete(ctx context.Context, params *backend.CompleteParams) (*backend.CompleteResult, error) {
	req := &completeReq{ctx: ctx, params: params}
	b.group.Do(req, b.commitGroup)
	return b.finish(req)
}

func (b *Backend) finish(r *completeReq) (*backend.CompleteResult, error) {
	if r.err != nil {
		return nil, r.err
	}
	if r.wake && r.res.NewJobs > len(r.res.Claimed) {
		b.notifyLater()
	}
	return r.res, nil
}

func (b *Backend) commitGroup(group []*completeReq) {
	if len(group) == 1 {
		r := group[0]
		r.res, r.wake, r.err = b.completeSingle(r.ctx, r.params)
		return
	}
	if b.tryPipelined(group) {
		return
	}
	err := b.tryGroup(group)
	var pgErr *pgconn.PgError
	if err != nil && errors.As(err, &pgErr) && (pgErr.Code == "40P01" || pgErr.Code == "40001") {
		// A deadlock with another process's group (join rows taken in
		// opposite orders): nothing committed; apply them one by one.
		for _, r := range group {
			r.res, r.wake, r.err = b.completeSingle(r.ctx, r.params)
		}
		return
	}
	if err != nil {
		err = mapErr("complete", err)
		for _, r := range group {
			r.res, r.err = nil, err
		}
	}
}

// tryPipelined sends every completion of the group in one pipelined batch:
// one implicit transaction, one round trip, one commit. It is all or nothing:
// if any statement fails (a stale claim, most likely) nothing is committed and
// it returns false, and the caller applies the group with savepoints.
func (b *Backend) tryPipelined(group []*completeReq) bool {
	batch := &pgx.Batch{}
	ctx, cancel := groupcommit.Context(contexts(group))
	defer cancel()
	for _, r := range group {
		if r.ctx.Err() != nil {
			return false
		}
	}
	b.queueGroupLocks(batch, group)
	var ends []*completeReq
	for _, r := range group {
		r.res = &backend.CompleteResult{}
		if endsRunOnly(&r.params.Plan) {
			ends = append(ends, r)
			continue
		}
		r.wake = b.queueComplete(batch, r.params, r.res, true)
	}
	if len(ends) == 1 {
		ends[0].wake = b.queueComplete(batch, ends[0].params, ends[0].res, true)
	} else if len(ends) > 1 {
		b.queueCompleteEnds(batch, ends)
	}
	br := b.pool.SendBatch(ctx, batch)
	crashInFlight(groupParams(group)...)
	if err := br.Close(); err != nil {
		return false
	}
	return true
}

// endsRunOnly reports whether a plan ends its run and has nothing else to
// apply (sqlCompleteEnds).
func endsRunOnly(p *backend.Plan) bool {
	return p.CompleteRun && p.Detached == 0 && p.Arrive == nil && len(p.Jobs) == 0 && len(p.OpenJoins) == 0 && !p.Settle
}

// queueCompleteEnds queues the completions of group, which each end their run
// only, as one statement (sqlCompleteEnds); the locks are queued already.
func (b *Backend) queueCompleteEnds(batch *pgx.Batch, group []*completeReq) {
	n := len(group)
	ids, fences, owners, outputs := make([]int64, n), make([]int64, n), make([]string, n), make([][]byte, n)
	byJob := make(map[int64]*completeReq, n)
	for i, r := range group {
		p := r.params
		ids[i], fences[i], owners[i], outputs[i] = p.JobID, p.Fence, p.ProcessID, p.Output
		byJob[p.JobID] = r
	}
	batch.Queue(b.q.completeEnds, ids, fences, owners, outputs).Query(func(rows pgx.Rows) error {
		defer rows.Close()
		for rows.Next() {
			var id int64
			var done bool
			if err := rows.Scan(&id, &done); err != nil {
				return err
			}
			if r := byJob[id]; r != nil {
				r.res.RunCompleted = done
			}
		}
		return rows.Err()
	})
}

// queueGroupLocks queues, first on a pipelined group's batch, the locks that
// each completion would otherwise take first in its own statements
// (sqlLockOwner, sqlLockRun): each distinct owner's, then the runs of all
// the group's jobs in one statement. Both are held to the commit, so every
// fenced update of the group still runs after them in a new snapshot.
func (b *Backend) queueGroupLocks(batch *pgx.Batch, group []*completeReq) {
	jobs := make([]int64, len(group))
	for i, r := range group {
		if !slices.ContainsFunc(group[:i], func(o *completeReq) bool { return o.params.ProcessID == r.params.ProcessID }) {
			batch.Queue(b.q.lockOwner, r.params.ProcessID)
		}
		jobs[i] = r.params.JobID
	}
	batch.Queue(b.q.lockRuns, jobs)
}

// groupParams lists the completions of a group.
func groupParams(group []*completeReq) []*backend.CompleteParams {
	out := make([]*backend.CompleteParams, len(group))
	for i, r := range group {
		out[i] = r.params
	}
	return out
}

// tryGroup applies the group in one transaction. A per-completion failure
// is recorded on its request; the returned error is the transaction's.
func (b *Backend) tryGroup(group []*completeReq) error {
	ctx, cancel := groupcommit.Context(contexts(group))
	defer cancel()
	tx, err := b.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(ctx) }()
	for _, r := range group {
		r.res, r.err = nil, nil
		if err := r.ctx.Err(); err != nil {
			r.err = err
			continue
		}
		res := &backend.CompleteResult{}
		batch := &pgx.Batch{}
		batch.Queue("SAVEPOINT dw_complete")
		wake := b.queueComplete(batch, r.params, res, false)
		batch.Queue("RELEASE SAVEPOINT dw_complete")
		if err := tx.SendBatch(ctx, batch).Close(); err != nil {
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) && (pgErr.Code == "40P01" || pgErr.Code == "40001") {
				return err
			}
			r.err = completeErr(r.params, err)
			if _, rerr := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT dw_complete; RELEASE SAVEPOINT dw_complete"); rerr != nil {
				return rerr
			}
			continue
		}
		r.res, r.wake = res, wake
	}
	crashInFlight(groupParams(group)...)
	return tx.Commit(ctx)
}

// contexts lists the callers' contexts of a group.
func contexts(group []*completeReq) []context.Context {
	out := make([]context.Context, len(group))
	for i, r := range group {
		out[i] = r.ctx
	}
	return out
}

// Triggers (without a caller's transaction or a key) are grouped the same
// way: the leader sends every trigger queued meanwhile as one pipelined batch,
// one implicit transaction and one commit, and each caller returns after it.

type triggerReq struct {
	ctx    context.Context
	params *backend.TriggerParams
	meta   map[string]string
	res    *backend.TriggerResult
	err    error
}

func (b *Backend) groupTrigger(ctx context.Context, params *backend.TriggerParams, meta map[string]string) (*backend.TriggerResult, error) {
	req := &triggerReq{ctx: ctx, params: params, meta: meta}
	b.triggers.Do(req, b.triggerGroup)
	return req.res, req.err
}

func (b *Backend) triggerGroup(group []*triggerReq) {
	live := group[:0:0]
	for _, r := range group {
		if err := r.ctx.Err(); err != nil {
			r.err = mapErr("trigger", err)
			continue
		}
		live = append(live, r)
	}
	if len(live) == 1 {
		b.triggerOne(live[0])
		return
	}
	if len(live) == 0 {
		return
	}
	ctxs := make([]context.Context, len(live))
	for i, r := range live {
		ctxs[i] = r.ctx
	}
	ctx, cancel := groupcommit.Context(ctxs)
	defer cancel()
	batch := &pgx.Batch{}
	if !b.queueTriggerMany(batch, live) {
		for _, r := range live {
			r.res = &backend.TriggerResult{}
			b.queueTrigger(batch, r.params, r.meta, r.res)
		}
	}
	err := b.pool.SendBatch(ctx, batch).Close()
	if err == nil {
		return
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		// A statement failed: the server rolled the whole batch back, so
		// nothing was inserted. Apply them one by one, so that the failure
		// is only its own caller's.
		for _, r := range live {
			b.triggerOne(r)
		}
		return
	}
	// Anything else (the connection, a deadline) may have struck before or
	// after the commit: every caller gets the error, as with a lone trigger.
	err = mapErr("trigger", err)
	for _, r := range live {
		r.res, r.err = nil, err
	}
}

// triggerOne runs one trigger in its own transaction.
func (b *Backend) triggerOne(r *triggerReq) {
	r.res = &backend.TriggerResult{}
	batch := &pgx.Batch{}
	b.queueTrigger(batch, r.params, r.meta, r.res)
	if err := b.pool.SendBatch(r.ctx, batch).Close(); err != nil {
		r.res, r.err = nil, mapErr("trigger", err)
	}
}

// queueTrigger queues the insert of one trigger (sqlTrigger) on batch.
func (b *Backend) queueTrigger(batch *pgx.Batch, params *backend.TriggerParams, meta map[string]string, res *backend.TriggerResult) {
	first := params.First
	gq, gated, gkey, glimit, grate := gateArgs(first.Queue, first.Gate)
	batch.Queue(b.q.trigger, params.Pipeline, params.Fingerprint, params.Input, meta,
		first.NodeID, first.Scope, int32(first.Priority), first.Input, micros(first.Delay), params.Identity, gq, gated, gkey, glimit, grate).
		QueryRow(func(row pgx.Row) error { return row.Scan(&res.RunID, &res.JobID) })
}

// queueTriggerMany queues the triggers of group as one statement
// (sqlTriggerMany) and reports whether it did: it needs each run's identity
// set and distinct, and metadata it can encode.
func (b *Backend) queueTriggerMany(batch *pgx.Batch, group []*triggerReq) bool {
	n := len(group)
	byIdentity := make(map[string]*triggerReq, n)
	var (
		pipelines, fingerprints, metas, nodes, scopes = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		identities, queues                            = make([]string, n), make([]string, n)
		inputs, jobInputs                             = make([][]byte, n), make([][]byte, n)
		prios, limits                                 = make([]int32, n), make([]int32, n)
		delays                                        = make([]int64, n)
		gated                                         = make([]bool, n)
		keys, rates                                   = make([]*string, n), make([]*string, n)
	)
	for i, r := range group {
		p := r.params
		if p.Identity == "" || byIdentity[p.Identity] != nil {
			return false
		}
		byIdentity[p.Identity] = r
		meta, err := json.Marshal(r.meta)
		if err != nil {
			return false
		}
		first := p.First
		pipelines[i], fingerprints[i], inputs[i], metas[i] = p.Pipeline, p.Fingerprint, p.Input, string(meta)
		nodes[i], scopes[i], prios[i], jobInputs[i], delays[i] = first.NodeID, first.Scope, int32(first.Priority), first.Input, micros(first.Delay)
		identities[i] = p.Identity
		queues[i], gated[i], keys[i], limits[i], rates[i] = gateArgs(first.Queue, first.Gate)
		r.res = &backend.TriggerResult{}
	}
	batch.Queue(b.q.triggerMany, pipelines, fingerprints, inputs, metas, nodes, scopes, prios, jobInputs,
		delays, identities, queues, gated, keys, limits, rates).Query(func(rows pgx.Rows) error {
		defer rows.Close()
		got := 0
		for rows.Next() {
			var identity string
			var runID, jobID int64
			if err := rows.Scan(&identity, &runID, &jobID); err != nil {
				return err
			}
			if r := byIdentity[identity]; r != nil {
				r.res.RunID, r.res.JobID = runID, jobID
				got++
			}
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if got != n {
			return fmt.Errorf("ductwork/postgres: trigger: %d runs inserted for %d triggers", got, n)
		}
		return nil
	})
	return true
}
