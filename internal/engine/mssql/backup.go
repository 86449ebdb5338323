package mssql

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/hartonomous/hartvault/internal/engine"
	"github.com/hartonomous/hartvault/internal/engine/mssql/chain"
	"github.com/hartonomous/hartvault/internal/engine/mssql/tsql"
	"github.com/hartonomous/hartvault/internal/plan"
	"github.com/hartonomous/hartvault/internal/repo"
)

// decision is what a run does for one database, worked out before anything is done.
type decision struct {
	db        string
	info      DatabaseInfo
	typ       string
	requested string
	reason    string
	setFull   bool
	warnings  []string
	size      int64 // estimated backup size before compression, for striping and progress
}

// Backup takes one backup of every database of the source (the plan's type, changed
// per database when a precondition asks for it), verifies it, records its msdb row,
// exports the CLR assemblies when they changed, and commits one manifest.
func (e *Engine) Backup(ctx context.Context, req engine.BackupRequest) (*repo.Manifest, error) {
	typ := req.Type
	switch typ {
	case "":
		typ = repo.TypeFull
	case repo.TypeFull, repo.TypeDiff, repo.TypeLog:
	default:
		return nil, e.errorf("SQL Server has full, diff and log backups, not %s", typ)
	}
	o := e.src.MSSQLOptions
	if o.CopyOnly && typ != repo.TypeFull {
		return nil, e.errorf("copy_only: true takes copy-only full backups only (a differential needs a full base outside copy-only, and copy-only log backups do not form a chain): use --type full")
	}
	if req.Progress == nil {
		req.Progress = engine.NoProgress{}
	}
	log := e.log(req.Log)
	srv, err := e.connect(ctx)
	if err != nil {
		return nil, err
	}
	defer srv.Close()
	si, err := srv.Info(ctx)
	if err != nil {
		return nil, e.errorf("%w", err)
	}
	cat, err := e.catalog(ctx, req.Repo)
	if err != nil {
		return nil, err
	}
	if req.Tag != "" {
		if _, err := repo.Find(cat.manifests, req.Tag); err == nil {
			return nil, e.errorf("tag %q is already used by a backup of %s", req.Tag, e.src.Name)
		}
	}

	var warnings []string
	var problems []string
	var decisions []*decision
	for _, db := range e.src.Databases {
		d, err := e.decide(ctx, srv, cat, db, typ)
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		decisions = append(decisions, d)
	}
	if len(problems) > 0 {
		return nil, e.errorf("%s", strings.Join(problems, "; "))
	}
	compression := o.Compression
	if compression && si.Express() {
		compression = false
		warnings = append(warnings, fmt.Sprintf("%s is SQL Server Express, which cannot compress backups: taken without COMPRESSION", si.Name))
	}

	var dest destination
	switch e.src.Mode {
	case plan.MSSQLModeURL:
		dest, err = e.urlDestination(ctx, req.Repo, srv, true)
	case plan.MSSQLModeStream:
		dest, err = e.streamDestination()
	default:
		err = e.errorf("unknown mode %q", e.src.Mode)
	}
	if err != nil {
		return nil, err
	}

	for _, d := range decisions {
		if d.setFull {
			stmt := tsql.SetRecoveryFull(d.db)
			log.Info("switching to the FULL recovery model (set_full_recovery)", "database", d.db, "statement", stmt)
			if err := srv.Exec(ctx, stmt, nil); err != nil {
				return nil, e.errorf("set database %s to FULL recovery: %w", d.db, err)
			}
			warnings = append(warnings, fmt.Sprintf("%s used the %s recovery model: switched to FULL (set_full_recovery: true)", d.db, d.info.RecoveryModel))
		}
		if d.reason != "" {
			log.Warn("backup type changed", "database", d.db, "requested", d.requested, "taking", d.typ, "reason", d.reason)
		}
		warnings = append(warnings, d.warnings...)
	}

	spec := repo.BackupSpec{Source: e.src.Name, Kind: plan.KindMSSQL, Type: strongest(decisions), Tag: req.Tag}
	if spec.Type == repo.TypeDiff {
		if base := baseManifest(cat, decisions[0]); base != "" {
			spec.Parent = base
		}
	}
	b, err := req.Repo.BeginBackup(ctx, req.Lock, spec)
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
	var total int64
	for _, d := range decisions {
		total += d.size * dest.weight()
	}
	req.Progress.SetTotal(total)

	info := Info{Server: si.Name, Version: si.Version, Edition: si.Edition, Mode: e.src.Mode}
	for _, d := range decisions {
		run := backupRun{e: e, srv: srv, b: b, pw: pw, dest: dest, progress: req.Progress, log: log, compression: compression}
		db, err := run.database(ctx, d, false)
		if err != nil {
			return nil, err
		}
		info.Databases = append(info.Databases, *db)
	}
	if e.src.CLR {
		exports, err := e.exportCLR(ctx, srv, cat, b, pw, log)
		if err != nil {
			return nil, err
		}
		info.CLR = exports
	}
	if err := pw.Close(); err != nil {
		return nil, err
	}
	for _, w := range warnings {
		log.Warn(w)
	}
	info.Warnings = warnings
	if err := b.SetEngine(info); err != nil {
		return nil, err
	}
	m, err := b.Commit(ctx)
	if err != nil {
		return nil, err
	}
	ok = true
	return m, nil
}

