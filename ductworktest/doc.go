// Package ductworktest tests pipelines and steps like ordinary Go code.
//
// Run executes a pipeline to completion inside go test, on a private
// in-memory SQLite database with a real supervisor, and returns the typed
// output and a Report of every step instance (status, attempts, crash
// re-runs, output):
//
//	out, report := ductworktest.Run(t, Enrich, 7)
//
// Faults are injected by step name — Fail, Panic, Crash, Delay — so retry,
// halt and recovery paths can be tested without touching the steps:
//
//	herr, report := ductworktest.Halt(t, Enrich, 7, ductworktest.Fail("load-user", ductworktest.Always))
//
// For several runs, or to revive a halted one, use New and Start. To test one
// step without any database, call its Execute with a StepContext from
// NewContext.
package ductworktest
