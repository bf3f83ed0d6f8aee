package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/internal/sqlbackend"
)

const (
	qScheduleRead = `SELECT pipeline, spec, timezone, missed FROM ductwork_schedules WHERE name = ?`
	// The assignments run left to right, each seeing the columns already
	// assigned: next_tick compares with the stored spec and time zone
	// before they are replaced.
	qScheduleSave = `INSERT INTO ductwork_schedules (name, pipeline, spec, timezone, missed, next_tick, created_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ` + nowUS + `, ` + nowUS + `)
ON DUPLICATE KEY UPDATE
    next_tick = IF(spec = VALUES(spec) AND timezone = VALUES(timezone), next_tick, VALUES(next_tick)),
    pipeline = VALUES(pipeline), missed = VALUES(missed), spec = VALUES(spec), timezone = VALUES(timezone),
    updated_at = ` + nowUS
	qScheduleList = `SELECT name, pipeline, spec, timezone, missed, paused, next_tick, last_tick, COALESCE(last_run_id, 0), created_at, updated_at
FROM ductwork_schedules ORDER BY name`
	qScheduleLock    = `SELECT next_tick, paused FROM ductwork_schedules WHERE name = ? FOR UPDATE`
	qScheduleAdvance = `UPDATE ductwork_schedules SET next_tick = ?, updated_at = ` + nowUS + ` WHERE name = ?`
	qScheduleFired   = `UPDATE ductwork_schedules SET next_tick = ?, last_tick = ?, last_run_id = NULLIF(?, 0), updated_at = ` + nowUS + `
WHERE name = ?`
	qScheduleExists = `SELECT 1 FROM ductwork_schedules WHERE name = ?`
	qSchedulePause  = `UPDATE ductwork_schedules SET paused = ?, updated_at = ` + nowUS + ` WHERE name = ?`
)

// SaveSchedules creates or updates the schedules' rows. A schedule stored
// as given costs one primary-key read and no write.
func (b *Backend) SaveSchedules(ctx context.Context, params *backend.SaveSchedulesParams) (*backend.SaveSchedulesResult, error) {
	const op = "save schedules"
	if err := b.checkOpen(op); err != nil {
		return nil, err
	}
	res := &backend.SaveSchedulesResult{}
	for _, s := range params.Schedules {
		for _, f := range [...]struct{ name, v string }{
			{"Schedule.Name", s.Name}, {"Schedule.Pipeline", s.Pipeline}, {"Schedule.Spec", s.Spec}, {"Schedule.Timezone", s.Timezone},
		} {
			if err := checkLen(f.name, f.v); err != nil {
				return nil, err
			}
		}
		var pipeline, spec, tz, missed string
		err := b.db.QueryRowContext(ctx, qScheduleRead, s.Name).Scan(&pipeline, &spec, &tz, &missed)
		switch {
		case err == nil && pipeline == s.Pipeline && spec == s.Spec && tz == s.Timezone && missed == s.Missed:
			continue
		case err == nil && (spec != s.Spec || tz != s.Timezone):
			res.Rescheduled++
		case errors.Is(err, sql.ErrNoRows):
			res.Inserted++
		case err != nil:
			return nil, mapErr(op, err)
		}
		err = b.retry(ctx, op, func() error {
			_, err := b.db.ExecContext(ctx, qScheduleSave, s.Name, s.Pipeline, s.Spec, s.Timezone, s.Missed, s.NextTick.UnixMicro())
			return err
		})
		if err != nil {
			return nil, mapErr(op, err)
		}
	}
	return res, nil
}

// ListSchedules reads every schedule, by name, and the database's clock.
func (b *Backend) ListSchedules(ctx context.Context, params *backend.ListSchedulesParams) (*backend.ListSchedulesResult, error) {
	const op = "list schedules"
	if err := b.checkOpen(op); err != nil {
		return nil, err
	}
	rows, err := b.db.QueryContext(ctx, qScheduleList)
	if err != nil {
		return nil, mapErr(op, err)
	}
	defer rows.Close()
	res := &backend.ListSchedulesResult{}
	if res.Schedules, err = sqlbackend.ScanSchedules(rows); err != nil {
		return nil, mapErr(op, err)
	}
	if res.Now, err = b.Now(ctx); err != nil {
		return nil, err
	}
	return res, nil
}

// FireSchedule locks the schedule's row, checks its next tick, triggers the
// tick's run in the same transaction and advances the row. A deadlock reruns
// the whole transaction.
func (b *Backend) FireSchedule(ctx context.Context, params *backend.FireScheduleParams) (*backend.FireScheduleResult, error) {
	const op = "fire schedule"
	if err := b.checkOpen(op); err != nil {
		return nil, err
	}
	var res backend.FireScheduleResult
	err := b.withTx(ctx, op, func(tx *sql.Tx) error {
		res = backend.FireScheduleResult{}
		var next int64
		var paused bool
		err := tx.QueryRowContext(ctx, qScheduleLock, params.Name).Scan(&next, &paused)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("schedule %q: %w", params.Name, backend.ErrScheduleNotFound)
		}
		if err != nil {
			return err
		}
		if paused || next != params.Expected.UnixMicro() {
			return nil
		}
		res.Fired = true
		if params.Trigger == nil {
			_, err := tx.ExecContext(ctx, qScheduleAdvance, params.Next.UnixMicro(), params.Name)
			return err
		}
		tp := *params.Trigger
		tp.Tx = tx
		tr, err := b.Trigger(ctx, &tp)
		switch {
		case errors.Is(err, backend.ErrKeyConflict):
			res.Existing = true
		case err != nil:
			return err
		default:
			res.RunID, res.Existing = tr.RunID, tr.Existing
		}
		_, err = tx.ExecContext(ctx, qScheduleFired, params.Next.UnixMicro(), params.Tick.UnixMicro(), res.RunID, params.Name)
		return err
	})
	if err != nil {
		return nil, mapErr(op, err)
	}
	return &res, nil
}

// PauseSchedule sets a schedule's paused flag.
func (b *Backend) PauseSchedule(ctx context.Context, params *backend.PauseScheduleParams) (*backend.PauseScheduleResult, error) {
	const op = "pause schedule"
	if err := b.checkOpen(op); err != nil {
		return nil, err
	}
	var n int64
	err := b.retry(ctx, op, func() error {
		// Found rows, not changed ones: a flag already set is no error.
		var one int
		if err := b.db.QueryRowContext(ctx, qScheduleExists, params.Name).Scan(&one); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return nil
			}
			return err
		}
		n = 1
		_, err := b.db.ExecContext(ctx, qSchedulePause, params.Paused, params.Name)
		return err
	})
	if err != nil {
		return nil, mapErr(op, err)
	}
	if n == 0 {
		return nil, fmt.Errorf("ductwork/mysql: %s %q: %w", op, params.Name, backend.ErrScheduleNotFound)
	}
	return &backend.PauseScheduleResult{}, nil
}
