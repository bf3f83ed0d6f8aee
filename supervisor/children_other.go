//go:build !unix

package supervisor

import (
	"errors"
	"os"
	"syscall"
)

const processesSupported = false

func inheritedFile(fd int, name string) *os.File { return os.NewFile(uintptr(fd), name) }

func childAttr() *syscall.SysProcAttr { return nil }

func readRSS(int) (int64, error) { return 0, errors.New("reading a process's RSS needs Linux's /proc") }
