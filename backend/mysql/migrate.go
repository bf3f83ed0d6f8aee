package mysql

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"embed"
	"errors"
	"fmt"
	"strconv"
	"strings"

	gomysql "github.com/go-sql-driver/mysql"

	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/internal/crashpoint"
	"github.com/ductwork-go/ductwork/internal/migration"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// MigrationError reports a migration that could not be applied.
type MigrationError struct {
	// Version is the migration being applied, 0 for the bookkeeping around
	// it (connecting, the lock, the version table).
	Version int
	// Step names what failed, such as "get lock" or "statement 3".
	Step string
	Err  error
}

// Error implements error.
func (e *MigrationError) Error() string {
	msg := "ductwork/mysql: migrate"
	if e.Version != 0 {
		msg += ": version " + strconv.Itoa(e.Version)
	}
	if e.Step != "" {
		msg += ": " + e.Step
	}
	return msg + ": " + e.Err.Error()
}

// Unwrap returns the underlying error.
func (e *MigrationError) Unwrap() error { return e.Err }

func loadMigrations() ([]migration.File, error) { return migration.Load(migrationFS) }

// MigrationSQL returns the schema the backend migrates to: every embedded
// migration file in version order, as it is applied, for review or for
// applying with other tools (then also record the versions in
// ductwork_migrations, or Migrate will re-run the idempotent statements).
func MigrationSQL() string {
	ms, err := loadMigrations()
	if err != nil {
		// The files are embedded and covered by tests.
		panic(err)
	}
	var b strings.Builder
	for _, m := range ms {
		fmt.Fprintf(&b, "-- %s\n%s", m.Name, m.SQL)
		if !strings.HasSuffix(m.SQL, "\n") {
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// Migrate brings the schema in the DSN's database to the newest version. It
// holds a server-wide named lock (GET_LOCK, per database) on a dedicated
// connection for the whole run, so concurrent Migrate calls from any number of
// processes apply each version once; a caller that waited for the lock finds
// the work done. Each migration's statements are run one by one (MySQL DDL is
// not transactional; every statement is idempotent, so a migration cut short
// is completed by the next Migrate), then its version is recorded in
// ductwork_migrations. Waiting longer than Config.MigrationLockTimeout for
// the lock fails. Errors are *MigrationError; errors.Is finds
// backend.ErrClosed in them when the Backend or the *sql.DB is closed.
func (b *Backend) Migrate(ctx context.Context) (err error) {
	if b.closed.Load() {
		return &MigrationError{Err: backend.ErrClosed}
	}
	ms, err := loadMigrations()
	if err != nil {
		return &MigrationError{Step: "load migrations", Err: err}
	}
	conn, err := b.db.Conn(ctx)
	if err != nil {
		return &MigrationError{Step: "connect", Err: classify(err)}
	}
	defer conn.Close()

	var dbName sql.NullString
	if err := conn.QueryRowContext(ctx, qCurrentDatabase).Scan(&dbName); err != nil {
		return &MigrationError{Step: "select database", Err: classify(err)}
	}
	if !dbName.Valid {
		return &MigrationError{Step: "select database", Err: errors.New("the DSN names no database")}
	}
	if err := b.checkCluster(ctx, conn, true); err != nil {
		var ce *ClusterError
		if errors.As(err, &ce) {
			return &MigrationError{Step: "check cluster", Err: backend.Permanent(ce)}
		}
		return &MigrationError{Step: "check cluster", Err: classify(err)}
	}
	var got sql.NullInt64
	if err := conn.QueryRowContext(ctx, qGetLock, int64(b.cfg.MigrationLockTimeout.Seconds())).Scan(&got); err != nil {
		return &MigrationError{Step: "get lock", Err: classify(err)}
	}
	if !got.Valid || got.Int64 != 1 {
		return &MigrationError{Step: "get lock", Err: fmt.Errorf("timed out after %s waiting for the migration lock", b.cfg.MigrationLockTimeout)}
	}
	defer func() {
		var released sql.NullInt64
		cctx, cancel := cleanupCtx(ctx)
		defer cancel()
		rerr := conn.QueryRowContext(cctx, qReleaseLock).Scan(&released)
		if rerr != nil || released.Int64 != 1 {
			// Drop the session so the server frees the lock with it.
			_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		}
	}()

	if _, err := conn.ExecContext(ctx, qCreateVersions); err != nil {
		return &MigrationError{Step: "create ductwork_migrations", Err: classify(err)}
	}
	applied := map[int]bool{}
	rows, err := conn.QueryContext(ctx, qVersions)
	if err != nil {
		return &MigrationError{Step: "read versions", Err: classify(err)}
	}
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			rows.Close()
			return &MigrationError{Step: "read versions", Err: classify(err)}
		}
		applied[v] = true
	}
	if err := errors.Join(rows.Close(), rows.Err()); err != nil {
		return &MigrationError{Step: "read versions", Err: classify(err)}
	}
	for _, m := range ms {
		if applied[m.Version] {
			continue
		}
		for i, stmt := range migration.Statements(m.SQL) {
			if _, err := conn.ExecContext(ctx, stmt); err != nil && !isDuplicateColumn(err) {
				return &MigrationError{Version: m.Version, Step: "statement " + strconv.Itoa(i+1), Err: classify(err)}
			}
		}
		crashpoint.Hit(crashpoint.MigrateTx)
		if _, err := conn.ExecContext(ctx, qRecordVersion, m.Version); err != nil {
			return &MigrationError{Version: m.Version, Step: "record version", Err: classify(err)}
		}
	}
	return nil
}

// isDuplicateColumn reports MySQL error 1060 or 1061: an ADD COLUMN or
// CREATE INDEX that an earlier, interrupted Migrate already applied.
func isDuplicateColumn(err error) bool {
	var me *gomysql.MySQLError
	return errors.As(err, &me) && (me.Number == errDuplicateColumn || me.Number == errDuplicateKeyName)
}

// SchemaVersion is the newest schema version this package migrates to.
func SchemaVersion() int {
	ms, _ := loadMigrations()
	return migration.Latest(ms)
}
