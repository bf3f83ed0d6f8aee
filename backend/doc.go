// Package backend defines the contract between Ductwork and a database: the
// Backend interface and the plain data types its methods exchange.
//
// It is the implementer-facing layer, in the way database/sql/driver is for
// database/sql. Users never call a Backend; they hand one to
// ductwork.NewClient. The package imports only the standard library.
//
// # Data model
//
// A run is one execution of a pipeline definition. A job is one step
// instance of a run: a node of the definition at a scope (its expansion
// path). Jobs are claimed with a fencing token, executed outside any
// transaction, and completed in one transaction that also applies the Plan of
// what follows: new jobs, joins to open and join arrivals. A join is a counter
// row; the completion that brings it to its expected count inserts the join's
// job in the same transaction, so joins fire exactly once.
//
// The conformance suite in package backend/conformance is this contract in
// executable form; a backend passes it to be correct.
package backend
