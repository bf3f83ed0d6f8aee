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
	"strings"
	"time"

	gomysql "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/backend/mysql"
	"github.com/ductwork-go/ductwork/backend/postgres"
	"github.com/ductwork-go/ductwork/backend/sqlite"
)

// Default DSNs: the local servers of the development machine. For SQLite the
// DSN is a directory in which each workload creates its own file (default: a
// fresh temporary directory).
const (
	defaultPostgresDSN = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	defaultMySQLDSN    = "root@tcp(127.0.0.1:3306)/"
)

var backendNames = []string{"sqlite", "postgres", "mysql"}

func defaultDSN(kind string) string {
	switch kind {
	case "postgres":
		return defaultPostgresDSN
	case "mysql":
		return defaultMySQLDSN
	}
	return ""
}

// store is a backend on storage of its own (a fresh SQLite file, PostgreSQL
// schema or MariaDB database) that drop removes again.
type store struct {
	backend.Backend
	name string // file, schema or database
	drop func(context.Context) error
	// analyze refreshes the planner statistics of the Ductwork tables
	// (-analyze); nil for SQLite.
	analyze func(context.Context) error
	// attach is how another process reaches the same storage (-procs).
	attach attachment
}

var tables = []string{"ductwork_runs", "ductwork_jobs", "ductwork_joins"}

func randomName(prefix string) string {
	var buf [6]byte
	_, _ = rand.Read(buf[:])
	return prefix + hex.EncodeToString(buf[:])
}

// openStore creates fresh storage on the backend kind, migrates it and
// returns it. sync is SQLite's synchronous setting ("normal" or "full"; ""
// is the library's default). conns sizes the connection pools of the server
// backends (the workers, the claim loop, the heartbeat and the API calls each
// hold one).
func openStore(ctx context.Context, kind, dsn, sync string, conns int, logger *slog.Logger) (*store, error) {
	if dsn == "" {
		dsn = defaultDSN(kind)
	}
	var (
		s   *store
		err error
	)
	switch kind {
	case "sqlite":
		s, err = openSQLite(dsn, sync, logger)
	case "postgres":
		s, err = openPostgres(ctx, dsn, conns, logger)
	case "mysql":
		s, err = openMySQL(ctx, dsn, conns, logger)
	default:
		return nil, fmt.Errorf("unknown backend %q (want sqlite, postgres or mysql)", kind)
	}
	if err != nil {
		return nil, err
	}
	if err := s.Migrate(ctx); err != nil {
		return nil, errors.Join(fmt.Errorf("migrate %s: %w", s.name, err), s.drop(context.WithoutCancel(ctx)))
	}
	return s, nil
}

func openSQLite(dir, sync string, logger *slog.Logger) (*store, error) {
	var tmp string
	if dir == "" {
		var err error
		if tmp, err = os.MkdirTemp("", "ductwork-bench-"); err != nil {
			return nil, err
		}
		dir = tmp
	}
	path := filepath.Join(dir, randomName("dwbench_")+".db")
	b, err := sqlite.Open(path, &sqlite.Config{Logger: logger, Synchronous: sync})
	if err != nil {
		if tmp != "" {
			_ = os.RemoveAll(tmp)
		}
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	return &store{Backend: b, name: path, attach: attachment{kind: "sqlite", dsn: path, sync: sync}, drop: func(ctx context.Context) error {
		err := b.Close(ctx)
		for _, suffix := range []string{"", "-wal", "-shm"} {
			if rerr := os.Remove(path + suffix); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
				err = errors.Join(err, rerr)
			}
		}
		if tmp != "" {
			err = errors.Join(err, os.RemoveAll(tmp))
		}
		return err
	}}, nil
}

func openPostgres(ctx context.Context, dsn string, conns int, logger *slog.Logger) (*store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("parse postgres dsn: %w", err)
	}
	if !strings.Contains(dsn, "pool_max_conns") {
		cfg.MaxConns = int32(conns)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to postgres: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to postgres: %w", err)
	}
	schema := randomName("dwbench_")
	b, err := postgres.New(pool, &postgres.Config{Schema: schema, Logger: logger})
	if err != nil {
		pool.Close()
		return nil, err
	}
	analyze := func(ctx context.Context) error {
		for _, t := range tables {
			if _, err := pool.Exec(ctx, "ANALYZE "+pgx.Identifier{schema, t}.Sanitize()); err != nil {
				return fmt.Errorf("analyze %s: %w", t, err)
			}
		}
		return nil
	}
	return &store{Backend: b, name: "schema " + schema, analyze: analyze, attach: attachment{kind: "postgres", dsn: dsn, schema: schema}, drop: func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		defer pool.Close()
		err := b.Close(ctx)
		if _, derr := pool.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); derr != nil {
			err = errors.Join(err, fmt.Errorf("drop schema %s: %w", schema, derr))
		}
		return err
	}}, nil
}

