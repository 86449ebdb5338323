package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// scripted wraps a Local and lets a test decide the outcome of each call.
type scripted struct {
	*Local
	mu    sync.Mutex
	calls map[string]int
	// before, if set, runs before each call; a non-nil error fails the call
	// without doing anything.
	before func(op string, n int) error
	// after, if set, replaces a successful call's result (ambiguous success).
	after func(op string, n int) error
	// reader, if set, wraps every reader Get returns.
	reader func(n int, offset, length int64, rc io.ReadCloser) io.ReadCloser
	// list, if set, may fail a listing after `deliver` keys.
	listFail func(n int) (deliver int, err error)
	gets     [][2]int64
}

func newScripted(t *testing.T) *scripted {
	return &scripted{Local: newTestLocal(t), calls: map[string]int{}}
}

func (s *scripted) enter(op string) (int, error) {
	s.mu.Lock()
	s.calls[op]++
	n := s.calls[op]
	s.mu.Unlock()
	if s.before != nil {
		if err := s.before(op, n); err != nil {
			return n, err
		}
	}
	return n, nil
}

func (s *scripted) leave(op string, n int, err error) error {
	if err == nil && s.after != nil {
		return s.after(op, n)
	}
	return err
}

func (s *scripted) count(op string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[op]
}

func (s *scripted) Put(ctx context.Context, key string, body io.Reader, size int64, opts PutOptions) error {
	n, err := s.enter("put")
	if err != nil {
		return err
	}
	return s.leave("put", n, s.Local.Put(ctx, key, body, size, opts))
}

func (s *scripted) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	n, err := s.enter("get")
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.gets = append(s.gets, [2]int64{offset, length})
	s.mu.Unlock()
	rc, err := s.Local.Get(ctx, key, offset, length)
	if err == nil && s.reader != nil {
		rc = s.reader(n, offset, length, rc)
	}
	return rc, err
}

func (s *scripted) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	n, err := s.enter("stat")
	if err != nil {
		return ObjectInfo{}, err
	}
	info, err := s.Local.Stat(ctx, key)
	return info, s.leave("stat", n, err)
}

func (s *scripted) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	n, err := s.enter("list")
	if err != nil {
		return err
	}
	if s.listFail == nil {
		return s.Local.List(ctx, prefix, fn)
	}
	deliver, ferr := s.listFail(n)
	i := 0
	err = s.Local.List(ctx, prefix, func(o ObjectInfo) error {
		if ferr != nil && i == deliver {
			return ferr
		}
		i++
		return fn(o)
	})
	return err
}

func (s *scripted) Delete(ctx context.Context, key string) error {
	n, err := s.enter("delete")
	if err != nil {
		return err
	}
	return s.leave("delete", n, s.Local.Delete(ctx, key))
}

func transient(msg string) error { return &TransientError{Err: errors.New(msg)} }

// sleeps records the delays a Store asked for, without sleeping.
type sleeps struct {
	mu sync.Mutex
	d  []time.Duration
}

func (s *sleeps) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.d = append(s.d, d)
	s.mu.Unlock()
	return ctx.Err()
}

func (s *sleeps) n() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.d)
}

func testStore(d Driver, sl *sleeps, attempts int) *Store {
	return New(d, Options{MaxAttempts: attempts, BaseDelay: 100 * time.Millisecond, MaxDelay: 300 * time.Millisecond, Sleep: sl.sleep})
}

func TestRetryCountsAndBackoff(t *testing.T) {
	d := newScripted(t)
	d.before = func(op string, n int) error {
		if n <= 3 {
			return transient(fmt.Sprintf("%s failure %d", op, n))
		}
		return nil
	}
	sl := &sleeps{}
	s := testStore(d, sl, 6)
	if err := s.Put(t.Context(), "k", []byte("v"), PutOptions{}); err != nil {
		t.Fatalf("Put after 3 transient failures: %v", err)
	}
	if got := d.count("put"); got != 4 {
		t.Errorf("driver Put called %d times, want 4", got)
	}
	if sl.n() != 3 {
		t.Fatalf("slept %d times, want 3", sl.n())
	}
	for i, d := range sl.d {
		bound := min(100*time.Millisecond<<i, 300*time.Millisecond)
		if d < 0 || d > bound {
			t.Errorf("delay %d = %v, want within [0, %v]", i+1, d, bound)
		}
	}
}

