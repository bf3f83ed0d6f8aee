// Package windowtest opens, for tests of the window (package readmodel,
// package dashboard, the ductwork command), a migrated backend on storage of
// its own together with a read handle, a readmodel.Store and the database URL
// the ductwork command takes.
package windowtest

import (
	"context"
	"database/sql"
	"net/url"
	"strings"
	"testing"
	"time"

	gomysql "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/backend/mysql"
	"github.com/ductwork-go/ductwork/backend/postgres"
	"github.com/ductwork-go/ductwork/backend/sqlite"
	"github.com/ductwork-go/ductwork/internal/testdb"
	"github.com/ductwork-go/ductwork/readmodel"
)

// Kinds are the backends every window test runs on.
var Kinds = []string{"sqlite", "postgres", "mysql"}

// Env is a migrated backend on fresh storage and what reads it.
type Env struct {
	Kind    string
	Backend backend.Backend
	// ReadDB is a handle on the same storage for the read model.
	ReadDB *sql.DB
	Store  *readmodel.Store
	// URL is the storage as the ductwork command's --database-url.
	URL string

	schema  string  // PostgreSQL
	writeDB *sql.DB // a handle that may write
}

// Exec runs statements of the test's own (seeding, ANALYZE) on the storage;
// "{schema}." in query becomes the PostgreSQL schema, and nothing elsewhere.
func (e *Env) Exec(ctx context.Context, query string) error {
	prefix := ""
	if e.schema != "" {
		prefix = `"` + e.schema + `".`
	}
	_, err := e.writeDB.ExecContext(ctx, strings.ReplaceAll(query, "{schema}.", prefix))
	return err
}

// Analyze refreshes the planner statistics of the runs and executions
// tables.
func (e *Env) Analyze(ctx context.Context) error {
	switch e.Kind {
	case "postgres":
		return e.Exec(ctx, "ANALYZE {schema}.ductwork_runs, {schema}.ductwork_executions")
	case "mysql":
		return e.Exec(ctx, "ANALYZE TABLE ductwork_runs, ductwork_executions")
	default:
		return e.Exec(ctx, "ANALYZE")
	}
}

// Open returns an Env of kind (sqlite, postgres or mysql), skipping t when
// the server's DSN variable is not set. Everything is released when t ends.
func Open(t testing.TB, kind string) *Env {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	e := &Env{Kind: kind}
	var dialect readmodel.Dialect
	var cfg readmodel.Config
	switch kind {
	case "sqlite":
		path := testdb.SQLitePath(t)
		b, err := sqlite.Open(path, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close(context.Background()) })
		e.Backend, dialect, e.URL, e.writeDB = b, readmodel.SQLite, "sqlite:"+path, b.DB()
		if e.ReadDB, err = sql.Open("sqlite3", "file:"+path+"?_query_only=1&_busy_timeout=5000"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = e.ReadDB.Close() })
	case "postgres":
		pool, schema := testdb.PostgresPool(t)
		b, err := postgres.New(pool, &postgres.Config{Schema: schema})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close(context.Background()) })
		e.Backend, dialect, cfg.Schema = b, readmodel.PostgreSQL, schema
		e.ReadDB = stdlib.OpenDBFromPool(pool)
		e.writeDB, e.schema = e.ReadDB, schema
		t.Cleanup(func() { _ = e.ReadDB.Close() })
		u, err := url.Parse(testdb.PostgresDSN(t))
		if err != nil {
			t.Fatal(err)
		}
		q := u.Query()
		q.Set("schema", schema)
		u.RawQuery = q.Encode()
		e.URL = u.String()
	case "mysql":
		db, name := testdb.MySQLDatabase(t)
		b, err := mysql.New(db, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close(context.Background()) })
		e.Backend, e.ReadDB, e.writeDB, dialect = b, db, db, readmodel.MySQL
		c, err := gomysql.ParseDSN(testdb.MySQLDSN(t))
		if err != nil {
			t.Fatal(err)
		}
		u := &url.URL{Scheme: "mysql", Host: c.Addr, Path: "/" + name}
		if c.Passwd != "" {
			u.User = url.UserPassword(c.User, c.Passwd)
		} else {
			u.User = url.User(c.User)
		}
		e.URL = u.String()
	default:
		t.Fatalf("windowtest: unknown kind %q", kind)
	}
	if err := e.Backend.Migrate(ctx); err != nil {
		t.Fatalf("migrate %s: %v", kind, err)
	}
	s, err := readmodel.New(e.ReadDB, dialect, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.Store = s
	return e
}