// strongest is the manifest's type: full when any database took a full backup, then
// diff, then log. Each database's own type is in the engine section.
func strongest(ds []*decision) string {
	t := repo.TypeLog
	for _, d := range ds {
		switch {
		case d.typ == repo.TypeFull:
			return repo.TypeFull
		case d.typ == repo.TypeDiff:
			t = repo.TypeDiff
		}
	}
	return t
}

// baseManifest is the backup holding the full a differential is based on.
func baseManifest(cat *catalog, d *decision) string {
	for _, en := range cat.entries(d.db) {
		if en.db.Type == repo.TypeFull && strings.EqualFold(en.db.BackupSet.BackupSetGUID, d.info.DiffBaseGUID) {
			return en.m.ID
		}
	}
	return ""
}

// decide checks one database and chooses the backup type: log backups need FULL
// recovery and a log chain this repository can continue; differentials need a full
// base this repository holds. Otherwise the backup becomes a full (as Ola
// Hallengren's ChangeBackupType does), with the reason; backups by other tools seen in
// msdb are reported.
func (e *Engine) decide(ctx context.Context, srv Server, cat *catalog, db, typ string) (*decision, error) {
	di, err := srv.Database(ctx, db)
	if err != nil {
		return nil, err
	}
	if !di.Exists {
		return nil, fmt.Errorf("database %s does not exist on the server", db)
	}
	if !strings.EqualFold(di.State, "ONLINE") {
		return nil, fmt.Errorf("database %s is %s: only an ONLINE database can be backed up", db, di.State)
	}
	d := &decision{db: db, info: di, typ: typ}
	change := func(to, reason string) {
		d.requested, d.typ, d.reason = typ, to, reason
		d.warnings = append(d.warnings, fmt.Sprintf("%s: %s backup requested, %s backup taken: %s", db, typ, to, reason))
	}

	ours := map[string]bool{}
	var lastID int64
	var fulls, all []chain.Record
	for _, en := range cat.entries(db) {
		r := en.db.BackupSet
		ours[strings.ToLower(r.BackupSetGUID)] = true
		lastID = max(lastID, r.BackupSetID)
		if !strings.EqualFold(r.DatabaseGUID, di.DatabaseGUID) || r.CopyOnly {
			continue
		}
		all = append(all, r)
		if r.Type == chain.Full {
			fulls = append(fulls, r)
		}
	}
	var foreign []chain.Record
	if lastID > 0 {
		rows, err := srv.History(ctx, HistoryQuery{Database: db, AfterSetID: lastID})
		if err != nil {
			return nil, err
		}
		for _, r := range rows {
			if !ours[strings.ToLower(r.BackupSetGUID)] && !r.CopyOnly {
				foreign = append(foreign, r)
			}
		}
	}

	switch {
	case strings.EqualFold(db, "master") && typ != repo.TypeFull:
		change(repo.TypeFull, "master has only full backups")
	case typ == repo.TypeLog:
		switch {
		case strings.EqualFold(di.RecoveryModel, "SIMPLE") && !e.src.SetFullRecovery:
			return nil, fmt.Errorf("database %s uses the SIMPLE recovery model: log backups need FULL (set set_full_recovery: true in the plan, or run %s)", db, tsql.SetRecoveryFull(db))
		case strings.EqualFold(di.RecoveryModel, "SIMPLE"):
			d.setFull = true
			change(repo.TypeFull, "the database was switched from SIMPLE to FULL recovery, and its log chain starts with a full backup")
		case di.LastLogBackupLSN.IsZero():
			change(repo.TypeFull, "no full backup has started a log chain yet (last_log_backup_lsn is NULL)")
		case len(fulls) == 0:
			change(repo.TypeFull, "this repository holds no full backup of it to start a restore from")
		case !attaches(all, di.LastLogBackupLSN):
			change(repo.TypeFull, fmt.Sprintf("the next log backup would start at LSN %s, which no backup in this repository reaches%s: a log backup now could not be restored from here",
				di.LastLogBackupLSN, describeForeign(foreign)))
			foreign = nil
		}
	case typ == repo.TypeDiff:
		var base *chain.Record
		for i := range fulls {
			if strings.EqualFold(fulls[i].BackupSetGUID, di.DiffBaseGUID) {
				base = &fulls[i]
			}
		}
		switch {
		case di.DiffBaseGUID == "":
			change(repo.TypeFull, "the database has no full backup to base a differential on")
		case len(fulls) == 0:
			change(repo.TypeFull, "this repository holds no full backup of it to base a differential on")
		case base == nil:
			var resetBy []chain.Record
			rows, err := srv.History(ctx, HistoryQuery{Database: db, AfterSetID: latestID(fulls)})
			if err != nil {
				return nil, err
			}
			for _, r := range rows {
				if strings.EqualFold(r.BackupSetGUID, di.DiffBaseGUID) {
					resetBy = append(resetBy, r)
				}
			}
			change(repo.TypeFull, fmt.Sprintf("the differential base was reset by a full backup taken outside hartvault%s: a differential now would need a full this repository does not hold",
				describeForeign(resetBy)))
		}
	}
	if len(foreign) > 0 {
		d.warnings = append(d.warnings, fmt.Sprintf("%s: msdb lists backups taken outside hartvault since its last backup here%s; a full resets the differential base and a log backup takes log this repository does not hold",
			db, describeForeign(foreign)))
	}
	switch d.typ {
	case repo.TypeLog:
		d.size = di.LogBytes
	default:
		d.size = di.DataBytes + di.LogBytes
	}
	return d, nil
}

