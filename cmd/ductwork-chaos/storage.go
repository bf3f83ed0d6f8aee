package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	gomysql "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx" for the executions table
	_ "github.com/mattn/go-sqlite3"    // database/sql driver "sqlite3" for the executions table

	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/backend/mysql"
	"github.com/ductwork-go/ductwork/backend/postgres"
	"github.com/ductwork-go/ductwork/backend/sqlite"
)

const (
	defaultPostgresDSN = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	defaultMySQLDSN    = "root@tcp(127.0.0.1:3306)/"
)

// storeConfig tells a process (the controller or a worker) where the chaos
// storage is. It travels to the workers as JSON in an environment variable.
type storeConfig struct {
	Kind string `json:"kind"`
	// DSN: the SQLite database file, or the server's DSN (for MySQL with the
	// chaos database as its database name).
	DSN string `json:"dsn"`
	// Schema is the PostgreSQL schema.
	Schema string `json:"schema,omitempty"`
	// ExecDSN is the SQLite file of the executions table (kept apart from
	// the Ductwork file so the recording does not contend for its lock).
	ExecDSN string `json:"exec_dsn,omitempty"`
}

func randomName(prefix string) string {
	var buf [5]byte
	_, _ = rand.Read(buf[:])
	return prefix + hex.EncodeToString(buf[:])
}

// createStorage creates fresh storage for kind and returns its config and a
// function that removes it again.
func createStorage(ctx context.Context, kind, dsn string) (storeConfig, func(context.Context) error, error) {
	switch kind {
	case "sqlite":
		dir, err := os.MkdirTemp(dsn, "ductwork-chaos-")
		if err != nil {
			return storeConfig{}, nil, err
		}
		return storeConfig{Kind: kind, DSN: filepath.Join(dir, "ductwork.db"), ExecDSN: filepath.Join(dir, "executions.db")},
			func(context.Context) error { return os.RemoveAll(dir) }, nil
	case "postgres":
		if dsn == "" {
			dsn = defaultPostgresDSN
		}
		schema := randomName("dwchaos_")
		drop := func(ctx context.Context) error {
			return retryAdmin(ctx, func(ctx context.Context) error {
				conn, err := pgx.Connect(ctx, dsn)
				if err != nil {
					return err
				}
				defer conn.Close(context.WithoutCancel(ctx))
				_, err = conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
				return err
			})
		}
		// Migrate creates the schema.
		return storeConfig{Kind: kind, DSN: dsn, Schema: schema}, drop, nil
	case "mysql":
		if dsn == "" {
			dsn = defaultMySQLDSN
		}
		cfg, err := gomysql.ParseDSN(dsn)
		if err != nil {
			return storeConfig{}, nil, fmt.Errorf("parse -dsn: %w", err)
		}
		name := randomName("dwchaos_")
		admin := cfg.Clone()
		admin.DBName = ""
		adminDSN := admin.FormatDSN()
		exec := func(ctx context.Context, stmt string) error {
			return retryAdmin(ctx, func(ctx context.Context) error {
				db, err := sql.Open("mysql", adminDSN)
				if err != nil {
					return err
				}
				defer db.Close()
				_, err = db.ExecContext(ctx, stmt)
				return err
			})
		}
		if err := exec(ctx, "CREATE DATABASE `"+name+"`"); err != nil {
			return storeConfig{}, nil, fmt.Errorf("create database %s: %w", name, err)
		}
		cfg.DBName = name
		return storeConfig{Kind: kind, DSN: cfg.FormatDSN()},
			func(ctx context.Context) error { return exec(ctx, "DROP DATABASE IF EXISTS `"+name+"`") }, nil
	}
	return storeConfig{}, nil, fmt.Errorf("unknown -backend %q (want sqlite, postgres or mysql)", kind)
}

// retryAdmin retries an administrative statement for up to a minute (the
// server may be restarting).
func retryAdmin(ctx context.Context, fn func(ctx context.Context) error) error {
	deadline := time.Now().Add(time.Minute)
	for {
		c, cancel := context.WithTimeout(ctx, 20*time.Second)
		err := fn(c)
		cancel()
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// openBackend opens the Ductwork backend described by sc. conns sizes the
// connection pool of the server backends.
func openBackend(ctx context.Context, sc storeConfig, conns int, logger *slog.Logger) (backend.Backend, func(), error) {
	switch sc.Kind {
	case "sqlite":
		b, err := sqlite.Open(sc.DSN, &sqlite.Config{Logger: logger, BusyTimeout: 10 * time.Second})
		if err != nil {
			return nil, nil, err
		}
		return b, func() { _ = b.Close(context.Background()) }, nil
	case "postgres":
		cfg, err := pgxpool.ParseConfig(sc.DSN)
		if err != nil {
			return nil, nil, err
		}
		cfg.MaxConns = int32(conns)
		pool, err := pgxpool.NewWithConfig(ctx, cfg)
		if err != nil {
			return nil, nil, err
		}
		b, err := postgres.New(pool, &postgres.Config{Schema: sc.Schema, Logger: logger})
		if err != nil {
			pool.Close()
			return nil, nil, err
		}
		return b, func() { _ = b.Close(context.Background()); pool.Close() }, nil
	case "mysql":
		db, err := sql.Open("mysql", sc.DSN)
		if err != nil {
			return nil, nil, err
		}
		db.SetMaxOpenConns(conns)
		db.SetMaxIdleConns(conns)
		b, err := mysql.New(db, &mysql.Config{Logger: logger})
		if err != nil {
			_ = db.Close()
			return nil, nil, err
		}
		return b, func() { _ = b.Close(context.Background()); _ = db.Close() }, nil
	}
	return nil, nil, fmt.Errorf("unknown backend %q", sc.Kind)
}

// openExec opens the executions table's own connection pool.
func openExec(sc storeConfig, conns int) (*execDB, error) {
	var (
		db  *sql.DB
		err error
		x   = &execDB{table: execTable}
	)
	switch sc.Kind {
	case "sqlite":
		db, err = sql.Open("sqlite3", "file:"+sc.ExecDSN+"?_busy_timeout=10000&_journal_mode=WAL&_synchronous=NORMAL")
	case "postgres":
		db, err = sql.Open("pgx", sc.DSN)
		x.table = pgx.Identifier{sc.Schema, execTable}.Sanitize()
		x.dollar = true
	case "mysql":
		db, err = sql.Open("mysql", sc.DSN)
	default:
		err = fmt.Errorf("unknown backend %q", sc.Kind)
	}
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(conns)
	db.SetMaxIdleConns(conns)
	x.db = db
	return x, nil
}

var errUsage = errors.New("usage")
