package mysql

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync/atomic"
	"time"

	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/internal/groupcommit"
	"github.com/ductwork-go/ductwork/internal/sqlbackend"
	gomysql "github.com/go-sql-driver/mysql"
)

// Defaults applied by New to the zero fields of a Config.
const (
	DefaultTxRetries            = 8
	DefaultInsertBatchRows      = 500
	DefaultMigrationLockTimeout = time.Minute
	// MaxClaimLimit caps ClaimParams.Limit: a claim takes at most this many
	// jobs at once.
	MaxClaimLimit = 1000
	// MaxIdentifierLen is the longest pipeline, fingerprint, node ID, scope,
	// process ID, host or context key the schema stores, in bytes.
	MaxIdentifierLen = 255
)

// Limits are what the schema stores: identifiers are VARBINARY(255). The
// payload size is bounded by the server's max_allowed_packet, which the
// backend does not know, so it is left unset.
var Limits = backend.Limits{
	MaxPipelineBytes:  MaxIdentifierLen,
	MaxNodeIDBytes:    MaxIdentifierLen,
	MaxScopeBytes:     MaxIdentifierLen,
	MaxKeyBytes:       MaxIdentifierLen,
	MaxProcessIDBytes: MaxIdentifierLen,
}

// Config tunes a Backend. Its zero value is valid; New applies the defaults to
// a copy and never modifies the caller's Config.
type Config struct {
	// TxRetries is how many times a transaction that hit a deadlock (error
	// 1213) or a lock wait timeout (error 1205) is rerun from the start, after
	// a short randomized backoff. Zero means DefaultTxRetries; a negative value
	// disables retries.
	TxRetries int
	// InsertBatchRows caps the rows of one multi-row INSERT when a completion
	// inserts many jobs (a fan-out). Zero means DefaultInsertBatchRows.
	InsertBatchRows int
	// MigrationLockTimeout is how long Migrate waits for the cross-process
	// migration lock (GET_LOCK). Zero means DefaultMigrationLockTimeout.
	MigrationLockTimeout time.Duration
	// Logger receives debug records about retried transactions. Nil means
	// slog.Default().
	Logger *slog.Logger
}

// ConfigError reports an invalid Config field.
type ConfigError struct {
	Field  string
	Reason string
}

// Error implements error.
func (e *ConfigError) Error() string {
	return fmt.Sprintf("ductwork/mysql: invalid Config.%s: %s", e.Field, e.Reason)
}

// TooLongError reports a value longer than the column that stores it. It is
// returned before any statement runs, so nothing is written, wrapped in a
// *backend.PermanentError (errors.As reaches it).
type TooLongError struct {
	// Field names the parameter, such as "Pipeline" or "Plan.Jobs[3].Scope".
	Field string
	Len   int
	Max   int
}

// Error implements error.
func (e *TooLongError) Error() string {
	return fmt.Sprintf("ductwork/mysql: %s is %d bytes long, the limit is %d", e.Field, e.Len, e.Max)
}

// Backend is the MySQL/MariaDB implementation of backend.Backend on a
// caller-owned *sql.DB. It is safe for concurrent use.
type Backend struct {
	db     *sql.DB
	cfg    Config
	closed atomic.Bool

	// group coalesces concurrent completions (group.go).
	group groupcommit.Batcher[*completeReq]
	// triggers coalesces concurrent triggers (trigger.go).
	triggers groupcommit.Batcher[*triggerReq]
	// prepared holds the statements prepared once (prepared.go).
	prepared preparedSet
	// txTime tracks how long write transactions take (group.go).
	txTime txTime
	// clusterChecked is set once a registration found the server to be a
	// plain server or a Galera node set up as the backend needs (galera.go).
	clusterChecked atomic.Bool
	// returning is set once Migrate or a registration found a server that
	// runs INSERT ... RETURNING (MariaDB 10.5 and later; MySQL has none).
	returning    atomic.Bool
	versionKnown atomic.Bool
	// forceVersion, set by tests, replaces the version read from the server.
	forceVersion string
}

