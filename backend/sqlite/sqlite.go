package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	sqlite3 "github.com/mattn/go-sqlite3" // also registers the "sqlite3" driver

	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/internal/groupcommit"
	"github.com/ductwork-go/ductwork/internal/sqlbackend"
)

// driverName is the database/sql driver registered by github.com/mattn/go-sqlite3.
const driverName = "sqlite3"

const (
	defaultBusyTimeout  = 5 * time.Second
	defaultMaxReadConns = 4
	// stmtCacheSize is the driver's per-connection statement cache on the
	// handles Open creates; it serves the statements not prepared up front.
	stmtCacheSize = 64
)

// Config configures a Backend. The zero value is valid and a nil *Config
// means the zero value.
type Config struct {
	// BusyTimeout is how long a statement waits for another connection's
	// lock before failing with SQLITE_BUSY. Used by Open only; with New the
	// caller's DSN decides. Default 5s.
	BusyTimeout time.Duration
	// MaxReadConns caps the read-only pool Open creates. Used by Open only.
	// Default 4.
	MaxReadConns int
	// Synchronous is SQLite's synchronous setting (PRAGMA synchronous) on
	// the handles Open creates: "NORMAL" (the default) or "FULL", in any
	// case. With WAL journaling, NORMAL syncs the WAL only at checkpoints:
	// the database stays consistent, but the last commits before a power
	// failure or an operating-system crash may be lost (a crash of the
	// process loses none). FULL syncs the WAL at every commit, so a commit
	// is durable once it returns, at the cost of an fsync each. Used by Open
	// only, not for Memory; with New the caller's DSN decides
	// ("_synchronous=FULL" with this driver).
	Synchronous string
	// Logger receives the backend's rare log lines (applied migrations).
	// Default slog.Default().
	Logger *slog.Logger
}

// ConfigError reports an invalid Config field.
type ConfigError struct {
	// Field is the name of the Config field.
	Field string
	// Reason says what is wrong with it.
	Reason string
}

// Error implements error.
func (e *ConfigError) Error() string {
	return "sqlite: invalid Config." + e.Field + ": " + e.Reason
}