func latestID(rs []chain.Record) int64 {
	var id int64
	for _, r := range rs {
		id = max(id, r.BackupSetID)
	}
	return id
}

// attaches reports whether a log backup starting at lsn continues a chain this
// repository holds: a log backup ends there, or a full or differential covers it.
func attaches(rs []chain.Record, lsn chain.LSN) bool {
	for _, r := range rs {
		switch r.Type {
		case chain.Log:
			if r.LastLSN.Cmp(lsn) == 0 {
				return true
			}
		default:
			// The log backup would run from lsn to now: first_lsn <= base.last_lsn < last_lsn.
			if lsn.Cmp(r.LastLSN) <= 0 {
				return true
			}
		}
	}
	return false
}

func describeForeign(rs []chain.Record) string {
	if len(rs) == 0 {
		return ""
	}
	var parts []string
	for i, r := range rs {
		if i == 3 {
			parts = append(parts, fmt.Sprintf("and %d more", len(rs)-3))
			break
		}
		parts = append(parts, fmt.Sprintf("%s finished %s to %s", r.Type, chain.FormatTime(r.Finish), strings.Join(r.Devices, ", ")))
	}
	return " (msdb: " + strings.Join(parts, "; ") + ")"
}

// destination is where SQL Server writes a backup and how hartvault stores it.
type destination interface {
	// devices names the stripes of one backup: what SQL Server writes to, and the
	// manifest paths they are stored as.
	devices(b *repo.Backup, db, typ string, size int64) (tsql.Devices, []string, tsql.Layout, error)
	// store registers or copies the written stripes into the backup.
	store(ctx context.Context, run *backupRun, devs tsql.Devices, paths []string, rec *chain.Record) error
	// cleanup removes what the server wrote outside the repository.
	cleanup(devs tsql.Devices)
	// weight is how many passes over the backup's bytes progress counts.
	weight() int64
}

