// Package crashpoint kills the process at named points, for crash tests.
//
// Code calls Hit("name") at a point where a crash matters. The points are
// compiled in only under the build tag ductwork_crashpoints; without it Hit
// is an empty function the compiler removes and Enabled is always false, so
// a program built as usual carries no test switch:
//
//	go build -tags ductwork_crashpoints ./cmd/ductwork-chaos
//	go test -tags ductwork_crashpoints -run CrashPoint ./...
//
// With the tag, Hit does nothing unless the environment variable
// DUCTWORK_CRASHPOINT (read once, at start-up) names that point; then it
// kills its own process with SIGKILL, as abruptly as a power cut: no deferred
// functions, no flushing, no goodbye to the database.
//
//	DUCTWORK_CRASHPOINT=after-claim ductwork-chaos ...
package crashpoint

// EnvVar names the crash point to die at.
const EnvVar = "DUCTWORK_CRASHPOINT"

// The points placed in the engine.
const (
	// AfterClaim: a claimed job reached the engine, before its step ran.
	AfterClaim = "after-claim"
	// AfterStepBeforeCommit: the step returned; its result is not committed.
	AfterStepBeforeCommit = "after-step-before-commit"
	// AfterCommit: the result was committed; the process has not acted on it.
	AfterCommit = "after-commit"
)

// The points placed inside the backends' transactions. Where a backend
// sends a transaction as one pipelined batch or one statement (PostgreSQL),
// the point is after the whole transaction was sent and before its reply
// was read: the server may commit it without the client.
const (
	// CompleteTx: inside the completion transaction, after the job was
	// marked completed, before the commit.
	CompleteTx = "complete-tx"
	// FanoutInsert: inside the completion transaction, after the jobs that
	// follow (an expansion's elements) were inserted, before the commit.
	FanoutInsert = "fanout-insert"
	// JoinUpdate: inside the completion transaction, after the arrival at
	// a join was counted, before the commit.
	JoinUpdate = "join-update"
	// ReapTx: inside the reaper's transaction, after the stale process's
	// jobs were released, before the commit.
	ReapTx = "reap-tx"
	// MigrateTx: inside a migration, after its statements ran, before its
	// version was recorded.
	MigrateTx = "migrate-tx"
)

// Backend lists the points inside the backends' transactions.
var Backend = []string{CompleteTx, FanoutInsert, JoinUpdate, ReapTx, MigrateTx}