func TestRetryGivesUp(t *testing.T) {
	d := newScripted(t)
	d.before = func(op string, n int) error { return transient("always down") }
	sl := &sleeps{}
	s := testStore(d, sl, 4)
	_, err := s.Stat(t.Context(), "k")
	if !IsTransient(err) || !strings.Contains(err.Error(), "gave up after 4 attempts") {
		t.Fatalf("Stat = %v, want a transient error after 4 attempts", err)
	}
	if d.count("stat") != 4 || sl.n() != 3 {
		t.Fatalf("%d calls and %d sleeps, want 4 and 3", d.count("stat"), sl.n())
	}
}

func TestNonTransientErrorsAreNotRetried(t *testing.T) {
	d := newScripted(t)
	sl := &sleeps{}
	s := testStore(d, sl, 6)
	if _, err := s.Stat(t.Context(), "missing"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Stat = %v", err)
	}
	if d.count("stat") != 1 || sl.n() != 0 {
		t.Fatalf("ErrNotFound was retried: %d calls, %d sleeps", d.count("stat"), sl.n())
	}
}

func TestPermanentFaultsAreNotRetried(t *testing.T) {
	ctx := t.Context()
	l := newTestLocal(t)
	// Enough keys that a listing always reaches its fault point (< 8 keys),
	// and an object longer than a read's fault point (< 1 MiB).
	for i := range 10 {
		if err := l.Put(ctx, fmt.Sprintf("k%d", i), strings.NewReader("x"), 1, PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	big := bytes.Repeat([]byte("x"), 2<<20)
	if err := l.Put(ctx, "big", bytes.NewReader(big), int64(len(big)), PutOptions{}); err != nil {
		t.Fatal(err)
	}
	f := NewFaulty(l, FaultOptions{Rate: 1, Seed: 7, Permanent: true})
	sl := &sleeps{}
	s := testStore(f, sl, 6)
	ops := map[string]func() error{
		"put":    func() error { return s.Put(ctx, "new", []byte("data"), PutOptions{}) },
		"get":    func() error { _, err := s.ReadAll(ctx, "big"); return err },
		"stat":   func() error { _, err := s.Stat(ctx, "k1"); return err },
		"list":   func() error { return s.List(ctx, "", func(ObjectInfo) error { return nil }) },
		"delete": func() error { return s.Delete(ctx, "k2") },
		"writer": func() error {
			w, err := s.NewWriter(ctx, "new2", PutOptions{})
			if err != nil {
				return err
			}
			_, _ = w.Write([]byte("data"))
			return w.Commit()
		},
	}
	for name, op := range ops {
		for range 5 { // every fault mode in turn
			before := f.Injected()
			err := op()
			if err == nil || !strings.Contains(err.Error(), "no space left on device") {
				t.Errorf("%s = %v, want the injected 'no space left on device'", name, err)
			}
			if IsTransient(err) {
				t.Errorf("%s: permanent fault reported as transient: %v", name, err)
			}
			if got := f.Injected() - before; got != 1 {
				t.Errorf("%s: %d faults injected, want 1 (no retries)", name, got)
			}
		}
	}
	if sl.n() != 0 {
		t.Fatalf("slept %d times for permanent errors", sl.n())
	}
}

func TestSleepCancellationStopsRetries(t *testing.T) {
	d := newScripted(t)
	d.before = func(string, int) error { return transient("down") }
	ctx, cancel := context.WithCancel(t.Context())
	s := New(d, Options{Sleep: func(ctx context.Context, _ time.Duration) error {
		cancel()
		return ctx.Err()
	}})
	err := s.Delete(ctx, "k")
	if !errors.Is(err, context.Canceled) || d.count("delete") != 1 {
		t.Fatalf("Delete = %v after %d calls, want context.Canceled after 1", err, d.count("delete"))
	}
}

func TestDefaultSleepHonoursContext(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	start := time.Now()
	if err := sleepContext(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Fatalf("sleepContext = %v", err)
	}
	if time.Since(start) > time.Second {
		t.Fatal("sleepContext ignored the cancelled context")
	}
}

func TestDelayHasFullJitterWithinBounds(t *testing.T) {
	s := New(newTestLocal(t), Options{BaseDelay: 10 * time.Millisecond, MaxDelay: 80 * time.Millisecond})
	for attempt := 1; attempt <= 40; attempt++ {
		bound := min(10*time.Millisecond<<min(attempt-1, 20), 80*time.Millisecond)
		var lo, hi time.Duration = bound, 0
		for range 500 {
			d := s.delay(attempt)
			if d < 0 || d > bound {
				t.Fatalf("attempt %d: delay %v outside [0, %v]", attempt, d, bound)
			}
			lo, hi = min(lo, d), max(hi, d)
		}
		// 500 uniform draws: both ends of the range are reached (p of failing ~ 2^-500).
		if lo > bound/2 || hi < bound/2 {
			t.Fatalf("attempt %d: delays span only [%v, %v] of [0, %v]: no full jitter", attempt, lo, hi, bound)
		}
	}
}

func TestRetriesAreLoggedAtDebug(t *testing.T) {
	d := newScripted(t)
	d.before = func(op string, n int) error {
		if n == 1 {
			return transient("reset by peer")
		}
		return nil
	}
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s := New(d, Options{Logger: logger, Sleep: (&sleeps{}).sleep})
	if err := s.Put(t.Context(), "logged/key", []byte("v"), PutOptions{}); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{"level=DEBUG", `key=logged/key`, "attempt=1", "reset by peer"} {
		if !strings.Contains(out, want) {
			t.Errorf("log %q lacks %q", out, want)
		}
	}
}

func TestListRetryDeliversEachKeyOnce(t *testing.T) {
	d := newScripted(t)
	ctx := t.Context()
	var want []string
	for i := range 10 {
		k := fmt.Sprintf("k%02d", i)
		want = append(want, k)
		if err := d.Local.Put(ctx, k, strings.NewReader("x"), 1, PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	d.listFail = func(n int) (int, error) {
		switch n {
		case 1:
			return 3, transient("list broke after 3")
		case 2:
			return 7, transient("list broke after 7")
		case 3:
			return 0, transient("list broke at once")
		}
		return 0, nil
	}
	s := testStore(d, &sleeps{}, 6)
	var got []string
	if err := s.List(ctx, "", func(o ObjectInfo) error { got = append(got, o.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("List delivered %q, want %q", got, want)
	}
	if d.count("list") != 4 {
		t.Fatalf("driver List called %d times, want 4", d.count("list"))
	}
}

func TestListCallbackErrorIsNotRetried(t *testing.T) {
	d := newScripted(t)
	ctx := t.Context()
	if err := d.Local.Put(ctx, "k", strings.NewReader("x"), 1, PutOptions{}); err != nil {
		t.Fatal(err)
	}
	s := testStore(d, &sleeps{}, 6)
	mine := transient("the callback's own transient error")
	calls := 0
	err := s.List(ctx, "", func(ObjectInfo) error { calls++; return mine })
	if !errors.Is(err, mine) || calls != 1 || d.count("list") != 1 {
		t.Fatalf("List = %v with %d callback calls and %d driver calls, want the callback's error once", err, calls, d.count("list"))
	}
}

// breakAfter fails with a transient error after n bytes.
type breakAfter struct {
	rc io.ReadCloser
	n  int64
}

func (b *breakAfter) Read(p []byte) (int, error) {
	if b.n <= 0 {
		return 0, transient("connection reset mid-stream")
	}
	if int64(len(p)) > b.n {
		p = p[:b.n]
	}
	n, err := b.rc.Read(p)
	b.n -= int64(n)
	return n, err
}

func (b *breakAfter) Close() error { return b.rc.Close() }

func TestReaderResumesAfterMidStreamErrors(t *testing.T) {
	d := newScripted(t)
	ctx := t.Context()
	data := make([]byte, 10_000)
	for i := range data {
		data[i] = byte(i * 7)
	}
	if err := d.Local.Put(ctx, "obj", bytes.NewReader(data), int64(len(data)), PutOptions{}); err != nil {
		t.Fatal(err)
	}
	d.reader = func(_ int, _, _ int64, rc io.ReadCloser) io.ReadCloser { return &breakAfter{rc: rc, n: 1000} }
	sl := &sleeps{}
	s := testStore(d, sl, 3) // fewer attempts than resets: progress resets the count
	got, err := s.ReadAll(ctx, "obj")
	if err != nil {
		t.Fatalf("ReadAll: %v", err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("ReadAll returned %d bytes, not the object", len(got))
	}
	// One per 1000 bytes, and one more: the tenth reader breaks exactly at
	// the end, so only a Get at 10000 finds EOF.
	if len(d.gets) != 11 {
		t.Fatalf("%d Gets, want 11 (one per 1000 bytes)", len(d.gets))
	}
	for i, g := range d.gets {
		if g != [2]int64{int64(i * 1000), -1} {
			t.Fatalf("Get %d at (offset, length) %v, want (%d, -1)", i, g, i*1000)
		}
	}
	// A range keeps its end across resumes.
	d.gets = nil
	rc, err := s.NewReader(ctx, "obj", 2500, 3100)
	if err != nil {
		t.Fatal(err)
	}
	got, err = io.ReadAll(rc)
	_ = rc.Close()
	if err != nil || !bytes.Equal(got, data[2500:5600]) {
		t.Fatalf("range read: %d bytes, %v", len(got), err)
	}
	if want := [][2]int64{{2500, 3100}, {3500, 2100}, {4500, 1100}, {5500, 100}}; !slices.Equal(d.gets, want) {
		t.Fatalf("range Gets %v, want %v", d.gets, want)
	}
}

func TestReaderGivesUpWithoutProgress(t *testing.T) {
	d := newScripted(t)
	ctx := t.Context()
	if err := d.Local.Put(ctx, "obj", strings.NewReader("0123456789"), 10, PutOptions{}); err != nil {
		t.Fatal(err)
	}
	d.reader = func(n int, _, _ int64, rc io.ReadCloser) io.ReadCloser {
		if n == 1 {
			return &breakAfter{rc: rc, n: 4}
		}
		return &breakAfter{rc: rc, n: 0}
	}
	sl := &sleeps{}
	s := testStore(d, sl, 3)
	got, err := s.ReadAll(ctx, "obj")
	if !IsTransient(err) || !strings.Contains(err.Error(), "giving up after 3 attempts") {
		t.Fatalf("ReadAll = %q, %v; want a transient error after 3 attempts", got, err)
	}
	if string(got) != "0123" {
		t.Fatalf("read %q before giving up, want 0123", got)
	}
	// Opening fails transiently every time: NewReader itself gives up.
	d.before = func(op string, _ int) error {
		if op == "get" {
			return transient("503")
		}
		return nil
	}
	if _, err := s.NewReader(ctx, "obj", 0, -1); !IsTransient(err) {
		t.Fatalf("NewReader = %v, want a transient error", err)
	}
}

func TestSpooledWriterRetriesAndCleansUp(t *testing.T) {
	d := newScripted(t)
	ctx := t.Context()
	spool := t.TempDir()
	// The first two uploads consume the whole body, then fail. capture has
	// no NewWriter, so the Store spools.
	var bodies [][]byte
	var mu sync.Mutex
	failing := 2
	s := New(&capture{Driver: d, f: func(key string, body []byte) error {
		mu.Lock()
		defer mu.Unlock()
		bodies = append(bodies, body)
		if failing > 0 {
			failing--
			return transient("upload reset")
		}
		return nil
	}}, Options{SpoolDir: spool, Sleep: (&sleeps{}).sleep})
	data := bytes.Repeat([]byte("spooled data "), 10_000)
	w, err := s.NewWriter(ctx, "spooled", PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := w.(*spoolWriter); !ok {
		t.Fatalf("NewWriter over a non-streaming driver returned %T, want a spool writer", w)
	}
	for c := range slices.Chunk(data, 4097) {
		if _, err := w.Write(c); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Commit(); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if len(bodies) != 3 {
		t.Fatalf("%d upload attempts, want 3", len(bodies))
	}
	for i, b := range bodies {
		if !bytes.Equal(b, data) {
			t.Fatalf("attempt %d uploaded %d bytes, not the whole object", i+1, len(b))
		}
	}
	got, err := s.ReadAll(ctx, "spooled")
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("ReadAll: %d bytes, %v", len(got), err)
	}
	assertEmptyDir(t, spool)
	// Abort, and a Commit that fails for good, remove the spool file too.
	w, _ = s.NewWriter(ctx, "aborted", PutOptions{})
	_, _ = w.Write(data)
	_ = w.Abort()
	assertEmptyDir(t, spool)
	w, _ = s.NewWriter(ctx, "spooled", PutOptions{IfNotExist: true})
	_, _ = w.Write(data)
	if err := w.Commit(); !errors.Is(err, ErrExists) {
		t.Fatalf("Commit = %v, want ErrExists", err)
	}
	assertEmptyDir(t, spool)
}

// capture reads each Put's whole body, hands it to f, and stores it unless f
// fails.
type capture struct {
	Driver
	f func(key string, body []byte) error
}

func (c *capture) Put(ctx context.Context, key string, body io.Reader, size int64, opts PutOptions) error {
	b, err := io.ReadAll(io.LimitReader(body, size))
	if err != nil {
		return err
	}
	if err := c.f(key, b); err != nil {
		return err
	}
	return c.Driver.Put(ctx, key, bytes.NewReader(b), size, opts)
}

func assertEmptyDir(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) > 0 {
		t.Fatalf("%s is not empty: %v", dir, entries)
	}
}

func TestPutIfNotExistResolvesItsOwnAmbiguousWrite(t *testing.T) {
	ctx := t.Context()
	// The first attempt writes the object but reports a transient error.
	d := newScripted(t)
	d.after = func(op string, n int) error {
		if op == "put" && n == 1 {
			return transient("answer lost")
		}
		return nil
	}
	s := testStore(d, &sleeps{}, 6)
	if err := s.Put(ctx, "lock", []byte("owner A"), PutOptions{IfNotExist: true}); err != nil {
		t.Fatalf("Put whose first attempt landed = %v, want success", err)
	}
	if d.count("put") != 2 {
		t.Fatalf("%d Put attempts, want 2", d.count("put"))
	}
	// Someone else's object under the key is still ErrExists, even after an
	// ambiguous first attempt.
	d2 := newScripted(t)
	if err := d2.Local.Put(ctx, "lock", strings.NewReader("owner B"), 7, PutOptions{}); err != nil {
		t.Fatal(err)
	}
	d2.before = func(op string, n int) error {
		if op == "put" && n == 1 {
			return transient("timeout")
		}
		return nil
	}
	s2 := testStore(d2, &sleeps{}, 6)
	if err := s2.Put(ctx, "lock", []byte("owner A"), PutOptions{IfNotExist: true}); !errors.Is(err, ErrExists) {
		t.Fatalf("Put over another writer's lock = %v, want ErrExists", err)
	}
	// Without an ambiguous attempt, even identical content is ErrExists.
	if err := s2.Put(ctx, "lock", []byte("owner B"), PutOptions{IfNotExist: true}); !errors.Is(err, ErrExists) {
		t.Fatalf("plain conflicting Put = %v, want ErrExists", err)
	}
}

func TestOpenURLs(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	for _, u := range []string{"file://" + filepath.ToSlash(dir), dir} {
		if runtime.GOOS == "windows" && strings.HasPrefix(u, "file://") {
			u = "file:///" + filepath.ToSlash(dir)
		}
		s, err := Open(ctx, u, Options{})
		if err != nil {
			t.Fatalf("Open(%q): %v", u, err)
		}
		l, ok := s.Driver().(*Local)
		if !ok || l.Root() != dir {
			t.Fatalf("Open(%q) gave %T %v, want Local at %s", u, s.Driver(), s, dir)
		}
	}
	for _, u := range []string{"ftp://host/x", "memory://x", "file://otherhost/x"} {
		if _, err := Open(ctx, u, Options{}); err == nil {
			t.Errorf("Open(%q) succeeded", u)
		}
	}
	cases := map[string]string{
		"file:///srv/backups":           "/srv/backups",
		"file://localhost/srv/backups":  "/srv/backups",
		"file:///C:/backups/repo":       "C:/backups/repo",
		"file://C:/backups/repo":        "C:/backups/repo",
		"file:///d:/x%20y":              "d:/x y",
		"file:///srv/with%20space/repo": "/srv/with space/repo",
	}
	for in, want := range cases {
		got, err := localPathFromURL(in)
		if err != nil || got != filepath.FromSlash(want) {
			t.Errorf("localPathFromURL(%q) = %q, %v; want %q", in, got, err, filepath.FromSlash(want))
		}
	}
}

func TestStoreCreate(t *testing.T) {
	root := filepath.Join(t.TempDir(), "new", "repo")
	s, err := Open(t.Context(), root, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Create(t.Context()); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(root); err != nil || !fi.IsDir() {
		t.Fatalf("Create did not make %s: %v", root, err)
	}
	if err := s.Put(t.Context(), "k", []byte("v"), PutOptions{}); err != nil {
		t.Fatal(err)
	}
}
