package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func newTestLocal(t *testing.T) *Local {
	t.Helper()
	l, err := NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func tempFiles(t *testing.T, l *Local) []string {
	t.Helper()
	entries, err := os.ReadDir(l.tmp)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// errReader returns some bytes, then err.
type errReader struct {
	data []byte
	err  error
}

func (r *errReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

func TestLocalLeavesNoTempFilesAfterFailures(t *testing.T) {
	l := newTestLocal(t)
	ctx := t.Context()
	boom := errors.New("boom")
	if err := l.Put(ctx, "exists", strings.NewReader("x"), 1, PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := l.Put(ctx, "file", strings.NewReader("x"), 1, PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := l.Put(ctx, "dir/child", strings.NewReader("x"), 1, PutOptions{}); err != nil {
		t.Fatal(err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	cases := []struct {
		name string
		key  string
		put  func(key string) error
		is   error
	}{
		{"short body", "short", func(k string) error {
			return l.Put(ctx, k, strings.NewReader("only 15 bytes.."), 100, PutOptions{})
		}, nil},
		{"body error", "broken", func(k string) error {
			return l.Put(ctx, k, &errReader{data: make([]byte, 5000), err: boom}, 10000, PutOptions{})
		}, boom},
		{"cancelled", "cancelled", func(k string) error {
			return l.Put(cancelled, k, strings.NewReader("x"), 1, PutOptions{})
		}, context.Canceled},
		{"if-not-exist conflict", "exists", func(k string) error {
			return l.Put(ctx, k, strings.NewReader("y"), 1, PutOptions{IfNotExist: true})
		}, ErrExists},
		{"parent is an object", "file/x", func(k string) error {
			return l.Put(ctx, k, strings.NewReader("y"), 1, PutOptions{})
		}, nil},
		{"key is a directory", "dir", func(k string) error {
			return l.Put(ctx, k, strings.NewReader("y"), 1, PutOptions{})
		}, nil},
		{"key is a directory, exclusive", "dir", func(k string) error {
			return l.Put(ctx, k, strings.NewReader("y"), 1, PutOptions{IfNotExist: true})
		}, nil},
		{"writer aborted", "aborted", func(k string) error {
			w, err := l.NewWriter(ctx, k, PutOptions{})
			if err != nil {
				return err
			}
			_, _ = w.Write([]byte("data"))
			_ = w.Abort()
			return errors.New("aborted")
		}, nil},
		{"writer cancelled before commit", "wcancel", func(k string) error {
			c, cancel := context.WithCancel(ctx)
			defer cancel()
			w, err := l.NewWriter(c, k, PutOptions{})
			if err != nil {
				return err
			}
			_, _ = w.Write([]byte("data"))
			cancel()
			return w.Commit()
		}, context.Canceled},
	}
	for _, c := range cases {
		err := c.put(c.key)
		if err == nil {
			t.Errorf("%s: succeeded", c.name)
		}
		if c.is != nil && !errors.Is(err, c.is) {
			t.Errorf("%s: error %v, want one wrapping %v", c.name, err, c.is)
		}
		if errors.Is(c.is, ErrExists) != errors.Is(err, ErrExists) {
			t.Errorf("%s: ErrExists mismatch: %v", c.name, err)
		}
		if names := tempFiles(t, l); len(names) > 0 {
			t.Errorf("%s: temp files left: %v", c.name, names)
		}
	}
	for _, k := range []string{"short", "broken", "cancelled", "aborted", "wcancel"} {
		if _, err := l.Stat(ctx, k); !errors.Is(err, ErrNotFound) {
			t.Errorf("Stat(%q) after a failed write = %v, want ErrNotFound", k, err)
		}
	}
	if b := readLocal(t, l, "exists"); string(b) != "x" {
		t.Errorf("refused IfNotExist write changed the object to %q", b)
	}
}

func readLocal(t *testing.T, l *Local, key string) []byte {
	t.Helper()
	rc, err := l.Get(t.Context(), key, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestLocalRemovesStaleTempFiles(t *testing.T) {
	root := t.TempDir()
	tmp := filepath.Join(root, ".tmp")
	if err := os.Mkdir(tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	old, fresh := filepath.Join(tmp, "put-old"), filepath.Join(tmp, "put-fresh")
	for _, p := range []string{old, fresh} {
		if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	past := time.Now().Add(-2 * time.Hour)
	if err := os.Chtimes(old, past, past); err != nil {
		t.Fatal(err)
	}
	if _, err := NewLocal(root); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(old); !os.IsNotExist(err) {
		t.Errorf("stale temp file still there (%v)", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("fresh temp file (maybe another process's) was removed: %v", err)
	}
}

func TestLocalRejectsBadKeys(t *testing.T) {
	parent := t.TempDir()
	root := filepath.Join(parent, "repo")
	l, err := NewLocal(root)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Create(t.Context()); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	for _, k := range []string{
		`a\b`, `C:\x`, `\\server\share\x`, `..\escape`, "/abs", "../escape", "a/../../escape",
		"..", ".", "a/./b", "a//b", "", "trailing/", ".tmp/x", ".tmp",
	} {
		if err := l.Put(ctx, k, strings.NewReader("x"), 1, PutOptions{}); err == nil {
			t.Errorf("Put(%q) succeeded", k)
		}
		if _, err := l.Get(ctx, k, 0, -1); err == nil || errors.Is(err, ErrNotFound) {
			t.Errorf("Get(%q) = %v, want an invalid-key error", k, err)
		}
		if err := l.Delete(ctx, k); err == nil {
			t.Errorf("Delete(%q) succeeded", k)
		}
	}
	for _, p := range []string{"../", "/abs", `a\`, "a/../"} {
		if err := l.List(ctx, p, func(ObjectInfo) error { return nil }); err == nil {
			t.Errorf("List(%q) succeeded", p)
		}
	}
	entries, _ := os.ReadDir(parent)
	if len(entries) != 1 {
		t.Errorf("files appeared next to the root: %v", entries)
	}
	if entries, _ := os.ReadDir(root); len(entries) != 0 {
		t.Errorf("files appeared in the root: %v", entries)
	}
}

func TestWindowsNameProblem(t *testing.T) {
	for key, bad := range map[string]bool{
		"ok/name.txt": false, "2024-01-01/x": false, "with space/a b": false, "ünï/日本": false,
		"a:b": true, "2024-01-01T10:00:00Z": true, "what?": true, "a*b": true, `q"uote`: true, "a<b": true, "a|b": true,
		"CON": true, "con.txt": true, "dir/aux": true, "Lpt1.log": true, "console": false, "com10": false,
		"trail.": true, "trail /x": true, "dir./x": true,
	} {
		if got := windowsNameProblem(key) != ""; got != bad {
			t.Errorf("windowsNameProblem(%q) = %q, want a problem: %v", key, windowsNameProblem(key), bad)
		}
	}
}

func TestLocalDeleteRemovesEmptyParents(t *testing.T) {
	l := newTestLocal(t)
	ctx := t.Context()
	for _, k := range []string{"a/b/c/d", "a/x"} {
		if err := l.Put(ctx, k, strings.NewReader("x"), 1, PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Delete(ctx, "a/b/c/d"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(l.root, "a", "b")); !os.IsNotExist(err) {
		t.Errorf("a/b still exists after its last object was deleted (%v)", err)
	}
	if err := l.Delete(ctx, "a/x"); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(l.root)
	if err != nil {
		t.Fatalf("root itself must stay: %v", err)
	}
	for _, e := range entries {
		if e.Name() != ".tmp" {
			t.Errorf("left in root after deleting everything: %s", e.Name())
		}
	}
}

// TestLocalPutDeleteRace races writes into a directory with deletes that
// remove it when it becomes empty.
func TestLocalPutDeleteRace(t *testing.T) {
	l := newTestLocal(t)
	ctx := t.Context()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := range 2 {
		wg.Go(func() {
			for i := range 200 {
				key := fmt.Sprintf("p/q/w%d-%d", w, i%3)
				if err := l.Put(ctx, key, strings.NewReader("x"), 1, PutOptions{}); err != nil {
					errs <- err
					return
				}
				if err := l.Delete(ctx, key); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestLocalMissingRoot(t *testing.T) {
	root := filepath.Join(t.TempDir(), "not", "mounted")
	l, err := NewLocal(root)
	if err != nil {
		t.Fatalf("NewLocal on a missing root: %v", err)
	}
	ctx := t.Context()
	err = l.Put(ctx, "k", strings.NewReader("x"), 1, PutOptions{})
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("Put with a missing root = %v, want a 'does not exist' error", err)
	}
	if _, err := os.Stat(root); !os.IsNotExist(err) {
		t.Fatalf("Put created the root (%v)", err)
	}
	if _, err := l.Stat(ctx, "k"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Stat = %v", err)
	}
	if err := l.List(ctx, "", func(ObjectInfo) error { return errors.New("called") }); err != nil {
		t.Fatalf("List on a missing root: %v", err)
	}
	if err := l.Create(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.Put(ctx, "k", strings.NewReader("x"), 1, PutOptions{}); err != nil {
		t.Fatalf("Put after Create: %v", err)
	}
}

func TestLocalListSkipsTempFiles(t *testing.T) {
	l := newTestLocal(t)
	ctx := t.Context()
	if err := l.Put(ctx, "obj", strings.NewReader("x"), 1, PutOptions{}); err != nil {
		t.Fatal(err)
	}
	w, err := l.NewWriter(ctx, "pending", PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	if _, err := w.Write(bytes.Repeat([]byte("x"), 100)); err != nil {
		t.Fatal(err)
	}
	var got []string
	if err := l.List(ctx, "", func(o ObjectInfo) error { got = append(got, o.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != "obj" {
		t.Fatalf("List = %q, want only obj", got)
	}
	if len(tempFiles(t, l)) != 1 {
		t.Fatal("the pending writer has no temp file under .tmp")
	}
}
