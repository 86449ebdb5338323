// Package files is the file-set engine: directories and files (CLR assemblies, deploy
// scripts, configuration) captured with modes, times and symlinks, backed up only
// when their content changed.
package files

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"time"

	"github.com/hartonomous/hartvault/internal/engine"
	"github.com/hartonomous/hartvault/internal/fstree"
	"github.com/hartonomous/hartvault/internal/plan"
	"github.com/hartonomous/hartvault/internal/repo"
)

// Engine backs up one file set.
type Engine struct {
	src plan.Source
}

// New returns the engine for a kind: files source.
func New(src plan.Source) *Engine { return &Engine{src: src} }

func (e *Engine) Source() string { return e.src.Name }
func (e *Engine) Kind() string   { return plan.KindFiles }

// Info is the engine section of a file-set manifest.
type Info struct {
	Paths   []string `json:"paths"`
	Exclude []string `json:"exclude,omitempty"`
	Files   int      `json:"files"`
	Skipped []string `json:"skipped,omitempty"`
}

func (e *Engine) roots() []fstree.Root {
	roots := make([]fstree.Root, len(e.src.Paths))
	for i, p := range e.src.Paths {
		roots[i] = fstree.Root{Path: p, Name: filepath.Base(p)}
	}
	return roots
}

// Backup captures the file set. Without Force it first compares the tree with the
// last backup and returns *engine.UnchangedError when no content, type, mode or link
// changed (a new modification time alone does not count).
func (e *Engine) Backup(ctx context.Context, req engine.BackupRequest) (*repo.Manifest, error) {
	typ := req.Type
	switch typ {
	case "":
		typ = repo.TypeFull
	case repo.TypeFull, repo.TypeDiff:
	default:
		return nil, fmt.Errorf("source %s: a file set has full and diff backups, not %s", e.src.Name, typ)
	}
	entries, skipped, err := fstree.Scan(ctx, e.roots(), fstree.ScanOptions{Exclude: e.src.Exclude})
	if err != nil {
		return nil, fmt.Errorf("source %s: %w", e.src.Name, err)
	}
	for _, s := range skipped {
		req.Log.Warn("skipped", "path", s.Path, "reason", s.Reason)
	}
	history, err := req.Repo.Backups(ctx, e.src.Name)
	if err != nil {
		return nil, err
	}
	if last := repo.Latest(history, time.Time{}); last != nil && !req.Force {
		same, err := sameContent(ctx, entries, last)
		if err != nil {
			return nil, err
		}
		if same {
			return nil, &engine.UnchangedError{Source: e.src.Name, Last: last}
		}
	}

	var parent *repo.Manifest
	if typ == repo.TypeDiff {
		parent = latestFull(history)
		if parent == nil {
			req.Log.Warn("no full backup to base a diff on: taking a full backup", "source", e.src.Name)
			typ = repo.TypeFull
		}
	}
	spec := repo.BackupSpec{Source: e.src.Name, Kind: plan.KindFiles, Type: typ, Tag: req.Tag}
	if parent != nil {
		spec.Parent = parent.ID
	}
	b, err := req.Repo.BeginBackup(ctx, req.Lock, spec)
	if err != nil {
		return nil, err
	}
	defer b.Abort(context.WithoutCancel(ctx)) // a no-op once committed

	var reused map[string]repo.File
	if parent != nil {
		reused, err = unchangedFrom(ctx, entries, parent)
		if err != nil {
			return nil, err
		}
	}
	var toStore []*fstree.Entry
	var total int64
	for i := range entries {
		en := &entries[i]
		if f, ok := reused[en.Path]; ok {
			b.AddFile(f)
			continue
		}
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
	err = fstree.StoreChunked(ctx, b, toStore, req.Repo.Options().Workers, 64<<20, req.Progress.Add, nil)
	if err != nil {
		return nil, err
	}
	info := Info{Paths: e.src.Paths, Exclude: e.src.Exclude, Files: len(entries)}
	for _, s := range skipped {
		info.Skipped = append(info.Skipped, s.Path)
	}
	if err := b.SetEngine(info); err != nil {
		return nil, err
	}
	return b.Commit(ctx)
}

func latestFull(history []*repo.Manifest) *repo.Manifest {
	var full *repo.Manifest
	for _, m := range history {
		if m.Type == repo.TypeFull {
			full = m
		}
	}
	return full
}

// sameContent compares the scanned tree with a backup. Files whose size and time
// match are taken as unchanged without reading them; others are read and compared
// with the backup's extent hashes.
func sameContent(ctx context.Context, entries []fstree.Entry, last *repo.Manifest) (bool, error) {
	if len(entries) != len(last.Files) {
		return false, nil
	}
	for i := range entries {
		en, f := &entries[i], &last.Files[i]
		if en.Path != f.Path || en.Type != f.Type || en.Mode != f.Mode || en.Link != f.Link || en.Size != f.Size {
			return false, nil
		}
		if en.Type != repo.TypeRegular || en.ModTime.Equal(f.ModTime) {
			continue
		}
		same, err := contentMatches(ctx, en.Abs, f)
		if err != nil || !same {
			return false, err
		}
	}
	return true, nil
}

// unchangedFrom returns the files of the tree a diff can take from its parent full:
// same type, mode and content. Their extents are pointed at the parent's objects.
func unchangedFrom(ctx context.Context, entries []fstree.Entry, parent *repo.Manifest) (map[string]repo.File, error) {
	byPath := make(map[string]*repo.File, len(parent.Files))
	for i := range parent.Files {
		byPath[parent.Files[i].Path] = &parent.Files[i]
	}
	out := map[string]repo.File{}
	for i := range entries {
		en := &entries[i]
		pf := byPath[en.Path]
		if en.Type != repo.TypeRegular || en.Size == 0 || pf == nil || pf.Type != en.Type || pf.Size != en.Size {
			continue
		}
		if !en.ModTime.Equal(pf.ModTime) {
			same, err := contentMatches(ctx, en.Abs, pf)
			if err != nil {
				return nil, err
			}
			if !same {
				continue
			}
		}
		f := en.File
		f.SHA256 = pf.SHA256
		for _, x := range pf.Extents {
			if x.Backup == "" {
				x.Backup = parent.ID
			}
			f.Extents = append(f.Extents, x)
		}
		out[en.Path] = f
	}
	return out, nil
}

// contentMatches reads the file at p and compares it, extent by extent, with the
// hashes a backup recorded for f.
func contentMatches(ctx context.Context, p string, f *repo.File) (bool, error) {
	fh, err := os.Open(p)
	if err != nil {
		return false, fmt.Errorf("read %s: %w", p, err)
	}
	defer fh.Close()
	exts := append([]repo.Extent(nil), f.Extents...)
	sort.Slice(exts, func(i, j int) bool { return exts[i].Offset < exts[j].Offset })
	h := sha256.New()
	var pos int64
	for _, x := range exts {
		if err := ctx.Err(); err != nil {
			return false, err
		}
		if x.Offset != pos {
			return false, nil
		}
		h.Reset()
		n, err := io.Copy(h, io.NewSectionReader(fh, x.Offset, x.Length))
		if err != nil {
			return false, fmt.Errorf("read %s: %w", p, err)
		}
		if n != x.Length || hex.EncodeToString(h.Sum(nil)) != x.SHA256 {
			return false, nil
		}
		pos += x.Length
	}
	return pos == f.Size, nil
}

// PlanRestore picks the backup (by id or tag, else the newest finished at or before
// the target time) and the backups its content is read from.
func (e *Engine) PlanRestore(ctx context.Context, req engine.RestoreRequest) (*engine.RestorePlan, error) {
	history, err := req.Repo.Backups(ctx, e.src.Name)
	if err != nil {
		return nil, err
	}
	m, err := engine.Select(history, req.BackupID, req.To)
	if err != nil {
		return nil, err
	}
	chain, err := req.Repo.Chain(ctx, m)
	if err != nil {
		return nil, err
	}
	// Restorable: any instant from the first backup on (to the newest backup before it).
	plan := &engine.RestorePlan{Source: e.src.Name, Kind: e.Kind(), To: m.Finished, Target: req.Target, Engine: m,
		Earliest: history[0].Finished}
	for _, cm := range chain {
		plan.Backups = append(plan.Backups, cm)
	}
	repo.SortManifests(plan.Backups)
	objects, stored := readSet(m, chain)
	var content int64
	for _, f := range m.Files {
		content += f.Size
	}
	plan.Steps = []string{
		fmt.Sprintf("write %d entries (%s) under %s, each path of the source at TARGET/<base name>", len(m.Files), engine.Bytes(content), req.Target),
		fmt.Sprintf("read %d objects (%s stored), checking every extent's SHA-256", objects, engine.Bytes(stored)),
	}
	return plan, nil
}

// readSet counts the objects a restore of m reads, and their stored size.
func readSet(m *repo.Manifest, chain map[string]*repo.Manifest) (int, int64) {
	used := map[string]map[int]bool{}
	for _, f := range m.Files {
		for _, x := range f.Extents {
			b := x.Backup
			if b == "" {
				b = m.ID
			}
			if used[b] == nil {
				used[b] = map[int]bool{}
			}
			used[b][x.Object] = true
		}
	}
	n, size := 0, int64(0)
	for b, objs := range used {
		for i := range objs {
			n++
			size += chain[b].Objects[i].Size
		}
	}
	return n, size
}

// Restore writes the backup's files under req.Target (each path at TARGET/<base
// name>), through a staging directory: on any failure the target is left as found.
func (e *Engine) Restore(ctx context.Context, req engine.RestoreRequest, plan *engine.RestorePlan) error {
	m, ok := plan.Engine.(*repo.Manifest)
	if !ok {
		return fmt.Errorf("restore of %s: plan was not made by the files engine", e.src.Name)
	}
	if err := req.Repo.CheckKey(ctx, m); err != nil {
		return err
	}
	files := make([]*repo.File, len(m.Files))
	var total int64
	for i := range m.Files {
		files[i] = &m.Files[i]
		total += m.Files[i].Size
	}
	if req.Progress == nil {
		req.Progress = engine.NoProgress{}
	}
	req.Progress.SetTotal(total)
	t, err := fstree.PrepareTarget(req.Target, fstree.TargetOptions{Force: req.Force})
	if err != nil {
		return err
	}
	err = fstree.RestoreFiles(ctx, req.Repo, m, files, t.Staging(), req.Progress.Add)
	if err == nil {
		err = t.Commit()
	}
	if err != nil {
		t.Abort()
		return err
	}
	return nil
}
