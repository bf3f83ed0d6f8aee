package mysql_test

import (
	"context"
	"database/sql"
	"sync"
	"testing"

	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/backend/conformance"
	"github.com/ductwork-go/ductwork/backend/mysql"
	"github.com/ductwork-go/ductwork/internal/testdb"
)

func TestConformance(t *testing.T) {
	testdb.MySQLDSN(t) // skip the whole suite at once without a database
	var dbs sync.Map   // *mysql.Backend -> *sql.DB
	open := func(t *testing.T, db *sql.DB) *mysql.Backend {
		t.Helper()
		b, err := mysql.New(db, nil)
		if err != nil {
			t.Fatalf("mysql.New: %v", err)
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
	})
}
