package mysql

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/internal/groupcommit"
	gomysql "github.com/go-sql-driver/mysql"
)

// Trigger inserts a run (status running) and the pending job of its first
// step, due at the database's now plus First.Delay, atomically.
//
// When params.Tx is a *sql.Tx (opened on the same database) the two inserts
// join it, nothing is retried and the caller commits or rolls back; a rollback
// leaves no row. Any other non-nil Tx, including a nil *sql.Tx, returns
// backend.ErrUnsupportedTx. Without Tx the inserts run in the backend's own
// transaction, rerun on deadlock; on MariaDB concurrent triggers without a
// key share one (see triggerGroup). Overlong identifiers return
// *TooLongError.
func (b *Backend) Trigger(ctx context.Context, params *backend.TriggerParams) (*backend.TriggerResult, error) {
	const op = "trigger"
	if err := b.checkOpen(op); err != nil {
		return nil, err
	}
	for _, f := range [...]struct{ name, v string }{
		{"Pipeline", params.Pipeline}, {"Fingerprint", params.Fingerprint},
		{"First.NodeID", params.First.NodeID}, {"First.Scope", params.First.Scope}, {"Key", params.Key},
	} {
		if err := checkLen(f.name, f.v); err != nil {
			return nil, err
		}
	}
	meta, err := json.Marshal(params.Metadata)
	if err != nil {
		return nil, fmt.Errorf("ductwork/mysql: %s: encode metadata: %w", op, err)
	}
	var key any
	if params.Key != "" {
		key = params.Key
	}
	var res backend.TriggerResult
	insert := func(q querier) error {
		r, err := q.ExecContext(ctx, qInsertRun, params.Pipeline, params.Fingerprint, params.Input, meta, params.Identity, key)
		if err != nil {
			return err
		}
		if res.RunID, err = r.LastInsertId(); err != nil {
			return err
		}
		r, err = q.ExecContext(ctx, qInsertFirstJob, append([]any{res.RunID, params.First.NodeID, params.First.Scope,
			params.First.Priority, params.First.Input, micros(params.First.Delay)}, gateArgs(params.First.Queue, params.First.Gate)...)...)
		if err != nil {
			return err
		}
		res.JobID, err = r.LastInsertId()
		return err
	}
	if params.Tx != nil {
		tx, ok := params.Tx.(*sql.Tx)
		if !ok || tx == nil {
			return nil, fmt.Errorf("ductwork/mysql: %s: got %T, want *sql.Tx: %w", op, params.Tx, backend.ErrUnsupportedTx)
		}
		for attempt := 0; ; attempt++ {
			err := insert(tx)
			if err == nil {
				return &res, nil
			}
			if params.Key == "" || !isDuplicate(err) {
				return nil, mapErr(op, err)
			}
			// A duplicate key rolls back the statement, not the caller's
			// transaction.
			existing, err := b.triggerExisting(ctx, tx, params)
			if !errors.Is(err, errKeyReleased) {
				return existing, err
			}
			if attempt == 10 {
				return nil, fmt.Errorf("ductwork/mysql: trigger %s key %q: the key kept moving between runs", params.Pipeline, params.Key)
			}
		}
	}
	if params.Key == "" && b.canReturn(ctx) {
		// Concurrent triggers share one transaction (triggerGroup).
		req := &triggerReq{ctx: ctx, params: params, meta: meta}
		b.triggers.Do(req, b.triggerGroup)
		if !req.alone {
			return req.res, req.err
		}
	}
	for attempt := 0; ; attempt++ {
		err := b.withTx(ctx, op, func(tx *sql.Tx) error { return insert(b.preparedTx(tx)) })
		if err == nil {
			return &res, nil
		}
		if params.Key == "" || !isDuplicate(err) {
			return nil, err
		}
		existing, err := b.triggerExisting(ctx, b.db, params)
		if !errors.Is(err, errKeyReleased) {
			return existing, err
		}
		if attempt == 10 {
			return nil, fmt.Errorf("ductwork/mysql: trigger %s key %q: the key kept moving between runs", params.Pipeline, params.Key)
		}
	}
}

// errKeyReleased: triggerExisting took the key from a finished run; insert
// again.
var errKeyReleased = errors.New("trigger key released by a finished run")

