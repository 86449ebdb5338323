package repo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hartonomous/hartvault/internal/storage"
)

func testOpts(t *testing.T) Options {
	return Options{
		URL:        "file://" + filepath.ToSlash(filepath.Join(t.TempDir(), "repo")),
		Keys:       Keys{Passphrase: func() (string, error) { return "pass", nil }},
		VolumeSize: 64 << 10,
		Workers:    2,
		WorkFactor: 10, // cheap scrypt: the race detector makes the real one slow
	}
}

func newRepo(t *testing.T) *Repo {
	t.Helper()
	o := testOpts(t)
	if _, err := Init(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	r, err := Open(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func TestUnknownFormatRefused(t *testing.T) {
	o := testOpts(t)
	if _, err := Init(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(strings.TrimPrefix(o.URL, "file://"), ConfigKey)
	raw, _ := os.ReadFile(p)
	var cfg map[string]any
	json.Unmarshal(raw, &cfg)
	cfg["format"] = 99
	raw, _ = json.Marshal(cfg)
	os.WriteFile(p, raw, 0o600)
	_, err := Open(context.Background(), o)
	if err == nil || !strings.Contains(err.Error(), "format version 99") {
		t.Fatalf("open of format 99: %v", err)
	}
}

func TestWrongPassphraseAndMissingRepository(t *testing.T) {
	o := testOpts(t)
	if _, err := Open(context.Background(), o); !errors.Is(err, ErrNoRepository) {
		t.Fatalf("open of nothing: %v", err)
	}
	if _, err := Init(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	if _, err := Init(context.Background(), o); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("second init: %v", err)
	}
	o.Keys.Passphrase = func() (string, error) { return "not it", nil }
	r, err := Open(context.Background(), o)
	if err != nil {
		t.Fatal(err) // opening needs no secret; decrypting does
	}
	if err := r.Unlock(); err == nil || !strings.Contains(err.Error(), "wrong passphrase") {
		t.Fatalf("unlock with a wrong passphrase: %v", err)
	}
}

// TestPackRoundTrip packs content across many small volumes, with overlays, and
// reads it back through ReadFiles.
func TestPackRoundTrip(t *testing.T) {
	r := newRepo(t)
	ctx := context.Background()
	lock, err := r.Lock(ctx, "s", "test")
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Release(ctx)
	b, err := r.BeginBackup(ctx, lock, BackupSpec{Source: "s", Kind: "test", Type: TypeFull})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	want := map[string][]byte{}
	pw := b.NewPackWriter(ctx)
	for i, size := range []int{0, 10, 70 << 10, 300 << 10, 5} {
		data := make([]byte, size)
		for j := range data {
			data[j] = byte(rng.IntN(7))
		}
		name := string(rune('a' + i))
		exts, err := pw.Write(bytes.NewReader(data), 0)
		if err != nil {
			t.Fatal(err)
		}
		// Overlay the middle with other bytes, as a diff does.
		if size > 100 {
			patch := bytes.Repeat([]byte{0xEE}, 50)
			ov, err := pw.Write(bytes.NewReader(patch), int64(size/2))
			if err != nil {
				t.Fatal(err)
			}
			for k := range ov {
				ov[k].Overlay = true
			}
			exts = append(exts, ov...)
			copy(data[size/2:], patch)
		}
		want[name] = data
		b.AddFile(File{Path: name, Type: TypeRegular, Size: int64(size), Extents: exts})
	}
	if err := pw.Close(); err != nil {
		t.Fatal(err)
	}
	m, err := b.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Objects) < 5 {
		t.Fatalf("%d objects: content was not split across 64 KiB volumes", len(m.Objects))
	}
	got := map[string][]byte{}
	var mu sync.Mutex
	var files []*File
	for i := range m.Files {
		files = append(files, &m.Files[i])
		got[m.Files[i].Path] = make([]byte, m.Files[i].Size)
	}
	err = r.ReadFiles(ctx, m, files, nil, func(f *File, e Extent, data io.Reader) error {
		b, err := io.ReadAll(data)
		mu.Lock()
		copy(got[f.Path][e.Offset:], b)
		mu.Unlock()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, w := range want {
		if !bytes.Equal(got[name], w) {
			t.Errorf("%s differs after the round trip", name)
		}
	}
}

func TestLocks(t *testing.T) {
	r := newRepo(t)
	ctx := context.Background()
	l1, err := r.Lock(ctx, "s", "backup")
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.Lock(ctx, "s", "backup")
	var le *LockedError
	if !errors.As(err, &le) || !strings.Contains(err.Error(), "locked by") || le.Info.PID != os.Getpid() {
		t.Fatalf("second lock: %v", err)
	}
	if other, err := r.Lock(ctx, "other", "backup"); err != nil {
		t.Fatalf("a lock of another source: %v", err)
	} else {
		other.Release(ctx)
	}
	l1.Release(ctx)
	l2, err := r.Lock(ctx, "s", "backup")
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	l2.Release(ctx)

	// A lock left by a process that died on this host is taken over at once; one left
	// by a live process on another host only once it expired.
	dead := LockInfo{Owner: "dead", Host: r.host, PID: 1 << 30, Since: time.Now(), Expires: time.Now().Add(time.Hour)}
	raw, _ := json.Marshal(dead)
	r.store.Put(ctx, lockKey("s"), raw, storage.PutOptions{})
	l3, err := r.Lock(ctx, "s", "backup")
	if err != nil {
		t.Fatalf("takeover of a dead process's lock: %v", err)
	}
	l3.Release(ctx)
	away := LockInfo{Owner: "away", Host: "elsewhere", PID: 42, Since: time.Now(), Expires: time.Now().Add(time.Hour)}
	raw, _ = json.Marshal(away)
	r.store.Put(ctx, lockKey("s"), raw, storage.PutOptions{})
	if _, err := r.Lock(ctx, "s", "backup"); !errors.As(err, &le) || le.Info.Host != "elsewhere" {
		t.Fatalf("lock held on another host: %v", err)
	}
	away.Expires = time.Now().Add(-time.Minute)
	raw, _ = json.Marshal(away)
	r.store.Put(ctx, lockKey("s"), raw, storage.PutOptions{})
	// Several runs find the same stale lock at once: exactly one gets it.
	var wg sync.WaitGroup
	var mu sync.Mutex
	won := 0
	for i := 0; i < 6; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if l, err := r.Lock(ctx, "s", "backup"); err == nil {
				mu.Lock()
				won++
				mu.Unlock()
				time.Sleep(50 * time.Millisecond)
				l.Release(ctx)
			}
		}()
	}
	wg.Wait()
	if won < 1 {
		t.Fatal("nobody took over the expired lock")
	}
}

func TestCleanLeftovers(t *testing.T) {
	r := newRepo(t)
	ctx := context.Background()
	lock, _ := r.Lock(ctx, "s", "test")
	defer lock.Release(ctx)
	b, _ := r.BeginBackup(ctx, lock, BackupSpec{Source: "s", Kind: "test", Type: TypeFull})
	pw := b.NewPackWriter(ctx)
	pw.Write(bytes.NewReader(make([]byte, 200<<10)), 0)
	pw.Close()
	kept, err := b.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// An interrupted backup: data, no manifest.
	b2, _ := r.BeginBackup(ctx, lock, BackupSpec{Source: "s", Kind: "test", Type: TypeFull})
	pw2 := b2.NewPackWriter(ctx)
	pw2.Write(bytes.NewReader(make([]byte, 200<<10)), 0)
	pw2.Close()
	b2.uploads.Wait()
	removed, err := r.CleanLeftovers(ctx, "s", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 1 || removed[0] != b2.ID() {
		t.Fatalf("removed %v, want [%s]", removed, b2.ID())
	}
	var left []string
	r.store.List(ctx, "data/s/", func(o storage.ObjectInfo) error {
		left = append(left, o.Key)
		return nil
	})
	for _, k := range left {
		if !strings.Contains(k, kept.ID) {
			t.Fatalf("%s survived the cleanup", k)
		}
	}
	if len(left) == 0 {
		t.Fatal("the committed backup's data was removed")
	}
}
