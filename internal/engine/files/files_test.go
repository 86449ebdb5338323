package files_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hartonomous/hartvault/internal/engine"
	"github.com/hartonomous/hartvault/internal/engine/files"
	"github.com/hartonomous/hartvault/internal/plan"
	"github.com/hartonomous/hartvault/internal/repo"
	"github.com/hartonomous/hartvault/internal/storage"
)

func writeTree(t *testing.T, root string, seed uint64) map[string][32]byte {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 1))
	sums := map[string][32]byte{}
	for i := 0; i < 30; i++ {
		rel := fmt.Sprintf("d%d/f%02d.bin", i%4, i)
		p := filepath.Join(root, rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		b := make([]byte, rng.IntN(300<<10))
		for j := range b {
			b[j] = byte(rng.IntN(16)) // compressible, not trivially
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		sums[rel] = sha256.Sum256(b)
	}
	return sums
}

func checkTree(t *testing.T, root string, want map[string][32]byte) {
	t.Helper()
	for rel, sum := range want {
		b, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil {
			t.Fatalf("restored tree: %v", err)
		}
		if sha256.Sum256(b) != sum {
			t.Fatalf("restored %s differs", rel)
		}
	}
}

// TestBackupThroughFaultyStorage backs up and restores through a storage layer that
// fails a quarter of all operations in every way it can (before, midway, and after
// an operation that did succeed): the retries carry the work through intact.
func TestBackupThroughFaultyStorage(t *testing.T) {
	ctx := context.Background()
	repoDir := filepath.Join(t.TempDir(), "repo")
	src := filepath.Join(t.TempDir(), "set")
	want := writeTree(t, src, 1)

	var faulty []*storage.Faulty
	open := func(ctx context.Context, url string) (*storage.Store, error) {
		d, err := storage.OpenDriver(ctx, url)
		if err != nil {
			return nil, err
		}
		f := storage.NewFaulty(d, storage.FaultOptions{Rate: 0.25, Seed: int64(len(faulty) + 1)})
		faulty = append(faulty, f)
		return storage.New(f, storage.Options{MaxAttempts: 12, Sleep: func(context.Context, time.Duration) error { return nil }}), nil
	}
	opts := repo.Options{
		URL:        "file://" + filepath.ToSlash(repoDir),
		Keys:       repo.Keys{Passphrase: func() (string, error) { return "pass", nil }},
		VolumeSize: 256 << 10, // many volumes, many chances to fail
		Workers:    3,
		WorkFactor: 10,
		OpenStore:  open,
	}
	if _, err := repo.Init(ctx, opts); err != nil {
		t.Fatal(err)
	}
	r, err := repo.Open(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	eng := files.New(plan.Source{Name: "set", Kind: plan.KindFiles, Paths: []string{src}})
	res, err := engine.RunBackup(ctx, eng, engine.BackupRequest{Repo: r})
	if err != nil {
		t.Fatalf("backup through faults: %v", err)
	}
	if len(res.Manifest.Objects) < 10 {
		t.Fatalf("only %d volumes: the test needs many", len(res.Manifest.Objects))
	}
	dst := filepath.Join(t.TempDir(), "restore")
	req := engine.RestoreRequest{Repo: r, BackupID: res.Manifest.ID, Target: dst}
	plan, err := eng.PlanRestore(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if err := eng.Restore(ctx, req, plan); err != nil {
		t.Fatalf("restore through faults: %v", err)
	}
	checkTree(t, filepath.Join(dst, "set"), want)
	var injected int64
	for _, f := range faulty {
		injected += f.Injected()
	}
	if injected < 10 {
		t.Fatalf("only %d faults injected", injected)
	}
	t.Logf("%d faults injected across backup and restore", injected)

	// Read back without faults: every object matches its manifest.
	opts.OpenStore = nil
	clean, err := repo.Open(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	err = clean.VerifyObjects(ctx, nil, res.Manifest, func(o repo.ObjectResult) {
		if o.Err != nil {
			t.Errorf("object damaged after faulty backup: %v", o.Err)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestPermanentStorageErrorLeavesNothing: a storage that fails for good (a full disk)
// fails the backup, leaves no visible backup and no stray data, and the next run
// on working storage succeeds.
func TestPermanentStorageErrorLeavesNothing(t *testing.T) {
	ctx := context.Background()
	repoDir := filepath.Join(t.TempDir(), "repo")
	src := filepath.Join(t.TempDir(), "set")
	want := writeTree(t, src, 2)
	broken := false
	opts := repo.Options{
		URL:        "file://" + filepath.ToSlash(repoDir),
		Keys:       repo.Keys{None: true},
		VolumeSize: 512 << 10,
		OpenStore: func(ctx context.Context, url string) (*storage.Store, error) {
			d, err := storage.OpenDriver(ctx, url)
			if err != nil {
				return nil, err
			}
			if broken {
				df := &diskFull{Driver: d}
				df.after.Store(3)
				d = df
			}
			return storage.New(d, storage.Options{}), nil
		},
	}
	if _, err := repo.Init(ctx, opts); err != nil {
		t.Fatal(err)
	}
	eng := files.New(plan.Source{Name: "set", Kind: plan.KindFiles, Paths: []string{src}})
	broken = true
	r, _ := repo.Open(ctx, opts)
	_, err := engine.RunBackup(ctx, eng, engine.BackupRequest{Repo: r})
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("no space left")) {
		t.Fatalf("backup onto a full disk: %v", err)
	}
	broken = false
	r, _ = repo.Open(ctx, opts)
	if bs, _ := r.Backups(ctx, ""); len(bs) != 0 {
		t.Fatalf("%d backups visible after the failure", len(bs))
	}
	res, err := engine.RunBackup(ctx, eng, engine.BackupRequest{Repo: r})
	if err != nil {
		t.Fatal(err)
	}
	var stray []string
	r.Store().List(ctx, "data/", func(o storage.ObjectInfo) error {
		if filepath.Base(filepath.Dir(o.Key)) != res.Manifest.ID {
			stray = append(stray, o.Key)
		}
		return nil
	})
	if len(stray) > 0 {
		t.Fatalf("stray objects of the failed backup: %v", stray)
	}
	dst := filepath.Join(t.TempDir(), "restore")
	req := engine.RestoreRequest{Repo: r, Target: dst}
	plan, err := eng.PlanRestore(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if err := eng.Restore(ctx, req, plan); err != nil {
		t.Fatal(err)
	}
	checkTree(t, filepath.Join(dst, "set"), want)
}

// diskFull fails every Put after the first few, as a filling disk does.
type diskFull struct {
	storage.Driver
	after atomic.Int64
}

func (d *diskFull) Put(ctx context.Context, key string, body io.Reader, size int64, opts storage.PutOptions) error {
	if d.after.Add(-1) < 0 {
		return fmt.Errorf("write %s: %w", key, errors.New("no space left on device"))
	}
	return d.Driver.Put(ctx, key, body, size, opts)
}
