package testdb

import (
	"context"
	"database/sql"
	"os"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// MySQLEnv names the variable holding the MySQL/MariaDB DSN for tests.
const MySQLEnv = "DUCTWORK_TEST_MYSQL_DSN"

var mysqlContainer = &container{kind: "mariadb"}

// MySQLDSN returns the base DSN of a MySQL or MariaDB server for tests, with
// no database selected: the value of DUCTWORK_TEST_MYSQL_DSN, or else a
// MariaDB container started once per test binary. Without either it skips t.
func MySQLDSN(t testing.TB) string {
	t.Helper()
	if dsn := os.Getenv(MySQLEnv); dsn != "" {
		return dsn
	}
	return mysqlContainer.get(t, MySQLEnv)
}

// MySQLDB creates a database dw_<random> on the test server and returns a
// handle on it. When the test ends the handle is closed and the database
// dropped; register anything that uses the handle (a backend's Close) with
// t.Cleanup after calling MySQLDB, so it runs first.
func MySQLDB(t testing.TB) *sql.DB {
	t.Helper()
	db, _ := MySQLDatabase(t)
	return db
}

// MySQLDatabase is MySQLDB that also returns the database's name.
func MySQLDatabase(t testing.TB) (*sql.DB, string) {
	t.Helper()
	base := MySQLDSN(t)
	cfg, err := mysql.ParseDSN(base)
	if err != nil {
		t.Fatalf("testdb: parse %s: %v", MySQLEnv, err)
	}
	name := randomName(t, "dw_")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	admin, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		t.Fatalf("testdb: open %s: %v", MySQLEnv, err)
	}
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE `"+name+"`"); err != nil {
		_ = admin.Close()
		t.Fatalf("testdb: create database %s via %s: %v", name, MySQLEnv, err)
	}
	t.Cleanup(func() {
		defer func() { _ = admin.Close() }()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := admin.ExecContext(ctx, "DROP DATABASE IF EXISTS `"+name+"`"); err != nil {
			t.Errorf("testdb: drop database %s: %v", name, err)
		}
	})

	cfg.DBName = name
	db, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		t.Fatalf("testdb: open database %s: %v", name, err)
	}
	t.Cleanup(func() { _ = db.Close() })
	if err := db.PingContext(ctx); err != nil {
		t.Fatalf("testdb: connect to database %s: %v", name, err)
	}
	return db, name
}
