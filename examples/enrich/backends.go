package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/backend/mysql"
	"github.com/ductwork-go/ductwork/backend/postgres"
	"github.com/ductwork-go/ductwork/backend/sqlite"
	drv "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgxpool"
)

// openBackend opens the backend named kind. For sqlite, dsn is the database
// file (a temporary one when empty). For postgres and mysql, dsn names the
// server; the example works in a fresh schema (postgres) or database (mysql)
// that it drops at exit, unless keep is set.
func openBackend(ctx context.Context, kind, dsn string, keep bool) (backend.Backend, func(), error) {
	suffix := randomSuffix()
	switch kind {
	case "sqlite":
		cleanup := func() {}
		if dsn == "" {
			dir, err := os.MkdirTemp("", "ductwork-enrich-")
			if err != nil {
				return nil, nil, err
			}
			dsn = filepath.Join(dir, "enrich.db")
			cleanup = func() { _ = os.RemoveAll(dir) }
		}
		b, err := sqlite.Open(dsn, nil)
		if err != nil {
			cleanup()
			return nil, nil, err
		}
		return b, func() { _ = b.Close(context.Background()); cleanup() }, nil

	case "postgres":
		if dsn == "" {
			dsn = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
		}
		pool, err := pgxpool.New(ctx, dsn)
		if err != nil {
			return nil, nil, fmt.Errorf("postgres: %w", err)
		}
		schema := "enrich_" + suffix
		b, err := postgres.New(pool, &postgres.Config{Schema: schema})
		if err != nil {
			pool.Close()
			return nil, nil, err
		}
		return b, func() {
			_ = b.Close(context.Background())
			if !keep {
				_, _ = pool.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
			}
			pool.Close()
		}, nil

	case "mysql":
		if dsn == "" {
			dsn = "root@tcp(127.0.0.1:3306)/"
		}
		cfg, err := drv.ParseDSN(dsn)
		if err != nil {
			return nil, nil, fmt.Errorf("mysql: bad -dsn: %w", err)
		}
		admin, err := sql.Open("mysql", cfg.FormatDSN())
		if err != nil {
			return nil, nil, err
		}
		if cfg.DBName == "" {
			cfg.DBName = "enrich_" + suffix
			if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+cfg.DBName); err != nil {
				admin.Close()
				return nil, nil, fmt.Errorf("mysql: %w", err)
			}
		} else {
			keep = true // the user's own database: never drop it
		}
		db, err := sql.Open("mysql", cfg.FormatDSN())
		if err != nil {
			admin.Close()
			return nil, nil, err
		}
		b, err := mysql.New(db, nil)
		if err != nil {
			return nil, nil, err
		}
		return b, func() {
			_ = b.Close(context.Background())
			db.Close()
			if !keep {
				_, _ = admin.Exec("DROP DATABASE " + cfg.DBName)
			}
			admin.Close()
		}, nil
	}
	return nil, nil, fmt.Errorf("unknown -backend %q (want sqlite, postgres or mysql)", kind)
}

func randomSuffix() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
