//go:build unix && !linux

package supervisor

import (
	"errors"
	"syscall"
)

// childAttr puts a child in a process group of its own. Without Pdeathsig
// a child notices its parent's death by the EOF of its lifeline pipe.
func childAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

func readRSS(int) (int64, error) { return 0, errors.New("reading a process's RSS needs Linux's /proc") }