var _ backend.Backend = (*Backend)(nil)

// New returns a Backend that uses db, which must come from the
// github.com/go-sql-driver/mysql driver and name a database (the schema lives
// in that database). cfg may be nil. New does no I/O: call Migrate to create
// the schema. The DSN needs no parseTime, loc or multiStatements setting.
func New(db *sql.DB, cfg *Config) (*Backend, error) {
	if db == nil {
		return nil, &ConfigError{Field: "db", Reason: "nil *sql.DB"}
	}
	var c Config
	if cfg != nil {
		c = *cfg
	}
	if c.TxRetries == 0 {
		c.TxRetries = DefaultTxRetries
	} else if c.TxRetries < 0 {
		c.TxRetries = 0
	}
	switch {
	case c.InsertBatchRows == 0:
		c.InsertBatchRows = DefaultInsertBatchRows
	case c.InsertBatchRows < 0:
		return nil, &ConfigError{Field: "InsertBatchRows", Reason: "negative"}
	case c.InsertBatchRows*insertJobParams > maxPlaceholders:
		return nil, &ConfigError{Field: "InsertBatchRows", Reason: fmt.Sprintf("above %d", maxPlaceholders/insertJobParams)}
	}
	switch {
	case c.MigrationLockTimeout == 0:
		c.MigrationLockTimeout = DefaultMigrationLockTimeout
	case c.MigrationLockTimeout < time.Second:
		return nil, &ConfigError{Field: "MigrationLockTimeout", Reason: "below one second"}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	b := &Backend{db: db, cfg: c}
	b.group.Max = maxGroup
	b.triggers.Max = maxGroup
	return b, nil
}

// Capabilities reports SkipLocked (claims use FOR UPDATE SKIP LOCKED), no
// Notify (workers poll) and microsecond timestamps.
func (b *Backend) Capabilities() backend.Capabilities {
	return backend.Capabilities{SkipLocked: true, Notify: false, TimePrecision: time.Microsecond, Name: "mysql", Limits: Limits, TxKind: TxKind}
}

// Now returns the database's clock (UTC_TIMESTAMP(6)), in UTC.
func (b *Backend) Now(ctx context.Context) (time.Time, error) {
	if err := b.checkOpen("now"); err != nil {
		return time.Time{}, err
	}
	var us int64
	if err := b.db.QueryRowContext(ctx, qNow).Scan(&us); err != nil {
		return time.Time{}, mapErr("now", err)
	}
	return fromMicros(us), nil
}

// Close marks the Backend closed: later calls return backend.ErrClosed. It
// never closes the *sql.DB passed to New, which the caller owns.
func (b *Backend) Close(ctx context.Context) error {
	b.closed.Store(true)
	b.closePrepared()
	return nil
}

func (b *Backend) checkOpen(op string) error {
	if b.closed.Load() {
		return fmt.Errorf("ductwork/mysql: %s: %w", op, backend.ErrClosed)
	}
	return nil
}

// querier is what both *sql.DB and *sql.Tx offer.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// withTx runs fn in a READ COMMITTED transaction and commits it. A deadlock
// or lock wait timeout anywhere (including the commit) rolls back and reruns
// fn from the start, so fn must only derive its effects from what it reads
// inside the transaction. Errors are mapped by mapErr.
func (b *Backend) withTx(ctx context.Context, op string, fn func(tx *sql.Tx) error) error {
	return b.retry(ctx, op, func() error {
		tx, err := b.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
		if err != nil {
			return err
		}
		if err := fn(tx); err != nil {
			_ = endTx(ctx, tx.Rollback, nil)
			return err
		}
		return commit(ctx, tx, nil)
	})
}

// commit commits tx, then runs then (if not nil), returning when ctx ends
// even if the reply never comes (see endTx). When ctx ends first, the error
// wraps ctx's and says the outcome is unknown (the callers'
// ambiguous-commit paths handle it).
func commit(ctx context.Context, tx *sql.Tx, then func()) error {
	err := endTx(ctx, tx.Commit, then)
	if errors.Is(err, errNoReply) {
		return fmt.Errorf("commit sent, no reply before the deadline (outcome unknown): %w", context.Cause(ctx))
	}
	return err
}

// errNoReply is endTx's answer when ctx ended before the server's.
var errNoReply = errors.New("no reply before the deadline")

// endTx runs end (tx.Commit or tx.Rollback) and then then (if not nil),
// which may use the connection tx ran on, returning errNoReply when ctx ends
// first. database/sql's Commit and Rollback take no context and the driver
// does not watch one while it waits for their reply, so on a silent link (a
// blackhole, a partition) they wait for the driver's readTimeout, or for TCP
// to give up, however short the caller's deadline; and database/sql holds
// the connection's lock meanwhile, so any other call on that connection
// (a *sql.Conn's ExecContext or Close) waits with them, whatever its
// context. That is why what must follow the end on the same connection goes
// in then: it runs after end, on the abandoned goroutine if ctx ended first.
// That goroutine, and the connection, are released when the driver's read
// returns: at its readTimeout, or without one when the operating system
// gives up on the TCP connection (about 15 minutes on Linux for unacknowledged
// data, tcp_retries2), or on the next packet or reset from the server.
func endTx(ctx context.Context, end func() error, then func()) error {
	run := func() error {
		err := end()
		if then != nil {
			then()
		}
		return err
	}
	if ctx.Done() == nil {
		return run()
	}
	done := make(chan error, 1)
	go func() { done <- run() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return errNoReply
	}
}

// cleanupTimeout bounds a statement that puts a session setting back after
// the caller's context may have ended.
const cleanupTimeout = time.Second

// cleanupCtx is a context for such a statement: not cancelled with ctx, but
// bounded, so that over a silent link it cannot outlive its caller for
// longer than cleanupTimeout (the driver then drops the connection, and
// with it the setting).
func cleanupCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
}

