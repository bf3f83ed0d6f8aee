// Package readmodel is the query side of Ductwork's window (the ductwork
// command and package dashboard): runs listed and filtered by pipeline,
// status, time and error text with keyset pagination, one run's steps, the
// processes, and the stored definitions with their stranded runs.
//
// It is built on github.com/uptrace/bun, which composes each listing's
// filters at run time in the dialect of the database (PostgreSQL, MySQL or
// MariaDB, SQLite). It only reads: actions go through ductwork.Client, and
// the hot path of the backends keeps its own hand-written SQL. Every listing
// query is served by an index of the schema (see the migrations).
//
// A Store takes a *sql.DB the caller opened with the driver of its choice
// (pgx's stdlib, go-sql-driver/mysql, mattn/go-sqlite3) and does nothing
// else: no connection, no migration.
package readmodel
