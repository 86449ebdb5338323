package postgres

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hartonomous/hartvault/internal/engine"
	"github.com/hartonomous/hartvault/internal/fstree"
	"github.com/hartonomous/hartvault/internal/plan"
	"github.com/hartonomous/hartvault/internal/repo"
)

// Backup takes a full or differential base backup: a non-exclusive backup held in
// one session, the data directory and tablespaces read straight from disk by
// parallel workers, and the manifest committed only once the WAL from the backup's
// start to its end is in the repository.
func (e *Engine) Backup(ctx context.Context, req engine.BackupRequest) (*repo.Manifest, error) {
	typ := req.Type
	switch typ {
	case "":
		typ = repo.TypeFull
	case repo.TypeFull, repo.TypeDiff:
	case repo.TypeLog:
		return nil, fmt.Errorf("source %s: PostgreSQL's log is archived continuously: set archive_command to `hartvault wal-push %s %%p`, or run `hartvault wal-stream %s`", e.src.Name, e.src.Name, e.src.Name)
	default:
		return nil, fmt.Errorf("source %s: unknown backup type %s", e.src.Name, typ)
	}
	conn, err := connect(ctx, e.src.Conninfo)
	if err != nil {
		return nil, fmt.Errorf("source %s: %w", e.src.Name, err)
	}
	defer conn.Close(context.WithoutCancel(ctx)) // ends the backup if it is still running
	info, err := serverInfo(ctx, conn)
	if err != nil {
		return nil, fmt.Errorf("source %s: %w", e.src.Name, err)
	}
	if !sameDir(info.DataDir, e.src.DataDir) {
		return nil, fmt.Errorf("source %s: the server at conninfo runs the cluster in %s, but the plan's data_dir is %s", e.src.Name, info.DataDir, e.src.DataDir)
	}
	history, err := req.Repo.Backups(ctx, e.src.Name)
	if err != nil {
		return nil, err
	}
	var parent *repo.Manifest
	var parentInfo *Info
	if typ == repo.TypeDiff {
		lineage, err := readLineage(e.src.DataDir, info.Timeline)
		if err != nil {
			return nil, fmt.Errorf("source %s: %w", e.src.Name, err)
		}
		parent, parentInfo, err = latestFull(history, info.SystemID, lineage)
		if err != nil {
			return nil, err
		}
		if parent == nil {
			req.Log.Warn("no full backup of this cluster to base a diff on: taking a full backup", "source", e.src.Name)
			typ = repo.TypeFull
		} else if parentInfo.Scheme < schemeExact && takenScheme >= schemeExact && !(parentInfo.Server.Checksums && info.Checksums) {
			// Without data checksums, a page VACUUM marked all-visible after that full
			// kept its LSN, and the full did not record its flags to compare with.
			req.Log.Warn("the newest full backup was taken by an earlier hartvault that did not record page visibility flags, and the cluster has no data checksums: a diff on it could not be exact, taking a full backup",
				"source", e.src.Name, "full", parent.ID)
			parent, parentInfo, typ = nil, nil, repo.TypeFull
		}
	}
	spcs, err := tablespaces(ctx, conn)
	if err != nil {
		return nil, err
	}
	spec := repo.BackupSpec{Source: e.src.Name, Kind: plan.KindPostgres, Type: typ, Tag: req.Tag}
	if parent != nil {
		spec.Parent = parent.ID
	}
	b, err := req.Repo.BeginBackup(ctx, req.Lock, spec)
	if err != nil {
		return nil, err
	}
	defer b.Abort(context.WithoutCancel(ctx)) // a no-op once committed

	label := "hartvault " + b.ID()
	start, err := startBackup(ctx, conn, info.Version, label)
	if err != nil {
		return nil, fmt.Errorf("source %s: %w", e.src.Name, err)
	}
	entries, err := e.scan(ctx, spcs, req.Log)
	if err != nil {
		return nil, err
	}
	var parentFiles map[string]*repo.File
	if parent != nil {
		parentFiles = make(map[string]*repo.File, len(parent.Files))
		for i := range parent.Files {
			parentFiles[parent.Files[i].Path] = &parent.Files[i]
		}
	}
	var toStore []*fstree.Entry
	var total int64
	for i := range entries {
		en := &entries[i]
		if en.Type == repo.TypeRegular && en.Size > 0 {
			toStore = append(toStore, en)
			total += en.Size
			continue
		}
		if en.Type == repo.TypeRegular {
			en.SHA256 = fstree.EmptySHA256
		}
		b.AddFile(en.File)
	}
	req.Progress.SetTotal(total)
	var changedPages atomic.Int64
	var wholeFiles atomic.Int64
	var allVisible map[string]pageRuns
	if parent == nil {
		var tap fstree.Tap
		flags := newFlagRecorder()
		if takenScheme >= schemeExact {
			tap = flags.tap
		}
		err = fstree.StoreChunked(ctx, b, toStore, req.Repo.Options().Workers, chunkSize, req.Progress.Add, tap)
		allVisible = flags.finish()
	} else {
		err = e.storeDiff(ctx, b, toStore, parent, parentFiles, parentInfo, req, &changedPages, &wholeFiles)
	}
	if err != nil {
		return nil, err
	}

	stop, err := stopBackup(ctx, conn, info.Version)
	if err != nil {
		return nil, fmt.Errorf("source %s: %w", e.src.Name, err)
	}
	stopTime := time.Now().UTC()
	bi := &Info{Server: info, Label: label, StartLSN: start.String(), StopLSN: stop.LSN.String(), StopTime: stopTime,
		TablespaceMap: stop.TablespaceMap, Tablespaces: spcs, ChangedPages: changedPages.Load(), WholeFiles: int(wholeFiles.Load()),
		Scheme: takenScheme, AllVisible: allVisible}
	bi.Timeline = labelTimeline(stop.BackupLabel, info.Timeline)
	bi.StartWAL = SegName(bi.Timeline, uint64(start)/uint64(info.SegSize), info.SegSize)
	bi.StopWAL = SegName(bi.Timeline, uint64(stop.LSN-1)/uint64(info.SegSize), info.SegSize)
	if err := addLabel(ctx, b, stop.BackupLabel); err != nil {
		return nil, err
	}
	a := &archive{r: req.Repo, source: e.src.Name, sysid: info.SystemID, segSize: info.SegSize}
	if err := e.waitForWAL(ctx, a, bi, req.Log); err != nil {
		return nil, err
	}
	if err := b.SetEngine(bi); err != nil {
		return nil, err
	}
	return b.Commit(ctx)
}

