package mysql

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"os"
	"testing"

	"github.com/ductwork-go/ductwork/backend"
	gomysql "github.com/go-sql-driver/mysql"
)

func TestRetryable(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		err  error
		want bool
	}{
		{&gomysql.MySQLError{Number: 1213}, true},
		{fmt.Errorf("wrapped: %w", &gomysql.MySQLError{Number: 1205}), true},
		{&gomysql.MySQLError{Number: 1062}, false},
		{backend.ErrStaleClaim, false},
		{context.Canceled, false},
	} {
		if got := retryable(c.err); got != c.want {
			t.Errorf("retryable(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

func TestMapErr(t *testing.T) {
	t.Parallel()
	if err := mapErr("op", sql.ErrConnDone); !errors.Is(err, backend.ErrClosed) || !errors.Is(err, sql.ErrConnDone) {
		t.Errorf("ErrConnDone → %v", err)
	}
	if err := mapErr("op", backend.ErrStaleClaim); !errors.Is(err, backend.ErrStaleClaim) || errors.Is(err, backend.ErrClosed) {
		t.Errorf("ErrStaleClaim → %v", err)
	}
	if mapErr("op", nil) != nil {
		t.Error("nil mapped to an error")
	}
}

// TestWithTxReruns: a transaction that fails with a deadlock is rolled back
// and rerun; its writes from the failed attempt are gone.
func TestWithTxReruns(t *testing.T) {
	t.Parallel()
	dsn := os.Getenv("DUCTWORK_TEST_MYSQL_DSN")
	if dsn == "" {
		t.Skip("set DUCTWORK_TEST_MYSQL_DSN (for example root@tcp(127.0.0.1:3306)/) to run the MySQL/MariaDB tests")
	}
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	b, err := New(db, &Config{TxRetries: 3})
	if err != nil {
		t.Fatal(err)
	}
	calls := 0
	err = b.withTx(t.Context(), "test", func(tx *sql.Tx) error {
		calls++
		if calls < 3 {
			return fmt.Errorf("attempt %d: %w", calls, &gomysql.MySQLError{Number: errDeadlock})
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Errorf("withTx: %v after %d calls, want success after 3", err, calls)
	}
	calls = 0
	err = b.withTx(t.Context(), "test", func(tx *sql.Tx) error {
		calls++
		return &gomysql.MySQLError{Number: errLockWaitTimeout}
	})
	var me *gomysql.MySQLError
	if !errors.As(err, &me) || calls != 4 {
		t.Errorf("withTx: %v after %d calls, want the 1205 after 4", err, calls)
	}
	calls = 0
	err = b.withTx(t.Context(), "test", func(tx *sql.Tx) error {
		calls++
		return backend.ErrStaleClaim
	})
	if !errors.Is(err, backend.ErrStaleClaim) || calls != 1 {
		t.Errorf("withTx: %v after %d calls, want ErrStaleClaim after 1", err, calls)
	}
}

// TestClassify: mapErr marks driver errors transient or permanent.
func TestClassify(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		err                  error
		transient, permanent bool
	}{
		{&gomysql.MySQLError{Number: errDeadlock}, true, false},
		{&gomysql.MySQLError{Number: errLockWaitTimeout}, true, false},
		{&gomysql.MySQLError{Number: 1040}, true, false}, // too many connections
		{driver.ErrBadConn, true, false},
		{gomysql.ErrInvalidConn, true, false},
		{context.DeadlineExceeded, true, false},
		{&gomysql.MySQLError{Number: 1406}, false, true}, // data too long
		{&gomysql.MySQLError{Number: 1062}, false, true}, // duplicate key
		{&gomysql.MySQLError{Number: 1366}, false, true}, // incorrect string value
		{&gomysql.MySQLError{Number: 1064}, false, true}, // syntax
		{checkLen("NodeID", string(make([]byte, 300))), false, true},
		{backend.ErrStaleClaim, false, false},
		{&gomysql.MySQLError{Number: 9999}, false, false},
	} {
		err := mapErr("op", c.err)
		if backend.IsTransient(err) != c.transient || backend.IsPermanent(err) != c.permanent {
			t.Errorf("mapErr(%v): transient %v permanent %v; want %v, %v", c.err, backend.IsTransient(err), backend.IsPermanent(err), c.transient, c.permanent)
		}
		if !errors.Is(err, c.err) && c.err != nil {
			var tl *TooLongError
			if !errors.As(err, &tl) {
				t.Errorf("mapErr(%v) lost the original error: %v", c.err, err)
			}
		}
	}
}

// TestClassifyServerError: a statement the server refuses (a syntax error)
// comes back permanent.
func TestClassifyServerError(t *testing.T) {
	t.Parallel()
	dsn := os.Getenv("DUCTWORK_TEST_MYSQL_DSN")
	if dsn == "" {
		t.Skip("set DUCTWORK_TEST_MYSQL_DSN (for example root@tcp(127.0.0.1:3306)/) to run the MySQL/MariaDB tests")
	}
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	_, err = db.ExecContext(t.Context(), "SELEC 1")
	if err = mapErr("op", err); !backend.IsPermanent(err) {
		t.Errorf("a syntax error: %v; want permanent", err)
	}
}
