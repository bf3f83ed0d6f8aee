// Package mysql is the MySQL and MariaDB implementation of backend.Backend,
// on database/sql with the github.com/go-sql-driver/mysql driver.
//
// It needs MySQL 8.0.1+ or MariaDB 10.8+ (FOR UPDATE SKIP LOCKED and
// descending indexes) with InnoDB.
//
// # Use
//
//	db, err := sql.Open("mysql", "user:pass@tcp(host:3306)/app")
//	...
//	b, err := mysql.New(db, nil) // no I/O
//	err = b.Migrate(ctx)          // creates or upgrades the ductwork_ tables
//
// New does no I/O and never closes db; Close only marks the Backend closed.
// Migrate applies the embedded, numbered migrations under a GET_LOCK named
// after the database, so several processes may call it at once;
// MigrationSQL prints the same SQL.
//
// # DSN
//
// The DSN must name the database that holds the schema. It needs no other
// setting: the statements are run one by one (no multiStatements), and
// times are stored as BIGINT unix microseconds computed in SQL from
// UTC_TIMESTAMP(6), the database's clock, so parseTime, loc and the session
// time zone cannot change what is stored or compared, and the host's clock is
// never consulted. Every time returned is in UTC. clientFoundRows does not
// matter either: every guarded UPDATE changes a column. interpolateParams
// makes no measurable difference (statements with arguments are prepared once
// per connection and reused) and is safe with this backend.
//
// # Semantics
//
// Claims select due jobs with FOR UPDATE SKIP LOCKED in claim-index order and
// mark them in the same READ COMMITTED transaction, so concurrent claimers
// never wait for each other or take the same job. Every write to a claimed
// job is fenced by its token and owner and returns backend.ErrStaleClaim when
// they no longer match. A completion, with all the jobs, join rows and
// arrivals of its plan, is one transaction; a fan-out is inserted with
// multi-row INSERTs. A transaction that hits a deadlock (1213) or a lock wait
// timeout (1205) is rerun as a whole after a short randomized backoff
// (Config.TxRetries). Trigger can join a caller's *sql.Tx.
//
// # Group commit
//
// Concurrent completions through one Backend share a transaction and its
// commit. Within it, those whose plans are simple (new jobs without waits, an
// arrival at a join, the run's end, but no join to open and nothing to
// settle) are applied as a set: one UPDATE of their jobs, one multi-row
// INSERT of their new jobs, a few statements for their arrivals and their
// runs, whatever their number; the others one after another, in two or more
// statements each. A stale claim fails its completion at its first statement,
// having changed nothing, and the others go on; any other failure part-way
// (a stale claim within a set, an arrival at a missing join) rolls the group
// back and applies its completions one per transaction, so that only the
// failing one fails. New jobs and arrivals are applied as a set on MariaDB
// 10.5 and later only (INSERT ... RETURNING, detected when a process
// registers), and not on a Galera node; MySQL and Galera apply them one
// completion at a time, with the same results.
//
// Capabilities: SkipLocked, no Notify (workers poll), microsecond
// timestamps.
//
// # Errors
//
// The sentinels of package backend are returned wrapped (use errors.Is). A
// closed *sql.DB or *sql.Conn maps to backend.ErrClosed. Values longer than
// their column are refused before any write with *TooLongError; identifiers
// (pipeline, fingerprint, node ID, scope, process ID, host, context key) are
// stored as VARBINARY(255) and compared byte for byte.
package mysql
