package mssql

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/hartonomous/hartvault/internal/engine"
	"github.com/hartonomous/hartvault/internal/engine/mssql/tsql"
	"github.com/hartonomous/hartvault/internal/plan"
	"github.com/hartonomous/hartvault/internal/repo"
)

// tailBackup describes the tail-log backup as the plan shows it.
func (e *Engine) tailBackup(database string, devs tsql.Devices, layout tsql.Layout, id string) tsql.Backup {
	o := e.src.MSSQLOptions
	return tsql.Backup{Database: database, Type: repo.TypeLog, To: devs, Compression: o.Compression, Checksum: o.Checksum,
		EncryptionCertificate: o.EncryptionCertificate, MaxTransferSize: layout.MaxTransferSize, BlockSize: layout.BlockSize,
		NoRecovery: true, Name: "hartvault " + id, Description: "hartvault backup " + id + " of source " + e.src.Name, Stats: o.Stats}
}

// tailStatement is the tail-log BACKUP as the plan shows it, with tailID for the id of
// the backup it becomes.
func (e *Engine) tailStatement(dp *dbPlan) (string, error) {
	name := tsql.BackupFileNames(dp.database, repo.TypeLog, 1)[0]
	var devs tsql.Devices
	layout := tsql.DiskLayout()
	switch e.src.Mode {
	case plan.MSSQLModeURL:
		devs = tsql.ToURL(dp.container + "/data/" + e.src.Name + "/" + tailID + "/" + name)
		layout = tsql.Layout{Stripes: 1, MaxTransferSize: tsql.URLMaxTransferSize, BlockSize: tsql.URLBlockSize}
	default:
		devs = tsql.ToDisk(tsql.JoinServerPath(e.src.StagingDir, stagingName(tailID, name)))
	}
	return tsql.BackupStatement(e.tailBackup(dp.database, devs, layout, tailID))
}

// tailDevices is where the tail-log backup is read from by its restore, as the plan
// shows it.
func (e *Engine) tailDevices(id string, dp *dbPlan) tsql.Devices {
	name := tsql.BackupFileNames(dp.database, repo.TypeLog, 1)[0]
	if e.src.Mode == plan.MSSQLModeURL {
		return tsql.ToURL(dp.container + "/data/" + e.src.Name + "/" + id + "/" + name)
	}
	return tsql.ToDisk(tsql.JoinServerPath(e.src.StagingDir, fmt.Sprintf("hartvault-restore-%s-%02d-%s", dp.stamp, len(dp.entries)+1, name)))
}

// Restore carries out a plan of PlanRestore: a database restore, or a CLR export.
func (e *Engine) Restore(ctx context.Context, req engine.RestoreRequest, p *engine.RestorePlan) error {
	switch ep := p.Engine.(type) {
	case *clrPlan:
		return e.restoreCLR(ctx, req, ep)
	case *dbPlan:
		if ep.source != e.src.Name {
			return e.errorf("the plan is for source %s", ep.source)
		}
		return e.restoreDatabase(ctx, req, ep)
	}
	return e.errorf("the plan was not made by the SQL Server engine")
}

func (e *Engine) restoreDatabase(ctx context.Context, req engine.RestoreRequest, dp *dbPlan) error {
	log := e.log(req.Log)
	if req.Progress == nil {
		req.Progress = engine.NoProgress{}
	}
	req.Progress.SetTotal(dp.progress)
	// A wrong key fails here, before the server is touched.
	for _, en := range dp.entries {
		if en.db.Mode == plan.MSSQLModeStream {
			if err := req.Repo.CheckKey(ctx, en.m); err != nil {
				return err
			}
		}
	}
	srv, err := e.connect(ctx)
	if err != nil {
		return err
	}
	defer srv.Close()
	ti, err := srv.Database(ctx, dp.target)
	if err != nil {
		return e.errorf("%w", err)
	}
	if ti.Exists != dp.existed {
		return e.errorf("database %s was %s when the restore was planned and is %s now: plan again", dp.target, existence(dp.existed), existence(ti.Exists))
	}
	if dp.urlMode || dp.tail && e.src.Mode == plan.MSSQLModeURL {
		if _, err := e.urlDestination(ctx, req.Repo, srv, dp.tail); err != nil {
			return err
		}
	}

	var singleUser, touched bool
	fail := func(what string, err error) error {
		if singleUser && !touched {
			if merr := srv.Exec(context.WithoutCancel(ctx), tsql.MultiUser(dp.target), nil); merr != nil {
				log.Warn("could not give the database back to all users", "database", dp.target, "error", merr)
			}
		}
		if touched {
			return e.errorf("restore of %s failed at %s: %w; the database is left RESTORING: run the restore again, or %s to bring it online as it is",
				dp.target, what, err, tsql.Recover(dp.target))
		}
		return e.errorf("restore of %s failed at %s (the database was not changed): %w", dp.target, what, err)
	}
	var tail *entry
	for _, a := range dp.actions {
		switch a.kind {
		case actSQL:
			log.Info("running", "statement", a.sql)
			if err := srv.Exec(ctx, a.sql, nil); err != nil {
				return fail(a.sql, err)
			}
			if strings.HasSuffix(a.sql, "SET SINGLE_USER WITH ROLLBACK IMMEDIATE;") {
				singleUser = true
			}
		case actTail:
			tail, err = e.takeTail(ctx, req, srv, dp, ti)
			if tail != nil {
				touched = true // the database is RESTORING from here on
			}
			if err != nil {
				return fail("the tail-log backup", err)
			}
			log.Info("tail-log backup stored", "backup", tail.m.ID)
		case actRestore:
			if err := e.runRestore(ctx, req, srv, a.entry, a.stage, a.sql, &touched); err != nil {
				return fail(a.sql, err)
			}
		case actRestoreTail:
			devs, stage, err := e.devicesFor(tail, dp, len(dp.entries))
			if err != nil {
				return fail("the restore of the tail-log backup", err)
			}
			r := a.restore
			r.From = devs
			stmt, err := tsql.RestoreStatement(r)
			if err != nil {
				return fail("the restore of the tail-log backup", err)
			}
			if err := e.runRestore(ctx, req, srv, tail, stage, stmt, &touched); err != nil {
				return fail(stmt, err)
			}
		}
	}
	return nil
}

