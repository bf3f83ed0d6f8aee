package testdb

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/moby/moby/api/types/network"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/wait"
)

// MySQLEnv names the variable holding the MySQL/MariaDB DSN for tests.
const MySQLEnv = "DUCTWORK_TEST_MYSQL_DSN"

var mysqlContainer container

// MySQLDSN returns the base DSN of a MySQL or MariaDB server for tests, with
// no database selected: the value of DUCTWORK_TEST_MYSQL_DSN, or else a
// MariaDB container started with testcontainers-go. Without either it skips t.
func MySQLDSN(t testing.TB) string {
	t.Helper()
	if dsn := os.Getenv(MySQLEnv); dsn != "" {
		return dsn
	}
	return mysqlContainer.get(t, MySQLEnv, func(ctx context.Context) (string, error) {
		url := func(host string, port network.Port) string {
			return fmt.Sprintf("root@tcp(%s:%s)/", host, port.Port())
		}
		c, err := testcontainers.Run(ctx, "mariadb:11.4",
			testcontainers.WithEnv(map[string]string{"MARIADB_ALLOW_EMPTY_ROOT_PASSWORD": "1"}),
			testcontainers.WithExposedPorts("3306/tcp"),
			testcontainers.WithWaitStrategy(wait.ForSQL("3306/tcp", "mysql", url).WithStartupTimeout(3*time.Minute)),
		)
		if err != nil {
			return "", err
		}
		host, err := c.Host(ctx)
		if err != nil {
			return "", err
		}
		port, err := c.MappedPort(ctx, "3306/tcp")
		if err != nil {
			return "", err
		}
		return url(host, port), nil
	})
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