// withDefaults returns a copy of cfg with defaults applied, or a *ConfigError.
func (cfg *Config) withDefaults() (Config, error) {
	var c Config
	if cfg != nil {
		c = *cfg
	}
	switch {
	case c.BusyTimeout < 0:
		return c, &ConfigError{Field: "BusyTimeout", Reason: "must not be negative"}
	case c.MaxReadConns < 0:
		return c, &ConfigError{Field: "MaxReadConns", Reason: "must not be negative"}
	}
	switch strings.ToUpper(c.Synchronous) {
	case "", "NORMAL":
		c.Synchronous = "NORMAL"
	case "FULL":
		c.Synchronous = "FULL"
	default:
		return c, &ConfigError{Field: "Synchronous", Reason: fmt.Sprintf("%q: want NORMAL or FULL", c.Synchronous)}
	}
	if c.BusyTimeout == 0 {
		c.BusyTimeout = defaultBusyTimeout
	}
	if c.MaxReadConns == 0 {
		c.MaxReadConns = defaultMaxReadConns
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}

// Backend is the SQLite implementation of backend.Backend.
//
// All writes go through one writer handle, so within a process they are
// serialized by the handle's single connection and across processes by
// SQLite's write lock (BEGIN IMMEDIATE with a busy timeout). Reads that need
// no transaction use a separate read-only pool. A Backend is safe for
// concurrent use.
type Backend struct {
	write *sql.DB
	read  *sql.DB
	owned bool
	cfg   Config

	closed atomic.Bool

	// wmu guards wstmts, the hot write statements prepared on the writer
	// before the first write transaction.
	wmu    sync.Mutex
	wstmts map[string]*sql.Stmt

	// rmu guards rstmts, read statements prepared lazily on the read handle.
	rmu    sync.Mutex
	rstmts map[string]*sql.Stmt

	// group coalesces concurrent completions (group.go).
	group groupcommit.Batcher[*completeReq]

	// ids keeps IDs handed out in callers' transactions from coming back
	// (ids.go).
	ids idFloor
}

var _ backend.Backend = (*Backend)(nil)

// Open opens (creating if needed) the SQLite database file at path with WAL
// journaling, synchronous=NORMAL (or Config.Synchronous) and a busy timeout.
// It creates a writer handle with a single connection whose transactions
// begin IMMEDIATE, and a read-only pool for queries that need no
// transaction. Close closes both.
//
// path must be a file path whose directory exists, or ":memory:" (see
// Memory); "file:" URIs are refused (use New with your own handle for those).
// Open does not create or migrate the schema: call Migrate.
func Open(path string, cfg *Config) (*Backend, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if path == Memory {
		return openMemory(c)
	}
	abs, err := checkPath(path)
	if err != nil {
		return nil, err
	}
	ms := strconv.FormatInt(c.BusyTimeout.Milliseconds(), 10)
	cache := strconv.Itoa(stmtCacheSize)
	syncMode := c.Synchronous // NORMAL or FULL, checked by withDefaults

	write, err := sql.Open(driverName, fileURI(abs)+"?_journal_mode=WAL&_synchronous="+syncMode+"&_foreign_keys=0"+
		"&_txlock=immediate&_busy_timeout="+ms+"&_stmt_cache_size="+cache)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %q: %w", path, err)
	}
	write.SetMaxOpenConns(1)
	write.SetMaxIdleConns(1)
	write.SetConnMaxLifetime(0)
	write.SetConnMaxIdleTime(0)
	// The first connection sets WAL mode, which readers rely on, and fails
	// when the file is not a database or cannot be created.
	if err := write.PingContext(context.Background()); err != nil {
		_ = write.Close()
		return nil, fmt.Errorf("sqlite: open %q: %w", path, err)
	}

	read, err := sql.Open(driverName, fileURI(abs)+"?_query_only=1&_synchronous="+syncMode+"&_foreign_keys=0"+
		"&_busy_timeout="+ms+"&_stmt_cache_size="+cache)
	if err != nil {
		_ = write.Close()
		return nil, fmt.Errorf("sqlite: open %q: %w", path, err)
	}
	read.SetMaxOpenConns(c.MaxReadConns)
	read.SetMaxIdleConns(c.MaxReadConns)
	if err := read.PingContext(context.Background()); err != nil {
		_ = read.Close()
		_ = write.Close()
		return nil, fmt.Errorf("sqlite: open %q: %w", path, err)
	}
	b := &Backend{write: write, read: read, owned: true, cfg: c}
	b.group.Max = maxGroup
	return b, nil
}

// Memory, passed to Open, opens a private in-memory database: fast, and gone
// when the Backend is closed. It lives on a single connection that serves
// every read and write of this Backend (so nothing else can open it, and
// other processes cannot share it); it suits tests and throwaway work, not
// data that must survive the process.
const Memory = ":memory:"

func openMemory(c Config) (*Backend, error) {
	db, err := sql.Open(driverName, "file::memory:?_foreign_keys=0&_stmt_cache_size="+strconv.Itoa(stmtCacheSize))
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %q: %w", Memory, err)
	}
	// One connection, never recycled: a new connection would be a new, empty
	// database.
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	if err := db.PingContext(context.Background()); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("sqlite: open %q: %w", Memory, err)
	}
	b := &Backend{write: db, read: db, owned: true, cfg: c}
	b.group.Max = maxGroup
	return b, nil
}

// New returns a Backend that uses db, a handle opened with the
// github.com/mattn/go-sqlite3 driver, for all reads and writes. Close never
// closes db. New does nothing else: no connection, no migration.
//
// For speed and fairness open db as Open does: journal mode WAL,
// "_txlock=immediate" and "_stmt_cache_size=64" in the DSN, and
// SetMaxOpenConns(1). Deferred transactions work too: one that loses a race
// for the write lock is retried.
func New(db *sql.DB, cfg *Config) (*Backend, error) {
	if db == nil {
		return nil, errors.New("sqlite: New: nil *sql.DB")
	}
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	b := &Backend{write: db, read: db, cfg: c}
	b.group.Max = maxGroup
	return b, nil
}

