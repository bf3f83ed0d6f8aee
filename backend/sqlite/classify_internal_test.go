package sqlite

import (
	"context"
	"database/sql"
	"testing"

	"github.com/ductwork-go/ductwork/backend"
)

// TestClassify: mapErr marks SQLite errors from a real database transient
// or permanent.
func TestClassify(t *testing.T) {
	t.Parallel()
	db, err := sql.Open("sqlite3", "file::memory:")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	ctx := t.Context()
	if _, err := db.ExecContext(ctx, "CREATE TABLE t (x INTEGER UNIQUE)"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, "INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	_, err = db.ExecContext(ctx, "INSERT INTO t VALUES (1)")
	if err = mapErr("op", err); !backend.IsPermanent(err) {
		t.Errorf("a unique violation: %v; want permanent", err)
	}
	_, err = db.ExecContext(ctx, "SELEC 1")
	if err = mapErr("op", err); !backend.IsPermanent(err) {
		t.Errorf("a syntax error: %v; want permanent", err)
	}
	if err := mapErr("op", context.DeadlineExceeded); !backend.IsTransient(err) {
		t.Errorf("a deadline: %v; want transient", err)
	}
	if err := mapErr("op", backend.ErrStaleClaim); backend.IsTransient(err) || backend.IsPermanent(err) {
		t.Errorf("a sentinel was classified: %v", err)
	}
}