// backupRun takes the backups of one run.
type backupRun struct {
	e           *Engine
	srv         Server
	b           *repo.Backup
	pw          *repo.PackWriter
	dest        destination
	progress    engine.Progress
	log         *slog.Logger
	compression bool
	// written are the devices of the last backup the server wrote.
	written tsql.Devices
	// size is the estimated size of the backup being taken (progress counts in it).
	size int64
}

// database takes, verifies and stores one database's backup. tail makes a tail-log
// backup (WITH NORECOVERY).
func (r *backupRun) database(ctx context.Context, d *decision, tail bool) (_ *DatabaseBackup, err error) {
	o := r.e.src.MSSQLOptions
	devs, paths, layout, err := r.dest.devices(r.b, d.db, d.typ, d.size)
	if err != nil {
		return nil, fmt.Errorf("back up %s: %w", d.db, err)
	}
	r.written, r.size = devs, d.size
	defer func() {
		// A tail-log backup that could not be stored is the only copy of the tail: keep it.
		if err == nil || !tail {
			r.dest.cleanup(devs)
		}
	}()
	stmt, err := tsql.BackupStatement(tsql.Backup{
		Database: d.db, Type: d.typ, To: devs, Compression: r.compression, Checksum: o.Checksum,
		CopyOnly: o.CopyOnly && d.typ == repo.TypeFull, EncryptionCertificate: o.EncryptionCertificate,
		MaxTransferSize: layout.MaxTransferSize, BlockSize: layout.BlockSize, NoRecovery: tail,
		Name: "hartvault " + r.b.ID(), Description: "hartvault backup " + r.b.ID() + " of source " + r.e.src.Name, Stats: o.Stats,
	})
	if err != nil {
		return nil, err
	}
	r.log.Info("backing up", "database", d.db, "type", d.typ, "statement", stmt)
	pp := &percentProgress{p: r.progress, size: d.size}
	if err := r.srv.Exec(ctx, stmt, pp.percent); err != nil {
		return nil, fmt.Errorf("back up %s: %w", d.db, err)
	}
	pp.done()
	rows, err := r.srv.History(ctx, HistoryQuery{Database: d.db, Device: devs.Paths[0]})
	if err != nil {
		return nil, err
	}
	var rec *chain.Record
	for i := range rows {
		if sameDevices(rows[i].Devices, devs.Paths) {
			rec = &rows[i]
		}
	}
	if rec == nil {
		return nil, fmt.Errorf("back up %s: the backup finished, but msdb holds no backup set written to %s", d.db, devs.Paths[0])
	}
	if string(rec.Type) != d.typ {
		return nil, fmt.Errorf("back up %s: msdb records a %s backup for %s, not %s", d.db, rec.Type, devs.Paths[0], d.typ)
	}
	out := &DatabaseBackup{Database: d.db, Type: d.typ, Requested: d.requested, Reason: d.reason, Mode: r.e.src.Mode,
		Paths: paths, BackupSet: *rec, Statement: stmt, TailLog: tail}
	if devs.Medium == tsql.URL {
		out.URLs = devs.Paths
	}
	if o.Verify {
		v, err := tsql.VerifyOnly(devs, rec.Checksums, 0)
		if err != nil {
			return nil, err
		}
		r.log.Info("verifying", "database", d.db, "statement", v)
		if err := r.srv.Exec(ctx, v, nil); err != nil {
			return nil, fmt.Errorf("back up %s: RESTORE VERIFYONLY failed: %w", d.db, err)
		}
		out.Verified = true
	}
	if d.typ != repo.TypeLog {
		if out.Files, err = r.srv.FileList(ctx, devs); err != nil {
			return nil, fmt.Errorf("back up %s: %w", d.db, err)
		}
	}
	if err := r.dest.store(ctx, r, devs, paths, rec); err != nil {
		return nil, fmt.Errorf("back up %s: %w", d.db, err)
	}
	return out, nil
}

func sameDevices(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !strings.EqualFold(a[i], b[i]) {
			return false
		}
	}
	return true
}

// percentProgress turns "N percent processed" into bytes of an estimated size.
type percentProgress struct {
	p        engine.Progress
	size     int64
	reported int64
	mu       sync.Mutex
}

