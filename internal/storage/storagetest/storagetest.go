// Package storagetest is the behaviour every storage backend must show, as a
// test suite: run it against a Store over each driver (and over Faulty
// drivers, to check that retries keep the same behaviour).
package storagetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/hartonomous/hartvault/internal/storage"
)

// Run runs the suite. open must return a Store over an empty location, a new
// one on every call (Run calls it once per subtest), and arrange its cleanup
// with t.Cleanup. The subtests do not run in parallel, so open may use
// t.Setenv.
func Run(t *testing.T, open func(t *testing.T) *storage.Store) {
	t.Run("RoundTrip", func(t *testing.T) { testRoundTrip(t, open(t)) })
	t.Run("RangeReads", func(t *testing.T) { testRangeReads(t, open(t)) })
	t.Run("NotFound", func(t *testing.T) { testNotFound(t, open(t)) })
	t.Run("List", func(t *testing.T) { testList(t, open(t)) })
	t.Run("ListEmpty", func(t *testing.T) { testListEmpty(t, open(t)) })
	t.Run("Delete", func(t *testing.T) { testDelete(t, open(t)) })
	t.Run("IfNotExist", func(t *testing.T) { testIfNotExist(t, open(t)) })
	t.Run("IfNotExistRace", func(t *testing.T) { testIfNotExistRace(t, open(t)) })
	t.Run("WriterCommit", func(t *testing.T) { testWriterCommit(t, open(t)) })
	t.Run("WriterAbort", func(t *testing.T) { testWriterAbort(t, open(t)) })
	t.Run("WriterCancel", func(t *testing.T) { testWriterCancel(t, open(t)) })
	t.Run("Overwrite", func(t *testing.T) { testOverwrite(t, open(t)) })
	t.Run("Large", func(t *testing.T) { testLarge(t, open(t)) })
	t.Run("UnicodeKeys", func(t *testing.T) { testUnicodeKeys(t, open(t)) })
	t.Run("InvalidKeys", func(t *testing.T) { testInvalidKeys(t, open(t)) })
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// randomBytes is deterministic for a seed and incompressible.
func randomBytes(seed uint64, n int) []byte {
	b := make([]byte, n)
	var s [32]byte
	s[0], s[1] = byte(seed), byte(seed>>8)
	_, _ = rand.NewChaCha8(s).Read(b)
	return b
}

func put(t *testing.T, s *storage.Store, key string, data []byte) {
	t.Helper()
	if err := s.Put(ctxT(t), key, data, storage.PutOptions{}); err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
}

func readAll(t *testing.T, s *storage.Store, key string) []byte {
	t.Helper()
	b, err := s.ReadAll(ctxT(t), key)
	if err != nil {
		t.Fatalf("ReadAll(%q): %v", key, err)
	}
	return b
}

func listAll(t *testing.T, s *storage.Store, prefix string) []storage.ObjectInfo {
	t.Helper()
	var out []storage.ObjectInfo
	if err := s.List(ctxT(t), prefix, func(o storage.ObjectInfo) error {
		out = append(out, o)
		return nil
	}); err != nil {
		t.Fatalf("List(%q): %v", prefix, err)
	}
	return out
}

func keys(infos []storage.ObjectInfo) []string {
	out := []string{}
	for _, o := range infos {
		out = append(out, o.Key)
	}
	return out
}

func assertNotFound(t *testing.T, s *storage.Store, key string) {
	t.Helper()
	if _, err := s.Stat(ctxT(t), key); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Stat(%q) = %v, want ErrNotFound", key, err)
	}
}

func assertEmpty(t *testing.T, s *storage.Store) {
	t.Helper()
	if got := keys(listAll(t, s, "")); len(got) != 0 {
		t.Fatalf("List(\"\") = %q, want nothing", got)
	}
}

