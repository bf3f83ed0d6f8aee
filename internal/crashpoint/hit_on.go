//go:build ductwork_crashpoints

package crashpoint

import (
	"os"
	"syscall"
	"time"
)

// Compiled reports whether the crash points are compiled in.
const Compiled = true

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
