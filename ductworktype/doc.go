// Package ductworktype holds the types a program names when it inspects runs
// or observes the library's work: run and step statuses, and the hook
// interfaces with the values they receive. It imports only the standard
// library, so a third-party package (a tracer, a metrics exporter, a test
// helper) can implement a hook or switch on a status without importing the
// client or a backend.
//
// Package ductwork re-exports the statuses as aliases; most programs use
// those names (ductwork.RunCompleted) and need this package only to write a
// hook.
package ductworktype
