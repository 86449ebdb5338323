package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"
)

const (
	// tmpDirName holds files being written, on the same filesystem as the
	// objects so that publishing them is a rename or a link.
	tmpDirName = ".tmp"
	// staleTempAge is how old a temp file must be before NewLocal deletes it as
	// left over by a killed process. A live writer keeps its file's mtime fresh.
	staleTempAge = time.Hour
	dirPerm      = 0o700
	// publishAttempts bounds the retries of a publish that lost a race with
	// Delete removing an empty parent directory.
	publishAttempts = 10
)

// Local is a Driver over a directory on a local (or mounted) filesystem. Every
// write goes to a temp file under <root>/.tmp, is fsynced, and is then
// published with a rename (or a hard link for IfNotExist, which fails if the
// name exists, atomically across processes), followed by an fsync of the
// directories involved. Readers therefore never see a partial object, and a
// crash leaves at most a stale temp file behind.
//
// Keys are file paths under root, so a key cannot also be a "directory" of
// other keys ("a" and "a/b" cannot both exist), and on case-insensitive
// filesystems keys that differ only in case collide.
type Local struct {
	root string // absolute and clean
	tmp  string
}

var (
	_ Driver       = (*Local)(nil)
	_ StreamDriver = (*Local)(nil)
)

// NewLocal returns a driver for the directory root. It does not create root
// (see Create), so that a missing mount shows up as an error instead of
// writes going to the empty mount point. It removes temp files older than an
// hour that a killed process left in <root>/.tmp.
func NewLocal(root string) (*Local, error) {
	if root == "" {
		return nil, errors.New("local storage: empty root path")
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("local storage %s: %w", root, err)
	}
	l := &Local{root: abs, tmp: filepath.Join(abs, tmpDirName)}
	l.removeStaleTemps(time.Now().Add(-staleTempAge))
	return l, nil
}

// Root returns the absolute root directory.
func (l *Local) Root() string { return l.root }

// String implements Driver.
func (l *Local) String() string { return l.root }

// Close implements Driver.
func (l *Local) Close() error { return nil }

// Create makes the root directory (and its parents) if missing.
func (l *Local) Create(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := os.MkdirAll(l.root, dirPerm); err != nil {
		return l.errorf("create", "", err)
	}
	return nil
}

// removeStaleTemps is best effort: a failure here only leaves garbage behind.
func (l *Local) removeStaleTemps(cutoff time.Time) {
	entries, err := os.ReadDir(l.tmp)
	if err != nil {
		return
	}
	for _, e := range entries {
		info, err := e.Info()
		if err != nil || info.IsDir() || !info.ModTime().Before(cutoff) {
			continue
		}
		_ = os.Remove(filepath.Join(l.tmp, e.Name()))
	}
}

func (l *Local) errorf(op, key string, err error) error {
	if key == "" {
		return fmt.Errorf("local storage %s: %s: %w", l.root, op, err)
	}
	return fmt.Errorf("local storage %s: %s %q: %w", l.root, op, key, err)
}

// checkKey adds the local driver's own rules to the common ones.
func (l *Local) checkKey(key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if key == tmpDirName || strings.HasPrefix(key, tmpDirName+"/") {
		return fmt.Errorf("invalid key %q: %s/ is reserved for files being written", key, tmpDirName)
	}
	if runtime.GOOS == "windows" {
		if p := windowsNameProblem(key); p != "" {
			return fmt.Errorf("invalid key %q: %s", key, p)
		}
	}
	return nil
}

func (l *Local) path(key string) string {
	return filepath.Join(l.root, filepath.FromSlash(key))
}