// DB returns the writer handle. Begin a *sql.Tx on it to pass as
// TriggerParams.Tx, so a run is created atomically with your own writes.
//
// The writer handle of a Backend made by Open has a single connection: while
// you hold a transaction on it, other writes of this Backend wait for it, so
// do not call other Backend methods (except Trigger with that Tx) before you
// commit or roll back.
func (b *Backend) DB() *sql.DB { return b.write }

// Capabilities reports that claims are serialized by SQLite's single writer,
// that callers must poll for new work and that times are stored in
// microseconds.
func (b *Backend) Capabilities() backend.Capabilities {
	return backend.Capabilities{SkipLocked: false, Notify: false, TimePrecision: time.Microsecond, Name: "sqlite", Limits: Limits, TxKind: TxKind}
}

// Close closes the prepared statements and, for a Backend made by Open, both
// handles. It never closes a handle passed to New. After Close every method
// returns an error matching backend.ErrClosed. Close is idempotent.
func (b *Backend) Close(ctx context.Context) error {
	if b.closed.Swap(true) {
		return nil
	}
	var errs []error
	b.wmu.Lock()
	for _, s := range b.wstmts {
		errs = append(errs, s.Close())
	}
	b.wstmts = nil
	b.wmu.Unlock()
	b.rmu.Lock()
	for _, s := range b.rstmts {
		errs = append(errs, s.Close())
	}
	b.rstmts = nil
	b.rmu.Unlock()
	if b.owned {
		if b.read != b.write {
			errs = append(errs, b.read.Close())
		}
		errs = append(errs, b.write.Close())
	}
	return mapErr("close", errors.Join(errs...))
}

// checkPath validates a database path for Open and returns it absolute.
func checkPath(path string) (string, error) {
	switch {
	case path == "":
		return "", errors.New("sqlite: open: empty path")
	case strings.HasPrefix(path, "file:"):
		return "", fmt.Errorf("sqlite: open %q: Open takes a file path or %q; use New with your own handle for URI databases", path, Memory)
	case strings.ContainsRune(path, 0):
		return "", fmt.Errorf("sqlite: open %q: path contains a NUL byte", path)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("sqlite: open %q: %w", path, err)
	}
	dir, err := os.Stat(filepath.Dir(abs))
	if err != nil {
		return "", fmt.Errorf("sqlite: open %q: directory: %w", path, err)
	}
	if !dir.IsDir() {
		return "", fmt.Errorf("sqlite: open %q: %s is not a directory", path, filepath.Dir(abs))
	}
	if fi, err := os.Stat(abs); err == nil && fi.IsDir() {
		return "", fmt.Errorf("sqlite: open %q: is a directory", path)
	}
	return abs, nil
}

// fileURI turns an absolute path into an SQLite "file:" URI, so the path may
// contain '?' or '#'.
func fileURI(abs string) string {
	p := filepath.ToSlash(abs)
	if !strings.HasPrefix(p, "/") {
		p = "/" + p // Windows drive letter
	}
	u := url.URL{Path: p}
	return "file:" + u.EscapedPath()
}

// Limits are what the schema stores: TEXT and BLOB columns have no declared
// length; a value is bounded only by SQLITE_MAX_LENGTH (10^9 bytes by
// default).
var Limits = backend.Limits{MaxPayloadBytes: 1_000_000_000}

// mapErr is the one place driver and database/sql errors become this
// package's errors: a closed handle or statement matches backend.ErrClosed;
// the others are classified as transient or permanent (see classify);
// everything is prefixed with the operation.
func mapErr(op string, err error) error {
	if err == nil {
		return nil
	}
	if isClosedErr(err) && !errors.Is(err, backend.ErrClosed) {
		return fmt.Errorf("sqlite: %s: %w: %w", op, backend.ErrClosed, err)
	}
	if isNoSuchTable(err) && !errors.Is(err, backend.ErrNotMigrated) {
		// Migrate has not run (or not since an upgrade): permanent.
		return fmt.Errorf("sqlite: %s: %w", op, backend.Permanent(fmt.Errorf("%w: %w", backend.ErrNotMigrated, err)))
	}
	return fmt.Errorf("sqlite: %s: %w", op, classify(err))
}

