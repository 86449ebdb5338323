package mssql

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/hartonomous/hartvault/internal/engine"
	"github.com/hartonomous/hartvault/internal/engine/mssql/clr"
	"github.com/hartonomous/hartvault/internal/engine/mssql/tsql"
	"github.com/hartonomous/hartvault/internal/fstree"
	"github.com/hartonomous/hartvault/internal/repo"
)

// ScriptName is the deploy script's file name in a CLR export.
const ScriptName = "deploy-clr.sql"

// exportCLR reads the CLR assemblies of every database and stores those whose export
// changed since the last one this repository holds; unchanged exports refer to the
// backup that stored them.
func (e *Engine) exportCLR(ctx context.Context, srv Server, cat *catalog, b *repo.Backup, pw *repo.PackWriter, log *slog.Logger) ([]CLRExport, error) {
	var out []CLRExport
	for _, db := range e.src.Databases {
		x, err := srv.CLR(ctx, db)
		if err != nil {
			return nil, e.errorf("%w", err)
		}
		if len(e.src.CLRAssemblies) > 0 && len(x.Assemblies) > 0 {
			if x.Assemblies, err = clr.Closure(x.Assemblies, e.src.CLRAssemblies); err != nil {
				return nil, e.errorf("database %s: clr_assemblies: %w", db, err)
			}
			x = onlyBoundTo(x)
		}
		if len(x.Assemblies) == 0 {
			log.Info("no user CLR assemblies to export", "database", db)
			continue
		}
		ordered, err := clr.Order(x.Assemblies)
		if err != nil {
			return nil, e.errorf("database %s: %w", db, err)
		}
		script, err := clr.Script(x)
		if err != nil {
			return nil, e.errorf("database %s: CLR deploy script: %w", db, err)
		}
		sum := sha256.Sum256([]byte(script))
		ex := CLRExport{Database: db, SHA256: hex.EncodeToString(sum[:]), Skipped: x.Skipped}
		for _, a := range ordered {
			ex.Assemblies = append(ex.Assemblies, a.Name)
		}
		if prev, holder := cat.lastCLR(db); prev != nil && prev.SHA256 == ex.SHA256 {
			ex.Holder, ex.Paths = holder, prev.Paths
			log.Info("CLR assemblies unchanged", "database", db, "stored in", holder)
			out = append(out, ex)
			continue
		}
		dir := tsql.FileToken(db) + "/clr/"
		put := func(name string, content []byte) error {
			exts, err := pw.Write(bytes.NewReader(content), 0)
			if err != nil {
				return e.errorf("store CLR file %s of %s: %w", name, db, err)
			}
			f := repo.File{Path: dir + name, Type: repo.TypeRegular, Mode: 0o644, ModTime: e.opts.Now().UTC(), Size: int64(len(content)), Extents: exts}
			h := sha256.Sum256(content)
			f.SHA256 = hex.EncodeToString(h[:])
			b.AddBytes(f.Size)
			b.AddFile(f)
			ex.Paths = append(ex.Paths, f.Path)
			return nil
		}
		used := map[string]bool{}
		for _, a := range ordered {
			for _, f := range a.Files {
				name := tsql.FileToken(a.Name) + ".dll"
				if f.FileID != 1 {
					name = tsql.FileToken(a.Name) + "." + tsql.FileToken(baseName(f.Name))
				}
				for n := 2; used[strings.ToLower(name)]; n++ {
					name = fmt.Sprintf("%s.%d", name, n)
				}
				used[strings.ToLower(name)] = true
				if err := put(name, f.Content); err != nil {
					return nil, err
				}
			}
		}
		if err := put(ScriptName, []byte(script)); err != nil {
			return nil, err
		}
		log.Info("CLR assemblies exported", "database", db, "assemblies", ex.Assemblies)
		out = append(out, ex)
	}
	return out, nil
}

func baseName(p string) string {
	_, b := splitAny(p)
	return b
}

// onlyBoundTo keeps the modules and types bound to the export's assemblies.
func onlyBoundTo(x clr.Export) clr.Export {
	keep := map[string]bool{}
	for _, a := range x.Assemblies {
		keep[strings.ToLower(a.Name)] = true
	}
	var mods []clr.Module
	for _, m := range x.Modules {
		if keep[strings.ToLower(m.Assembly)] {
			mods = append(mods, m)
		}
	}
	var types []clr.Type
	for _, t := range x.Types {
		if keep[strings.ToLower(t.Assembly)] {
			types = append(types, t)
		}
	}
	x.Modules, x.Types = mods, types
	return x
}

// lastCLR returns the newest CLR export of a database and the backup holding its files.
func (c *catalog) lastCLR(db string) (*CLRExport, string) {
	for i := len(c.manifests) - 1; i >= 0; i-- {
		m := c.manifests[i]
		if ex := c.infos[m.ID].clrExportOf(db); ex != nil {
			holder := ex.Holder
			if holder == "" {
				holder = m.ID
			}
			return ex, holder
		}
	}
	return nil, ""
}

// clrPlan restores CLR exports into a directory.
type clrPlan struct {
	target string
	items  []clrItem
	apply  string // the database the scripts are applied to ("" when not applying)
}

type clrItem struct {
	database string
	export   *CLRExport
	from     *repo.Manifest // the backup chosen
	holder   *repo.Manifest // the backup holding the files
	files    []*repo.File   // with paths rewritten to <database>/<file>
}

