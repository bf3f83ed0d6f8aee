package sqlite

import (
	"context"
	"embed"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"

	"github.com/ductwork-go/ductwork/internal/crashpoint"
	"github.com/ductwork-go/ductwork/internal/migration"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// loadMigrations parses the embedded files once (see migration.Load).
var loadMigrations = sync.OnceValues(func() ([]migration.File, error) {
	ms, err := migration.Load(migrationFiles)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	return ms, nil
})

// Migrate brings the schema to the newest version. It runs in one
// transaction begun with BEGIN IMMEDIATE, which takes SQLite's write lock
// (waiting up to the busy timeout), so concurrent Migrate calls from several
// processes apply each migration once. Each applied version is recorded in
// ductwork_migrations in the same transaction. Calling it again is a no-op.
func (b *Backend) Migrate(ctx context.Context) error {
	if b.closed.Load() {
		return errClosed("migrate")
	}
	ms, err := loadMigrations()
	if err != nil {
		return err
	}
	conn, err := b.write.Conn(ctx)
	if err != nil {
		return mapErr("migrate", err)
	}
	defer conn.Close()

	// BEGIN IMMEDIATE explicitly: the caller's handle of New may not have
	// _txlock=immediate, and the lock must be taken before the version is read.
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return mapErr("migrate: begin", err)
	}
	done := false
	defer func() {
		if !done {
			if _, err := conn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK"); err != nil {
				badConn(conn)
			}
		}
	}()

	if _, err := conn.ExecContext(ctx, qBootstrap); err != nil {
		return mapErr("migrate", err)
	}
	var current int
	if err := conn.QueryRowContext(ctx, qMigrationVersion).Scan(&current); err != nil {
		return mapErr("migrate: read version", err)
	}
	var applied []int
	for _, m := range ms {
		if m.Version <= current {
			continue
		}
		if _, err := conn.ExecContext(ctx, m.SQL); err != nil {
			return mapErr("migrate: "+m.Name, err)
		}
		crashpoint.Hit(crashpoint.MigrateTx)
		if _, err := conn.ExecContext(ctx, qRecordMigration, m.Version); err != nil {
			return mapErr("migrate: record "+m.Name, err)
		}
		applied = append(applied, m.Version)
	}
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		return mapErr("migrate: commit", err)
	}
	done = true
	for _, v := range applied {
		b.cfg.Logger.DebugContext(ctx, "ductwork: applied sqlite migration", slog.Int("ductwork.migration_version", v))
	}
	return nil
}

// MigrationSQL returns the SQL that Migrate runs on an empty database, as one
// script (for review, or to apply by hand with the sqlite3 shell).
func MigrationSQL() string {
	ms, err := loadMigrations()
	if err != nil {
		return "-- " + err.Error() + "\n"
	}
	var sb strings.Builder
	sb.WriteString("BEGIN IMMEDIATE;\n\n")
	sb.WriteString(qBootstrap)
	sb.WriteString(";\n")
	migration.WriteScript(&sb, ms, nil, func(v int) string {
		return strings.Replace(qRecordMigration, "?", strconv.Itoa(v), 1)
	})
	sb.WriteString("\nCOMMIT;\n")
	return sb.String()
}

// SchemaVersion is the newest schema version this package migrates to.
func SchemaVersion() int {
	ms, _ := loadMigrations()
	return migration.Latest(ms)
}