func testRoundTrip(t *testing.T, s *storage.Store) {
	ctx := ctxT(t)
	data := randomBytes(1, 1000)
	for _, key := range []string{"obj", "a/b/c.bin"} {
		before := time.Now()
		put(t, s, key, data)
		if got := readAll(t, s, key); !bytes.Equal(got, data) {
			t.Fatalf("ReadAll(%q): got %d bytes, want the %d written", key, len(got), len(data))
		}
		info, err := s.Stat(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if info.Key != key || info.Size != int64(len(data)) {
			t.Fatalf("Stat(%q) = %+v, want key %q size %d", key, info, key, len(data))
		}
		// Clocks of a server and this host differ a little; an hour is no match.
		if d := info.ModTime.Sub(before); d < -time.Hour || d > time.Hour {
			t.Fatalf("Stat(%q).ModTime = %v, not near now (%v)", key, info.ModTime, before)
		}
	}
	put(t, s, "empty", nil)
	if got := readAll(t, s, "empty"); len(got) != 0 {
		t.Fatalf("empty object read back %d bytes", len(got))
	}
	if info, err := s.Stat(ctx, "empty"); err != nil || info.Size != 0 {
		t.Fatalf("Stat(empty) = %+v, %v", info, err)
	}
}

func testRangeReads(t *testing.T, s *storage.Store) {
	ctx := ctxT(t)
	data := randomBytes(2, 100<<10+3)
	size := int64(len(data))
	put(t, s, "r", data)
	put(t, s, "empty", nil)
	cases := []struct{ off, n int64 }{
		{0, -1}, {0, 10}, {10, 20}, {size - 5, -1}, {size - 5, 100}, {0, 0},
		{size, -1}, {size, 10}, {1000, 65536 + 7}, {size - 1, 1}, {12345, -1},
	}
	for _, c := range cases {
		end := size
		if c.n >= 0 && c.off+c.n < end {
			end = c.off + c.n
		}
		want := data[min(c.off, size):end]
		rc, err := s.NewReader(ctx, "r", c.off, c.n)
		if err != nil {
			t.Fatalf("NewReader(r, %d, %d): %v", c.off, c.n, err)
		}
		got, err := io.ReadAll(rc)
		_ = rc.Close()
		if err != nil {
			t.Fatalf("read (r, %d, %d): %v", c.off, c.n, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("range (%d, %d): got %d bytes, want %d (contents differ: %v)", c.off, c.n, len(got), len(want), len(got) == len(want))
		}
	}
	for _, n := range []int64{-1, 0, 10} {
		rc, err := s.NewReader(ctx, "empty", 0, n)
		if err != nil {
			t.Fatalf("NewReader(empty, 0, %d): %v", n, err)
		}
		got, err := io.ReadAll(rc)
		_ = rc.Close()
		if err != nil || len(got) != 0 {
			t.Fatalf("read (empty, 0, %d) = %d bytes, %v", n, len(got), err)
		}
	}
}

func testNotFound(t *testing.T, s *storage.Store) {
	ctx := ctxT(t)
	assertNotFound(t, s, "missing")
	assertNotFound(t, s, "no/such/dir/key")
	if _, err := s.ReadAll(ctx, "missing"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("ReadAll(missing) = %v, want ErrNotFound", err)
	}
	if _, err := s.NewReader(ctx, "missing", 10, 5); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("NewReader(missing) = %v, want ErrNotFound", err)
	}
	// A "directory" of other keys is no object.
	put(t, s, "dir/child", []byte("x"))
	assertNotFound(t, s, "dir")
	if _, err := s.ReadAll(ctx, "dir"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("ReadAll(dir) = %v, want ErrNotFound", err)
	}
}

func testList(t *testing.T, s *storage.Store) {
	ctx := ctxT(t)
	// "a-c" < "a.x" < "a/..." < "ab": a walk of directories gets this wrong.
	all := []string{"b", "a/c/d", "ab", "a-c", "a/b0", "a/b", "a.x", "c/d/e/f"}
	for i, k := range all {
		put(t, s, k, randomBytes(uint64(10+i), i*10))
	}
	sorted := slices.Sorted(slices.Values(all))
	infos := listAll(t, s, "")
	if got := keys(infos); !slices.Equal(got, sorted) {
		t.Fatalf("List(\"\") = %q, want %q", got, sorted)
	}
	for _, o := range infos {
		i := slices.Index(all, o.Key)
		if o.Size != int64(i*10) {
			t.Fatalf("List: %q has size %d, want %d", o.Key, o.Size, i*10)
		}
	}
	for prefix, want := range map[string][]string{
		"a/":      {"a/b", "a/b0", "a/c/d"},
		"a":       {"a-c", "a.x", "a/b", "a/b0", "a/c/d", "ab"},
		"a/b":     {"a/b", "a/b0"},
		"a/c/":    {"a/c/d"},
		"c/d/e/f": {"c/d/e/f"},
		"c/d/e/":  {"c/d/e/f"},
		"zzz":     {},
		"a/zz/":   {},
	} {
		if got := keys(listAll(t, s, prefix)); !slices.Equal(got, want) {
			t.Errorf("List(%q) = %q, want %q", prefix, got, want)
		}
	}
	// An error from fn stops the listing and comes back as is.
	stop := errors.New("stop here")
	calls := 0
	err := s.List(ctx, "", func(storage.ObjectInfo) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("List with failing fn: err %v after %d calls, want %v after 1", err, calls, stop)
	}
}

func testListEmpty(t *testing.T, s *storage.Store) {
	assertEmpty(t, s)
	if got := listAll(t, s, "some/prefix/"); len(got) != 0 {
		t.Fatalf("List(some/prefix/) on an empty store = %v", got)
	}
}

func testDelete(t *testing.T, s *storage.Store) {
	ctx := ctxT(t)
	put(t, s, "d/x", []byte("x"))
	put(t, s, "d/y", []byte("y"))
	put(t, s, "deep/a/b/c", []byte("c"))
	if err := s.Delete(ctx, "d/x"); err != nil {
		t.Fatalf("Delete(d/x): %v", err)
	}
	assertNotFound(t, s, "d/x")
	if err := s.Delete(ctx, "d/x"); err != nil {
		t.Fatalf("second Delete(d/x): %v", err)
	}
	if err := s.Delete(ctx, "never/existed"); err != nil {
		t.Fatalf("Delete(never/existed): %v", err)
	}
	if err := s.Delete(ctx, "deep/a/b/c"); err != nil {
		t.Fatalf("Delete(deep/a/b/c): %v", err)
	}
	if got, want := keys(listAll(t, s, "")), []string{"d/y"}; !slices.Equal(got, want) {
		t.Fatalf("after deletes List = %q, want %q", got, want)
	}
	// The emptied prefix can be written again.
	put(t, s, "deep/a/b/c", []byte("again"))
	if got := readAll(t, s, "deep/a/b/c"); string(got) != "again" {
		t.Fatalf("rewrite after delete read %q", got)
	}
}

func testIfNotExist(t *testing.T, s *storage.Store) {
	ctx := ctxT(t)
	excl := storage.PutOptions{IfNotExist: true}
	if err := s.Put(ctx, "lock", []byte("first"), excl); err != nil {
		t.Fatalf("first IfNotExist Put: %v", err)
	}
	if err := s.Put(ctx, "lock", []byte("second"), excl); !errors.Is(err, storage.ErrExists) {
		t.Fatalf("second IfNotExist Put = %v, want ErrExists", err)
	}
	w, err := s.NewWriter(ctx, "lock", excl)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("third")); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); !errors.Is(err, storage.ErrExists) {
		t.Fatalf("IfNotExist writer Commit = %v, want ErrExists", err)
	}
	if got := readAll(t, s, "lock"); string(got) != "first" {
		t.Fatalf("after refused writes the object holds %q, want %q", got, "first")
	}
	// Without IfNotExist the write replaces it.
	put(t, s, "lock", []byte("forced"))
	if got := readAll(t, s, "lock"); string(got) != "forced" {
		t.Fatalf("overwrite: got %q", got)
	}
	// Deleted, the key can be created again.
	if err := s.Delete(ctx, "lock"); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "lock", []byte("after delete"), excl); err != nil {
		t.Fatalf("IfNotExist Put after Delete: %v", err)
	}
}

