package fstree

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/hartonomous/hartvault/internal/repo"
)

const (
	stagingPrefix  = ".hartvault-restore-"
	replacedPrefix = ".hartvault-replaced-"
)

// ErrNotEmpty is returned when a restore target holds files and --force was not given.
var ErrNotEmpty = errors.New("target is not empty")

// Target is a restore destination. Files are written into a staging directory inside
// it, and moved into place only when everything is written and checked; Abort
// leaves the target as it was found.
type Target struct {
	dir      string
	staging  string
	created  bool // dir did not exist before
	force    bool
	exact    bool
	undoable bool
	replaced string   // with undoable: where Commit moved the entries it replaced
	placed   []string // entries Commit moved into place
}

// TargetOptions tune PrepareTarget.
type TargetOptions struct {
	// Force allows a non-empty target: the restored top-level entries replace those
	// of the same name.
	Force bool
	// Exact (with Force) makes the target hold only the restored entries: anything
	// else in it is removed on commit (a database directory must not keep strays).
	Exact bool
	// Undoable keeps what Commit replaces until Done, so that Undo can put the
	// target back as it was when what was restored fails a later step (a database
	// that does not recover).
	Undoable bool
}

// PrepareTarget checks dir and sets up its staging directory. A non-empty dir is
// refused unless opts.Force.
func PrepareTarget(dir string, opts TargetOptions) (*Target, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	t := &Target{dir: abs, force: opts.Force, exact: opts.Exact, undoable: opts.Undoable}
	info, err := os.Stat(abs)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(abs, 0o700); err != nil {
			return nil, fmt.Errorf("create target %s: %w", abs, err)
		}
		t.created = true
	case err != nil:
		return nil, fmt.Errorf("target %s: %w", abs, err)
	case !info.IsDir():
		return nil, fmt.Errorf("target %s is not a directory", abs)
	default:
		names, err := t.existing()
		if err != nil {
			return nil, err
		}
		if len(names) > 0 && !opts.Force {
			return nil, fmt.Errorf("%w: %s holds %d entries (use --force to overwrite)", ErrNotEmpty, abs, len(names))
		}
	}
	t.staging, err = os.MkdirTemp(abs, stagingPrefix)
	if err != nil {
		t.Abort()
		return nil, fmt.Errorf("create staging directory in %s: %w", abs, err)
	}
	return t, nil
}

// existing lists the target's entries, removing staging directories left by a
// restore that was killed.
func (t *Target) existing() ([]string, error) {
	des, err := os.ReadDir(t.dir)
	if err != nil {
		return nil, fmt.Errorf("read target %s: %w", t.dir, err)
	}
	var names []string
	for _, de := range des {
		if strings.HasPrefix(de.Name(), stagingPrefix) {
			if p := filepath.Join(t.dir, de.Name()); p != t.staging {
				os.RemoveAll(p)
			}
			continue
		}
		if p := filepath.Join(t.dir, de.Name()); p == t.replaced {
			continue
		}
		names = append(names, de.Name())
	}
	return names, nil
}

// Dir is the final target directory.
func (t *Target) Dir() string { return t.dir }

// Staging is where files are written before Commit.
func (t *Target) Staging() string { return t.staging }

// Commit moves the staged entries into the target.
func (t *Target) Commit() error {
	staged, err := os.ReadDir(t.staging)
	if err != nil {
		return err
	}
	if t.force {
		keep := map[string]bool{}
		for _, de := range staged {
			keep[de.Name()] = true
		}
		names, err := t.existing()
		if err != nil {
			return err
		}
		for _, n := range names {
			if !keep[n] && !t.exact {
				continue
			}
			p := filepath.Join(t.dir, n)
			if t.undoable {
				if t.replaced == "" {
					if t.replaced, err = os.MkdirTemp(t.dir, replacedPrefix); err != nil {
						return fmt.Errorf("set aside what %s holds: %w", t.dir, err)
					}
				}
				if err := os.Rename(p, filepath.Join(t.replaced, n)); err != nil {
					return fmt.Errorf("set aside %s: %w", p, err)
				}
				continue
			}
			if err := os.RemoveAll(p); err != nil {
				return fmt.Errorf("replace %s: %w", p, err)
			}
		}
	}
	for _, de := range staged {
		if err := os.Rename(filepath.Join(t.staging, de.Name()), filepath.Join(t.dir, de.Name())); err != nil {
			return fmt.Errorf("move restored %s into place: %w", de.Name(), err)
		}
		t.placed = append(t.placed, de.Name())
	}
	if err := os.Remove(t.staging); err != nil {
		return err
	}
	return syncDir(t.dir)
}

