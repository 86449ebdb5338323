package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// Options tune a Store. Zero values take the defaults.
type Options struct {
	// MaxAttempts is how many times an operation is tried in all when it keeps
	// failing with transient errors (default 6).
	MaxAttempts int
	// BaseDelay and MaxDelay bound the exponential backoff between attempts
	// (defaults 200ms and 5s); each delay is drawn uniformly between 0 and the
	// bound ("full jitter"), so that many clients do not retry in step.
	BaseDelay time.Duration
	MaxDelay  time.Duration
	// SpoolDir holds the temp files of NewWriter for drivers that cannot
	// stream (default os.TempDir()).
	SpoolDir string
	// Logger receives retries at debug level (default: discard).
	Logger *slog.Logger
	// Sleep waits between attempts; tests inject one that does not sleep.
	// It must return ctx's error when ctx is done first.
	Sleep func(ctx context.Context, d time.Duration) error
}

func (o Options) withDefaults() Options {
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 6
	}
	if o.BaseDelay <= 0 {
		o.BaseDelay = 200 * time.Millisecond
	}
	if o.MaxDelay <= 0 {
		o.MaxDelay = 5 * time.Second
	}
	if o.MaxDelay < o.BaseDelay {
		o.MaxDelay = o.BaseDelay
	}
	if o.SpoolDir == "" {
		o.SpoolDir = os.TempDir()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Sleep == nil {
		o.Sleep = sleepContext
	}
	return o
}

func sleepContext(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Store wraps a Driver with retries of transient errors and with streaming
// writers. It is safe for concurrent use if its driver is.
type Store struct {
	d Driver
	o Options
}

// New returns a Store over d.
func New(d Driver, o Options) *Store {
	return &Store{d: d, o: o.withDefaults()}
}

// Open opens the store named by rawURL: file:///path (or a plain path) for a
// local directory, azblob://container, s3://bucket or gs://bucket.
func Open(ctx context.Context, rawURL string, o Options) (*Store, error) {
	d, err := OpenDriver(ctx, rawURL)
	if err != nil {
		return nil, err
	}
	return New(d, o), nil
}

// OpenDriver returns the Driver for rawURL (see Open).
func OpenDriver(ctx context.Context, rawURL string) (Driver, error) {
	if !strings.Contains(rawURL, "://") {
		return NewLocal(rawURL)
	}
	scheme, _, _ := strings.Cut(rawURL, "://")
	switch strings.ToLower(scheme) {
	case "file":
		p, err := localPathFromURL(rawURL)
		if err != nil {
			return nil, err
		}
		return NewLocal(p)
	case "azblob", "s3", "gs":
		return NewCloud(ctx, rawURL)
	default:
		return nil, fmt.Errorf("storage URL: unsupported scheme %q (want file, azblob, s3 or gs)", scheme)
	}
}

// localPathFromURL turns file:///srv/backups, file:///C:/backups (or
// file://C:/backups) and file://localhost/srv/backups into OS paths.
func localPathFromURL(rawURL string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", fmt.Errorf("storage URL %q: %w", rawURL, err)
	}
	p := u.Path
	switch {
	case u.Host == "" || strings.EqualFold(u.Host, "localhost"):
	case len(u.Host) == 2 && u.Host[1] == ':' && isLetter(u.Host[0]):
		p = u.Host + p // file://C:/x
	default:
		return "", fmt.Errorf("storage URL %q: file URLs take an absolute path and no host (file:///path)", rawURL)
	}
	// file:///C:/x parses as the path "/C:/x".
	if len(p) >= 3 && p[0] == '/' && p[2] == ':' && isLetter(p[1]) {
		p = p[1:]
	}
	if p == "" {
		return "", fmt.Errorf("storage URL %q: no path", rawURL)
	}
	return filepath.FromSlash(p), nil
}