// triggerExisting returns the run that holds params.Key in its pipeline (a
// keyed trigger found the key taken), or backend.ErrKeyConflict if that run
// was started with another input.
// With params.KeyWhileActive and a finished run, it takes the key from that
// run and returns errKeyReleased: the caller inserts again.
func (b *Backend) triggerExisting(ctx context.Context, q querier, params *backend.TriggerParams) (*backend.TriggerResult, error) {
	res := &backend.TriggerResult{Existing: true}
	var (
		input    []byte
		finished bool
	)
	err := q.QueryRowContext(ctx, qTriggerExisting, params.Pipeline, params.Key).Scan(&res.RunID, &res.JobID, &input, &finished)
	if errors.Is(err, sql.ErrNoRows) {
		// A concurrent trigger took the key from a finished run and has not
		// committed its own yet: insert again (that waits for it).
		return nil, errKeyReleased
	}
	if err != nil {
		return nil, mapErr("trigger", err)
	}
	if finished && params.KeyWhileActive {
		if _, err := q.ExecContext(ctx, qReleaseKey, res.RunID); err != nil {
			return nil, mapErr("trigger", err)
		}
		return nil, errKeyReleased
	}
	if !bytes.Equal(input, params.Input) {
		return nil, fmt.Errorf("ductwork/mysql: trigger %s key %q: %w", params.Pipeline, params.Key, backend.ErrKeyConflict)
	}
	return res, nil
}

// triggerReq is one caller's trigger in a group.
type triggerReq struct {
	ctx    context.Context
	params *backend.TriggerParams
	meta   []byte
	res    *backend.TriggerResult
	err    error
	// alone: the group failed; the caller triggers in a transaction of its
	// own, where it gets its own answer.
	alone bool
}

// triggerGroup inserts the runs and first jobs of concurrent triggers (no
// key, no caller's transaction, MariaDB) in one transaction: one multi-row
// INSERT ... RETURNING of the runs, one of the jobs (a group of one too:
// the callers that arrive meanwhile queue for the next group). If the
// server refuses a statement, every trigger of the group is run again alone;
// any other failure is every caller's error.
func (b *Backend) triggerGroup(group []*triggerReq) {
	ctx, cancel := groupcommit.Context(triggerContexts(group))
	defer cancel()
	err := b.withTx(ctx, "trigger", func(sqlTx *sql.Tx) error {
		tx := b.preparedTx(sqlTx)
		args := make([]any, 0, 5*len(group))
		for _, r := range group {
			p := r.params
			args = append(args, p.Pipeline, p.Fingerprint, p.Input, r.meta, p.Identity)
		}
		rows, err := tx.QueryContext(ctx, qInsertRunsHead+placeholders(insertRunRow, len(group))+" RETURNING id, identity", args...)
		if err != nil {
			return err
		}
		i := 0
		for rows.Next() {
			var (
				id       int64
				identity []byte
			)
			if err := rows.Scan(&id, &identity); err != nil {
				rows.Close()
				return err
			}
			// The rows come back in the order of the VALUES list; the
			// identity confirms it.
			if i >= len(group) || string(identity) != group[i].params.Identity {
				rows.Close()
				return errors.New("ductwork/mysql: inserted runs came back out of order")
			}
			group[i].res = &backend.TriggerResult{RunID: id}
			i++
		}
		if err := errors.Join(rows.Close(), rows.Err()); err != nil {
			return err
		}
		if i != len(group) {
			return fmt.Errorf("ductwork/mysql: %d runs inserted for %d triggers", i, len(group))
		}
		args = args[:0]
		byRun := make(map[int64]*triggerReq, len(group))
		for _, r := range group {
			f := &r.params.First
			args = append(args, r.res.RunID, f.NodeID, f.Scope, f.Priority, f.Input, micros(f.Delay))
			args = append(args, gateArgs(f.Queue, f.Gate)...)
			byRun[r.res.RunID] = r
		}
		rows, err = tx.QueryContext(ctx, qInsertFirstJobsHead+placeholders(insertFirstJobRow, len(group))+" RETURNING id, run_id", args...)
		if err != nil {
			return err
		}
		n := 0
		for rows.Next() {
			var id, runID int64
			if err := rows.Scan(&id, &runID); err != nil {
				rows.Close()
				return err
			}
			if r := byRun[runID]; r != nil {
				r.res.JobID = id
				n++
			}
		}
		if err := errors.Join(rows.Close(), rows.Err()); err != nil {
			return err
		}
		if n != len(group) {
			return fmt.Errorf("ductwork/mysql: %d first jobs inserted for %d triggers", n, len(group))
		}
		return nil
	})
	if err == nil {
		return
	}
	// The server refused a statement (nothing was committed): each trigger
	// again alone, where only a bad one fails. Anything else (a lost
	// connection, no reply to the commit) may have committed the group: the
	// callers get the error, as a single trigger's would be, and a retry is
	// theirs to decide (WithKey makes it safe).
	var me *gomysql.MySQLError
	alone := errors.As(err, &me)
	for _, r := range group {
		r.res, r.err, r.alone = nil, err, alone
	}
}

func triggerContexts(group []*triggerReq) []context.Context {
	out := make([]context.Context, len(group))
	for i, r := range group {
		out[i] = r.ctx
	}
	return out
}