// classify marks SQLite result codes: a busy or locked database, an I/O
// error, a full disk and a timed-out context may pass when retried; a
// constraint violation, a value too big, a type mismatch, a bad parameter
// index and an SQL error never will. Sentinels and other errors pass
// unchanged.
func classify(err error) error {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return backend.Transient(err)
	}
	var se sqlite3.Error
	if !errors.As(err, &se) {
		return err
	}
	switch se.Code {
	case sqlite3.ErrBusy, sqlite3.ErrLocked, sqlite3.ErrIoErr, sqlite3.ErrFull, sqlite3.ErrCantOpen, sqlite3.ErrProtocol, sqlite3.ErrNomem:
		return backend.Transient(err)
	case sqlite3.ErrConstraint, sqlite3.ErrTooBig, sqlite3.ErrMismatch, sqlite3.ErrRange, sqlite3.ErrError, sqlite3.ErrMisuse:
		return backend.Permanent(err)
	}
	return err
}

// isClosedErr reports whether err says a handle, connection or statement is
// closed. database/sql exports no sentinel for a closed DB or statement.
func isClosedErr(err error) bool {
	if errors.Is(err, sql.ErrConnDone) {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "sql: database is closed") || strings.Contains(msg, "sql: statement is closed")
}

// errClosed is returned by methods called after Close.
func errClosed(op string) error {
	return fmt.Errorf("sqlite: %s: %w", op, backend.ErrClosed)
}

// writeStmts returns the hot write statements, preparing them on the writer
// the first time. It must be called before a write transaction begins: the
// writer of Open has one connection, which a transaction holds.
func (b *Backend) writeStmts(ctx context.Context) (map[string]*sql.Stmt, error) {
	b.wmu.Lock()
	defer b.wmu.Unlock()
	if b.closed.Load() {
		return nil, backend.ErrClosed
	}
	if b.wstmts != nil {
		return b.wstmts, nil
	}
	m := make(map[string]*sql.Stmt, len(hotWrites))
	for _, q := range hotWrites {
		s, err := b.write.PrepareContext(ctx, q)
		if err != nil {
			for _, s := range m {
				_ = s.Close()
			}
			return nil, fmt.Errorf("prepare: %w", err)
		}
		m[q] = s
	}
	b.wstmts = m
	return m, nil
}

// readStmt returns query prepared on the read handle.
func (b *Backend) readStmt(ctx context.Context, query string) (*sql.Stmt, error) {
	b.rmu.Lock()
	defer b.rmu.Unlock()
	if b.closed.Load() {
		return nil, backend.ErrClosed
	}
	if s, ok := b.rstmts[query]; ok {
		return s, nil
	}
	s, err := b.read.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	if b.rstmts == nil {
		b.rstmts = make(map[string]*sql.Stmt)
	}
	b.rstmts[query] = s
	return s, nil
}

// readRow runs a one-row query on the read handle.
func (b *Backend) readRow(ctx context.Context, query string, args ...any) (*sql.Row, error) {
	s, err := b.readStmt(ctx, query)
	if err != nil {
		return nil, err
	}
	return s.QueryRowContext(ctx, args...), nil
}

// readRows runs a query on the read handle.
func (b *Backend) readRows(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	s, err := b.readStmt(ctx, query)
	if err != nil {
		return nil, err
	}
	return s.QueryContext(ctx, args...)
}

// writeExec runs one autocommit statement on the writer.
func (b *Backend) writeExec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	ws, err := b.writeStmts(ctx)
	if err != nil {
		return nil, err
	}
	if s, ok := ws[query]; ok {
		return s.ExecContext(ctx, args...)
	}
	return b.write.ExecContext(ctx, query, args...)
}

