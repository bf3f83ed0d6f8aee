package sqlite

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/ductwork-go/ductwork/internal/crashpoint"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migration is one numbered file of migrations/.
type migration struct {
	version int
	name    string
	sql     string
}

// loadMigrations parses the embedded files once: "NNNN_name.sql", versions
// unique and ascending.
var loadMigrations = sync.OnceValues(func() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFiles, "migrations")
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, e := range entries {
		name := e.Name()
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("sqlite: migration file %q is not named NNNN_name.sql", name)
		}
		b, err := fs.ReadFile(migrationFiles, path.Join("migrations", name))
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: v, name: name, sql: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	for i := 1; i < len(ms); i++ {
		if ms[i].version == ms[i-1].version {
			return nil, fmt.Errorf("sqlite: migrations %q and %q share version %d", ms[i-1].name, ms[i].name, ms[i].version)
		}
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
		if m.version <= current {
			continue
		}
		if _, err := conn.ExecContext(ctx, m.sql); err != nil {
			return mapErr("migrate: "+m.name, err)
		}
		crashpoint.Hit(crashpoint.MigrateTx)
		if _, err := conn.ExecContext(ctx, qRecordMigration, m.version); err != nil {
			return mapErr("migrate: record "+m.name, err)
		}
		applied = append(applied, m.version)
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
	for _, m := range ms {
		sb.WriteString("\n-- " + m.name + "\n")
		sb.WriteString(strings.TrimSpace(m.sql))
		sb.WriteString("\n\n")
		sb.WriteString(strings.Replace(qRecordMigration, "?", strconv.Itoa(m.version), 1))
		sb.WriteString(";\n")
	}
	sb.WriteString("\nCOMMIT;\n")
	return sb.String()
}

// SchemaVersion is the newest schema version this package migrates to.
func SchemaVersion() int {
	ms, err := loadMigrations()
	if err != nil || len(ms) == 0 {
		return 0
	}
	return ms[len(ms)-1].version
}
