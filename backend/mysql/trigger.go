package mysql

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/ductwork-go/ductwork/backend"
)

// Trigger inserts a run (status running) and the pending job of its first
// step, due at the database's now plus First.Delay, atomically.
//
// When params.Tx is a *sql.Tx (opened on the same database) the two inserts
// join it, nothing is retried and the caller commits or rolls back; a rollback
// leaves no row. Any other non-nil Tx, including a nil *sql.Tx, returns
// backend.ErrUnsupportedTx. Without Tx the inserts run in the backend's own
// transaction, rerun on deadlock. Overlong identifiers return *TooLongError.
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