// planCLR plans `restore SOURCE --target DIR [--database DB] [--apply [--as NAME]]`:
// the CLR export of each database as of the chosen backup.
func (e *Engine) planCLR(ctx context.Context, req engine.RestoreRequest, cat *catalog) (*engine.RestorePlan, error) {
	dbs := e.knownDatabases(cat)
	if req.Database != "" {
		dbs = []string{req.Database}
	}
	cp := &clrPlan{target: req.Target}
	p := &engine.RestorePlan{Source: e.src.Name, Kind: e.Kind(), Target: req.Target, Engine: cp}
	seen := map[string]bool{}
	for _, db := range dbs {
		var candidates []*repo.Manifest
		for _, m := range cat.manifests {
			if cat.infos[m.ID].clrExportOf(db) != nil {
				candidates = append(candidates, m)
			}
		}
		if len(candidates) == 0 {
			if req.Database != "" {
				return nil, e.errorf("no CLR export of database %s in this repository (clr: true exports it with every backup)", db)
			}
			continue
		}
		var m *repo.Manifest
		var err error
		if req.BackupID != "" {
			m, err = repo.Find(cat.manifests, req.BackupID)
			if err == nil && cat.infos[m.ID].clrExportOf(db) == nil {
				err = fmt.Errorf("%w: backup %s holds no CLR export of %s", repo.ErrNoBackup, m.ID, db)
			}
		} else {
			m, err = engine.Select(candidates, "", req.To)
		}
		if err != nil {
			return nil, e.errorf("CLR of %s: %w", db, err)
		}
		ex := cat.infos[m.ID].clrExportOf(db)
		holder := m
		if ex.Holder != "" && ex.Holder != m.ID {
			if holder, err = req.Repo.Manifest(ctx, e.src.Name, ex.Holder); err != nil {
				return nil, e.errorf("CLR of %s as of %s is stored in backup %s: %w", db, m.ID, ex.Holder, err)
			}
		}
		item := clrItem{database: db, export: ex, from: m, holder: holder}
		byPath := map[string]*repo.File{}
		for i := range holder.Files {
			byPath[holder.Files[i].Path] = &holder.Files[i]
		}
		var size int64
		var names []string
		for _, pth := range ex.Paths {
			f := byPath[pth]
			if f == nil {
				return nil, e.errorf("backup %s lacks file %s of the CLR export of %s", holder.ID, pth, db)
			}
			cf := *f
			cf.Path = tsql.FileToken(db) + "/" + path.Base(pth)
			item.files = append(item.files, &cf)
			size += f.Size
			names = append(names, path.Base(pth))
		}
		cp.items = append(cp.items, item)
		if !seen[holder.ID] {
			seen[holder.ID] = true
			p.Backups = append(p.Backups, holder)
		}
		if p.To.Before(m.Finished) {
			p.To = m.Finished
		}
		p.Steps = append(p.Steps, fmt.Sprintf("write %d files (%s) of the CLR export of %s as of backup %s to %s: %s",
			len(item.files), engine.Bytes(size), db, m.ID, filepath.Join(req.Target, tsql.FileToken(db)), strings.Join(names, ", ")))
	}
	if len(cp.items) == 0 {
		return nil, e.errorf("no CLR export in this repository (clr: true exports the assemblies with every backup)")
	}
	if req.Apply {
		if len(cp.items) > 1 {
			return nil, e.errorf("--apply runs one database's deploy script: name it with --database")
		}
		cp.apply = cp.items[0].database
		if req.As != "" {
			cp.apply = req.As
		}
		it := cp.items[0]
		p.Steps = append(p.Steps, fmt.Sprintf("-- apply %s to database %s: drop and create again assemblies %s (in this order) and the objects bound to them, in one transaction",
			ScriptName, tsql.QuoteName(cp.apply), strings.Join(it.export.Assemblies, ", ")))
	} else if req.As != "" {
		return nil, e.errorf("--as names the database --apply deploys to; without --apply it has no use")
	}
	repo.SortManifests(p.Backups)
	return p, nil
}

// restoreCLR writes the planned files through a staging directory inside the target,
// then applies the script when asked.
func (e *Engine) restoreCLR(ctx context.Context, req engine.RestoreRequest, cp *clrPlan) error {
	if req.Progress == nil {
		req.Progress = engine.NoProgress{}
	}
	var total int64
	for _, it := range cp.items {
		for _, f := range it.files {
			total += f.Size
		}
	}
	req.Progress.SetTotal(total)
	t, err := fstree.PrepareTarget(cp.target, fstree.TargetOptions{Force: req.Force})
	if err != nil {
		return err
	}
	for _, it := range cp.items {
		if err := req.Repo.CheckKey(ctx, it.holder); err != nil {
			t.Abort()
			return err
		}
		if err := fstree.RestoreFiles(ctx, req.Repo, it.holder, it.files, t.Staging(), req.Progress.Add); err != nil {
			t.Abort()
			return err
		}
	}
	if err := t.Commit(); err != nil {
		t.Abort()
		return err
	}
	if cp.apply == "" {
		return nil
	}
	it := cp.items[0]
	script, err := os.ReadFile(filepath.Join(cp.target, tsql.FileToken(it.database), ScriptName))
	if err != nil {
		return e.errorf("read the restored deploy script: %w", err)
	}
	srv, err := e.connect(ctx)
	if err != nil {
		return err
	}
	defer srv.Close()
	batches := clr.Batches(string(script))
	e.log(req.Log).Info("applying the CLR deploy script", "database", cp.apply, "batches", len(batches))
	if err := srv.ExecIn(ctx, cp.apply, batches); err != nil {
		return e.errorf("apply %s to %s (the files are restored in %s; nothing was changed in the database): %w", ScriptName, cp.apply, cp.target, err)
	}
	return nil
}