func (p *percentProgress) percent(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n = min(max(n, 0), 100)
	if at := p.size * int64(n) / 100; at > p.reported {
		p.p.Add(at - p.reported)
		p.reported = at
	}
}

func (p *percentProgress) done() { p.percent(100) }

// streamDest is mode stream: SQL Server writes to staging_dir, hartvault reads the
// file at local_staging_dir and packs it through its pipeline, then deletes it.
type streamDest struct {
	server, local string
}

func (e *Engine) streamDestination() (destination, error) {
	st, err := os.Stat(e.src.LocalStagingDir)
	if err != nil {
		return nil, e.errorf("staging directory %s (local_staging_dir): %w", e.src.LocalStagingDir, err)
	}
	if !st.IsDir() {
		return nil, e.errorf("staging directory %s (local_staging_dir) is not a directory", e.src.LocalStagingDir)
	}
	return &streamDest{server: e.src.StagingDir, local: e.src.LocalStagingDir}, nil
}

func (s *streamDest) weight() int64 { return 2 }

// stagingName is a backup stripe's file name in the staging directory: unique per
// backup, so a leftover never collides.
func stagingName(id, name string) string { return "hartvault-" + id + "-" + name }

func (s *streamDest) devices(b *repo.Backup, db, typ string, size int64) (tsql.Devices, []string, tsql.Layout, error) {
	names := tsql.BackupFileNames(db, typ, 1)
	dev := tsql.ToDisk(tsql.JoinServerPath(s.server, stagingName(b.ID(), names[0])))
	return dev, []string{tsql.FileToken(db) + "/" + names[0]}, tsql.DiskLayout(), nil
}

func (s *streamDest) localPath(server string) string {
	_, base := splitAny(server)
	return filepath.Join(s.local, base)
}

func splitAny(p string) (string, string) {
	i := strings.LastIndexAny(p, `/\`)
	return p[:i+1], p[i+1:]
}

func (s *streamDest) store(ctx context.Context, run *backupRun, devs tsql.Devices, paths []string, rec *chain.Record) error {
	for i, dev := range devs.Paths {
		lp := s.localPath(dev)
		fh, err := os.Open(lp)
		if err != nil {
			return fmt.Errorf("read the backup file SQL Server wrote (staging_dir %s is %s here): %w", s.server, s.local, err)
		}
		st, err := fh.Stat()
		if err != nil {
			fh.Close()
			return err
		}
		pp := &percentProgress{p: run.progress, size: run.size / int64(len(devs.Paths))}
		cr := &countReader{r: fh, fn: func(n int64) {
			if st.Size() > 0 {
				pp.percent(int(n * 100 / st.Size()))
			}
		}}
		exts, err := run.pw.Write(cr, 0)
		fh.Close()
		if err != nil {
			return fmt.Errorf("store %s: %w", lp, err)
		}
		pp.done()
		f := repo.File{Path: paths[i], Type: repo.TypeRegular, Mode: 0o640, ModTime: rec.Finish.UTC(), Extents: exts}
		for _, x := range exts {
			f.Size += x.Length
		}
		if f.Size != st.Size() {
			return fmt.Errorf("store %s: read %d bytes of %d", lp, f.Size, st.Size())
		}
		if len(exts) == 1 {
			f.SHA256 = exts[0].SHA256
		}
		run.b.AddBytes(f.Size)
		run.b.AddFile(f)
	}
	return nil
}

func (s *streamDest) cleanup(devs tsql.Devices) {
	for _, dev := range devs.Paths {
		_ = os.Remove(s.localPath(dev))
	}
}

type countReader struct {
	r  io.Reader
	n  int64
	fn func(int64)
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	c.fn(c.n)
	return n, err
}

// hashObject reads an object back from the repository's storage: its size and SHA-256.
func hashObject(ctx context.Context, r *repo.Repo, key string) (int64, string, error) {
	body, err := r.Store().NewReader(ctx, key, 0, -1)
	if err != nil {
		return 0, "", err
	}
	defer body.Close()
	h := sha256.New()
	n, err := io.Copy(h, body)
	if err != nil {
		return 0, "", err
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

var errNotAzure = errors.New("mode url needs an azblob:// repository: SQL Server writes to Azure Blob Storage itself")
