//go:build linux

package supervisor

import (
	"fmt"
	"syscall"
)

// childAttr puts a child in a process group of its own (a terminal's
// Ctrl-C reaches the parent, which stops its children gracefully) and has
// the kernel send it SIGTERM when the parent dies, however it dies.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}

// readRSS returns the resident set size of process pid, in bytes.
func readRSS(pid int) (int64, error) { return readRSSFile(fmt.Sprintf("/proc/%d/status", pid)) }
