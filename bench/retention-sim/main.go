// Command retention-sim builds a generated PostgreSQL backup history in a throwaway
// repository (no database needed) and runs `hartvault prune --dry-run` on it, to
// show what the retention rules keep and delete, and why.
//
// The history is the seed's schedule: a full every Sunday at 01:00 and a diff every
// day at 02:00, for -weeks weeks, with the WAL archived one segment an hour (and one
// at the end of each backup). Objects are scaled down (a full is a few MiB, a WAL
// segment 16 KiB) so that it runs in seconds; what is kept and why does not depend on
// sizes.
//
//	go run ./bench/retention-sim                       # full 4w, diff 7d, log 7d over 6 weeks
//	go run ./bench/retention-sim -full "2 backups" -diff 3d -log 3d -weeks 8
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/hartonomous/hartvault/internal/cli"
	"github.com/hartonomous/hartvault/internal/engine/postgres"
	"github.com/hartonomous/hartvault/internal/repo"
)

const (
	source  = "hartonomous"
	sysid   = 7431902517339262145
	segSize = 16 << 20
)

func main() {
	full := flag.String("full", "4w", "retention of fulls")
	diff := flag.String("diff", "7d", "retention of diffs")
	logRule := flag.String("log", "7d", "retention of the WAL")
	weeks := flag.Int("weeks", 6, "weeks of history")
	keep := flag.Bool("keep", false, "keep the repository (its path is printed)")
	flag.Parse()
	if err := run(*full, *diff, *logRule, *weeks, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "retention-sim:", err)
		os.Exit(1)
	}
}