// retry runs fn, rerunning it after a deadlock or lock wait timeout, and
// maps the final error. fn must be safe to rerun (a whole transaction, or a
// single autocommitted statement).
func (b *Backend) retry(ctx context.Context, op string, fn func() error) error {
	if err := b.checkOpen(op); err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		err := fn()
		if err == nil || !retryable(err) || attempt >= b.cfg.TxRetries {
			return mapErr(op, err)
		}
		b.cfg.Logger.DebugContext(ctx, "ductwork/mysql: retrying transaction",
			slog.String("ductwork.op", op), slog.Int("ductwork.attempt", attempt+1), slog.Any("error", err))
		// Randomized, growing backoff: 1-2ms, 2-4ms, ... capped at 64-128ms.
		base := time.Millisecond << min(attempt, 6)
		t := time.NewTimer(base + rand.N(base))
		select {
		case <-ctx.Done():
			t.Stop()
			return mapErr(op, errors.Join(ctx.Err(), err))
		case <-t.C:
		}
	}
}

// MySQL error numbers the backend acts on.
const (
	errLockWaitTimeout  = 1205
	errDeadlock         = 1213
	errDuplicateKey     = 1062
	errDuplicateColumn  = 1060
	errNoSuchTable      = 1146
	errUnknownColumn    = 1054
	errDuplicateKeyName = 1061
)

// transientCodes are MySQL and MariaDB error numbers that may pass when the
// operation is retried: lock wait timeout, deadlock, too many connections,
// server shutdown, interrupted or timed-out statements, network errors
// reported by the server, a killed connection.
var transientCodes = map[uint16]bool{
	1205: true, 1213: true, 1040: true, 1203: true, 1053: true, 1077: true, 1078: true, 1079: true, 1080: true,
	1152: true, 1158: true, 1159: true, 1160: true, 1161: true, 1317: true, 1927: true, 1969: true,
	3024: true, 4031: true,
}

