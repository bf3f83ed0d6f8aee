package postgres

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/puddle/v2"

	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/internal/groupcommit"
)

// DefaultSchema is the schema used when Config.Schema is empty.
const DefaultSchema = "public"

// maxIdentifierLen is PostgreSQL's identifier limit (NAMEDATALEN - 1).
const maxIdentifierLen = 63

// Config configures a Backend. The zero value is valid.
type Config struct {
	// Schema holds the Ductwork tables, so that several applications can
	// share one database. Empty means DefaultSchema. Migrate creates it when
	// it is missing. It is an identifier, not a value: it is quoted, never
	// interpreted.
	Schema string

	// Logger receives the notification listener's connection problems.
	// Nil means slog.Default().
	Logger *slog.Logger
}

// ConfigError reports an invalid Config field.
type ConfigError struct {
	// Field is the Config field, such as "Schema".
	Field string
	// Reason says what is wrong with it.
	Reason string
}

// Error implements error.
func (e *ConfigError) Error() string {
	return "ductwork/postgres: invalid Config." + e.Field + ": " + e.Reason
}

// Backend is the PostgreSQL implementation of backend.Backend and
// backend.Notifier. It is safe for concurrent use. Create it with New.
type Backend struct {
	pool    *pgxpool.Pool
	schema  string
	channel string
	logger  *slog.Logger
	q       queries

	// closeCtx is cancelled by Close; listener goroutines watch it.
	closeCtx  context.Context
	closeFunc context.CancelFunc
	listeners sync.WaitGroup
	closeOnce sync.Once

	// notifyReq coalesces the wake-ups of hot-path commits (see notifyLater).
	notifyReq  chan struct{}
	notifyOnce sync.Once

	// group coalesces concurrent completions (group.go).
	group groupcommit.Batcher[*completeReq]
	// triggers coalesces concurrent triggers (group.go).
	triggers groupcommit.Batcher[*triggerReq]
}

var (
	_ backend.Backend  = (*Backend)(nil)
	_ backend.Notifier = (*Backend)(nil)
)