func openMySQL(ctx context.Context, dsn string, conns int, logger *slog.Logger) (*store, error) {
	cfg, err := gomysql.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("parse mysql dsn: %w", err)
	}
	name := randomName("dwbench_")
	adminCfg := cfg.Clone()
	adminCfg.DBName = ""
	admin, err := sql.Open("mysql", adminCfg.FormatDSN())
	if err != nil {
		return nil, err
	}
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE `"+name+"`"); err != nil {
		_ = admin.Close()
		return nil, fmt.Errorf("create database %s: %w", name, err)
	}
	dropDB := func(ctx context.Context) error {
		defer func() { _ = admin.Close() }()
		ctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		if _, err := admin.ExecContext(ctx, "DROP DATABASE IF EXISTS `"+name+"`"); err != nil {
			return fmt.Errorf("drop database %s: %w", name, err)
		}
		return nil
	}
	cfg.DBName = name
	db, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		return nil, errors.Join(err, dropDB(context.WithoutCancel(ctx)))
	}
	// database/sql keeps only 2 idle connections by default: with more
	// concurrent workers it would open and close connections all the time.
	db.SetMaxOpenConns(conns)
	db.SetMaxIdleConns(conns)
	b, err := mysql.New(db, &mysql.Config{Logger: logger})
	if err != nil {
		_ = db.Close()
		return nil, errors.Join(err, dropDB(context.WithoutCancel(ctx)))
	}
	analyze := func(ctx context.Context) error {
		for _, t := range tables {
			if _, err := db.ExecContext(ctx, "ANALYZE TABLE `"+t+"`"); err != nil {
				return fmt.Errorf("analyze %s: %w", t, err)
			}
		}
		return nil
	}
	return &store{Backend: b, name: "database " + name, analyze: analyze, attach: attachment{kind: "mysql", dsn: cfg.FormatDSN()}, drop: func(ctx context.Context) error {
		err := b.Close(ctx)
		err = errors.Join(err, db.Close())
		return errors.Join(err, dropDB(ctx))
	}}, nil
}

// attachStore opens the backend of storage another process created (the
// -serve-worker mode of -procs runs), without migrating or dropping it.
func attachStore(ctx context.Context, a attachment, conns int, logger *slog.Logger) (backend.Backend, func(), error) {
	switch a.kind {
	case "sqlite":
		b, err := sqlite.Open(a.dsn, &sqlite.Config{Logger: logger, Synchronous: a.sync})
		if err != nil {
			return nil, nil, err
		}
		return b, func() { _ = b.Close(context.Background()) }, nil
	case "postgres":
		cfg, err := pgxpool.ParseConfig(a.dsn)
		if err != nil {
			return nil, nil, fmt.Errorf("parse postgres dsn: %w", err)
		}
		cfg.MaxConns = int32(conns)
		pool, err := pgxpool.NewWithConfig(ctx, cfg)
		if err != nil {
			return nil, nil, err
		}
		if err := pool.Ping(ctx); err != nil {
			pool.Close()
			return nil, nil, fmt.Errorf("connect to postgres: %w", err)
		}
		b, err := postgres.New(pool, &postgres.Config{Schema: a.schema, Logger: logger})
		if err != nil {
			pool.Close()
			return nil, nil, err
		}
		return b, func() { _ = b.Close(context.Background()); pool.Close() }, nil
	case "mysql":
		db, err := sql.Open("mysql", a.dsn)
		if err != nil {
			return nil, nil, err
		}
		db.SetMaxOpenConns(conns)
		db.SetMaxIdleConns(conns)
		if err := db.PingContext(ctx); err != nil {
			_ = db.Close()
			return nil, nil, fmt.Errorf("connect to mysql: %w", err)
		}
		b, err := mysql.New(db, &mysql.Config{Logger: logger})
		if err != nil {
			_ = db.Close()
			return nil, nil, err
		}
		return b, func() { _ = b.Close(context.Background()); _ = db.Close() }, nil
	}
	return nil, nil, fmt.Errorf("unknown backend %q", a.kind)
}
