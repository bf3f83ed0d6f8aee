//go:build unix

package supervisor

import (
	"os"
	"syscall"
)

const processesSupported = true

// inheritedFile opens a pipe inherited from the parent, closed on exec.
func inheritedFile(fd int, name string) *os.File {
	syscall.CloseOnExec(fd)
	return os.NewFile(uintptr(fd), name)
}
