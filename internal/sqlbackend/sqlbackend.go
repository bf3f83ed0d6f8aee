// Package sqlbackend holds what the backends built on database/sql (MySQL
// and SQLite) do the same way: the savepoint-per-completion loop of their
// group commit and the conversion of stored timestamps. The PostgreSQL
// backend, on pgx, shares only the migration files' handling
// (internal/migration).
package sqlbackend

import (
	"context"
	"database/sql"
	"time"

	"github.com/ductwork-go/ductwork/backend"
)

// Completion is one caller's completion in a group (see
// internal/groupcommit): the caller's context and parameters, and what the
// group gives back.
type Completion struct {
	Ctx    context.Context
	Params *backend.CompleteParams
	Res    *backend.CompleteResult
	Err    error
}

// Contexts lists the callers' contexts of a group, for groupcommit.Context.
func Contexts(group []*Completion) []context.Context {
	out := make([]context.Context, len(group))
	for i, r := range group {
		out[i] = r.Ctx
	}
	return out
}

// Execer is what a *sql.Tx offers to run a statement.
type Execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// The savepoint statements, in the syntax MySQL, MariaDB and SQLite share.
const (
	qSavepoint = "SAVEPOINT dw_complete"
	qRollback  = "ROLLBACK TO SAVEPOINT dw_complete"
	qRelease   = "RELEASE SAVEPOINT dw_complete"
)

// ApplyEach applies the completions of group in tx, one after another, each
// inside its own savepoint so that one that fails (a stale claim, a rejected
// plan) rolls back only itself. A member whose caller has given up is
// skipped with its context's error. apply applies one completion into res;
// when it fails, abort (nil: never) reports an error that has already lost
// the whole transaction (an InnoDB deadlock rolls it all back), which
// ApplyEach then returns; any other error is the member's own, stored in
// its Err through mapErr. Every member's Res and Err are reset first; on
// success a member's Res holds its result. A non-nil return means tx must
// be rolled back.
func ApplyEach(ctx context.Context, tx Execer, group []*Completion,
	apply func(r *Completion, res *backend.CompleteResult) error, abort func(error) bool, mapErr func(error) error) error {
	for _, r := range group {
		r.Res, r.Err = nil, nil
		if err := r.Ctx.Err(); err != nil {
			r.Err = err
			continue
		}
		if _, err := tx.ExecContext(ctx, qSavepoint); err != nil {
			return err
		}
		res := &backend.CompleteResult{}
		if err := apply(r, res); err != nil {
			if abort != nil && abort(err) {
				return err
			}
			r.Err = mapErr(err)
			if _, err := tx.ExecContext(ctx, qRollback); err != nil {
				return err
			}
		} else {
			r.Res = res
		}
		if _, err := tx.ExecContext(ctx, qRelease); err != nil {
			return err
		}
	}
	return nil
}

// FromMicros converts stored unix microseconds to a time.Time in UTC.
func FromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }

// FromNullMicros converts a nullable stored timestamp; NULL is nil.
func FromNullMicros(us sql.NullInt64) *time.Time {
	if !us.Valid {
		return nil
	}
	t := FromMicros(us.Int64)
	return &t
}

// ScanSchedules reads the rows of a schedule listing whose columns are, in
// order: name, pipeline, spec, timezone, missed, paused, next_tick,
// last_tick (nullable), last_run_id, created_at, updated_at (times in unix
// microseconds). It does not close rows.
func ScanSchedules(rows *sql.Rows) ([]backend.Schedule, error) {
	var out []backend.Schedule
	for rows.Next() {
		var s backend.Schedule
		var next, created, updated int64
		var last sql.NullInt64
		if err := rows.Scan(&s.Name, &s.Pipeline, &s.Spec, &s.Timezone, &s.Missed, &s.Paused, &next, &last, &s.LastRunID,
			&created, &updated); err != nil {
			return nil, err
		}
		s.NextTick, s.CreatedAt, s.UpdatedAt = FromMicros(next), FromMicros(created), FromMicros(updated)
		if last.Valid {
			s.LastTick = FromMicros(last.Int64)
		}
		out = append(out, s)
	}
	return out, rows.Err()
}
