package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/internal/crashpoint"
)

// RegisterProcess inserts the process row, or refreshes host, PID,
// definitions and heartbeat of an existing one (its StartedAt is kept), with
// the database's clock. Idempotent.
func (b *Backend) RegisterProcess(ctx context.Context, params *backend.RegisterProcessParams) (*backend.RegisterProcessResult, error) {
	if b.closed.Load() {
		return nil, errClosed("register process")
	}
	defs, err := definitionsJSON(params.Definitions)
	if err != nil {
		return nil, fmt.Errorf("sqlite: register process: %w", err)
	}
	row, err := b.writeRow(ctx, qRegisterProcess, params.ProcessID, params.Host, params.PID, defs)
	if err != nil {
		return nil, mapErr("register process", err)
	}
	var started int64
	if err := row.Scan(&started); err != nil {
		return nil, mapErr("register process", err)
	}
	return &backend.RegisterProcessResult{StartedAt: fromMicros(started)}, nil
}

// Heartbeat sets the process's heartbeat to the database's clock and, when
// params.Runs is not empty, reads which of them are cancelled. It returns
// backend.ErrProcessNotFound when the row is gone (the process was reaped).
func (b *Backend) Heartbeat(ctx context.Context, params *backend.HeartbeatParams) (*backend.HeartbeatResult, error) {
	if b.closed.Load() {
		return nil, errClosed("heartbeat")
	}
	row, err := b.writeRow(ctx, qHeartbeat, params.ProcessID)
	if err != nil {
		return nil, mapErr("heartbeat", err)
	}
	var at int64
	if err := row.Scan(&at); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			err = fmt.Errorf("process %q: %w", params.ProcessID, backend.ErrProcessNotFound)
		}
		return nil, mapErr("heartbeat", err)
	}
	res := &backend.HeartbeatResult{At: fromMicros(at)}
	if params.Owned {
		rows, err := b.readRows(ctx, qOwnedJobs, params.ProcessID)
		if err != nil {
			return nil, mapErr("heartbeat", err)
		}
		defer func() { _ = rows.Close() }()
		res.Owned = []backend.OwnedJob{}
		for rows.Next() {
			var o backend.OwnedJob
			if err := rows.Scan(&o.JobID, &o.Fence); err != nil {
				return nil, mapErr("heartbeat", err)
			}
			res.Owned = append(res.Owned, o)
		}
		if err := rows.Err(); err != nil {
			return nil, mapErr("heartbeat", err)
		}
	}
	if len(params.Runs) > 0 {
		if res.CancelledRuns, err = b.cancelledRuns(ctx, params.Runs); err != nil {
			return nil, mapErr("heartbeat", err)
		}
	}
	return res, nil
}

// cancelledRuns returns which of runs are cancelled, from the read pool.
func (b *Backend) cancelledRuns(ctx context.Context, runs []int64) ([]int64, error) {
	ids, err := json.Marshal(runs)
	if err != nil {
		return nil, err
	}
	rows, err := b.readRows(ctx, qCancelledRuns, string(ids))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	return out, rows.Err()
}

// DeregisterProcess releases the process's running jobs (pending, due now,
// counts unchanged, as Release) and deletes its row, in one transaction. Idempotent.
func (b *Backend) DeregisterProcess(ctx context.Context, params *backend.DeregisterProcessParams) error {
	if b.closed.Load() {
		return errClosed("deregister process")
	}
	err := b.inTx(ctx, func(t *txn) error {
		if _, err := t.exec(qRecordProcessExecutions, params.ProcessID); err != nil {
			return err
		}
		if _, err := t.exec(qReleaseProcessJobs, params.ProcessID); err != nil {
			return err
		}
		_, err := t.exec(qDeleteProcess, params.ProcessID)
		return err
	})
	return mapErr("deregister process", err)
}

// Reap deletes the processes other than params.ProcessID whose heartbeat is
// older than params.Threshold by the database's clock, and resets their
// running jobs to pending (due now, Crashes+1, Attempt unchanged), in one
// transaction. Running jobs whose owner has no process row and whose claim is
// older than the threshold are reset too. The staleness test is part of the
// DELETE, so each dead process is reaped by exactly one of many concurrent
// reapers.
func (b *Backend) Reap(ctx context.Context, params *backend.ReapParams) (*backend.ReapResult, error) {
	if b.closed.Load() {
		return nil, errClosed("reap")
	}
	res := &backend.ReapResult{}
	threshold := micros(params.Threshold)
	err := b.inTx(ctx, func(t *txn) error {
		rows, err := t.query(qReapProcesses, params.ProcessID, threshold)
		if err != nil {
			return err
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return err
			}
			res.Processes = append(res.Processes, id)
		}
		if err := rows.Close(); err != nil {
			return err
		}
		if err := rows.Err(); err != nil {
			return err
		}
		// RETURNING has no order: sorted, as the other backends list them.
		slices.Sort(res.Processes)
		ids, err := json.Marshal(res.Processes)
		if err != nil {
			return err
		}
		if res.Processes == nil {
			ids = []byte("[]")
		}
		if _, err := t.exec(qRecordReapedExecutions, string(ids), threshold); err != nil {
			return err
		}
		n, err := t.execCount(qReapJobs, string(ids), threshold)
		res.Jobs = int(n)
		if err == nil && (n > 0 || len(res.Processes) > 0) {
			crashpoint.Hit(crashpoint.ReapTx)
		}
		return err
	})
	if err != nil {
		return nil, mapErr("reap", err)
	}
	return res, nil
}