func isLetter(b byte) bool { return 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' }

// Driver returns the driver under the store.
func (s *Store) Driver() Driver { return s.d }

// String names the backend (without secrets).
func (s *Store) String() string { return s.d.String() }

// Close closes the driver.
func (s *Store) Close() error { return s.d.Close() }

// Create creates the storage location (directory, container, bucket) if the
// driver can and it is missing.
func (s *Store) Create(ctx context.Context) error {
	c, ok := s.d.(interface{ Create(context.Context) error })
	if !ok {
		return nil
	}
	return s.retry(ctx, "create", "", func() error { return c.Create(ctx) })
}

// retry runs fn until it succeeds, fails with a non-transient error, ctx is
// done, or MaxAttempts is reached.
func (s *Store) retry(ctx context.Context, op, key string, fn func() error) error {
	for attempt := 1; ; attempt++ {
		err := fn()
		if err == nil || !IsTransient(err) || ctx.Err() != nil {
			return err
		}
		if attempt >= s.o.MaxAttempts {
			// err already names the backend and key.
			return fmt.Errorf("%w (gave up after %d attempts)", err, attempt)
		}
		if err := s.backoff(ctx, op, key, attempt, err); err != nil {
			return err
		}
	}
}

// backoff waits before attempt+1, after a transient cause.
func (s *Store) backoff(ctx context.Context, op, key string, attempt int, cause error) error {
	d := s.delay(attempt)
	s.o.Logger.LogAttrs(ctx, slog.LevelDebug, "storage: transient error, retrying",
		slog.String("backend", s.d.String()), slog.String("op", op), slog.String("key", key),
		slog.Int("attempt", attempt), slog.Duration("delay", d), slog.String("error", cause.Error()))
	if err := s.o.Sleep(ctx, d); err != nil {
		return fmt.Errorf("%s: %s: %w (waiting to retry after: %v)", s.d, opKey(op, key), err, cause)
	}
	return nil
}

func opKey(op, key string) string {
	if key == "" {
		return op
	}
	return fmt.Sprintf("%s %q", op, key)
}

// delay is uniform in [0, min(MaxDelay, BaseDelay*2^(attempt-1))].
func (s *Store) delay(attempt int) time.Duration {
	ceil := s.o.MaxDelay
	if attempt <= 32 {
		if d := s.o.BaseDelay << (attempt - 1); d > 0 && d < ceil {
			ceil = d
		}
	}
	return time.Duration(rand.Int64N(int64(ceil) + 1))
}

// Rehydrate starts bringing an archived object back online (a no-op for backends
// without an offline tier).
func (s *Store) Rehydrate(ctx context.Context, key, priority string) error {
	rh, ok := s.d.(Rehydrater)
	if !ok {
		return nil
	}
	return s.retry(ctx, "rehydrate", key, func() error { return rh.Rehydrate(ctx, key, priority) })
}

// CanSetTier reports whether stored objects can be moved to another tier in place.
func (s *Store) CanSetTier() bool {
	t, ok := s.d.(Tierer)
	return ok && t.CanSetTier()
}

// SetTier moves a stored object to a tier (hot, cool, cold, archive) in place.
func (s *Store) SetTier(ctx context.Context, key, tier string) error {
	t, ok := s.d.(Tierer)
	if !ok || !t.CanSetTier() {
		return fmt.Errorf("%s: set the tier of %q: not supported by this storage", s.d, key)
	}
	return s.retry(ctx, "set tier", key, func() error { return t.SetTier(ctx, key, tier) })
}

// Put stores data under key, retrying transient failures.
//
// With opts.IfNotExist, an attempt can fail ambiguously (the write landed but
// the answer was lost), and the retry then finds the key taken by our own
// write. Put resolves that case by reading the object back: if an earlier
// attempt failed transiently and the existing object holds exactly data, Put
// reports success. So objects written with IfNotExist as locks must carry
// content unique to the writer (an owner ID, a random nonce): two writers with
// identical bytes are indistinguishable. If the read-back fails, Put returns
// the ErrExists.
func (s *Store) Put(ctx context.Context, key string, data []byte, opts PutOptions) error {
	return s.PutFrom(ctx, key, bytes.NewReader(data), int64(len(data)), opts)
}

// PutFrom stores size bytes of r under key, reading them again from the
// start for every attempt. IfNotExist behaves as documented on Put.
func (s *Store) PutFrom(ctx context.Context, key string, r io.ReaderAt, size int64, opts PutOptions) error {
	ambiguous := false
	err := s.retry(ctx, "put", key, func() error {
		err := s.d.Put(ctx, key, io.NewSectionReader(r, 0, size), size, opts)
		if IsTransient(err) {
			ambiguous = true
		}
		return err
	})
	if opts.IfNotExist && ambiguous && errors.Is(err, ErrExists) {
		if same, cerr := s.sameContent(ctx, key, r, size); cerr == nil && same {
			s.o.Logger.LogAttrs(ctx, slog.LevelDebug, "storage: create-if-absent found its own earlier write",
				slog.String("backend", s.d.String()), slog.String("key", key))
			return nil
		}
	}
	return err
}

// sameContent reports whether the object under key holds exactly size bytes
// equal to r's.
func (s *Store) sameContent(ctx context.Context, key string, r io.ReaderAt, size int64) (bool, error) {
	info, err := s.Stat(ctx, key)
	if err != nil || info.Size != size {
		return false, err
	}
	rc, err := s.NewReader(ctx, key, 0, -1)
	if err != nil {
		return false, err
	}
	defer rc.Close()
	want := io.NewSectionReader(r, 0, size)
	a, b := make([]byte, 64<<10), make([]byte, 64<<10)
	for {
		n, err := io.ReadFull(rc, a)
		if n > 0 {
			if _, werr := io.ReadFull(want, b[:n]); werr != nil || !bytes.Equal(a[:n], b[:n]) {
				return false, nil
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			// Equal so far: equal if want is exhausted too.
			m, _ := want.Read(b[:1])
			return m == 0, nil
		}
		if err != nil {
			return false, err
		}
	}
}

// NewWriter returns a writer whose object appears atomically on Commit.
// Drivers that stream (the local disk) write directly; for the others the
// bytes are spooled to a temp file in Options.SpoolDir and uploaded on Commit,
// with retries. The writer is not safe for concurrent use.
func (s *Store) NewWriter(ctx context.Context, key string, opts PutOptions) (ObjectWriter, error) {
	if sd, ok := s.d.(StreamDriver); ok {
		return sd.NewWriter(ctx, key, opts)
	}
	if err := checkKey(key); err != nil {
		return nil, fmt.Errorf("%s: put %q: %w", s.d, key, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: put %q: %w", s.d, key, err)
	}
	// A spool file has no name where the system allows it (Linux: created without
	// one; other Unixes: unlinked at once, the open file staying readable), so a
	// process killed mid-upload leaves nothing behind. Windows cannot remove an open
	// file; there it is removed on Commit or Abort.
	if f, ok := anonymousTemp(s.o.SpoolDir); ok {
		return &spoolWriter{s: s, ctx: ctx, key: key, opts: opts, f: f, unlinked: true}, nil
	}
	f, err := os.CreateTemp(s.o.SpoolDir, "hartvault-spool-*")
	if err != nil {
		return nil, fmt.Errorf("%s: put %q: spool file: %w", s.d, key, err)
	}
	w := &spoolWriter{s: s, ctx: ctx, key: key, opts: opts, f: f}
	if runtime.GOOS != "windows" && os.Remove(f.Name()) == nil {
		w.unlinked = true
	}
	return w, nil
}

type spoolWriter struct {
	s    *Store
	ctx  context.Context
	key  string
	opts PutOptions
	f    *os.File
	size int64
	err  error
	done bool
	// unlinked: the spool file has no name left to remove.
	unlinked bool
}

func (w *spoolWriter) Write(p []byte) (int, error) {
	if w.done {
		return 0, fmt.Errorf("%s: write %q: %w", w.s.d, w.key, errWriterDone)
	}
	if w.err != nil {
		return 0, w.err
	}
	if err := w.ctx.Err(); err != nil {
		w.err = fmt.Errorf("%s: write %q: %w", w.s.d, w.key, err)
		return 0, w.err
	}
	n, err := w.f.Write(p)
	w.size += int64(n)
	if err != nil {
		w.err = fmt.Errorf("%s: write %q: spool file: %w", w.s.d, w.key, err)
		return n, w.err
	}
	return n, nil
}

func (w *spoolWriter) Commit() error {
	if w.done {
		return fmt.Errorf("%s: commit %q: %w", w.s.d, w.key, errWriterDone)
	}
	w.done = true
	defer w.removeSpool()
	if w.err != nil {
		return w.err
	}
	if err := w.ctx.Err(); err != nil {
		return fmt.Errorf("%s: put %q: %w", w.s.d, w.key, err)
	}
	return w.s.PutFrom(w.ctx, w.key, w.f, w.size, w.opts)
}

func (w *spoolWriter) Abort() error {
	if w.done {
		return nil
	}
	w.done = true
	w.removeSpool()
	return nil
}

func (w *spoolWriter) removeSpool() {
	_ = w.f.Close()
	if !w.unlinked {
		_ = os.Remove(w.f.Name())
	}
}

// ReadAll reads the whole object, resuming after transient errors.
func (s *Store) ReadAll(ctx context.Context, key string) ([]byte, error) {
	rc, err := s.NewReader(ctx, key, 0, -1)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// NewReader reads length bytes of key from offset (length < 0: to the end).
// Opening is retried; a transient error in the middle of the stream reopens
// the object at the current offset, so a long download survives connection
// resets. MaxAttempts bounds the consecutive failures without progress.
// The object must not be overwritten while it is read: the resumed part would
// come from the new version.
func (s *Store) NewReader(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	r := &resumingReader{s: s, ctx: ctx, key: key, pos: offset, remaining: length}
	err := s.retry(ctx, "get", key, func() error {
		rc, err := s.d.Get(ctx, key, offset, length)
		r.rc = rc
		return err
	})
	if err != nil {
		return nil, err
	}
	return r, nil
}

type resumingReader struct {
	s         *Store
	ctx       context.Context
	key       string
	pos       int64 // offset of the next byte
	remaining int64 // bytes left; < 0: to the end
	rc        io.ReadCloser
	failures  int // consecutive transient failures without progress
	err       error
}

func (r *resumingReader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if r.remaining == 0 {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	if r.remaining > 0 && int64(len(p)) > r.remaining {
		p = p[:r.remaining]
	}
	for {
		if r.rc == nil {
			rc, err := r.s.d.Get(r.ctx, r.key, r.pos, r.remaining)
			if err != nil {
				if err := r.failed(err); err != nil {
					return 0, err
				}
				continue
			}
			r.rc = rc
		}
		n, err := r.rc.Read(p)
		if n > 0 {
			r.pos += int64(n)
			if r.remaining > 0 {
				r.remaining -= int64(n)
			}
			r.failures = 0
		}
		if err == nil || err == io.EOF {
			return n, err
		}
		_ = r.rc.Close()
		r.rc = nil
		if n > 0 && IsTransient(err) && r.ctx.Err() == nil {
			return n, nil // reopen on the next Read
		}
		if err := r.failed(err); err != nil {
			return n, err
		}
	}
}

// failed decides whether to try again after err, waiting if so; it returns
// the error to give up with, or nil.
func (r *resumingReader) failed(err error) error {
	if !IsTransient(err) || r.ctx.Err() != nil {
		r.err = err
		return err
	}
	r.failures++
	if r.failures >= r.s.o.MaxAttempts {
		r.err = fmt.Errorf("%s: read %q at offset %d: giving up after %d attempts: %w", r.s.d, r.key, r.pos, r.failures, err)
		return r.err
	}
	if werr := r.s.backoff(r.ctx, "read", r.key, r.failures, err); werr != nil {
		r.err = werr
		return werr
	}
	return nil
}

func (r *resumingReader) Close() error {
	r.err = errors.New("storage: read after Close")
	if r.rc == nil {
		return nil
	}
	err := r.rc.Close()
	r.rc = nil
	return err
}

// Stat returns the object's info, or an error wrapping ErrNotFound.
func (s *Store) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	var info ObjectInfo
	err := s.retry(ctx, "stat", key, func() error {
		var err error
		info, err = s.d.Stat(ctx, key)
		return err
	})
	return info, err
}

// List calls fn for each object under prefix in lexical key order. A listing
// that fails transiently is restarted, skipping the keys already delivered
// (those up to the last one, by the order), so fn never sees a key twice. An
// error from fn stops the listing, is returned as is, and is never retried.
func (s *Store) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	var (
		last      string
		delivered bool
		fnErr     error
	)
	err := s.retry(ctx, "list", prefix, func() error {
		err := s.d.List(ctx, prefix, func(info ObjectInfo) error {
			if delivered && info.Key <= last {
				return nil
			}
			if err := fn(info); err != nil {
				fnErr = err
				return err
			}
			last, delivered = info.Key, true
			return nil
		})
		if fnErr != nil {
			return nil // stop retrying; fnErr is returned below
		}
		return err
	})
	if fnErr != nil {
		return fnErr
	}
	return err
}

// Delete removes key; a missing key is not an error.
func (s *Store) Delete(ctx context.Context, key string) error {
	return s.retry(ctx, "delete", key, func() error { return s.d.Delete(ctx, key) })
}
