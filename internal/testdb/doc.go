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
// When a variable is unset and a Docker engine may be reachable (DOCKER_HOST
// is set, or a Docker socket exists), the helper starts the database once
// per test binary with `go run` of the command in ./dbcontainer, a module of
// its own that holds testcontainers-go, so the library's module does not
// require it. The command prints the server's DSN and keeps the container
// until its standard input closes, that is until the test binary exits.
// Otherwise, or when the command finds no engine answering, the test is
// skipped with a message naming the variable to set.
//
// The package is imported only by tests.
package testdb
