//go:build !unix

package storage

// syncDir is a no-op where a directory cannot be synced through an ordinary
// file handle (Windows: NTFS journals the rename itself).
func syncDir(string) error { return nil }
