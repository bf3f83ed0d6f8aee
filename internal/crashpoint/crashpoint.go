// Package crashpoint kills the process at named points, for crash tests.
//
// Code calls Hit("name") at a point where a crash matters. Hit does nothing
// unless the environment variable DUCTWORK_CRASHPOINT (read once, at
// start-up) names that point; then it kills its own process with SIGKILL, as
// abruptly as a power cut: no deferred functions, no flushing, no goodbye to
// the database.
//
//	DUCTWORK_CRASHPOINT=after-claim ductwork-chaos ...
package crashpoint

import (
	"os"
	"syscall"
	"time"
)

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

var armed = os.Getenv(EnvVar)

// Enabled reports whether the process dies at name.
func Enabled(name string) bool { return armed != "" && armed == name }

// Hit kills the process with SIGKILL if DUCTWORK_CRASHPOINT names this point;
// otherwise it does nothing (one string comparison).
func Hit(name string) {
	if armed == "" || armed != name {
		return
	}
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	// The signal is delivered asynchronously; never run past the point.
	for {
		time.Sleep(time.Hour)
	}
}