func isNotExist(err error) bool {
	// ENOTDIR: a parent "directory" of the key is a file, so the key cannot exist.
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

// Put implements Driver.
func (l *Local) Put(ctx context.Context, key string, body io.Reader, size int64, opts PutOptions) error {
	if size < 0 {
		return l.errorf("put", key, fmt.Errorf("invalid size %d", size))
	}
	w, err := l.newWriter(ctx, key, opts)
	if err != nil {
		return err
	}
	n, err := io.CopyN(w.f, ctxReader{ctx: ctx, r: body}, size)
	if err != nil {
		_ = w.Abort()
		if errors.Is(err, io.EOF) {
			err = fmt.Errorf("body ended after %d of %d bytes", n, size)
		}
		return l.errorf("put", key, err)
	}
	return w.Commit()
}

// NewWriter implements StreamDriver.
func (l *Local) NewWriter(ctx context.Context, key string, opts PutOptions) (ObjectWriter, error) {
	return l.newWriter(ctx, key, opts)
}

func (l *Local) newWriter(ctx context.Context, key string, opts PutOptions) (*localWriter, error) {
	if err := l.checkKey(key); err != nil {
		return nil, l.errorf("put", key, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, l.errorf("put", key, err)
	}
	f, err := l.createTemp()
	if err != nil {
		return nil, l.errorf("put", key, err)
	}
	return &localWriter{l: l, ctx: ctx, key: key, excl: opts.IfNotExist, f: f}, nil
}

func (l *Local) createTemp() (*os.File, error) {
	f, err := os.CreateTemp(l.tmp, "put-*")
	if err == nil || !isNotExist(err) {
		return f, err
	}
	// Mkdir, not MkdirAll: the root itself must already exist.
	if err := os.Mkdir(l.tmp, dirPerm); err != nil && !errors.Is(err, fs.ErrExist) {
		if isNotExist(err) {
			return nil, fmt.Errorf("root directory %s does not exist (the repository was not created, or its disk is not mounted): %w", l.root, err)
		}
		return nil, err
	}
	return os.CreateTemp(l.tmp, "put-*")
}

// publish moves the complete, synced temp file to key's path.
func (l *Local) publish(tmp, key string, excl bool) error {
	final := l.path(key)
	dir := filepath.Dir(final)
	for attempt := 1; ; attempt++ {
		created, err := l.mkdirs(dir)
		if err == nil {
			if excl {
				err = os.Link(tmp, final)
			} else {
				err = os.Rename(tmp, final)
			}
			if err == nil {
				return syncDirs(dir, created)
			}
			if errors.Is(err, fs.ErrExist) {
				if fi, serr := os.Lstat(final); serr == nil && fi.IsDir() {
					return fmt.Errorf("key is a directory of other keys: %w", err)
				}
				if excl {
					return ErrExists
				}
			}
		}
		// A concurrent Delete may remove an empty parent directory between our
		// mkdirs and the link/rename (or within mkdirs): create it again. Each
		// retry needs a new race to lose, so a few attempts are plenty.
		if attempt < publishAttempts && isNotExist(err) {
			continue
		}
		return err
	}
}

// mkdirs creates dir and its missing parents below root, returning the
// directories it created (outermost first) so that their parents get synced.
func (l *Local) mkdirs(dir string) ([]string, error) {
	var missing []string
	for d := dir; d != l.root; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err == nil {
			if !fi.IsDir() {
				return nil, fmt.Errorf("%s is an object, not a directory", d)
			}
			break
		}
		if !isNotExist(err) {
			return nil, err
		}
		missing = append(missing, d)
		if filepath.Dir(d) == d {
			break
		}
	}
	var created []string
	for i := len(missing) - 1; i >= 0; i-- {
		err := os.Mkdir(missing[i], dirPerm)
		if err == nil {
			created = append(created, missing[i])
		} else if !errors.Is(err, fs.ErrExist) {
			return created, err
		}
	}
	return created, nil
}

// syncDirs makes the new entry in dir, and the entries of created directories
// in their parents, durable.
func syncDirs(dir string, created []string) error {
	seen := make(map[string]bool, len(created)+1)
	for _, c := range created {
		p := filepath.Dir(c)
		if !seen[p] {
			seen[p] = true
			if err := syncDir(p); err != nil {
				return err
			}
		}
	}
	if !seen[dir] {
		return syncDir(dir)
	}
	return nil
}

// localWriter is not safe for concurrent use.
type localWriter struct {
	l    *Local
	ctx  context.Context
	key  string
	excl bool
	f    *os.File
	err  error // first write error; Commit fails with it
	done bool
}

var errWriterDone = errors.New("writer already committed or aborted")

func (w *localWriter) Write(p []byte) (int, error) {
	if w.done {
		return 0, w.l.errorf("write", w.key, errWriterDone)
	}
	if w.err != nil {
		return 0, w.err
	}
	if err := w.ctx.Err(); err != nil {
		w.err = w.l.errorf("write", w.key, err)
		return 0, w.err
	}
	n, err := w.f.Write(p)
	if err != nil {
		w.err = w.l.errorf("write", w.key, err)
		return n, w.err
	}
	return n, nil
}

func (w *localWriter) Commit() error {
	if w.done {
		return w.l.errorf("commit", w.key, errWriterDone)
	}
	w.done = true
	tmp := w.f.Name()
	var err error
	if w.err != nil {
		err = errors.Unwrap(w.err) // already carries the root and key
	} else {
		err = w.ctx.Err()
	}
	if err == nil {
		err = w.f.Sync()
	}
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = w.l.publish(tmp, w.key, w.excl)
	}
	// After a rename the temp name is gone; after a link (or a failure) it
	// must go. Removing only then avoids deleting another writer's temp file
	// that happened to get the same random name afterwards.
	if err != nil || w.excl {
		_ = os.Remove(tmp)
	}
	if err != nil {
		return w.l.errorf("put", w.key, err)
	}
	return nil
}

