// Package sqlite is the SQLite implementation of backend.Backend, built on
// github.com/mattn/go-sqlite3 (cgo). It suits a single machine: one process,
// or several processes sharing one database file.
//
// # Opening
//
// Open opens a database file with WAL journaling, synchronous=NORMAL (FULL
// with Config.Synchronous, for commits that survive a power failure) and a
// busy timeout. It keeps two handles: a writer with a single connection whose
// transactions begin IMMEDIATE, through which every write goes, and a
// read-only pool for queries that need no transaction (GetRun, ListRuns,
// ListJobs, GetValue, StrandedDefinitions, Now). New wraps a handle you opened
// yourself and uses it for everything. Neither creates the schema: call
// Migrate, or print MigrationSQL and apply it yourself.
//
//	b, err := sqlite.Open("ductwork.db", nil)
//	if err != nil {
//		return err
//	}
//	defer b.Close(ctx)
//	if err := b.Migrate(ctx); err != nil {
//		return err
//	}
//
// # Transactions
//
// TriggerParams.Tx takes a *sql.Tx begun on DB(), so a run is created
// atomically with your own writes. Any other type is refused with
// backend.ErrUnsupportedTx.
//
// # Storage
//
// Times are integer unix microseconds taken from SQLite's own clock in SQL
// ('now' has millisecond resolution); durations from params are bound as
// integers and added in SQL, so no host clock decides whether a job is due or
// a process is stale. Claims are one UPDATE ... RETURNING in a write
// transaction: SQLite has a single writer, so claims are serialized rather
// than skipping locked rows (Capabilities.SkipLocked is false) and idle
// workers poll (Capabilities.Notify is false).
//
// The schema lives in embedded, numbered files (migrations/NNNN_name.sql).
// Migrate applies the missing ones under BEGIN IMMEDIATE and records each in
// ductwork_migrations, so concurrent Migrate calls from several processes are
// safe. It needs SQLite 3.42 or newer; the library bundled with the driver is.
//
// # Errors
//
// Driver errors are wrapped with the operation's name. The backend's
// sentinel errors (backend.ErrStaleClaim, backend.ErrRunNotFound, ...) match
// with errors.Is; so does backend.ErrClosed after Close or when the handle is
// closed.
package sqlite