// chunkSize is the piece of a big file one worker stores at a time in a full backup.
const chunkSize = 64 << 20

// storeDiff stores the files of a differential backup: relation files page by page
// against the full, the rest whole.
func (e *Engine) storeDiff(ctx context.Context, b *repo.Backup, toStore []*fstree.Entry, parent *repo.Manifest,
	parentFiles map[string]*repo.File, parentInfo *Info, req engine.BackupRequest, changedPages, wholeFiles *atomic.Int64) error {
	scratch := sync.Pool{New: newDiffScratch}
	// A full taken before flags were recorded (only ever used with data checksums,
	// where setting PD_ALL_VISIBLE moves the page LSN) has no flags to compare.
	compareFlags := parentInfo.Scheme >= schemeExact
	return fstree.StoreAll(ctx, b, toStore, req.Repo.Options().Workers, func(pw *repo.PackWriter, en *fstree.Entry) (repo.File, error) {
		if pf := parentFiles[en.Path]; pf != nil && pf.Type == repo.TypeRegular {
			if rf, ok := parseRelFile(en.Path); ok && pageLSNFork(rf.fork) {
				sc := scratch.Get().(*diffScratch)
				defer scratch.Put(sc)
				var flags *pageRuns
				if compareFlags {
					r := parentInfo.AllVisible[en.Path]
					flags = &r
				}
				f, n, err := diffFile(pw, en, pf, parent.ID, parentInfo.startLSN(), flags, req.Progress.Add, sc)
				changedPages.Add(n)
				return f, err
			}
		}
		wholeFiles.Add(1)
		return fstree.StoreWhole(pw, en, req.Progress.Add)
	})
}

func sameDir(a, b string) bool {
	ra, err1 := filepath.EvalSymlinks(a)
	rb, err2 := filepath.EvalSymlinks(b)
	if err1 != nil || err2 != nil {
		return filepath.Clean(a) == filepath.Clean(b)
	}
	return ra == rb
}