func run(full, diff, logRule string, weeks int, keep bool) error {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "retention-sim")
	if err != nil {
		return err
	}
	if keep {
		fmt.Fprintln(os.Stderr, "repository and plan in", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	planPath := filepath.Join(dir, "hartvault.yaml")
	y := fmt.Sprintf(`repository:
  url: file://%s
  encryption: none
  compression: none
sources:
  - name: %s
    kind: postgres
    data_dir: %s
    conninfo: "host=/nonexistent"
    schedule: { full: "0 1 * * SUN", diff: "0 2 * * *", log: continuous }
    retention: { full: %q, diff: %q, log: %q }
`, filepath.ToSlash(filepath.Join(dir, "repo")), source, filepath.Join(dir, "data"), full, diff, logRule)
	if err := os.WriteFile(planPath, []byte(y), 0o600); err != nil {
		return err
	}
	var out, errs bytes.Buffer
	env := cli.Env{Stdin: os.Stdin, Stdout: &out, Stderr: &errs, Getenv: os.Getenv, Now: time.Now}
	if code := cli.Main(ctx, []string{"--config", planPath, "init"}, env); code != 0 {
		return fmt.Errorf("init: %s", errs.String())
	}

	start := time.Date(2026, 9, 6, 0, 0, 0, 0, time.UTC) // a Sunday
	end := start.AddDate(0, 0, 7*weeks)
	clock := start
	r, err := repo.Open(ctx, repo.Options{URL: "file://" + filepath.ToSlash(filepath.Join(dir, "repo")), Keys: repo.Keys{None: true},
		Compression: "none", Now: func() time.Time { return clock }})
	if err != nil {
		return err
	}
	defer r.Close()
	h := &history{r: r, clock: &clock, segOpened: start, segno: 1}
	var lastFull *repo.Manifest
	for day := 0; day < 7*weeks; day++ {
		date := start.AddDate(0, 0, day)
		if date.Weekday() == time.Sunday {
			if lastFull, err = h.backup(ctx, repo.TypeFull, nil, date.Add(time.Hour), 25*time.Minute, 4<<20); err != nil {
				return err
			}
		}
		if _, err := h.backup(ctx, repo.TypeDiff, lastFull, date.Add(2*time.Hour), 6*time.Minute, 256<<10); err != nil {
			return err
		}
	}
	if err := h.walUntil(ctx, end); err != nil {
		return err
	}
	fmt.Printf("# %d weeks of the seed's schedule from %s: %d backups, %d WAL segments; prune at %s\n",
		weeks, start.Format("2006-01-02"), h.backups, h.segments, end.Format(time.RFC3339))
	fmt.Printf("$ hartvault prune %s --dry-run\n", source)
	out.Reset()
	errs.Reset()
	env.Now = func() time.Time { return end }
	code := cli.Main(ctx, []string{"--config", planPath, "prune", source, "--dry-run"}, env)
	fmt.Print(out.String())
	if code != 0 {
		return fmt.Errorf("prune exited %d: %s", code, errs.String())
	}
	return nil
}

// history writes backups and WAL as the PostgreSQL engine stores them.
type history struct {
	r         *repo.Repo
	clock     *time.Time
	segno     uint64
	segOpened time.Time
	backups   int
	segments  int
}

// closeSegment archives the segment being written, its last commit just before at.
func (h *history) closeSegment(ctx context.Context, at time.Time) error {
	*h.clock = at
	seg := postgres.SegName(1, h.segno, segSize)
	data := make([]byte, 16<<10)
	rand.Read(data)
	sum := sha256.Sum256(data)
	name := fmt.Sprintf("%d/%s/%s-%s-c%d", uint64(sysid), seg[:16], seg, hex.EncodeToString(sum[:16]), at.Add(-time.Second).UnixMicro())
	if _, err := h.r.PutLog(ctx, source, name, data, false); err != nil {
		return err
	}
	h.segno++
	h.segOpened = at
	h.segments++
	return nil
}

// walUntil archives a segment every hour until t.
func (h *history) walUntil(ctx context.Context, t time.Time) error {
	for next := h.segOpened.Truncate(time.Hour).Add(time.Hour); !next.After(t); next = next.Add(time.Hour) {
		if err := h.closeSegment(ctx, next); err != nil {
			return err
		}
	}
	return nil
}

func (h *history) backup(ctx context.Context, typ string, parent *repo.Manifest, at time.Time, took time.Duration, size int) (*repo.Manifest, error) {
	if err := h.walUntil(ctx, at); err != nil {
		return nil, err
	}
	*h.clock = at
	lock, err := h.r.Lock(ctx, source, "retention-sim")
	if err != nil {
		return nil, err
	}
	defer lock.Release(ctx)
	spec := repo.BackupSpec{Source: source, Kind: "postgres", Type: typ}
	if parent != nil {
		spec.Parent = parent.ID
	}
	b, err := h.r.BeginBackup(ctx, lock, spec)
	if err != nil {
		return nil, err
	}
	startLSN := h.segno*segSize + 0x28
	data := make([]byte, size)
	rand.Read(data)
	pw := b.NewPackWriter(ctx)
	exts, err := pw.Write(bytes.NewReader(data), 0)
	if err != nil {
		return nil, err
	}
	if err := pw.Close(); err != nil {
		return nil, err
	}
	f := repo.File{Path: "base/5/16384", Type: repo.TypeRegular, Mode: 0o600, Size: int64(size), Extents: exts}
	if parent != nil {
		base := append([]repo.Extent(nil), parent.Files[0].Extents...)
		for i := range base {
			base[i].Backup = parent.ID
		}
		for i := range exts {
			exts[i].Overlay = true
		}
		f.Extents = append(base, exts...)
	}
	b.AddFile(f)
	if err := h.walUntil(ctx, at.Add(took)); err != nil {
		return nil, err
	}
	stop := at.Add(took)
	stopLSN := h.segno*segSize + 0x100000
	info := postgres.Info{Server: postgres.ServerInfo{Version: 150000, SystemID: sysid, SegSize: segSize, Timeline: 1},
		Label: "hartvault " + b.ID(), StartLSN: lsn(startLSN), StopLSN: lsn(stopLSN), Timeline: 1,
		StartWAL: postgres.SegName(1, startLSN/segSize, segSize), StopWAL: postgres.SegName(1, (stopLSN-1)/segSize, segSize), StopTime: stop}
	if err := h.closeSegment(ctx, stop); err != nil { // pg_backup_stop switches segments
		return nil, err
	}
	if err := b.SetEngine(info); err != nil {
		return nil, err
	}
	*h.clock = stop.Add(20 * time.Second)
	m, err := b.Commit(ctx)
	if err != nil {
		return nil, err
	}
	h.backups++
	return m, nil
}

func lsn(v uint64) string { return postgres.LSN(v).String() }
