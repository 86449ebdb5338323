package repo

import (
	"bytes"
	"context"
	"errors"
	"io"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/hartonomous/hartvault/internal/storage"
)

// dying is a driver whose reads fail for good once down is set, as a storage
// account does when it becomes unreachable in the middle of a restore.
type dying struct {
	storage.Driver
	down *atomic.Bool
	gets *atomic.Int64
}

func (d dying) Create(ctx context.Context) error {
	if c, ok := d.Driver.(interface{ Create(context.Context) error }); ok {
		return c.Create(ctx)
	}
	return nil
}

func (d dying) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	if d.down.Load() {
		d.gets.Add(1)
		return nil, errors.New("dial tcp: connection refused")
	}
	return d.Driver.Get(ctx, key, offset, length)
}

// The primary fails in the middle of a restore: the objects are read from the
// replica's copies, and the primary is not waited for again after its first failure.
func TestReadFallsBackToTheReplica(t *testing.T) {
	ctx := context.Background()
	o := testOpts(t)
	o.Replicas = []string{"file://" + filepath.ToSlash(filepath.Join(t.TempDir(), "replica"))}
	var down atomic.Bool
	var gets atomic.Int64
	o.OpenStore = func(ctx context.Context, url string) (*storage.Store, error) {
		d, err := storage.OpenDriver(ctx, url)
		if err != nil {
			return nil, err
		}
		if url == o.URL {
			d = dying{Driver: d, down: &down, gets: &gets}
		}
		return storage.New(d, storage.Options{MaxAttempts: 1}), nil
	}
	if _, err := Init(ctx, o); err != nil {
		t.Fatal(err)
	}
	r, err := Open(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	lock, err := r.Lock(ctx, "s", "test")
	if err != nil {
		t.Fatal(err)
	}
	b, err := r.BeginBackup(ctx, lock, BackupSpec{Source: "s", Kind: "test", Type: TypeFull})
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("hartonomous "), 40<<10) // several 64 KiB volumes
	pw := b.NewPackWriter(ctx)
	exts, err := pw.Write(bytes.NewReader(data), 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := pw.Close(); err != nil {
		t.Fatal(err)
	}
	b.AddFile(File{Path: "f", Type: TypeRegular, Size: int64(len(data)), Extents: exts})
	m, err := b.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	lock.Release(ctx)
	for _, rep := range r.SyncReplicas(ctx, "s") {
		if rep.Err != nil {
			t.Fatal(rep.Err)
		}
	}
	if len(m.Objects) < 3 {
		t.Fatalf("%d objects, want several", len(m.Objects))
	}

	down.Store(true)
	got := make([]byte, len(data))
	var mu sync.Mutex
	err = r.ReadFiles(ctx, m, []*File{&m.Files[0]}, nil, func(f *File, e Extent, rd io.Reader) error {
		b, err := io.ReadAll(rd)
		mu.Lock()
		copy(got[e.Offset:], b)
		mu.Unlock()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("content read from the replica differs")
	}
	if n := gets.Load(); n < 1 || n > int64(o.Workers) {
		t.Fatalf("the failed primary was asked %d times, want at most once per worker", n)
	}
}