// latestFull returns the newest full backup of this cluster that the server's
// current state descends from: one on the current timeline, or on an ancestor
// timeline and consistent before the current line of history left it. A full of a
// timeline abandoned by a point-in-time restore is no base for a diff: pages
// changed since the branch may carry LSNs below its start.
func latestFull(history []*repo.Manifest, sysid uint64, lineage []timelineStep) (*repo.Manifest, *Info, error) {
	for i := len(history) - 1; i >= 0; i-- {
		m := history[i]
		if m.Type != repo.TypeFull || m.Kind != plan.KindPostgres {
			continue
		}
		info, err := ReadInfo(m)
		if err != nil {
			return nil, nil, err
		}
		if info.Server.SystemID == sysid && onLineage(info, lineage) {
			return m, info, nil
		}
	}
	return nil, nil, nil
}

// onLineage reports whether a backup lies on the line of history that leads to the
// last timeline of lineage (whose End is zero).
func onLineage(info *Info, lineage []timelineStep) bool {
	for _, s := range lineage {
		if s.TLI == info.Timeline {
			return s.End == 0 || info.stopLSN() <= s.End
		}
	}
	return false
}

// readLineage reads the current timeline's ancestry from the history file the
// server keeps in pg_wal (timeline 1 has none).
func readLineage(dataDir string, tli uint32) ([]timelineStep, error) {
	if tli <= 1 {
		return []timelineStep{{TLI: tli}}, nil
	}
	data, err := os.ReadFile(filepath.Join(dataDir, "pg_wal", fmt.Sprintf("%08X.history", tli)))
	if err != nil {
		return nil, fmt.Errorf("read the history of timeline %d: %w", tli, err)
	}
	steps, err := parseHistory(data)
	if err != nil {
		return nil, err
	}
	return append(steps, timelineStep{TLI: tli}), nil
}

var timelineRE = regexp.MustCompile(`(?m)^START TIMELINE: (\d+)`)

func labelTimeline(label string, fallback uint32) uint32 {
	if m := timelineRE.FindStringSubmatch(label); m != nil {
		if t, err := strconv.ParseUint(m[1], 10, 32); err == nil {
			return uint32(t)
		}
	}
	return fallback
}

// scan lists the data directory and tablespaces, leaving out what a base backup
// must not copy. Tablespaces are captured under pg_tblspc/<oid> in place of their
// symlinks.
func (e *Engine) scan(ctx context.Context, spcs []tablespace, log *slog.Logger) ([]fstree.Entry, error) {
	links := map[string]bool{}
	roots := []fstree.Root{{Path: e.src.DataDir, Name: ""}}
	for _, t := range spcs {
		links["pg_tblspc/"+t.OID] = true
		roots = append(roots, fstree.Root{Path: t.Location, Name: "pg_tblspc/" + t.OID})
	}
	sk := &skipper{}
	entries, skipped, err := fstree.Scan(ctx, roots, fstree.ScanOptions{Skip: func(rel string, d os.DirEntry) bool {
		return links[rel] || sk.skip(rel, d)
	}})
	if err != nil {
		return nil, fmt.Errorf("source %s: %w", e.src.Name, err)
	}
	for _, s := range skipped {
		log.Warn("skipped", "path", s.Path, "reason", s.Reason)
	}
	// Unlogged relations: keep their init forks, drop everything else of them.
	unlogged := map[string]bool{}
	for _, en := range entries {
		if rf, ok := parseRelFile(en.Path); ok && rf.fork == "init" {
			unlogged[rf.dir+"/"+rf.relfilenode] = true
		}
	}
	out := entries[:0]
	for _, en := range entries {
		if rf, ok := parseRelFile(en.Path); ok && rf.fork != "init" && unlogged[rf.dir+"/"+rf.relfilenode] {
			continue
		}
		out = append(out, en)
	}
	return out, nil
}