// writeRow runs one autocommit statement with a RETURNING row on the writer.
func (b *Backend) writeRow(ctx context.Context, query string, args ...any) (*sql.Row, error) {
	ws, err := b.writeStmts(ctx)
	if err != nil {
		return nil, err
	}
	if s, ok := ws[query]; ok {
		return s.QueryRowContext(ctx, args...), nil
	}
	return b.write.QueryRowContext(ctx, query, args...), nil
}

// inTx runs fn in one write transaction on the writer and commits it when fn
// returns nil. On the handles Open creates transactions begin IMMEDIATE, so
// fn holds the write lock from the start. A caller's handle (New) may begin
// deferred transactions, which SQLite aborts with SQLITE_BUSY_SNAPSHOT when
// fn reads and another connection writes before fn's first write; nothing
// was changed then, so the transaction is retried a few times.
func (b *Backend) inTx(ctx context.Context, fn func(*txn) error) error {
	ws, err := b.writeStmts(ctx)
	if err != nil {
		return err
	}
	for attempt := 1; ; attempt++ {
		err := b.runTx(ctx, ws, fn)
		if attempt == maxTxAttempts || !isBusySnapshot(err) || ctx.Err() != nil {
			return err
		}
	}
}

// maxTxAttempts bounds the retries of inTx.
const maxTxAttempts = 5

func (b *Backend) runTx(ctx context.Context, ws map[string]*sql.Stmt, fn func(*txn) error) error {
	tx, err := b.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	t := &txn{ctx: ctx, tx: tx, prepared: ws}
	run, job, raised, err := b.raiseSequences(t)
	if err == nil {
		err = fn(t)
	}
	if err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	if raised {
		b.ids.persisted(run, job)
	}
	return nil
}

// isBusySnapshot reports whether a deferred transaction lost the race to
// upgrade to a write transaction.
func isBusySnapshot(err error) bool {
	var se sqlite3.Error
	return errors.As(err, &se) && se.ExtendedCode == sqlite3.ErrBusySnapshot
}

// txn is a write transaction: the Backend's own, whose hot statements are
// prepared, or a caller's *sql.Tx (prepared is nil).
type txn struct {
	ctx      context.Context
	tx       *sql.Tx
	prepared map[string]*sql.Stmt
	bound    map[string]*sql.Stmt
}

// stmt returns the transaction-bound prepared statement for query, or nil.
func (t *txn) stmt(query string) *sql.Stmt {
	s, ok := t.prepared[query]
	if !ok {
		return nil
	}
	if ts, ok := t.bound[query]; ok {
		return ts
	}
	ts := t.tx.StmtContext(t.ctx, s)
	if t.bound == nil {
		t.bound = make(map[string]*sql.Stmt, 4)
	}
	t.bound[query] = ts
	return ts
}

func (t *txn) exec(query string, args ...any) (sql.Result, error) {
	if s := t.stmt(query); s != nil {
		return s.ExecContext(t.ctx, args...)
	}
	return t.tx.ExecContext(t.ctx, query, args...)
}

func (t *txn) query(query string, args ...any) (*sql.Rows, error) {
	if s := t.stmt(query); s != nil {
		return s.QueryContext(t.ctx, args...)
	}
	return t.tx.QueryContext(t.ctx, query, args...)
}

func (t *txn) queryRow(query string, args ...any) *sql.Row {
	if s := t.stmt(query); s != nil {
		return s.QueryRowContext(t.ctx, args...)
	}
	return t.tx.QueryRowContext(t.ctx, query, args...)
}

// execCount runs an update and returns the number of rows it changed.
func (t *txn) execCount(query string, args ...any) (int64, error) {
	res, err := t.exec(query, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// badConn makes database/sql discard the connection, for a connection whose
// transaction state is unknown.
func badConn(c *sql.Conn) {
	_ = c.Raw(func(any) error { return driver.ErrBadConn })
}

// micros converts a duration to the bound integer added to the database's
// clock.
func micros(d time.Duration) int64 { return d.Microseconds() }

// Stored timestamps are unix microseconds, read as the other database/sql
// backend reads them (internal/sqlbackend).
var (
	fromMicros     = sqlbackend.FromMicros
	fromNullMicros = sqlbackend.FromNullMicros
)
