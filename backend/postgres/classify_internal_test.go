package postgres

import (
	"context"
	"errors"
	"io"
	"os"
	"testing"

	"github.com/ductwork-go/ductwork/backend"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// TestClassify: mapErr marks driver errors transient or permanent by
// SQLSTATE class.
func TestClassify(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		err                  error
		transient, permanent bool
	}{
		{&pgconn.PgError{Code: "40P01"}, true, false}, // deadlock
		{&pgconn.PgError{Code: "40001"}, true, false}, // serialization failure
		{&pgconn.PgError{Code: "53300"}, true, false}, // too many connections
		{&pgconn.PgError{Code: "57P01"}, true, false}, // admin shutdown
		{&pgconn.PgError{Code: "55P03"}, true, false}, // lock not available
		{&pgconn.PgError{Code: "08006"}, true, false}, // connection failure
		{io.ErrUnexpectedEOF, true, false},
		{context.DeadlineExceeded, true, false},
		{&pgconn.PgError{Code: "22001"}, false, true}, // string data right truncation
		{&pgconn.PgError{Code: "22021"}, false, true}, // bytes invalid in the encoding
		{&pgconn.PgError{Code: "23505"}, false, true}, // unique violation
		{&pgconn.PgError{Code: "42601"}, false, true}, // syntax error
		{&pgconn.PgError{Code: "54000"}, false, true}, // index row too large
		{&pgconn.PgError{Code: codeStaleClaim}, false, false},
		{backend.ErrRunNotFound, false, false},
	} {
		err := mapErr("op", c.err)
		if backend.IsTransient(err) != c.transient || backend.IsPermanent(err) != c.permanent {
			t.Errorf("mapErr(%v): transient %v permanent %v; want %v, %v", c.err, backend.IsTransient(err), backend.IsPermanent(err), c.transient, c.permanent)
		}
	}
}

// TestClassifyServerError: text with a NUL byte, which PostgreSQL refuses,
// comes back permanent.
func TestClassifyServerError(t *testing.T) {
	t.Parallel()
	dsn := os.Getenv("DUCTWORK_TEST_POSTGRES_DSN")
	if dsn == "" {
		t.Skip("set DUCTWORK_TEST_POSTGRES_DSN to run the PostgreSQL tests")
	}
	pool, err := pgxpool.New(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var s string
	err = mapErr("op", pool.QueryRow(t.Context(), "SELECT $1::text", "a\x00b").Scan(&s))
	var pgErr *pgconn.PgError
	if !backend.IsPermanent(err) || !errors.As(err, &pgErr) {
		t.Errorf("a NUL byte in text: %v; want a permanent *PgError", err)
	}
}
