// Package ductwork runs durable, typed workflows inside your Go application,
// on your own relational database.
//
// A pipeline is a typed DAG of steps defined with package flow; steps are
// made with package step. A Client registers definitions and triggers runs;
// a supervisor (package supervisor) claims and executes their steps on
// goroutines it supervises. Every step and every state transition is written
// to the database before anything acts on it, so when a process, a host or
// the database goes away mid-flight, the work resumes from the last committed
// state — automatically, with no broker.
//
// Guarantees:
//   - A step's output is committed, together with the work that follows it,
//     in one transaction guarded by a fencing token: a process that lost its
//     claim (it was reaped while stalled) can change nothing.
//   - Steps run at least once. A step re-run after a crash sees the same
//     step.Context IdempotencyKey, and a crash never spends the step's retry
//     budget; errors and panics do.
//   - Joins (Collapse, Combine) fire exactly once, with inputs in order.
//   - "Is it due" and "is it stale" are decided by the database's clock.
//
// Backends: backend/sqlite (embedded, the default for getting started),
// backend/postgres and backend/mysql. Any backend can prove itself with the
// exported suite in backend/conformance.
package ductwork