// permanentCodes never pass on a retry: a value too long, out of range, NULL
// where it cannot be, bytes the column's character set rejects, a duplicate
// key, a foreign key or CHECK violation, a packet above max_allowed_packet,
// a row or key too large, a syntax error, an unknown table or column.
var permanentCodes = map[uint16]bool{
	1406: true, 1264: true, 1690: true, 1048: true, 1366: true, 1292: true, 1062: true, 1451: true, 1452: true,
	3819: true, 4025: true, 1153: true, 1118: true, 1071: true, 1064: true, 1146: true, 1054: true,
}

func retryable(err error) bool {
	var me *gomysql.MySQLError
	if errors.As(err, &me) {
		return me.Number == errDeadlock || me.Number == errLockWaitTimeout
	}
	return false
}

func isDuplicate(err error) bool {
	var me *gomysql.MySQLError
	return errors.As(err, &me) && me.Number == errDuplicateKey
}

// errDBClosed is the text of database/sql's unexported "database is closed"
// error; database/sql offers no sentinel for it.
const errDBClosed = "sql: database is closed"

// mapErr is the one place driver and database/sql errors are translated:
// it classifies err (see classify) and prefixes the operation name. Sentinels
// of package backend and context errors pass through wrapped, so errors.Is
// works on the result.
func mapErr(op string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("ductwork/mysql: %s: %w", op, classify(err))
}

// classify adds backend.ErrClosed to the chain of an error that means the
// *sql.DB or *sql.Conn is closed (sql.ErrConnDone, or database/sql's
// unexported "database is closed" error, recognised by its text because
// database/sql exports no sentinel for it). Other errors are marked
// transient or permanent (see transientCodes and permanentCodes; a
// *TooLongError is permanent, a broken connection or a timed-out context
// transient); the rest pass unclassified.
func classify(err error) error {
	if err == nil || errors.Is(err, backend.ErrClosed) || isSentinel(err) {
		return err
	}
	closed := errors.Is(err, sql.ErrConnDone)
	for e := err; e != nil && !closed; e = errors.Unwrap(e) {
		closed = e.Error() == errDBClosed
	}
	if closed {
		return fmt.Errorf("%w: %w", backend.ErrClosed, err)
	}
	var me *gomysql.MySQLError
	if errors.As(err, &me) && (me.Number == errNoSuchTable || me.Number == errUnknownColumn) {
		// A missing table or column: Migrate has not run, or not since an
		// upgrade. Permanent: retrying cannot help.
		return backend.Permanent(fmt.Errorf("%w: %w", backend.ErrNotMigrated, err))
	}
	var tl *TooLongError
	var netErr net.Error
	switch {
	case errors.As(err, &tl), errors.Is(err, errJoinNotFound), errors.Is(err, errJoinFired):
		return backend.Permanent(err)
	case errors.As(err, &me):
		if permanentCodes[me.Number] {
			return backend.Permanent(err)
		}
		if transientCodes[me.Number] {
			return backend.Transient(err)
		}
	case errors.Is(err, driver.ErrBadConn), errors.Is(err, gomysql.ErrInvalidConn), errors.As(err, &netErr),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return backend.Transient(err)
	}
	return err
}

// isSentinel reports the sentinels of package backend, which are answers,
// not failures to classify.
func isSentinel(err error) bool {
	for _, s := range []error{
		backend.ErrStaleClaim, backend.ErrProcessNotFound, backend.ErrRunNotFound, backend.ErrRunState,
		backend.ErrValueExists, backend.ErrValueNotFound, backend.ErrUnsupportedTx, backend.ErrNotMigrated, backend.ErrDefinitionNotFound, backend.ErrScheduleNotFound,
	} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// Stored timestamps are unix microseconds, read as the other database/sql
// backend reads them (internal/sqlbackend).
var (
	fromMicros     = sqlbackend.FromMicros
	fromNullMicros = sqlbackend.FromNullMicros
)

// micros converts a delay to microseconds; negative delays mean "now".
func micros(d time.Duration) int64 {
	if d < 0 {
		return 0
	}
	return d.Microseconds()
}

func checkLen(field, v string) error {
	if len(v) > MaxIdentifierLen {
		return backend.Permanent(&TooLongError{Field: field, Len: len(v), Max: MaxIdentifierLen})
	}
	return nil
}
