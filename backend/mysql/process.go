package mysql

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/internal/crashpoint"
)

// RegisterProcess inserts the process row with started_at and heartbeat_at
// set to the database's now, or, for an ID already registered, refreshes its
// host, PID, definitions and heartbeat and keeps its started_at. Idempotent.
// It returns backend.ErrProcessNotFound only if a reaper deletes the row
// between the upsert and the read of started_at. The first registration
// through a Backend checks, on a Galera node, the settings the backend needs
// there (see Migrate) for this process's own connections, and refuses with a
// permanent *ClusterError naming the missing one.
func (b *Backend) RegisterProcess(ctx context.Context, params *backend.RegisterProcessParams) (*backend.RegisterProcessResult, error) {
	const op = "register process"
	if err := checkLen("ProcessID", params.ProcessID); err != nil {
		return nil, err
	}
	if err := checkLen("Host", params.Host); err != nil {
		return nil, err
	}
	defs, err := json.Marshal(params.Definitions)
	if err != nil {
		return nil, fmt.Errorf("ductwork/mysql: %s: encode definitions: %w", op, err)
	}
	if err := b.checkClusterOnce(ctx); err != nil {
		if backend.IsPermanent(err) {
			return nil, fmt.Errorf("ductwork/mysql: %s: %w", op, err)
		}
		return nil, mapErr(op, err)
	}
	var started int64
	err = b.retry(ctx, op, func() error {
		if _, err := b.db.ExecContext(ctx, qRegisterProcess, params.ProcessID, params.Host, params.PID, defs); err != nil {
			return err
		}
		return notFound(b.db.QueryRowContext(ctx, qProcessStarted, params.ProcessID).Scan(&started), backend.ErrProcessNotFound)
	})
	if err != nil {
		return nil, err
	}
	return &backend.RegisterProcessResult{StartedAt: fromMicros(started)}, nil
}

// Heartbeat sets the process's heartbeat to the database's now and returns
// it, with the runs of params.Runs that are cancelled (read by a second
// query, only when Runs is not empty). It returns backend.ErrProcessNotFound
// when the row is gone (reaped).
func (b *Backend) Heartbeat(ctx context.Context, params *backend.HeartbeatParams) (*backend.HeartbeatResult, error) {
	var at int64
	err := b.retry(ctx, "heartbeat", func() error {
		r, err := b.exec(ctx, qHeartbeat, params.ProcessID)
		if err != nil {
			return err
		}
		if err := expectOne(r, backend.ErrProcessNotFound); err != nil {
			return err
		}
		rows, err := b.query(ctx, qProcessBeat, params.ProcessID)
		if err != nil {
			return err
		}
		defer rows.Close()
		if !rows.Next() {
			return errors.Join(rows.Err(), backend.ErrProcessNotFound)
		}
		if err := rows.Scan(&at); err != nil {
			return err
		}
		return rows.Close()
	})
	if err != nil {
		return nil, err
	}
	res := &backend.HeartbeatResult{At: fromMicros(at)}
	for runs := params.Runs; len(runs) > 0; {
		n := min(len(runs), 1024)
		ids := padded(runs[:n])
		args := make([]any, len(ids))
		for i, id := range ids {
			args[i] = id
		}
		runs = runs[n:]
		var found []int64
		err := b.retry(ctx, "heartbeat", func() error {
			found = found[:0]
			rows, err := b.query(ctx, qCancelledRunsHead+placeholders("?", len(args))+")", args...)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				var id int64
				if err := rows.Scan(&id); err != nil {
					return err
				}
				found = append(found, id)
			}
			return rows.Err()
		})
		if err != nil {
			return nil, err
		}
		res.CancelledRuns = append(res.CancelledRuns, found...)
	}
	if params.Owned {
		var err error
		if res.Owned, err = b.ownedJobs(ctx, params.ProcessID); err != nil {
			return nil, mapErr("heartbeat", err)
		}
	}
	return res, nil
}

// ownedJobs lists the running jobs processID owns.
func (b *Backend) ownedJobs(ctx context.Context, processID string) ([]backend.OwnedJob, error) {
	rows, err := b.query(ctx, qOwnedJobs, processID)
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	owned := []backend.OwnedJob{}
	for rows.Next() {
		var o backend.OwnedJob
		if err := rows.Scan(&o.JobID, &o.Fence); err != nil {
			return nil, err
		}
		owned = append(owned, o)
	}
	return owned, rows.Err()
}

