package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strings"

	gomysql "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/backend/mysql"
	"github.com/ductwork-go/ductwork/backend/postgres"
	"github.com/ductwork-go/ductwork/backend/sqlite"
	"github.com/ductwork-go/ductwork/readmodel"
)

// conn is a database opened from a URL: the backend (for actions and
// Migrate), the read model, and what to close.
type conn struct {
	backend backend.Backend
	store   *readmodel.Store
	latest  int // newest schema version the backend migrates to
	close   func()
}

// open opens the database a URL names; its scheme picks the backend:
// postgres://… (a "schema" query parameter selects the schema), mysql://
// user:password@host:port/database, sqlite:path.
func open(ctx context.Context, raw string) (*conn, error) {
	if raw == "" {
		return nil, errors.New("no database: pass --database-url or set DUCTWORK_DATABASE_URL")
	}
	switch {
	case strings.HasPrefix(raw, "postgres://"), strings.HasPrefix(raw, "postgresql://"):
		u, err := url.Parse(raw)
		if err != nil {
			return nil, fmt.Errorf("database URL: %w", err)
		}
		q := u.Query()
		schema := q.Get("schema")
		q.Del("schema")
		u.RawQuery = q.Encode()
		pool, err := pgxpool.New(ctx, u.String())
		if err != nil {
			return nil, fmt.Errorf("postgres: %w", err)
		}
		b, err := postgres.New(pool, &postgres.Config{Schema: schema})
		if err != nil {
			pool.Close()
			return nil, err
		}
		db := stdlib.OpenDBFromPool(pool)
		st, err := readmodel.New(db, readmodel.PostgreSQL, &readmodel.Config{Schema: schema})
		if err != nil {
			pool.Close()
			return nil, err
		}
		return &conn{backend: b, store: st, latest: postgres.SchemaVersion(), close: func() {
			_ = b.Close(context.Background())
			_ = db.Close()
			pool.Close()
		}}, nil
	case strings.HasPrefix(raw, "mysql://"):
		u, err := url.Parse(raw)
		if err != nil {
			return nil, fmt.Errorf("database URL: %w", err)
		}
		cfg := gomysql.NewConfig()
		cfg.Net, cfg.Addr, cfg.DBName = "tcp", u.Host, strings.TrimPrefix(u.Path, "/")
		if u.User != nil {
			cfg.User = u.User.Username()
			cfg.Passwd, _ = u.User.Password()
		}
		if cfg.DBName == "" {
			return nil, errors.New("mysql URL names no database (mysql://user@host:3306/database)")
		}
		db, err := sql.Open("mysql", cfg.FormatDSN())
		if err != nil {
			return nil, fmt.Errorf("mysql: %w", err)
		}
		b, err := mysql.New(db, nil)
		if err != nil {
			_ = db.Close()
			return nil, err
		}
		st, err := readmodel.New(db, readmodel.MySQL, nil)
		if err != nil {
			_ = db.Close()
			return nil, err
		}
		return &conn{backend: b, store: st, latest: mysql.SchemaVersion(), close: func() {
			_ = b.Close(context.Background())
			_ = db.Close()
		}}, nil
	case strings.HasPrefix(raw, "sqlite:"):
		path := strings.TrimPrefix(strings.TrimPrefix(raw, "sqlite:"), "//")
		if path == "" {
			return nil, errors.New("sqlite URL names no file (sqlite:path/to/file.db)")
		}
		b, err := sqlite.Open(path, nil)
		if err != nil {
			return nil, err
		}
		db, err := sql.Open("sqlite3", "file:"+path+"?_query_only=1&_busy_timeout=5000")
		if err != nil {
			_ = b.Close(context.Background())
			return nil, err
		}
		st, err := readmodel.New(db, readmodel.SQLite, nil)
		if err != nil {
			_ = b.Close(context.Background())
			return nil, err
		}
		return &conn{backend: b, store: st, latest: sqlite.SchemaVersion(), close: func() {
			_ = db.Close()
			_ = b.Close(context.Background())
		}}, nil
	}
	return nil, fmt.Errorf("database URL %q: unknown scheme (want postgres://, mysql:// or sqlite:)", redact(raw))
}

// redact hides a password in a URL for messages.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	return u.Redacted()
}
