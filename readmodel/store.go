package readmodel

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/mysqldialect"
	"github.com/uptrace/bun/dialect/pgdialect"
	"github.com/uptrace/bun/dialect/sqlitedialect"
	"github.com/uptrace/bun/schema"
)

// Dialect names the SQL dialect of the database a Store reads.
type Dialect string

// Dialects.
const (
	PostgreSQL Dialect = "postgres"
	MySQL      Dialect = "mysql" // MySQL 8 and MariaDB 10.6+
	SQLite     Dialect = "sqlite"
)

// Config configures a Store. The zero value is valid.
type Config struct {
	// Schema is the PostgreSQL schema of the Ductwork tables (the backend's
	// Config.Schema); empty means "public". Ignored by other dialects.
	Schema string
	// LiveThreshold is how old a process heartbeat may be, by the database's
	// clock, for the process to count as live. Default 30s (the supervisor's
	// default reap threshold).
	LiveThreshold time.Duration
}

// Store reads Ductwork's tables. It is safe for concurrent use.
type Store struct {
	db      *bun.DB
	dialect Dialect
	cfg     Config
	tables  map[string]schema.QueryWithArgs
}

// ErrNotFound: no row has that ID.
var ErrNotFound = errors.New("readmodel: not found")

// New returns a Store reading db in dialect d. It does no I/O.
func New(db *sql.DB, d Dialect, cfg *Config) (*Store, error) {
	if db == nil {
		return nil, errors.New("readmodel: New: nil *sql.DB")
	}
	var c Config
	if cfg != nil {
		c = *cfg
	}
	if c.Schema == "" {
		c.Schema = "public"
	}
	if c.LiveThreshold <= 0 {
		c.LiveThreshold = 30 * time.Second
	}
	var dia schema.Dialect
	switch d {
	case PostgreSQL:
		dia = pgdialect.New()
	case MySQL:
		dia = mysqldialect.New()
	case SQLite:
		dia = sqlitedialect.New()
	default:
		return nil, fmt.Errorf("readmodel: unknown dialect %q (want postgres, mysql or sqlite)", d)
	}
	s := &Store{db: bun.NewDB(db, dia), dialect: d, cfg: c, tables: map[string]schema.QueryWithArgs{}}
	for _, t := range []string{"ductwork_runs", "ductwork_jobs", "ductwork_processes", "ductwork_definitions", "ductwork_migrations", "ductwork_executions", "ductwork_schedules"} {
		if d == PostgreSQL {
			s.tables[t] = schema.SafeQuery("?.?", []any{bun.Ident(c.Schema), bun.Ident(t)})
		} else {
			s.tables[t] = schema.SafeQuery("?", []any{bun.Ident(t)})
		}
	}
	return s, nil
}

// Dialect returns the store's dialect.
func (s *Store) Dialect() Dialect { return s.dialect }

// DB returns the bun handle, for queries of your own over the same tables.
func (s *Store) DB() *bun.DB { return s.db }

// table returns "name AS alias", schema-qualified on PostgreSQL.
func (s *Store) table(name, alias string) (string, []any) {
	return "? AS ?", []any{s.tables[name], bun.Ident(alias)}
}

// timeArg is t as the dialect stores it: timestamptz on PostgreSQL, unix
// microseconds elsewhere.
func (s *Store) timeArg(t time.Time) any {
	if s.dialect == PostgreSQL {
		return t.UTC()
	}
	return t.UnixMicro()
}

// nowExpr is the database's clock in the dialect's stored form.
func (s *Store) nowExpr() string {
	switch s.dialect {
	case PostgreSQL:
		return "now()"
	case MySQL:
		return "TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', UTC_TIMESTAMP(6))"
	default:
		return "CAST(ROUND(unixepoch('subsec') * 1000000) AS INTEGER)"
	}
}

// Now returns the database's clock.
func (s *Store) Now(ctx context.Context) (time.Time, error) {
	var t Time
	if err := s.db.NewSelect().ColumnExpr(s.nowExpr()).Scan(ctx, &t); err != nil {
		return time.Time{}, fmt.Errorf("readmodel: now: %w", err)
	}
	return t.Time, nil
}

// SchemaVersion returns the newest migration applied, or 0 when the schema
// was never migrated (no migrations table).
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	var v sql.NullInt64
	q, args := s.table("ductwork_migrations", "m")
	err := s.db.NewSelect().TableExpr(q, args...).ColumnExpr("MAX(m.version)").Scan(ctx, &v)
	if err != nil {
		if isMissingTable(err) {
			return 0, nil
		}
		return 0, fmt.Errorf("readmodel: schema version: %w", err)
	}
	return int(v.Int64), nil
}

// isMissingTable reports an error of a query on a table that does not exist
// (SQLSTATE 42P01, MySQL error 1146, SQLite's "no such table").
func isMissingTable(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "42P01") || strings.Contains(msg, "Error 1146") || strings.Contains(msg, "no such table")
}

// Time is a stored time, scanned from any dialect's form (timestamptz, or
// integer unix microseconds). The zero Time is a NULL.
type Time struct{ time.Time }

// Scan implements sql.Scanner.
func (t *Time) Scan(v any) error {
	switch x := v.(type) {
	case nil:
		t.Time = time.Time{}
	case time.Time:
		t.Time = x.UTC()
	case int64:
		t.Time = time.UnixMicro(x).UTC()
	case []byte:
		return t.Scan(string(x))
	case string:
		if us, err := strconv.ParseInt(x, 10, 64); err == nil {
			t.Time = time.UnixMicro(us).UTC()
			return nil
		}
		for _, layout := range []string{time.RFC3339Nano, "2006-01-02 15:04:05.999999999-07:00", "2006-01-02 15:04:05.999999999-07", "2006-01-02 15:04:05.999999999"} {
			if p, err := time.Parse(layout, x); err == nil {
				t.Time = p.UTC()
				return nil
			}
		}
		return fmt.Errorf("readmodel: cannot read %q as a time", x)
	default:
		return fmt.Errorf("readmodel: cannot read %T as a time", v)
	}
	return nil
}

// Ptr returns the time, or nil for a NULL.
func (t Time) Ptr() *time.Time {
	if t.IsZero() {
		return nil
	}
	tt := t.Time
	return &tt
}
