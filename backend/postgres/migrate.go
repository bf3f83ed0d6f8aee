package postgres

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/ductwork-go/ductwork/internal/crashpoint"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migration is one numbered file of migrations/.
type migration struct {
	version int
	name    string
	sql     string // template, with {schema}
}

// migrations lists the embedded migrations in version order. File names are
// NNNN_description.sql; a malformed name is a build defect and panics at init.
var migrations = loadMigrations()

func loadMigrations() []migration {
	entries, err := fs.ReadDir(migrationFiles, "migrations")
	if err != nil {
		panic(err)
	}
	var ms []migration
	for _, e := range entries {
		prefix, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(prefix)
		if !ok || err != nil || v <= 0 {
			panic("ductwork/postgres: malformed migration file name " + e.Name())
		}
		body, err := migrationFiles.ReadFile(path.Join("migrations", e.Name()))
		if err != nil {
			panic(err)
		}
		ms = append(ms, migration{version: v, name: e.Name(), sql: string(body)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	for i, m := range ms {
		if m.version != i+1 {
			panic(fmt.Sprintf("ductwork/postgres: migration %s out of sequence", m.name))
		}
	}
	return ms
}

// SchemaVersion is the newest schema version this package migrates to.
func SchemaVersion() int { return len(migrations) }

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
			if done[m.version] {
				continue
			}
			// No arguments: pgx sends it with the simple protocol, so the
			// file may hold several statements.
			if _, err := tx.Exec(ctx, b.q.replacer.Replace(m.sql)); err != nil {
				return fmt.Errorf("migration %s: %w", m.name, err)
			}
			crashpoint.Hit(crashpoint.MigrateTx)
			if _, err := tx.Exec(ctx, b.q.recordMigration, m.version); err != nil {
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
	for _, m := range migrations {
		fmt.Fprintf(&sb, "\n-- %s\n", m.name)
		sb.WriteString(strings.TrimSpace(b.q.replacer.Replace(m.sql)))
		sb.WriteString("\n\n")
		sb.WriteString(strings.Replace(b.q.recordMigration, "$1", strconv.Itoa(m.version), 1) + ";\n")
	}
	return sb.String()
}