// Done forgets what an undoable Commit replaced: the restore stands.
func (t *Target) Done() error {
	if t.replaced == "" {
		return nil
	}
	err := os.RemoveAll(t.replaced)
	t.replaced = ""
	return err
}

// Undo, after Commit, takes out what was restored (with Exact: everything the
// target holds now) and puts back what it replaced. Without Undoable, what was
// replaced is gone.
func (t *Target) Undo() error {
	var errs []error
	remove := t.placed
	if t.exact {
		// Whatever is there now: a started database adds files of its own.
		names, err := t.existing()
		if err != nil {
			return err
		}
		remove = names
	}
	for _, n := range remove {
		if err := os.RemoveAll(filepath.Join(t.dir, n)); err != nil {
			errs = append(errs, err)
		}
	}
	t.placed = nil
	if t.replaced != "" {
		des, err := os.ReadDir(t.replaced)
		if err != nil {
			errs = append(errs, err)
		}
		for _, de := range des {
			if err := os.Rename(filepath.Join(t.replaced, de.Name()), filepath.Join(t.dir, de.Name())); err != nil {
				errs = append(errs, err)
			}
		}
		if len(errs) == 0 {
			errs = append(errs, os.Remove(t.replaced))
		}
		t.replaced = ""
	}
	if t.created && len(errs) == 0 {
		errs = append(errs, os.Remove(t.dir))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("put %s back as it was: %w", t.dir, err)
	}
	return nil
}

// Abort removes everything the restore wrote.
func (t *Target) Abort() {
	if t.staging != "" {
		os.RemoveAll(t.staging)
	}
	if t.created {
		os.Remove(t.dir)
	}
}

// Writer writes manifest files into a directory. WriteExtent is safe for concurrent
// use. A file is cut to its size and synced to disk as soon as its last extent is
// written, in the background, so the disk flushes while later files are decoded.
type Writer struct {
	root    string
	bufs    sync.Pool
	mu      sync.Mutex
	pending map[*repo.File]int // extents not yet written, per file
	syncq   chan *repo.File
	syncwg  sync.WaitGroup
	syncErr error
}

// NewWriter writes under root (usually a Target's staging directory).
func NewWriter(root string) *Writer {
	w := &Writer{root: root, pending: map[*repo.File]int{}}
	w.bufs.New = func() any { b := make([]byte, 1<<20); return &b }
	return w
}

func (w *Writer) abs(p string) string { return filepath.Join(w.root, filepath.FromSlash(p)) }

// Prepare creates directories and regular files at their final sizes, so extents
// can be written into them in any order.
func (w *Writer) Prepare(files []*repo.File) error {
	for _, f := range files {
		if !ValidPath(f.Path) {
			return fmt.Errorf("manifest holds an unsafe path %q: refusing to restore it", f.Path)
		}
		if f.Type == repo.TypeRegular && len(f.Extents) > 0 {
			w.pending[f] = len(f.Extents)
		}
	}
	w.syncq = make(chan *repo.File, 64)
	for i := 0; i < 2; i++ {
		w.syncwg.Add(1)
		go func() {
			defer w.syncwg.Done()
			for f := range w.syncq {
				if err := w.complete(f); err != nil {
					w.mu.Lock()
					if w.syncErr == nil {
						w.syncErr = err
					}
					w.mu.Unlock()
				}
			}
		}()
	}
	for _, f := range files {
		p := w.abs(f.Path)
		switch f.Type {
		case repo.TypeDir:
			if err := os.MkdirAll(p, 0o700); err != nil {
				return err
			}
		case repo.TypeRegular:
			if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
				return err
			}
			fh, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
			if err != nil {
				return err
			}
			err = fh.Truncate(f.Size)
			if cerr := fh.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("create %s: %w", p, err)
			}
		}
	}
	return nil
}

