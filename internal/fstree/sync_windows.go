//go:build windows

package fstree

// syncDir is a no-op: Windows cannot fsync a directory; NTFS journals its metadata.
func syncDir(string) error { return nil }