func (w *localWriter) Abort() error {
	if w.done {
		return nil
	}
	w.done = true
	_ = w.f.Close()
	if err := os.Remove(w.f.Name()); err != nil && !isNotExist(err) {
		return w.l.errorf("abort", w.key, err)
	}
	return nil
}

// Get implements Driver.
func (l *Local) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	if err := l.checkKey(key); err != nil {
		return nil, l.errorf("get", key, err)
	}
	if offset < 0 {
		return nil, l.errorf("get", key, fmt.Errorf("negative offset %d", offset))
	}
	if err := ctx.Err(); err != nil {
		return nil, l.errorf("get", key, err)
	}
	f, err := os.Open(l.path(key))
	if err != nil {
		if isNotExist(err) {
			return nil, l.errorf("get", key, ErrNotFound)
		}
		return nil, l.errorf("get", key, err)
	}
	fi, err := f.Stat()
	if err == nil && fi.IsDir() {
		_ = f.Close()
		return nil, l.errorf("get", key, ErrNotFound)
	}
	if err == nil && offset > 0 {
		_, err = f.Seek(offset, io.SeekStart)
	}
	if err != nil {
		_ = f.Close()
		return nil, l.errorf("get", key, err)
	}
	var r io.Reader = f
	if length >= 0 {
		r = io.LimitReader(f, length)
	}
	return &localReader{ctxReader: ctxReader{ctx: ctx, r: r}, f: f}, nil
}

type localReader struct {
	ctxReader
	f *os.File
}

func (r *localReader) Close() error { return r.f.Close() }

// ctxReader stops reading once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// Stat implements Driver.
func (l *Local) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	if err := l.checkKey(key); err != nil {
		return ObjectInfo{}, l.errorf("stat", key, err)
	}
	if err := ctx.Err(); err != nil {
		return ObjectInfo{}, l.errorf("stat", key, err)
	}
	fi, err := os.Stat(l.path(key))
	if err != nil {
		if isNotExist(err) {
			return ObjectInfo{}, l.errorf("stat", key, ErrNotFound)
		}
		return ObjectInfo{}, l.errorf("stat", key, err)
	}
	if !fi.Mode().IsRegular() {
		return ObjectInfo{}, l.errorf("stat", key, ErrNotFound)
	}
	return ObjectInfo{Key: key, Size: fi.Size(), ModTime: fi.ModTime()}, nil
}

