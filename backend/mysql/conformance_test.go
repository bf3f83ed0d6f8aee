package mysql_test

import (
	"context"
	"database/sql"
	"sync"
	"testing"

	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/backend/conformance"
	"github.com/ductwork-go/ductwork/backend/mysql"
	"github.com/ductwork-go/ductwork/internal/crashpoint"
	"github.com/ductwork-go/ductwork/internal/testdb"
	gomysql "github.com/go-sql-driver/mysql"
)

// dbs maps each *mysql.Backend the harness made to its *sql.DB.
var dbs sync.Map

// serverDSN is the test server's DSN, set by TestConformance.
var serverDSN string

// crashHarness runs the crash-point cases; the helper process opens the
// suite's database by its DSN.
var crashHarness = &conformance.CrashHarness{
	Points: crashPoints(),
	Storage: func(t *testing.T, b backend.Backend) string {
		db, ok := dbs.Load(b)
		if !ok {
			t.Fatalf("Storage: %T was not made by NewBackend", b)
		}
		var name string
		if err := db.(*sql.DB).QueryRowContext(t.Context(), "SELECT DATABASE()").Scan(&name); err != nil {
			t.Fatalf("SELECT DATABASE(): %v", err)
		}
		cfg, err := gomysql.ParseDSN(serverDSN)
		if err != nil {
			t.Fatal(err)
		}
		cfg.DBName = name
		return cfg.FormatDSN()
	},
	Open: func(dsn string) (backend.Backend, error) {
		db, err := sql.Open("mysql", dsn)
		if err != nil {
			return nil, err
		}
		return mysql.New(db, nil)
	},
	Env: func(point string) []string { return []string{crashpoint.EnvVar + "=" + point} },
}

// crashPoints lists the crash points compiled in (none without the build
// tag ductwork_crashpoints).
func crashPoints() []string {
	if !crashpoint.Compiled {
		return nil
	}
	return crashpoint.Backend
}

func TestConformance(t *testing.T) { conformanceWith(t, "") }

// TestConformanceMySQLPath runs the suite on MariaDB taken for a MySQL server
// (no INSERT ... RETURNING): the statements MySQL runs, where no MySQL
// server is at hand.
func TestConformanceMySQLPath(t *testing.T) { conformanceWith(t, "8.0.36") }

// conformanceWith runs the suite, every Backend taking the server for
// version (when not empty) whatever it reads.
func conformanceWith(t *testing.T, version string) {
	serverDSN = testdb.MySQLDSN(t) // skip the whole suite at once without a database
	open := func(t *testing.T, db *sql.DB) *mysql.Backend {
		t.Helper()
		b, err := mysql.New(db, nil)
		if err != nil {
			t.Fatalf("mysql.New: %v", err)
		}
		if version != "" {
			mysql.ForceVersion(b, version)
		}
		dbs.Store(b, db)
		t.Cleanup(func() {
			if err := b.Close(context.WithoutCancel(t.Context())); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
		return b
	}
	conformance.Run(t, conformance.Harness{
		NewBackend: func(t *testing.T) backend.Backend {
			return open(t, testdb.MySQLDB(t))
		},
		Reopen: func(t *testing.T, b backend.Backend) backend.Backend {
			db, ok := dbs.Load(b)
			if !ok {
				t.Fatalf("Reopen: %T was not made by NewBackend", b)
			}
			return open(t, db.(*sql.DB))
		},
		BeginTx: func(t *testing.T, b backend.Backend) (any, func() error, func() error) {
			db, ok := dbs.Load(b)
			if !ok {
				t.Fatalf("BeginTx: %T was not made by NewBackend", b)
			}
			tx, err := db.(*sql.DB).BeginTx(context.WithoutCancel(t.Context()), nil)
			if err != nil {
				t.Fatalf("BeginTx: %v", err)
			}
			return tx, tx.Commit, tx.Rollback
		},
		Crash: crashHarness,
	})
}