// diffFile stores the pages of a main-fork relation file that changed since the
// full started (page LSN at or past its start, PD_ALL_VISIBLE unlike the full's
// copy, pages past the full's end, and new all-zero pages), as overlay extents on
// top of the full's extents for the file. parentFlags lists the full's all-visible
// pages (nil: not recorded, do not compare). Other hint-bit changes do not move a
// page's LSN and are not needed for recovery.
func diffFile(pw *repo.PackWriter, en *fstree.Entry, pf *repo.File, parentID string, since LSN, parentFlags *pageRuns,
	progress func(int64), scratch *diffScratch) (repo.File, int64, error) {
	fh, err := os.Open(en.Abs)
	if err != nil {
		return repo.File{}, 0, fmt.Errorf("read %s: %w", en.Abs, err)
	}
	defer fh.Close()
	f := en.File
	for _, x := range pf.Extents {
		if x.Backup == "" {
			x.Backup = parentID
		}
		x.Overlay = false
		f.Extents = append(f.Extents, x)
	}
	parentPages := pf.Size / blockSize
	buf, run := scratch.buf, &scratch.run
	run.Reset()
	runStart := int64(-1)
	var changed, pos int64
	flush := func() error {
		if run.Len() == 0 {
			return nil
		}
		exts, err := pw.Write(run, runStart)
		if err != nil {
			return fmt.Errorf("back up %s: %w", en.Abs, err)
		}
		for i := range exts {
			exts[i].Overlay = true
		}
		f.Extents = append(f.Extents, exts...)
		run.Reset()
		runStart = -1
		return nil
	}
	for {
		n, rerr := io.ReadFull(fh, buf)
		progress(int64(n))
		for off := 0; off < n; off += blockSize {
			page := buf[off:min(off+blockSize, n)]
			pageNo := (pos + int64(off)) / blockSize
			if len(page) == blockSize && pageNo < parentPages && !allZero(page) && pageLSN(page) < since &&
				(parentFlags == nil || allVisibleFlag(page) == parentFlags.has(uint32(pageNo))) {
				if err := flush(); err != nil {
					return repo.File{}, 0, err
				}
				continue
			}
			if runStart < 0 {
				runStart = pos + int64(off)
			}
			run.Write(page)
			changed++
			if run.Len() >= 1<<20 {
				if err := flush(); err != nil {
					return repo.File{}, 0, err
				}
			}
		}
		pos += int64(n)
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			return repo.File{}, 0, fmt.Errorf("read %s: %w", en.Abs, rerr)
		}
	}
	if err := flush(); err != nil {
		return repo.File{}, 0, err
	}
	f.Size = pos
	f.SHA256 = ""
	return f, changed, nil
}

// diffScratch is a worker's reusable memory for diffFile: a thousand relation files
// would otherwise allocate a megabyte each, and the collector would size the heap
// after that churn.
type diffScratch struct {
	buf []byte
	run bytes.Buffer
}

func newDiffScratch() any { return &diffScratch{buf: make([]byte, 128*blockSize)} }

// addLabel stores backup_label: recovery starts from the checkpoint it names.
func addLabel(ctx context.Context, b *repo.Backup, label string) error {
	pw := b.NewPackWriter(ctx)
	exts, err := pw.Write(strings.NewReader(label), 0)
	if err != nil {
		pw.Abort()
		return err
	}
	if err := pw.Close(); err != nil {
		return err
	}
	f := repo.File{Path: "backup_label", Type: repo.TypeRegular, Mode: 0o600, ModTime: time.Now().UTC(),
		Size: int64(len(label)), Extents: exts}
	if len(exts) == 1 {
		f.SHA256 = exts[0].SHA256
	}
	b.AddFile(f)
	return nil
}

// waitForWAL waits until every segment from the backup's start to its end is in
// the repository, so the backup can be made consistent from the repository alone.
func (e *Engine) waitForWAL(ctx context.Context, a *archive, bi *Info, log *slog.Logger) error {
	_, first, _ := ParseSegName(bi.StartWAL, a.segSize)
	_, last, _ := ParseSegName(bi.StopWAL, a.segSize)
	deadline := time.Now().Add(e.WALTimeout)
	for {
		segs, err := a.segments(ctx)
		if err != nil {
			return err
		}
		missing := ""
		for s := first; s <= last; s++ {
			name := SegName(bi.Timeline, s, a.segSize)
			if o, ok := segs[name]; !ok || o.Partial {
				missing = name
				break
			}
		}
		if missing == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("source %s: WAL segment %s, needed to make the backup consistent, did not reach the repository within %v: "+
				"set archive_command = '%s --config %s wal-push %s %%p' (with archive_mode = on), or run `hartvault wal-stream %s`",
				e.src.Name, missing, e.WALTimeout, e.exe, e.config, e.src.Name, e.src.Name)
		}
		log.Info("waiting for WAL to reach the repository", "segment", missing)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}