// New returns a Backend that uses pool, with its tables in cfg.Schema. It does
// no I/O: call Migrate to create or upgrade the schema. A nil cfg is the zero
// Config. The pool stays the caller's: Close never closes it.
//
// New returns a *ConfigError when cfg is invalid or pool is nil.
func New(pool *pgxpool.Pool, cfg *Config) (*Backend, error) {
	var c Config
	if cfg != nil {
		c = *cfg
	}
	if pool == nil {
		return nil, &ConfigError{Field: "pool", Reason: "nil *pgxpool.Pool"}
	}
	if c.Schema == "" {
		c.Schema = DefaultSchema
	}
	if len(c.Schema) > maxIdentifierLen {
		return nil, &ConfigError{Field: "Schema", Reason: fmt.Sprintf("longer than %d bytes", maxIdentifierLen)}
	}
	for i := 0; i < len(c.Schema); i++ {
		if c.Schema[i] == 0 {
			return nil, &ConfigError{Field: "Schema", Reason: "contains a NUL byte"}
		}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &Backend{
		pool:      pool,
		schema:    c.Schema,
		channel:   channelName(c.Schema),
		logger:    c.Logger,
		q:         renderQueries(c.Schema),
		closeCtx:  ctx,
		closeFunc: cancel,
		notifyReq: make(chan struct{}, 1),
	}
	b.group.Max = maxGroup
	b.triggers.Max = maxTriggerGroup
	return b, nil
}

// notifyLater wakes listeners after a commit that made work due. It does not
// NOTIFY inside the committing transaction: PostgreSQL serializes the commits
// of all notifying transactions on one lock held across the WAL flush, which
// capped throughput at a few hundred commits/s. Instead one goroutine per
// Backend sends the NOTIFY on its own, and requests that arrive while it is
// busy are coalesced into the next one. Listeners therefore still wake only
// after the work is committed.
func (b *Backend) notifyLater() {
	b.notifyOnce.Do(func() {
		b.listeners.Add(1)
		go b.notifyLoop()
	})
	select {
	case b.notifyReq <- struct{}{}:
	default: // one is pending already; it covers this commit too
	}
}

func (b *Backend) notifyLoop() {
	defer b.listeners.Done()
	for {
		select {
		case <-b.closeCtx.Done():
			return
		case <-b.notifyReq:
		}
		ctx, cancel := context.WithTimeout(b.closeCtx, 5*time.Second)
		if _, err := b.pool.Exec(ctx, b.q.notify, b.channel); err != nil && b.closeCtx.Err() == nil {
			b.logger.Debug("ductwork/postgres: notify failed; listeners fall back to polling", slog.String("error", err.Error()))
		}
		cancel()
		// Under a steady stream of commits, send at most one NOTIFY per
		// notifySpacing: each is a transaction of its own, and each wakes
		// every listening process into a claim. The requests arriving
		// meanwhile are coalesced into the next one.
		t := time.NewTimer(notifySpacing)
		select {
		case <-b.closeCtx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// notifySpacing is the least time between two NOTIFYs of one Backend: the
// first commit after a quiet spell notifies at once, later ones wait at most
// this long.
const notifySpacing = 2 * time.Millisecond

// channelName derives the LISTEN/NOTIFY channel from the schema, staying
// within PostgreSQL's identifier limit.
func channelName(schema string) string {
	const prefix = "ductwork_"
	if len(prefix)+len(schema) <= maxIdentifierLen {
		return prefix + schema
	}
	sum := sha256.Sum256([]byte(schema))
	return prefix + hex.EncodeToString(sum[:16])
}

// Schema returns the schema holding the backend's tables.
func (b *Backend) Schema() string { return b.schema }

// Capabilities reports SkipLocked and Notify, with microsecond timestamps.
func (b *Backend) Capabilities() backend.Capabilities {
	return backend.Capabilities{SkipLocked: true, Notify: true, TimePrecision: time.Microsecond, Name: "postgres", Limits: Limits, TxKind: TxKind}
}

// Limits are what the schema stores. Text columns have no declared length,
// but a B-tree index entry must fit in about a third of a page (2704 bytes
// with 8 KiB pages): node ID and scope share the unique index of jobs and
// joins, the pipeline name an index of runs, key and process ID a primary
// key. bytea holds up to 1 GiB.
var Limits = backend.Limits{
	MaxPipelineBytes:  1024,
	MaxNodeIDBytes:    1024,
	MaxScopeBytes:     1024,
	MaxKeyBytes:       2048,
	MaxProcessIDBytes: 2048,
	MaxPayloadBytes:   1<<30 - 1,
}

// Close stops the notification listeners and waits for them to release their
// connections, or for ctx to end. It never closes the caller's pool. After
// Close every method returns an error wrapping backend.ErrClosed. Calling it
// again is harmless.
func (b *Backend) Close(ctx context.Context) error {
	b.closeOnce.Do(b.closeFunc)
	done := make(chan struct{})
	go func() {
		b.listeners.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// checkOpen returns backend.ErrClosed once Close has been called.
func (b *Backend) checkOpen() error {
	if b.closeCtx.Err() != nil {
		return fmt.Errorf("ductwork/postgres: %w", backend.ErrClosed)
	}
	return nil
}

// Database error codes the backend reacts to.
const (
	codeForeignKeyViolation = "23503"
	// A table or the schema is missing: Migrate has not run.
	codeUndefinedTable    = "42P01"
	codeInvalidSchemaName = "3F000"
	// A column is missing: the schema is older than the code.
	codeUndefinedColumn = "42703"
	// Raised by ductwork_raise (see migrations/0001_init.sql).
	codeStaleClaim   = "DW001"
	codeJoinNotFound = "DW002"
)

// errJoinNotFound: a plan's arrival names a join the run never opened, or
// one that already fired. The completion is rolled back.
var errJoinNotFound = errors.New("ductwork/postgres: join not found")

// mapErr is the one place driver errors become backend errors. op names the
// operation for the message. Sentinels of package backend pass through; a
// closed pool or backend becomes backend.ErrClosed; everything else is wrapped
// so that errors.As still reaches the *pgconn.PgError.
func mapErr(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case isSentinel(err):
		return err
	case errors.Is(err, puddle.ErrClosedPool):
		return fmt.Errorf("ductwork/postgres: %s: %w: %w", op, backend.ErrClosed, err)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("ductwork/postgres: %s: %w", op, backend.Transient(err))
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case pgErr.Code == codeStaleClaim:
			return fmt.Errorf("ductwork/postgres: %s: %w", op, backend.ErrStaleClaim)
		case pgErr.Code == codeJoinNotFound:
			return fmt.Errorf("ductwork/postgres: %s: %w", op, backend.Permanent(fmt.Errorf("%w: %w", errJoinNotFound, err)))
		case pgErr.Code == codeForeignKeyViolation && pgErr.TableName == "ductwork_values":
			return fmt.Errorf("ductwork/postgres: %s: %w", op, backend.ErrRunNotFound)
		case pgErr.Code == codeUndefinedTable, pgErr.Code == codeInvalidSchemaName, pgErr.Code == codeUndefinedColumn:
			return fmt.Errorf("ductwork/postgres: %s: %w: %w", op, backend.ErrNotMigrated, err)
		}
	}
	return fmt.Errorf("ductwork/postgres: %s: %w", op, classify(err))
}

// classify marks a driver error transient or permanent by its SQLSTATE
// class: connection exceptions (08), transaction rollbacks such as
// deadlocks and serialization failures (40), insufficient resources such as
// too many connections (53), operator interventions such as a cancelled
// statement or a server shutting down (57), system errors (58) and lock
// timeouts (55P03) may pass when retried; data exceptions such as a value
// too long or bytes invalid in the encoding (22), integrity constraint
// violations (23), syntax and access rule errors (42) and exceeded program
// limits such as an index row too large (54) never will. An error without
// SQLSTATE is transient when the network or a timeout caused it. Others
// pass unclassified.
func classify(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		if len(pgErr.Code) < 2 {
			return err
		}
		switch pgErr.Code[:2] {
		case "08", "40", "53", "57", "58":
			return backend.Transient(err)
		case "22", "23", "42", "54":
			return backend.Permanent(err)
		}
		if pgErr.Code == "55P03" {
			return backend.Transient(err)
		}
		return err
	}
	var netErr net.Error
	var connectErr *pgconn.ConnectError
	if pgconn.Timeout(err) || pgconn.SafeToRetry(err) || errors.As(err, &netErr) || errors.As(err, &connectErr) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return backend.Transient(err)
	}
	return err
}

func isSentinel(err error) bool {
	for _, s := range []error{
		backend.ErrStaleClaim, backend.ErrProcessNotFound, backend.ErrRunNotFound, backend.ErrRunState,
		backend.ErrValueExists, backend.ErrValueNotFound, backend.ErrUnsupportedTx, backend.ErrClosed,
		backend.ErrNotMigrated, backend.ErrDefinitionNotFound, backend.ErrScheduleNotFound,
	} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// queryer is what pgxpool.Pool and pgx.Tx have in common.
type queryer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

var (
	_ queryer = (*pgxpool.Pool)(nil)
	_ queryer = (pgx.Tx)(nil)
)
