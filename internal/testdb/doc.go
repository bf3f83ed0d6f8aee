// Package testdb gives each test its own, disposable database storage for the
// Ductwork backends: a file under t.TempDir() for SQLite, a fresh schema for
// PostgreSQL and a fresh database for MySQL/MariaDB. Everything it creates is
// dropped with t.Cleanup.
//
// The server databases come from the environment:
//
//	DUCTWORK_TEST_POSTGRES_DSN  e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable
//	DUCTWORK_TEST_MYSQL_DSN     e.g. root@tcp(127.0.0.1:3306)/
//
// When a variable is unset and a Docker engine is reachable, the helper
// starts the database once per test binary with testcontainers-go (removed
// by its reaper when the binary exits). Otherwise the test is skipped with a
// message naming the variable to set.
//
// The package is imported only by tests.
package testdb
