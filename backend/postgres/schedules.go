package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ductwork-go/ductwork/backend"
)

const (
	sqlScheduleRead = `SELECT pipeline, spec, timezone, missed FROM {schema}.ductwork_schedules WHERE name = $1`
	// On a changed spec or time zone the next tick is replaced; SET reads
	// the row's old values, so the comparison sees the stored spec.
	sqlScheduleSave = `INSERT INTO {schema}.ductwork_schedules AS s (name, pipeline, spec, timezone, missed, next_tick)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (name) DO UPDATE SET pipeline = excluded.pipeline, missed = excluded.missed,
    spec = excluded.spec, timezone = excluded.timezone,
    next_tick = CASE WHEN s.spec = excluded.spec AND s.timezone = excluded.timezone THEN s.next_tick ELSE excluded.next_tick END,
    updated_at = now()`
	sqlScheduleList = `SELECT name, pipeline, spec, timezone, missed, paused, next_tick, last_tick, coalesce(last_run_id, 0), created_at, updated_at
FROM {schema}.ductwork_schedules ORDER BY name`
	sqlScheduleLock    = `SELECT next_tick, paused FROM {schema}.ductwork_schedules WHERE name = $1 FOR UPDATE`
	sqlScheduleAdvance = `UPDATE {schema}.ductwork_schedules SET next_tick = $2, updated_at = now() WHERE name = $1`
	sqlScheduleFired   = `UPDATE {schema}.ductwork_schedules SET next_tick = $2, last_tick = $3, last_run_id = nullif($4, 0), updated_at = now()
WHERE name = $1`
	sqlSchedulePause = `UPDATE {schema}.ductwork_schedules SET paused = $2, updated_at = now() WHERE name = $1`
)

// SaveSchedules creates or updates the schedules' rows. A schedule stored
// as given costs one primary-key read and no write.
func (b *Backend) SaveSchedules(ctx context.Context, params *backend.SaveSchedulesParams) (*backend.SaveSchedulesResult, error) {
	if err := b.checkOpen(); err != nil {
		return nil, err
	}
	read, save := b.q.replacer.Replace(sqlScheduleRead), b.q.replacer.Replace(sqlScheduleSave)
	res := &backend.SaveSchedulesResult{}
	for _, s := range params.Schedules {
		if err := errors.Join(checkLen("Schedule.Name", s.Name, backend.MaxScheduleNameBytes),
			checkLen("Schedule.Spec", s.Spec, backend.MaxScheduleSpecBytes),
			checkLen("Schedule.Pipeline", s.Pipeline, Limits.MaxPipelineBytes)); err != nil {
			return nil, err
		}
		var pipeline, spec, tz, missed string
		err := b.pool.QueryRow(ctx, read, s.Name).Scan(&pipeline, &spec, &tz, &missed)
		switch {
		case err == nil && pipeline == s.Pipeline && spec == s.Spec && tz == s.Timezone && missed == s.Missed:
			continue
		case err == nil && (spec != s.Spec || tz != s.Timezone):
			res.Rescheduled++
		case errors.Is(err, pgx.ErrNoRows):
			res.Inserted++
		case err != nil:
			return nil, mapErr("save schedules", err)
		}
		if _, err := b.pool.Exec(ctx, save, s.Name, s.Pipeline, s.Spec, s.Timezone, s.Missed, s.NextTick); err != nil {
			return nil, mapErr("save schedules", err)
		}
	}
	return res, nil
}

// ListSchedules reads every schedule, by name, and the database's clock.
func (b *Backend) ListSchedules(ctx context.Context, params *backend.ListSchedulesParams) (*backend.ListSchedulesResult, error) {
	if err := b.checkOpen(); err != nil {
		return nil, err
	}
	rows, err := b.pool.Query(ctx, b.q.replacer.Replace(sqlScheduleList))
	if err != nil {
		return nil, mapErr("list schedules", err)
	}
	defer rows.Close()
	res := &backend.ListSchedulesResult{}
	for rows.Next() {
		var s backend.Schedule
		var last *time.Time
		if err := rows.Scan(&s.Name, &s.Pipeline, &s.Spec, &s.Timezone, &s.Missed, &s.Paused, &s.NextTick, &last, &s.LastRunID,
			&s.CreatedAt, &s.UpdatedAt); err != nil {
			return nil, mapErr("list schedules", err)
		}
		if last != nil {
			s.LastTick = last.UTC()
		}
		s.NextTick, s.CreatedAt, s.UpdatedAt = s.NextTick.UTC(), s.CreatedAt.UTC(), s.UpdatedAt.UTC()
		res.Schedules = append(res.Schedules, s)
	}
	if err := rows.Err(); err != nil {
		return nil, mapErr("list schedules", err)
	}
	if res.Now, err = b.Now(ctx); err != nil {
		return nil, err
	}
	return res, nil
}

// FireSchedule locks the schedule's row, checks its next tick, triggers the
// tick's run in the same transaction and advances the row.
func (b *Backend) FireSchedule(ctx context.Context, params *backend.FireScheduleParams) (*backend.FireScheduleResult, error) {
	if err := b.checkOpen(); err != nil {
		return nil, err
	}
	var res backend.FireScheduleResult
	err := pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		res = backend.FireScheduleResult{}
		var next time.Time
		var paused bool
		err := tx.QueryRow(ctx, b.q.replacer.Replace(sqlScheduleLock), params.Name).Scan(&next, &paused)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("ductwork/postgres: fire schedule %q: %w", params.Name, backend.ErrScheduleNotFound)
		}
		if err != nil {
			return err
		}
		if paused || !next.Equal(params.Expected) {
			return nil
		}
		res.Fired = true
		if params.Trigger == nil {
			_, err := tx.Exec(ctx, b.q.replacer.Replace(sqlScheduleAdvance), params.Name, params.Next)
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
		_, err = tx.Exec(ctx, b.q.replacer.Replace(sqlScheduleFired), params.Name, params.Next, params.Tick, res.RunID)
		return err
	})
	if err != nil {
		return nil, mapErr("fire schedule", err)
	}
	return &res, nil
}

// PauseSchedule sets a schedule's paused flag.
func (b *Backend) PauseSchedule(ctx context.Context, params *backend.PauseScheduleParams) (*backend.PauseScheduleResult, error) {
	if err := b.checkOpen(); err != nil {
		return nil, err
	}
	tag, err := b.pool.Exec(ctx, b.q.replacer.Replace(sqlSchedulePause), params.Name, params.Paused)
	if err != nil {
		return nil, mapErr("pause schedule", err)
	}
	if tag.RowsAffected() == 0 {
		return nil, fmt.Errorf("ductwork/postgres: pause schedule %q: %w", params.Name, backend.ErrScheduleNotFound)
	}
	return &backend.PauseScheduleResult{}, nil
}