// List implements Driver. It walks only the directory that the prefix names
// (everything up to its last "/"), one directory at a time, so memory stays
// proportional to the largest directory.
func (l *Local) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	if err := checkPrefix(prefix); err != nil {
		return l.errorf("list", prefix, err)
	}
	dir, rest := "", prefix
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		dir, rest = prefix[:i+1], prefix[i+1:]
	}
	return l.walk(ctx, dir, rest, fn)
}

// errStop wraps an error from List's callback so that walk returns it as is.
type errStop struct{ err error }

func (e errStop) Error() string { return e.err.Error() }

func (l *Local) walk(ctx context.Context, dir, namePrefix string, fn func(ObjectInfo) error) error {
	err := l.walkDir(ctx, dir, namePrefix, fn)
	var stop errStop
	if errors.As(err, &stop) {
		return stop.err
	}
	if err != nil {
		return l.errorf("list", dir+namePrefix, err)
	}
	return nil
}

// walkDir visits the directory for key prefix dir ("" or ending in "/"). Its
// entries are visited in key order: a directory "d" sorts as "d/", so that
// "a-c" (0x2d) comes before everything under "a/" (0x2f).
func (l *Local) walkDir(ctx context.Context, dir, namePrefix string, fn func(ObjectInfo) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	entries, err := os.ReadDir(filepath.Join(l.root, filepath.FromSlash(dir)))
	if err != nil {
		if isNotExist(err) { // nothing there, or removed by a concurrent Delete
			return nil
		}
		return err
	}
	type item struct {
		key string
		e   fs.DirEntry
	}
	items := make([]item, 0, len(entries))
	for _, e := range entries {
		name := e.Name()
		if dir == "" && name == tmpDirName || !strings.HasPrefix(name, namePrefix) {
			continue
		}
		k := dir + name
		if e.IsDir() {
			k += "/"
		} else if !e.Type().IsRegular() {
			continue
		}
		items = append(items, item{k, e})
	}
	slices.SortFunc(items, func(a, b item) int { return strings.Compare(a.key, b.key) })
	for _, it := range items {
		if it.e.IsDir() {
			if err := l.walkDir(ctx, it.key, "", fn); err != nil {
				return err
			}
			continue
		}
		info, err := it.e.Info()
		if err != nil {
			if isNotExist(err) {
				continue
			}
			return err
		}
		if err := fn(ObjectInfo{Key: it.key, Size: info.Size(), ModTime: info.ModTime()}); err != nil {
			return errStop{err}
		}
	}
	return nil
}

// Delete implements Driver. It also removes parent directories left empty, up
// to (not including) the root, so that deleted prefixes do not accumulate.
func (l *Local) Delete(ctx context.Context, key string) error {
	if err := l.checkKey(key); err != nil {
		return l.errorf("delete", key, err)
	}
	if err := ctx.Err(); err != nil {
		return l.errorf("delete", key, err)
	}
	p := l.path(key)
	fi, err := os.Lstat(p)
	if err != nil {
		if isNotExist(err) {
			return nil
		}
		return l.errorf("delete", key, err)
	}
	if fi.IsDir() { // a "directory" of other keys is not an object
		return nil
	}
	if err := os.Remove(p); err != nil {
		if isNotExist(err) {
			return nil
		}
		return l.errorf("delete", key, err)
	}
	d := filepath.Dir(p)
	for d != l.root && strings.HasPrefix(d, l.root) {
		if os.Remove(d) != nil { // not empty (or already gone): stop
			break
		}
		d = filepath.Dir(d)
	}
	if err := syncDir(d); err != nil && !isNotExist(err) {
		return l.errorf("delete", key, err)
	}
	return nil
}
