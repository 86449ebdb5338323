//go:build linux

package storage

import (
	"os"

	"golang.org/x/sys/unix"
)

// anonymousTemp creates a file with no name in dir (O_TMPFILE): nothing is left
// behind whenever the process dies. ok is false where the filesystem cannot.
func anonymousTemp(dir string) (*os.File, bool) {
	f, err := os.OpenFile(dir, os.O_RDWR|unix.O_TMPFILE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, false
	}
	return f, true
}
