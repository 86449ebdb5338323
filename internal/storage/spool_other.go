//go:build !linux

package storage

import "os"

// anonymousTemp is not available here: spool files get a name.
func anonymousTemp(dir string) (*os.File, bool) { return nil, false }