func testIfNotExistRace(t *testing.T, s *storage.Store) {
	ctx := ctxT(t)
	const writers = 8
	for round := range 3 {
		key := fmt.Sprintf("locks/round-%d", round)
		errs := make([]error, writers)
		payloads := make([][]byte, writers)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range writers {
			payloads[i] = fmt.Appendf(nil, "writer %d of round %d: %x", i, round, randomBytes(uint64(100+round*writers+i), 16))
			wg.Go(func() {
				<-start
				errs[i] = s.Put(ctx, key, payloads[i], storage.PutOptions{IfNotExist: true})
			})
		}
		close(start)
		wg.Wait()
		winner := -1
		for i, err := range errs {
			switch {
			case err == nil:
				if winner >= 0 {
					t.Fatalf("round %d: writers %d and %d both created %q", round, winner, i, key)
				}
				winner = i
			case !errors.Is(err, storage.ErrExists):
				t.Fatalf("round %d: writer %d: %v, want nil or ErrExists", round, i, err)
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: no writer created %q", round, key)
		}
		if got := readAll(t, s, key); !bytes.Equal(got, payloads[winner]) {
			t.Fatalf("round %d: object holds %q, want the winner's %q", round, got, payloads[winner])
		}
	}
}

func testWriterCommit(t *testing.T, s *storage.Store) {
	ctx := ctxT(t)
	data := randomBytes(3, 300<<10+17)
	w, err := s.NewWriter(ctx, "w/obj", storage.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for chunk := range slices.Chunk(data, 70001) {
		if n, err := w.Write(chunk); err != nil || n != len(chunk) {
			t.Fatalf("Write: %d, %v", n, err)
		}
	}
	assertNotFound(t, s, "w/obj") // nothing before Commit
	if err := w.Commit(); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if err := w.Abort(); err != nil {
		t.Fatalf("Abort after Commit: %v", err)
	}
	if got := readAll(t, s, "w/obj"); !bytes.Equal(got, data) {
		t.Fatalf("committed object: %d bytes, want the %d written", len(got), len(data))
	}
	if _, err := w.Write([]byte("late")); err == nil {
		t.Fatal("Write after Commit succeeded")
	}
	// An empty writer commits an empty object.
	w, err = s.NewWriter(ctx, "w/empty", storage.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	if info, err := s.Stat(ctx, "w/empty"); err != nil || info.Size != 0 {
		t.Fatalf("Stat(w/empty) = %+v, %v", info, err)
	}
}

func testWriterAbort(t *testing.T, s *storage.Store) {
	ctx := ctxT(t)
	w, err := s.NewWriter(ctx, "w/aborted", storage.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(randomBytes(4, 200<<10)); err != nil {
		t.Fatal(err)
	}
	if err := w.Abort(); err != nil {
		t.Fatalf("Abort: %v", err)
	}
	if err := w.Commit(); err == nil {
		t.Fatal("Commit after Abort succeeded")
	}
	assertNotFound(t, s, "w/aborted")
	assertEmpty(t, s)
	// Abort must not touch an existing object under the key.
	put(t, s, "w/kept", []byte("kept"))
	w, err = s.NewWriter(ctx, "w/kept", storage.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, _ = w.Write([]byte("replacement"))
	if err := w.Abort(); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, s, "w/kept"); string(got) != "kept" {
		t.Fatalf("aborted overwrite changed the object to %q", got)
	}
}

func testWriterCancel(t *testing.T, s *storage.Store) {
	ctx, cancel := context.WithCancel(ctxT(t))
	w, err := s.NewWriter(ctx, "w/cancelled", storage.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(randomBytes(5, 100<<10)); err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := w.Write([]byte("more")); err == nil {
		t.Fatal("Write after cancel succeeded")
	}
	if err := w.Commit(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Commit after cancel = %v, want context.Canceled", err)
	}
	if err := w.Abort(); err != nil {
		t.Fatalf("Abort after failed Commit: %v", err)
	}
	assertNotFound(t, s, "w/cancelled")
	assertEmpty(t, s)
	// A cancelled Put leaves nothing either.
	if err := s.Put(ctx, "w/cancelled-put", []byte("x"), storage.PutOptions{}); err == nil {
		t.Fatal("Put with a cancelled context succeeded")
	}
	assertEmpty(t, s)
}

// testOverwrite checks that readers see the old or the new object, never a
// mix or a partial one. Readers use the driver directly: Store's resuming
// reader does not promise consistency across an overwrite.
func testOverwrite(t *testing.T, s *storage.Store) {
	ctx := ctxT(t)
	versions := [][]byte{randomBytes(6, 256<<10), randomBytes(7, 200<<10+1)}
	put(t, s, "o", versions[0])
	done := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var bad []string
	reads := 0
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				rc, err := s.Driver().Get(ctx, "o", 0, -1)
				if err != nil {
					if !storage.IsTransient(err) {
						mu.Lock()
						bad = append(bad, err.Error())
						mu.Unlock()
					}
					continue
				}
				got, err := io.ReadAll(rc)
				_ = rc.Close()
				if err != nil {
					continue // an injected fault; only complete reads are judged
				}
				mu.Lock()
				reads++
				if !bytes.Equal(got, versions[0]) && !bytes.Equal(got, versions[1]) {
					bad = append(bad, fmt.Sprintf("read %d bytes matching neither version", len(got)))
				}
				mu.Unlock()
			}
		})
	}
	for i := 1; i <= 12; i++ {
		put(t, s, "o", versions[i%2])
	}
	close(done)
	wg.Wait()
	if len(bad) > 0 {
		t.Fatalf("%d bad reads during overwrites, first: %s", len(bad), bad[0])
	}
	if reads == 0 {
		t.Log("no read completed during the overwrites")
	}
	if got := readAll(t, s, "o"); !bytes.Equal(got, versions[0]) {
		t.Fatalf("final object: %d bytes, want the last version written", len(got))
	}
}

func testLarge(t *testing.T, s *storage.Store) {
	ctx := ctxT(t)
	const size = 20 << 20
	data := randomBytes(8, size)
	want := sha256.Sum256(data)
	w, err := s.NewWriter(ctx, "large/20MiB", storage.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for chunk := range slices.Chunk(data, 1<<20+13) {
		if _, err := w.Write(chunk); err != nil {
			_ = w.Abort()
			t.Fatalf("Write: %v", err)
		}
	}
	if err := w.Commit(); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if info, err := s.Stat(ctx, "large/20MiB"); err != nil || info.Size != size {
		t.Fatalf("Stat = %+v, %v; want size %d", info, err, size)
	}
	rc, err := s.NewReader(ctx, "large/20MiB", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	n, err := io.Copy(h, rc)
	_ = rc.Close()
	if err != nil {
		t.Fatalf("read back after %d bytes: %v", n, err)
	}
	if got := h.Sum(nil); n != size || !bytes.Equal(got, want[:]) {
		t.Fatalf("read back %d bytes with SHA-256 %x, want %d bytes with %x", n, got, size, want)
	}
	// A range in the middle.
	off, l := int64(5<<20+3), int64(3<<20)
	rc, err = s.NewReader(ctx, "large/20MiB", off, l)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	_ = rc.Close()
	if err != nil || !bytes.Equal(got, data[off:off+l]) {
		t.Fatalf("range read: %d bytes, %v; contents equal: %v", len(got), err, bytes.Equal(got, data[off:off+l]))
	}
}

func testUnicodeKeys(t *testing.T, s *storage.Store) {
	ks := []string{
		"unicode/ünïcödé.bin",
		"unicode/日本語/ファイル",
		"unicode/with space/a b c.txt",
		"unicode/emoji 🎉.bin",
		"unicode/Ελληνικά-ελληνικά",
		"unicode/+plus=equals,comma;semi@at",
	}
	for _, k := range ks {
		put(t, s, k, []byte(k))
	}
	for _, k := range ks {
		if got := readAll(t, s, k); string(got) != k {
			t.Fatalf("ReadAll(%q) = %q", k, got)
		}
	}
	want := slices.Clone(ks)
	sort.Strings(want)
	if got := keys(listAll(t, s, "unicode/")); !slices.Equal(got, want) {
		t.Fatalf("List = %q, want %q", got, want)
	}
	if got := keys(listAll(t, s, "unicode/with space/")); !slices.Equal(got, []string{"unicode/with space/a b c.txt"}) {
		t.Fatalf("List(with space/) = %q", got)
	}
}

func testInvalidKeys(t *testing.T, s *storage.Store) {
	ctx := ctxT(t)
	for _, k := range []string{"", "/abs", "../escape", "a/../../b", "a/./b", "a//b", `a\b`, `..\x`, "trailing/", "ctl\x01char", "hash#tag", "what?", "50%", `q"uote`} {
		if err := s.Put(ctx, k, []byte("x"), storage.PutOptions{}); err == nil {
			t.Errorf("Put(%q) succeeded", k)
		}
		if _, err := s.Stat(ctx, k); err == nil || errors.Is(err, storage.ErrNotFound) {
			t.Errorf("Stat(%q) = %v, want an invalid-key error", k, err)
		}
	}
	assertEmpty(t, s)
}