// WriteExtent writes one extent's bytes at its offset.
func (w *Writer) WriteExtent(f *repo.File, e repo.Extent, data io.Reader) error {
	p := w.abs(f.Path)
	fh, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("restore %s: %w", f.Path, err)
	}
	buf := w.bufs.Get().(*[]byte)
	_, err = io.CopyBuffer(io.NewOffsetWriter(fh, e.Offset), data, *buf)
	w.bufs.Put(buf)
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("restore %s: %w", f.Path, err)
	}
	w.mu.Lock()
	w.pending[f]--
	done := w.pending[f] == 0
	w.mu.Unlock()
	if done {
		w.syncq <- f
	}
	return nil
}

// complete cuts a fully written file to its size (a base extent may reach past the
// end of a file that shrank) and syncs it.
func (w *Writer) complete(f *repo.File) error {
	p := w.abs(f.Path)
	fh, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("restore %s: %w", f.Path, err)
	}
	defer fh.Close()
	if info, err := fh.Stat(); err == nil && info.Size() != f.Size {
		if err := fh.Truncate(f.Size); err != nil {
			return fmt.Errorf("restore %s: %w", f.Path, err)
		}
	}
	if err := fh.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", f.Path, err)
	}
	return nil
}

// drain waits for the background syncs.
func (w *Writer) drain() error {
	if w.syncq != nil {
		close(w.syncq)
		w.syncwg.Wait()
		w.syncq = nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for f, left := range w.pending {
		if left > 0 {
			return fmt.Errorf("restore %s: %d extents were not written", f.Path, left)
		}
	}
	return w.syncErr
}

// Finish waits until every file is cut to size and synced, then applies symlinks,
// modes, owners and times. Directories are finished deepest first, so setting a
// file's time does not disturb its directory's.
func (w *Writer) Finish(ctx context.Context, files []*repo.File) error {
	if err := w.drain(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	var dirs []*repo.File
	for _, f := range files {
		p := w.abs(f.Path)
		switch f.Type {
		case repo.TypeSymlink:
			if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
				return err
			}
			if err := os.Symlink(filepath.FromSlash(f.Link), p); err != nil {
				return fmt.Errorf("restore symlink %s: %w", f.Path, err)
			}
			if err := restoreOwner(p, f.Owner); err != nil {
				return fmt.Errorf("restore owner of %s: %w", f.Path, err)
			}
		case repo.TypeRegular:
			if err := applyMeta(p, f); err != nil {
				return err
			}
		case repo.TypeDir:
			dirs = append(dirs, f)
		}
	}
	sort.Slice(dirs, func(i, j int) bool {
		return strings.Count(dirs[i].Path, "/") > strings.Count(dirs[j].Path, "/")
	})
	for _, d := range dirs {
		p := w.abs(d.Path)
		if err := syncDir(p); err != nil {
			return err
		}
		if err := applyMeta(p, d); err != nil {
			return err
		}
	}
	return syncDir(w.root)
}

func applyMeta(p string, f *repo.File) error {
	if err := restoreOwner(p, f.Owner); err != nil {
		return fmt.Errorf("restore owner of %s: %w", f.Path, err)
	}
	if err := os.Chmod(p, f.Mode); err != nil {
		return fmt.Errorf("restore mode of %s: %w", f.Path, err)
	}
	if err := os.Chtimes(p, f.ModTime, f.ModTime); err != nil {
		return fmt.Errorf("restore time of %s: %w", f.Path, err)
	}
	return nil
}

// Parents returns the manifest directories that must exist for p ("a/b/c" -> a, a/b).
func Parents(p string) []string {
	var out []string
	for d := path.Dir(p); d != "." && d != "/"; d = path.Dir(d) {
		out = append(out, d)
	}
	return out
}

// RestoreFiles writes files of backup m under dir: creates them, streams their
// content out of the repository (hashes checked), then syncs and applies metadata.
func RestoreFiles(ctx context.Context, r *repo.Repo, m *repo.Manifest, files []*repo.File, dir string, progress func(int64)) error {
	w := NewWriter(dir)
	if err := w.Prepare(files); err != nil {
		return err
	}
	if err := r.ReadFiles(ctx, m, files, progress, w.WriteExtent); err != nil {
		w.drain()
		return err
	}
	return w.Finish(ctx, files)
}
