// Package fstree turns directory trees into manifest entries and back: scanning with
// excludes, and restoring into a target through a staging directory so a failed
// restore leaves the target as it was. Engines that back up files (file sets,
// PostgreSQL data directories) share it.
package fstree

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/hartonomous/hartvault/internal/repo"
)

// Root is one path to capture; its entries are named Name/... in the manifest.
type Root struct {
	Path string // filesystem path
	Name string // slash name in the manifest ("" puts the root's children at the top)
}

// Entry is a scanned file: its manifest record (without extents) and where it lives.
type Entry struct {
	repo.File
	Abs string
}

// Skipped is a file the scan left out, and why.
type Skipped struct {
	Path   string
	Reason string
}

// ScanOptions tune a scan.
type ScanOptions struct {
	// Exclude holds glob patterns (path.Match syntax) matched against each entry's
	// base name and against its slash path relative to its root.
	Exclude []string
	// Skip, when set, is asked about every entry; true leaves it (and, for a
	// directory, everything under it) out. rel is relative to the root.
	Skip func(rel string, d fs.DirEntry) bool
}

// Scan walks the roots and returns their entries sorted by manifest path. Files that
// cannot be captured (sockets, devices) are reported in skipped, not failed on.
func Scan(ctx context.Context, roots []Root, opts ScanOptions) (entries []Entry, skipped []Skipped, err error) {
	for _, root := range roots {
		info, err := os.Lstat(root.Path)
		if err != nil {
			return nil, nil, fmt.Errorf("scan %s: %w", root.Path, err)
		}
		if !info.IsDir() {
			e, ok, why := entryFor(root.Path, root.Name, info)
			if !ok {
				skipped = append(skipped, Skipped{root.Path, why})
				continue
			}
			entries = append(entries, e)
			continue
		}
		err = filepath.WalkDir(root.Path, func(p string, d fs.DirEntry, werr error) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			if werr != nil {
				return fmt.Errorf("scan %s: %w", p, werr)
			}
			rel, err := filepath.Rel(root.Path, p)
			if err != nil {
				return err
			}
			rel = filepath.ToSlash(rel)
			if rel != "." {
				if excluded(opts.Exclude, rel) || (opts.Skip != nil && opts.Skip(rel, d)) {
					if d.IsDir() {
						return filepath.SkipDir
					}
					return nil
				}
			}
			name := root.Name
			if rel != "." {
				name = path.Join(root.Name, rel)
			}
			if name == "" {
				return nil // the root itself when its children go to the top
			}
			info, err := d.Info()
			if err != nil {
				return fmt.Errorf("scan %s: %w", p, err)
			}
			e, ok, why := entryFor(p, name, info)
			if !ok {
				skipped = append(skipped, Skipped{p, why})
				return nil
			}
			entries = append(entries, e)
			return nil
		})
		if err != nil {
			return nil, nil, err
		}
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Path < entries[j].Path })
	for i := 1; i < len(entries); i++ {
		if entries[i].Path == entries[i-1].Path {
			return nil, nil, fmt.Errorf("two paths map to %q in the backup: %s and %s", entries[i].Path, entries[i-1].Abs, entries[i].Abs)
		}
	}
	return entries, skipped, nil
}

func excluded(patterns []string, rel string) bool {
	base := path.Base(rel)
	for _, p := range patterns {
		if ok, _ := path.Match(p, base); ok {
			return true
		}
		if ok, _ := path.Match(p, rel); ok {
			return true
		}
	}
	return false
}

func entryFor(abs, name string, info fs.FileInfo) (Entry, bool, string) {
	f := repo.File{Path: name, Mode: info.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky), ModTime: info.ModTime().UTC()}
	f.Owner = ownerOf(info)
	switch {
	case info.Mode().IsRegular():
		f.Type = repo.TypeRegular
		f.Size = info.Size()
	case info.IsDir():
		f.Type = repo.TypeDir
	case info.Mode()&fs.ModeSymlink != 0:
		target, err := os.Readlink(abs)
		if err != nil {
			return Entry{}, false, "unreadable symlink: " + err.Error()
		}
		f.Type = repo.TypeSymlink
		f.Link = filepath.ToSlash(target)
	default:
		return Entry{}, false, "not a regular file, directory or symlink (" + info.Mode().Type().String() + ")"
	}
	return Entry{File: f, Abs: abs}, true, ""
}

// ValidPath reports whether a manifest path is safe to restore under a target:
// relative, clean, and never climbing out.
func ValidPath(p string) bool {
	if p == "" || strings.HasPrefix(p, "/") || strings.Contains(p, "\\") || path.Clean(p) != p {
		return false
	}
	return p != ".." && !strings.HasPrefix(p, "../")
}