// DeregisterProcess, in one transaction, makes the process's running jobs
// pending and due at once (counts unchanged, as a release) and deletes its row.
// Idempotent: an unknown ID is not an error.
func (b *Backend) DeregisterProcess(ctx context.Context, params *backend.DeregisterProcessParams) error {
	return b.withTx(ctx, "deregister process", func(tx *sql.Tx) error {
		if _, err := endRunning(ctx, tx, backend.OutcomeReleased, 0, qProcessJobs, params.ProcessID); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, qDeleteProcess, params.ProcessID)
		return err
	})
}

// Reap, in one transaction, locks (FOR UPDATE SKIP LOCKED) the processes
// other than params.ProcessID whose heartbeat is older than params.Threshold
// by the database's clock, makes their running jobs pending and due at once
// (crashes+1, attempt unchanged), and deletes them, re-checking staleness in
// the DELETE. It also resets running jobs that were started longer than
// Threshold ago by an owner without a process row. A process locked by a
// concurrent reaper is skipped, so each dead process is reaped once; a second
// Reap finds nothing. The result lists the reaped process IDs and counts the
// jobs reset.
func (b *Backend) Reap(ctx context.Context, params *backend.ReapParams) (*backend.ReapResult, error) {
	thr := micros(params.Threshold)
	var res backend.ReapResult
	err := b.withReapTx(ctx, func(tx *sql.Tx) error {
		res = backend.ReapResult{Processes: []string{}}
		rows, err := tx.QueryContext(ctx, qStaleProcesses, params.ProcessID, thr)
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
		if n := len(res.Processes); n > 0 {
			args := make([]any, 0, n+1)
			for _, id := range res.Processes {
				args = append(args, id)
			}
			jobs, err := endRunning(ctx, tx, backend.OutcomeCrashed, 1, qReapJobsHead+placeholders("?", n)+qReapJobsTail, args...)
			if err != nil {
				return err
			}
			res.Jobs += jobs
			crashpoint.Hit(crashpoint.ReapTx)
			r, err := tx.ExecContext(ctx, qReapProcessesHead+placeholders("?", n)+")", append([]any{thr}, args...)...)
			if err != nil {
				return err
			}
			if deleted, err := r.RowsAffected(); err != nil {
				return err
			} else if deleted != int64(n) {
				// The rows are locked, so they cannot have been refreshed;
				// refuse to report a reap that did not happen.
				return fmt.Errorf("reaped %d processes, deleted %d", n, deleted)
			}
		}
		orphans, err := endRunning(ctx, tx, backend.OutcomeCrashed, 1, qReapOrphans, thr)
		res.Jobs += orphans
		return err
	})
	if err != nil {
		return nil, err
	}
	return &res, nil
}

// notFound turns sql.ErrNoRows into sentinel.
func notFound(err, sentinel error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return sentinel
	}
	return err
}

// reapLockWait bounds how long the reaper waits for a row lock, in seconds.
// A process frozen (SIGSTOP, a long GC pause) inside a transaction keeps its
// row locks; waiting the server's default 50 s for them kept the reaper's own
// locks held that long and stalled the heartbeats of healthy processes, which
// were then reaped in place of the frozen one. With a short wait the reaper
// gives up, releases everything, and tries again on its next round.
const reapLockWait = 1

// withReapTx runs fn in a READ COMMITTED transaction on a dedicated
// connection whose lock wait is reapLockWait, rerun after a deadlock.
func (b *Backend) withReapTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	return b.retry(ctx, "reap", func() error {
		conn, err := b.db.Conn(ctx)
		if err != nil {
			return err
		}
		if _, err := conn.ExecContext(ctx, "SET SESSION innodb_lock_wait_timeout = "+strconv.Itoa(reapLockWait)); err != nil {
			_ = conn.Close()
			return err
		}
		// release puts the server default back and returns the connection
		// to the pool. It runs after the transaction ends, through endTx:
		// until then the connection's lock is held, and over a silent link
		// the end may outlive ctx. (If the statement fails, the driver has
		// dropped the connection, which then never returns to the pool.)
		release := func() {
			cctx, cancel := cleanupCtx(ctx)
			defer cancel()
			_, _ = conn.ExecContext(cctx, "SET SESSION innodb_lock_wait_timeout = DEFAULT")
			_ = conn.Close()
		}
		tx, err := conn.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
		if err != nil {
			release()
			return err
		}
		if err := fn(tx); err != nil {
			_ = endTx(ctx, tx.Rollback, release)
			return err
		}
		return commit(ctx, tx, release)
	})
}
