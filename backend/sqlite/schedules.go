package sqlite

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
	// SET reads the row's old values, so next_tick compares with the stored
	// spec and time zone.
	qScheduleSave = `INSERT INTO ductwork_schedules (name, pipeline, spec, timezone, missed, next_tick, created_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ` + nowUS + `, ` + nowUS + `)
ON CONFLICT (name) DO UPDATE SET pipeline = excluded.pipeline, missed = excluded.missed,
    spec = excluded.spec, timezone = excluded.timezone,
    next_tick = CASE WHEN spec = excluded.spec AND timezone = excluded.timezone THEN next_tick ELSE excluded.next_tick END,
    updated_at = ` + nowUS
	qScheduleList = `SELECT name, pipeline, spec, timezone, missed, paused, next_tick, last_tick, COALESCE(last_run_id, 0), created_at, updated_at
FROM ductwork_schedules ORDER BY name`
	qScheduleLock    = `SELECT next_tick, paused FROM ductwork_schedules WHERE name = ?`
	qScheduleAdvance = `UPDATE ductwork_schedules SET next_tick = ?, updated_at = ` + nowUS + ` WHERE name = ?`
	qScheduleFired   = `UPDATE ductwork_schedules SET next_tick = ?, last_tick = ?, last_run_id = NULLIF(?, 0), updated_at = ` + nowUS + `
WHERE name = ?`
	qSchedulePause = `UPDATE ductwork_schedules SET paused = ?, updated_at = ` + nowUS + ` WHERE name = ?`
)

// SaveSchedules creates or updates the schedules' rows. A schedule stored
// as given costs one read on the read pool and no write.
func (b *Backend) SaveSchedules(ctx context.Context, params *backend.SaveSchedulesParams) (*backend.SaveSchedulesResult, error) {
	const op = "save schedules"
	if b.closed.Load() {
		return nil, errClosed(op)
	}
	res := &backend.SaveSchedulesResult{}
	for _, s := range params.Schedules {
		row, err := b.readRow(ctx, qScheduleRead, s.Name)
		if err != nil {
			return nil, mapErr(op, err)
		}
		var pipeline, spec, tz, missed string
		err = row.Scan(&pipeline, &spec, &tz, &missed)
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
		if _, err := b.writeExec(ctx, qScheduleSave, s.Name, s.Pipeline, s.Spec, s.Timezone, s.Missed, s.NextTick.UnixMicro()); err != nil {
			return nil, mapErr(op, err)
		}
	}
	return res, nil
}

// ListSchedules reads every schedule, by name, and the database's clock,
// from the read pool.
func (b *Backend) ListSchedules(ctx context.Context, params *backend.ListSchedulesParams) (*backend.ListSchedulesResult, error) {
	const op = "list schedules"
	if b.closed.Load() {
		return nil, errClosed(op)
	}
	rows, err := b.readRows(ctx, qScheduleList)
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

// FireSchedule checks the schedule's next tick, triggers the tick's run and
// advances the row in one write transaction (which holds SQLite's write
// lock, so racing callers see each other's result).
func (b *Backend) FireSchedule(ctx context.Context, params *backend.FireScheduleParams) (*backend.FireScheduleResult, error) {
	const op = "fire schedule"
	if b.closed.Load() {
		return nil, errClosed(op)
	}
	var res backend.FireScheduleResult
	err := b.inTx(ctx, func(t *txn) error {
		res = backend.FireScheduleResult{}
		var next int64
		var paused bool
		err := t.queryRow(qScheduleLock, params.Name).Scan(&next, &paused)
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
			_, err := t.exec(qScheduleAdvance, params.Next.UnixMicro(), params.Name)
			return err
		}
		tp := *params.Trigger
		tp.Tx = t.tx
		tr, err := b.Trigger(ctx, &tp)
		switch {
		case errors.Is(err, backend.ErrKeyConflict):
			res.Existing = true
		case err != nil:
			return err
		default:
			res.RunID, res.Existing = tr.RunID, tr.Existing
		}
		_, err = t.exec(qScheduleFired, params.Next.UnixMicro(), params.Tick.UnixMicro(), res.RunID, params.Name)
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
	if b.closed.Load() {
		return nil, errClosed(op)
	}
	r, err := b.writeExec(ctx, qSchedulePause, params.Paused, params.Name)
	if err != nil {
		return nil, mapErr(op, err)
	}
	// SQLite counts matched rows, changed or not.
	if n, err := r.RowsAffected(); err != nil {
		return nil, mapErr(op, err)
	} else if n == 0 {
		return nil, fmt.Errorf("sqlite: %s %q: %w", op, params.Name, backend.ErrScheduleNotFound)
	}
	return &backend.PauseScheduleResult{}, nil
}
