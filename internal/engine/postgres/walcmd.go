package postgres

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/hartonomous/hartvault/internal/repo"
)

// PushResult says what WALPush did.
type PushResult struct {
	File   string
	Stored int64 // 0 when the file was already archived
	Took   time.Duration
}

// WALPush archives one WAL file (a segment, history or backup history file): the
// body of archive_command. It returns only once the file is durably stored; the
// same file again is a no-op, and different content under an archived name an error.
func (e *Engine) WALPush(ctx context.Context, r *repo.Repo, path string) (PushResult, error) {
	began := time.Now()
	file := filepath.Base(path)
	data, err := os.ReadFile(path)
	if err != nil {
		return PushResult{}, fmt.Errorf("wal-push: %w", err)
	}
	a := &archive{r: r, source: e.src.Name}
	if _, _, isSeg := ParseSegName(file, 16<<20); isSeg {
		h, err := ReadSegmentHeader(data)
		if err != nil {
			return PushResult{}, fmt.Errorf("wal-push %s: %w", file, err)
		}
		if int64(len(data)) != int64(h.SegSize) {
			return PushResult{}, fmt.Errorf("wal-push %s: %d bytes, but its header says segments are %d", file, len(data), h.SegSize)
		}
		a.sysid, a.segSize = h.SystemID, int64(h.SegSize)
	} else {
		if !IsHistoryName(file) && !IsBackupHistoryName(file) {
			return PushResult{}, fmt.Errorf("wal-push: %s is not a WAL segment, history or backup history file", file)
		}
		// No header in these files: the cluster is the one whose pg_wal they are in.
		dataDir := filepath.Dir(filepath.Dir(path))
		if !filepath.IsAbs(path) {
			dataDir = "."
		}
		if a.sysid, err = readSystemID(dataDir); err != nil {
			if a.sysid, err = readSystemID(e.src.DataDir); err != nil {
				return PushResult{}, fmt.Errorf("wal-push %s: %w", file, err)
			}
		}
		a.segSize = 16 << 20
	}
	stored, err := a.push(ctx, file, data)
	if err != nil {
		return PushResult{}, fmt.Errorf("wal-push: %w", err)
	}
	return PushResult{File: file, Stored: stored, Took: time.Since(began)}, nil
}

// prefetchDir holds segments fetched ahead of recovery, next to where recovery
// asks them to be written.
func prefetchDir(dest string) string { return filepath.Join(filepath.Dir(dest), "hartvault-prefetch") }

// TakePrefetched moves a segment fetched ahead by an earlier wal-fetch into dest.
// It needs no repository access, so most restore_command calls of a recovery end
// here.
func TakePrefetched(file, dest string) bool {
	dir := prefetchDir(dest)
	src := filepath.Join(dir, file)
	if err := os.Rename(src, dest); err != nil {
		return false
	}
	// Segments before this one will not be asked for again.
	if des, err := os.ReadDir(dir); err == nil {
		for _, de := range des {
			if de.Name() < file {
				os.Remove(filepath.Join(dir, de.Name()))
			}
		}
	}
	return true
}

// WALFetch writes an archived WAL file to dest: the body of restore_command. It
// returns ErrNotArchived when the file is not in the repository, which recovery
// takes as the end of the archive. After fetching a segment it prefetches the next
// ones in parallel.
func (e *Engine) WALFetch(ctx context.Context, r *repo.Repo, file, dest string) error {
	sysid, err := readSystemID(".") // restore_command runs in the data directory
	if err != nil {
		if sysid, err = readSystemID(e.src.DataDir); err != nil {
			return fmt.Errorf("wal-fetch %s: %w", file, err)
		}
	}
	a := &archive{r: r, source: e.src.Name, sysid: sysid, segSize: 16 << 20}
	data, err := a.fetch(ctx, file)
	if err != nil {
		return err
	}
	if _, _, isSeg := ParseSegName(file, 16<<20); isSeg {
		if h, err := ReadSegmentHeader(data); err == nil {
			a.segSize = int64(h.SegSize)
		}
	}
	if err := writeFileAtomic(dest, data); err != nil {
		return fmt.Errorf("wal-fetch %s: write %s: %w", file, dest, err)
	}
	if _, _, isSeg := ParseSegName(file, a.segSize); isSeg {
		a.prefetch(ctx, file, prefetchDir(dest), 16, r.Options().Workers*2)
	}
	return nil
}

// IsNotArchived reports whether err says a WAL file is absent from the archive.
func IsNotArchived(err error) bool { return errors.Is(err, ErrNotArchived) }
