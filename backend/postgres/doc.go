// Package postgres is the PostgreSQL backend of Ductwork, built on pgx v5.
//
// Create it from a *pgxpool.Pool that you own, then migrate explicitly:
//
//	pool, err := pgxpool.New(ctx, "postgres://...")
//	// handle err; defer pool.Close()
//	b, err := postgres.New(pool, &postgres.Config{Schema: "jobs"})
//	// handle err
//	if err := b.Migrate(ctx); err != nil { ... }
//
// New does no I/O and Close never closes the pool.
//
// # Schema
//
// All tables (ductwork_runs, ductwork_jobs, ductwork_joins,
// ductwork_processes, ductwork_values, ductwork_migrations) live in
// Config.Schema, "public" by default, so several applications can share one
// database. The migrations are embedded, numbered SQL files; Migrate applies
// the missing ones under pg_advisory_xact_lock and records their versions,
// and MigrationSQL prints them for review. All timestamps are timestamptz set
// from the database's clock.
//
// # Concurrency
//
// Claims are one UPDATE over a FOR UPDATE SKIP LOCKED subquery, so many
// workers claim in parallel without blocking one another. Completions are
// fenced by the claim's token, with their statements pipelined in one batch;
// concurrent completions of one Backend share a transaction (group commit),
// those that only end their run in one statement, and so do concurrent
// triggers made without a transaction of the caller's. Fan-outs are inserted
// from arrays in one statement. Joins are counter rows updated under their row lock; the arrival
// that reaches the expected count inserts the join's job, so it fires once.
//
// # Notifications
//
// Backend implements backend.Notifier with LISTEN/NOTIFY on a channel named
// after the schema. Operations that make jobs due call pg_notify in their own
// transaction, after their commit, so a listener wakes only after the commit;
// under a steady stream of commits one Backend sends at most one NOTIFY per
// 2 ms, covering the commits meanwhile.
//
// # Transactions
//
// TriggerParams.Tx accepts a pgx.Tx (including *pgxpool.Tx): the run is
// inserted in the caller's transaction and exists only if it commits.
package postgres
