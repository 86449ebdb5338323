//go:build unix

package storage

import (
	"errors"
	"os"
	"syscall"
)

// syncDir makes directory entries durable (a rename or link is not, until its
// directory is synced). Filesystems that cannot sync directories say EINVAL or
// ENOTSUP; there is nothing more to do on those.
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOTSUP) {
		return nil
	}
	return err
}