func existence(b bool) string {
	if b {
		return "present"
	}
	return "absent"
}

// runRestore stages a stream-mode backup's files, runs its RESTORE with progress, and
// removes what it staged.
func (e *Engine) runRestore(ctx context.Context, req engine.RestoreRequest, srv Server, en *entry, stage []staged, stmt string, touched *bool) error {
	log := e.log(req.Log)
	defer func() {
		for _, s := range stage {
			_ = os.Remove(s.local)
		}
	}()
	if len(stage) > 0 {
		log.Info("staging", "backup", en.m.ID, "files", len(stage))
		if err := stageFiles(ctx, req.Repo, en.m, stage, req.Progress.Add); err != nil {
			return fmt.Errorf("stage backup %s: %w", en.m.ID, err)
		}
	}
	log.Info("running", "statement", stmt)
	*touched = true
	pp := &percentProgress{p: req.Progress, size: en.db.BackupSet.Size}
	if err := srv.Exec(ctx, stmt, pp.percent); err != nil {
		return err
	}
	pp.done()
	return nil
}

// stageFiles writes files of backup m to their staging paths, checking every extent's
// hash; they are readable by the group (SQL Server's service account on Linux when the
// staging directory is its group's).
func stageFiles(ctx context.Context, r *repo.Repo, m *repo.Manifest, st []staged, progress func(int64)) (err error) {
	handles := map[*repo.File]*os.File{}
	defer func() {
		for _, fh := range handles {
			if cerr := fh.Close(); err == nil {
				err = cerr
			}
		}
	}()
	files := make([]*repo.File, 0, len(st))
	for _, s := range st {
		fh, err := os.OpenFile(s.local, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o640)
		if err != nil {
			return err
		}
		handles[s.file] = fh
		if err := fh.Truncate(s.file.Size); err != nil {
			return err
		}
		files = append(files, s.file)
	}
	err = r.ReadFiles(ctx, m, files, progress, func(f *repo.File, x repo.Extent, data io.Reader) error {
		fh := handles[f]
		if fh == nil {
			return fmt.Errorf("unexpected file %s", f.Path)
		}
		_, err := io.Copy(io.NewOffsetWriter(fh, x.Offset), data)
		return err
	})
	if err != nil {
		return err
	}
	for _, fh := range handles {
		if err := fh.Sync(); err != nil {
			return err
		}
	}
	return nil
}

// takeTail backs up the tail of the log WITH NORECOVERY and commits it as a log backup
// of the source, so the transactions it holds are safe before the database is replaced.
func (e *Engine) takeTail(ctx context.Context, req engine.RestoreRequest, srv Server, dp *dbPlan, ti DatabaseInfo) (*entry, error) {
	lock, err := req.Repo.Lock(ctx, e.src.Name, "tail-log backup")
	if err != nil {
		return nil, err
	}
	defer lock.Release(context.WithoutCancel(ctx))
	si, err := srv.Info(ctx)
	if err != nil {
		return nil, err
	}
	var dest destination
	switch e.src.Mode {
	case plan.MSSQLModeURL:
		dest, err = e.urlDestination(ctx, req.Repo, srv, true)
	default:
		dest, err = e.streamDestination()
	}
	if err != nil {
		return nil, err
	}
	b, err := req.Repo.BeginBackup(ctx, lock, repo.BackupSpec{Source: e.src.Name, Kind: plan.KindMSSQL, Type: repo.TypeLog})
	if err != nil {
		return nil, err
	}
	ok := false
	pw := b.NewPackWriter(ctx)
	defer func() {
		if !ok {
			pw.Abort()
			b.Abort(context.WithoutCancel(ctx))
		}
	}()
	run := backupRun{e: e, srv: srv, b: b, pw: pw, dest: dest, progress: engine.NoProgress{}, log: e.log(req.Log),
		compression: e.src.MSSQLOptions.Compression && !si.Express()}
	db, err := run.database(ctx, &decision{db: dp.database, info: ti, typ: repo.TypeLog, size: ti.LogBytes}, true)
	if err != nil {
		// SQL Server may have taken the tail (the database is RESTORING) even though
		// storing it failed: then its files are kept where the server wrote them.
		if now, derr := srv.Database(ctx, dp.database); derr == nil && strings.EqualFold(now.State, "RESTORING") {
			ok = true // keep what the server wrote
			return &entry{}, fmt.Errorf("%w; the tail-log backup itself ran: the database is RESTORING and the tail of its log is in %s (copy it away: the next backup of %s removes uncommitted data)",
				err, strings.Join(run.written.Paths, ", "), e.src.Name)
		}
		return nil, err
	}
	if err := pw.Close(); err != nil {
		return nil, err
	}
	info := Info{Server: si.Name, Version: si.Version, Edition: si.Edition, Mode: e.src.Mode, Databases: []DatabaseBackup{*db},
		Warnings: []string{fmt.Sprintf("%s: tail-log backup taken before a restore over the database (it was left RESTORING)", dp.database)}}
	if err := b.SetEngine(info); err != nil {
		return nil, err
	}
	m, err := b.Commit(ctx)
	if err != nil {
		return nil, err
	}
	ok = true
	return &entry{m: m, db: &info.Databases[0]}, nil
}
