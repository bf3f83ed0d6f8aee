package postgres

import (
	"context"
	"embed"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/ductwork-go/ductwork/internal/crashpoint"
	"github.com/ductwork-go/ductwork/internal/migration"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrations lists the embedded migrations in version order. File names are
// NNNN_description.sql, numbered from 1 without a gap; a malformed set is a
// build defect and panics at init. The SQL is a template, with {schema}.
var migrations = func() []migration.File {
	ms, err := migration.Load(migrationFiles)
	if err != nil {
		panic("ductwork/postgres: " + err.Error())
	}
	return ms
}()

// SchemaVersion is the newest schema version this package migrates to.
func SchemaVersion() int { return migration.Latest(migrations) }

// Migrate creates the schema when it is missing and applies the embedded
// migrations not yet recorded in ductwork_migrations, each recorded with its
// version, all in one transaction under pg_advisory_xact_lock: it is
// idempotent and safe to run from several processes at once.
func (b *Backend) Migrate(ctx context.Context) error {
	if err := b.checkOpen(); err != nil {
		return err
	}
	err := pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, sqlMigrateLock, b.schema); err != nil {
			return err
		}
		// CREATE SCHEMA checks the CREATE privilege on the database even
		// when the schema exists, so it is only issued when it is missing.
		var exists bool
		if err := tx.QueryRow(ctx, sqlSchemaExists, b.schema).Scan(&exists); err != nil {
			return err
		}
		if !exists {
			if _, err := tx.Exec(ctx, b.q.createSchema); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, b.q.createMigrations); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, b.q.appliedMigrations)
		if err != nil {
			return err
		}
		applied, err := pgx.CollectRows(rows, pgx.RowTo[int32])
		if err != nil {
			return err
		}
		done := make(map[int]bool, len(applied))
		for _, v := range applied {
			done[int(v)] = true
		}
		for _, m := range migrations {
			if done[m.Version] {
				continue
			}
			// No arguments: pgx sends it with the simple protocol, so the
			// file may hold several statements.
			if _, err := tx.Exec(ctx, b.q.replacer.Replace(m.SQL)); err != nil {
				return fmt.Errorf("migration %s: %w", m.Name, err)
			}
			crashpoint.Hit(crashpoint.MigrateTx)
			if _, err := tx.Exec(ctx, b.q.recordMigration, m.Version); err != nil {
				return err
			}
		}
		return nil
	})
	return mapErr("migrate", err)
}

// MigrationSQL returns the SQL that Migrate applies to a fresh database,
// rendered for the backend's schema, for review or for applying by hand. It
// omits the advisory lock and does no I/O.
func (b *Backend) MigrationSQL() string {
	var sb strings.Builder
	sb.WriteString(b.q.createSchema + ";\n\n")
	sb.WriteString(b.q.createMigrations + ";\n")
	migration.WriteScript(&sb, migrations, b.q.replacer.Replace, func(v int) string {
		return strings.Replace(b.q.recordMigration, "$1", strconv.Itoa(v), 1)
	})
	return sb.String()
}
