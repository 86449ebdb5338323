package storage_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hartonomous/hartvault/internal/storage"
	"github.com/hartonomous/hartvault/internal/storage/storagetest"
	"github.com/hartonomous/hartvault/internal/testutil/azurite"
)

func noSleep(ctx context.Context, _ time.Duration) error { return ctx.Err() }

// faultyOptions retry enough that Rate 0.3 faults never exhaust the attempts
// (0.3^25 per operation), without sleeping.
func faultyOptions(t *testing.T) storage.Options {
	return storage.Options{MaxAttempts: 25, Sleep: noSleep, SpoolDir: spoolDir(t)}
}

// spoolDir is a temp dir checked to be empty at the end: spool files must
// never be left behind.
func spoolDir(t *testing.T) string {
	dir := t.TempDir()
	t.Cleanup(func() {
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Error(err)
		}
		for _, e := range entries {
			t.Errorf("spool file left behind: %s", e.Name())
		}
	})
	return dir
}

// newLocal returns a Local over a temp dir, checked at the end to hold no
// temp files: failed and aborted writes must clean up after themselves.
func newLocal(t *testing.T) *storage.Local {
	t.Helper()
	l, err := storage.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		entries, _ := os.ReadDir(filepath.Join(l.Root(), ".tmp"))
		for _, e := range entries {
			t.Errorf("temp file left behind: %s", e.Name())
		}
	})
	return l
}

func TestLocalSuite(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) *storage.Store {
		s := storage.New(newLocal(t), storage.Options{})
		t.Cleanup(func() { _ = s.Close() })
		return s
	})
}

func TestFaultyLocalSuite(t *testing.T) {
	var injected int64
	storagetest.Run(t, func(t *testing.T) *storage.Store {
		f := storage.NewFaulty(newLocal(t), storage.FaultOptions{Rate: 0.3, Seed: 1})
		s := storage.New(f, faultyOptions(t))
		t.Cleanup(func() { injected += f.Injected(); _ = s.Close() })
		return s
	})
	if injected < 40 {
		t.Fatalf("only %d faults injected: the suite did not exercise the retries", injected)
	}
	t.Logf("%d faults injected", injected)
}

func TestAzuriteSuite(t *testing.T) {
	srv := azurite.Start(t)
	srv.Setenv(t)
	storagetest.Run(t, func(t *testing.T) *storage.Store {
		s, err := storage.Open(t.Context(), srv.Container(t, t.Name()), storage.Options{SpoolDir: spoolDir(t)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	})
}

func TestFaultyAzuriteSuite(t *testing.T) {
	srv := azurite.Start(t)
	srv.Setenv(t)
	var injected int64
	storagetest.Run(t, func(t *testing.T) *storage.Store {
		c, err := storage.NewCloud(t.Context(), srv.Container(t, t.Name()))
		if err != nil {
			t.Fatal(err)
		}
		f := storage.NewFaulty(c, storage.FaultOptions{Rate: 0.2, Seed: 2})
		s := storage.New(f, faultyOptions(t))
		t.Cleanup(func() { injected += f.Injected(); _ = s.Close() })
		return s
	})
	if injected < 20 {
		t.Fatalf("only %d faults injected: the suite did not exercise the retries", injected)
	}
	t.Logf("%d faults injected", injected)
}
