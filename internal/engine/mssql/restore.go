package mssql

import (
	"context"
	"fmt"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/hartonomous/hartvault/internal/engine"
	"github.com/hartonomous/hartvault/internal/engine/mssql/chain"
	"github.com/hartonomous/hartvault/internal/engine/mssql/tsql"
	"github.com/hartonomous/hartvault/internal/plan"
	"github.com/hartonomous/hartvault/internal/repo"
)

var _ engine.Engine = (*Engine)(nil)

// dbPlan is the engine's part of a database restore plan.
type dbPlan struct {
	source   string
	database string // the database backed up
	target   string // the database restored (--as, else database)
	chain    *chain.Plan
	entries  []entry  // the backups restored, in order, with their manifests
	actions  []action // what Restore does, in order
	existed  bool     // the target database existed when planned
	stamp    string   // names staged files
	// tail takes a tail-log backup first; tailRestore also applies it, stopping at
	// tailStop (server time; zero: its end).
	tail         bool
	tailRestore  bool
	tailStop     time.Time
	urlMode      bool   // some backup is read from URLs: the credential is set first
	container    string // the repository's container URL, when it is in Azure
	progress     int64
	serverOffset time.Duration
}

type actionKind int

const (
	actSQL         actionKind = iota // run a statement
	actRestore                       // stage the backup if needed, run its RESTORE, remove what was staged
	actTail                          // take the tail-log backup and store it in the repository
	actRestoreTail                   // restore the tail-log backup just taken
)

// tailID stands for the tail-log backup's id in the plan: it is made when the backup starts.
const tailID = "<tail-log backup id>"

type action struct {
	kind  actionKind
	sql   string // the statement, as shown (for the tail: with tailID in its paths)
	entry *entry // actRestore
	// stage maps manifest files to staging paths (stream-mode backups).
	stage []staged
	// restore is the tail's RESTORE LOG without its devices, known once it is taken.
	restore tsql.Restore
}

type staged struct {
	file        *repo.File
	local, serv string
}

// PlanRestore plans a restore. With req.Target set it restores the CLR export of the
// source's databases into that directory; otherwise it restores req.Database (under
// req.As) to req.To or to the end of req.BackupID, with the dbatools rules (see
// chain), and lists every statement it will run.
func (e *Engine) PlanRestore(ctx context.Context, req engine.RestoreRequest) (*engine.RestorePlan, error) {
	cat, err := e.catalog(ctx, req.Repo)
	if err != nil {
		return nil, err
	}
	if req.Target != "" {
		if len(req.BackupFiles) > 0 {
			return nil, e.errorf("--backup-file is for database restores, not CLR exports (--target)")
		}
		return e.planCLR(ctx, req, cat)
	}
	if req.Apply {
		return nil, e.errorf("--apply deploys a CLR export: give --target DIR to restore it into")
	}
	db, err := e.chooseDatabase(req.Database, cat, len(req.BackupFiles) > 0)
	if err != nil {
		return nil, err
	}
	entries := cat.entries(db)
	target := chain.Target{Latest: req.To.Latest, Time: req.To.Time}
	if req.BackupID != "" {
		m, err := repo.Find(cat.manifests, req.BackupID)
		if err != nil {
			return nil, e.errorf("%w", err)
		}
		target = chain.Target{Ref: m.ID}
	} else if !req.To.Latest && req.To.Time.IsZero() {
		target.Latest = true
	}
	srv, err := e.connect(ctx)
	if err != nil {
		return nil, err
	}
	defer srv.Close()
	byRef := map[string]*entry{}
	for i := range entries {
		byRef[entries[i].name()] = &entries[i]
	}
	cp, err := planChain(db, records(entries), target)
	var fb *fallback
	if len(req.BackupFiles) > 0 || fallbackHelps(cp, err, target) {
		if fb, cp, err = e.planFallback(ctx, req, srv, db, entries, target, cp, err, byRef); err != nil {
			return nil, err
		}
	}
	if err != nil {
		return nil, e.errorf("restore of %s: %w", db, err)
	}
	dp := &dbPlan{source: e.src.Name, database: db, target: db, chain: cp, stamp: e.opts.Now().UTC().Format("20060102T150405Z")}
	if req.As != "" {
		dp.target = req.As
	}
	if cc, _, err := containerOf(req.Repo); err == nil {
		dp.container = strings.TrimRight(strings.SplitN(cc.URL(), "?", 2)[0], "/")
	}
	for _, r := range cp.Records() {
		en := *byRef[r.Ref]
		dp.entries = append(dp.entries, en)
		if dp.fromURL(&en) || en.ext != nil && en.ext.devices.Medium == tsql.URL && dp.inContainer(en.ext.devices.Paths) {
			dp.urlMode = true
		}
	}

	si, err := srv.Info(ctx)
	if err != nil {
		return nil, e.errorf("%w", err)
	}
	ti, err := srv.Database(ctx, dp.target)
	if err != nil {
		return nil, e.errorf("%w", err)
	}
	dp.existed = ti.Exists

	dp.serverOffset = si.UTCOffset
	if ti.Exists && !req.Force {
		return nil, e.errorf("database %s exists on %s (%s): restoring would replace it; give --force to replace it (and --tail-log to back up the tail of its log first), or --as NAME to restore under another name",
			dp.target, si.Name, ti.State)
	}
	if e.opts.TailLog || req.TailLog {
		beyond := req.BackupID == "" && (target.Latest || cp.StopAt.IsZero() && target.Time.After(cp.To))
		if err := e.checkTail(db, dp, ti, cp, target, beyond); err != nil {
			return nil, err
		}
	}

	p := &engine.RestorePlan{Source: e.src.Name, Kind: e.Kind(), To: cp.To, Earliest: cp.Earliest, Latest: cp.Latest, Engine: dp}
	steps := []string{}
	note := func(format string, args ...any) { steps = append(steps, "-- "+fmt.Sprintf(format, args...)) }
	for _, n := range cp.Notes {
		note("note: %s", n)
	}
	if fb != nil {
		for _, n := range fb.notes {
			note("backups taken outside hartvault: %s", n)
		}
	}
	for _, pr := range chain.Validate(records(entries)) {
		if pr.Severity == chain.SeverityError {
			note("warning: %s", pr.Msg)
		}
	}
	last := cp.Records()[len(cp.Records())-1]
	switch st, ok := cp.StopAtServerTime(); {
	case ok:
		note("restore %s as %s to %s (server time %s, STOPAT on every log restore)", tsql.QuoteName(db), tsql.QuoteName(dp.target), chain.FormatTime(cp.StopAt), st.Format(tsql.StopAtLayout))
	case dp.tailRestore && !dp.tailStop.IsZero():
		note("restore %s as %s to %s (server time %s): the backups below, then the tail of the log with STOPAT", tsql.QuoteName(db), tsql.QuoteName(dp.target), chain.FormatTime(target.Time), dp.tailStop.Format(tsql.StopAtLayout))
	case dp.tailRestore:
		note("restore %s as %s to its last transaction: the backups below, then the tail of the log", tsql.QuoteName(db), tsql.QuoteName(dp.target))
	default:
		note("restore %s as %s to the end of backup %s (%s)", tsql.QuoteName(db), tsql.QuoteName(dp.target), last.Ref, chain.FormatTime(cp.To))
	}
	if ti.Exists {
		note("database %s exists on %s (%s, %s recovery): it will be replaced (--force)", tsql.QuoteName(dp.target), si.Name, ti.State, ti.RecoveryModel)
	} else {
		note("database %s does not exist on %s: it will be created", tsql.QuoteName(dp.target), si.Name)
	}
	if dp.tail && !dp.tailRestore {
		note("the target lies within the backups this repository holds: the tail-log backup is taken and stored, not restored")
	}
	if dp.urlMode || dp.tail && e.src.Mode == plan.MSSQLModeURL {
		if dp.container == "" {
			return nil, e.errorf("--tail-log in mode url: %w", errNotAzure)
		}
		sec, err := tsql.SASCredential(dp.container, "sv=x&sig=x")
		if err != nil {
			return nil, e.errorf("%w", err)
		}
		steps = append(steps, sec.Display)
	}
	if ti.Exists && strings.EqualFold(ti.State, "ONLINE") {
		dp.actions = append(dp.actions, action{kind: actSQL, sql: tsql.SingleUser(dp.target)})
	}
	o := e.src.MSSQLOptions
	if dp.tail {
		tb, err := e.tailStatement(dp)
		if err != nil {
			return nil, err
		}
		dp.actions = append(dp.actions, action{kind: actTail, sql: tb})
	}
	rename := !strings.EqualFold(dp.target, db)
	stopAt, hasStop := cp.StopAtServerTime()
	for i := range dp.entries {
		en := &dp.entries[i]
		rec := en.db.BackupSet
		r := tsql.Restore{Database: dp.target, Log: en.db.Type == repo.TypeLog, Checksum: rec.Checksums, Stats: o.Stats,
			Replace: i == 0 && ti.Exists && !dp.tail}
		if hasStop && r.Log {
			r.StopAt = stopAt
		}
		if rename && !r.Log {
			if len(en.db.Files) == 0 && en.ext != nil {
				// Read now from its files, as a backup of the repository recorded it when taken.
				if en.db.Files, err = srv.FileList(ctx, en.ext.devices); err != nil {
					return nil, e.errorf("backup %s of %s: %w", en.name(), db, err)
				}
				if fl, err := tsql.FileListOnly(en.ext.devices); err == nil {
					note("backups taken outside hartvault: read %s", fl)
				}
			}
			if len(en.db.Files) == 0 {
				return nil, e.errorf("backup %s of %s has no file list (RESTORE FILELISTONLY): it cannot be restored under another name", en.name(), db)
			}
			files := en.db.Files
			if i > 0 {
				// The full placed its files; a differential moves only files added since.
				files = addedFiles(dp.entries[0].db.Files, files)
			}
			r.Moves = tsql.MovesFor(files, db, dp.target, "", "")
		}
		a := action{kind: actRestore, entry: en}
		devs, stage, err := e.devicesFor(en, dp, i)
		if err != nil {
			return nil, err
		}
		a.stage, r.From = stage, devs
		if a.sql, err = tsql.RestoreStatement(r); err != nil {
			return nil, err
		}
		dp.actions = append(dp.actions, a)
		dp.progress += rec.Size + fileBytes(stage)
	}
	if dp.tailRestore {
		r := tsql.Restore{Database: dp.target, Log: true, Checksum: o.Checksum, Stats: o.Stats, StopAt: dp.tailStop}
		shown := r
		shown.From = e.tailDevices(tailID, dp)
		sql, err := tsql.RestoreStatement(shown)
		if err != nil {
			return nil, err
		}
		dp.actions = append(dp.actions, action{kind: actRestoreTail, sql: sql, restore: r})
	}
	dp.actions = append(dp.actions, action{kind: actSQL, sql: tsql.Recover(dp.target)})

	for _, a := range dp.actions {
		switch a.kind {
		case actRestore:
			if x := a.entry.ext; x != nil {
				r := a.entry.db.BackupSet
				note("backup %s (%s, finished %s) was taken outside hartvault: SQL Server reads it from %s, position %d (found by %s)", x.ref, r.Type,
					chain.FormatTime(r.Finish), strings.Join(x.devices.Paths, ", "), max(x.devices.Position, 1), x.from)
				if x.devices.Medium == tsql.URL && !dp.inContainer(x.devices.Paths) {
					note("the server needs a credential for that URL's container: hartvault sets one only for its repository's")
				}
			}
			if len(a.stage) > 0 {
				note("stage backup %s (%d file(s), %s) from the repository into %s", a.entry.m.ID, len(a.stage), engine.Bytes(fileBytes(a.stage)), e.src.LocalStagingDir)
			}
			steps = append(steps, a.sql)
			if len(a.stage) > 0 {
				note("remove the staged file(s) of backup %s", a.entry.m.ID)
			}
		case actTail:
			steps = append(steps, a.sql)
			note("store the tail-log backup in the repository as log backup %s of %s (the database stays RESTORING)", tailID, e.src.Name)
		case actRestoreTail:
			if e.src.Mode == plan.MSSQLModeStream {
				note("stage backup %s from the repository into %s", tailID, e.src.LocalStagingDir)
			}
			steps = append(steps, a.sql)
		default:
			steps = append(steps, a.sql)
		}
	}
	p.Steps = steps
	seen := map[string]bool{}
	for _, en := range dp.entries {
		if en.m != nil && !seen[en.m.ID] {
			seen[en.m.ID] = true
			p.Backups = append(p.Backups, en.m)
		}
	}
	if dp.tailRestore {
		p.To, p.Latest = e.opts.Now(), e.opts.Now()
		if !target.Latest {
			p.To = target.Time
		}
	}
	return p, nil
}

// addedFiles returns the files of later that base does not have (by logical name).
func addedFiles(base, later []tsql.DatabaseFile) []tsql.DatabaseFile {
	have := map[string]bool{}
	for _, f := range base {
		have[strings.ToLower(f.LogicalName)] = true
	}
	var out []tsql.DatabaseFile
	for _, f := range later {
		if !have[strings.ToLower(f.LogicalName)] {
			out = append(out, f)
		}
	}
	return out
}

func fileBytes(st []staged) int64 {
	var n int64
	for _, s := range st {
		n += s.file.Size
	}
	return n
}

// chooseDatabase resolves --database: required when the source has several. With
// backup files given, a database that is not part of the source may be named.
func (e *Engine) chooseDatabase(name string, cat *catalog, files bool) (string, error) {
	known := e.knownDatabases(cat)
	if name == "" {
		if len(known) == 1 {
			return known[0], nil
		}
		return "", e.errorf("give --database: the source has databases %s", strings.Join(known, ", "))
	}
	for _, k := range known {
		if strings.EqualFold(k, name) {
			return k, nil
		}
	}
	if files {
		return name, nil
	}
	return "", e.errorf("database %s is not part of this source (its databases: %s)", name, strings.Join(known, ", "))
}

// devicesFor names where SQL Server reads one backup: its URLs, or the staging paths
// its files are copied to.
func (e *Engine) devicesFor(en *entry, dp *dbPlan, step int) (tsql.Devices, []staged, error) {
	if en.ext != nil {
		return en.ext.devices, nil, nil // where the other tool wrote it
	}
	switch en.db.Mode {
	case plan.MSSQLModeURL, plan.MSSQLModeStream:
		if dp.fromURL(en) {
			return tsql.ToURL(en.db.URLs...), nil, nil
		}
		if e.src.StagingDir == "" {
			if en.db.Mode == plan.MSSQLModeURL {
				return tsql.Devices{}, nil, e.errorf("backup %s of %s was written by SQL Server to %s, which is not this repository's container: restoring it from this copy needs staging_dir (mode: stream)",
					en.m.ID, en.db.Database, en.db.URLs[0])
			}
			return tsql.Devices{}, nil, e.errorf("backup %s of %s was taken in mode stream: restoring it needs staging_dir (mode: stream in the plan)", en.m.ID, en.db.Database)
		}
		byPath := map[string]*repo.File{}
		for i := range en.m.Files {
			byPath[en.m.Files[i].Path] = &en.m.Files[i]
		}
		var devs []string
		var st []staged
		for _, p := range en.db.Paths {
			f := byPath[p]
			if f == nil {
				return tsql.Devices{}, nil, e.errorf("backup %s lacks file %s", en.m.ID, p)
			}
			name := fmt.Sprintf("hartvault-restore-%s-%02d-%s", dp.stamp, step+1, path.Base(p))
			s := staged{file: f, local: filepath.Join(e.src.LocalStagingDir, name), serv: tsql.JoinServerPath(e.src.StagingDir, name)}
			st = append(st, s)
			devs = append(devs, s.serv)
		}
		return tsql.ToDisk(devs...), st, nil
	}
	return tsql.Devices{}, nil, e.errorf("backup %s of %s has unknown mode %q", en.m.ID, en.db.Database, en.db.Mode)
}

// inContainer reports whether every URL lies in the repository's container.
func (dp *dbPlan) inContainer(urls []string) bool {
	if dp.container == "" || len(urls) == 0 {
		return false
	}
	for _, u := range urls {
		if !strings.HasPrefix(u, dp.container+"/") {
			return false
		}
	}
	return true
}

// fromURL reports whether SQL Server reads a backup from its blobs: a url-mode backup
// whose blobs are in the repository's container. Others (stream mode, or a copy of a
// url-mode backup in a replica) are staged from the repository.
func (dp *dbPlan) fromURL(en *entry) bool {
	if en.db.Mode != plan.MSSQLModeURL || dp.container == "" || len(en.db.URLs) == 0 {
		return false
	}
	for _, u := range en.db.URLs {
		if !strings.HasPrefix(u, dp.container+"/") {
			return false
		}
	}
	return true
}

// checkTail decides whether the tail of the log is backed up (always, when asked and
// possible) and whether it is restored: when the target lies beyond the backups the
// repository holds, the tail carries the restore on to it.
func (e *Engine) checkTail(db string, dp *dbPlan, ti DatabaseInfo, cp *chain.Plan, to chain.Target, beyond bool) error {
	switch {
	case !strings.EqualFold(dp.target, db):
		return e.errorf("--tail-log backs up the database being replaced; %s is restored as %s, which leaves %s alone", db, dp.target, db)
	case !ti.Exists || !strings.EqualFold(ti.State, "ONLINE"):
		return e.errorf("--tail-log needs database %s online (it is %s)", db, stateOf(ti))
	case strings.EqualFold(ti.RecoveryModel, "SIMPLE"):
		return e.errorf("--tail-log: database %s uses the SIMPLE recovery model, which has no log backups", db)
	case ti.LastLogBackupLSN.IsZero():
		return e.errorf("--tail-log: database %s has no log chain (no full backup since it was created or switched to FULL)", db)
	}
	dp.tail = true
	if !beyond {
		return nil
	}
	recs := cp.Records()
	last := recs[len(recs)-1]
	follows := last.Type == chain.Log && last.LastLSN.Cmp(ti.LastLogBackupLSN) == 0 ||
		last.Type != chain.Log && ti.LastLogBackupLSN.Cmp(last.LastLSN) <= 0
	if !follows {
		return e.errorf("--tail-log: the tail-log backup of %s would start at LSN %s, but the restore chain ends at LSN %s (%s): log backups taken outside hartvault are missing; restore without --tail-log, or take a full backup first",
			db, ti.LastLogBackupLSN, last.LastLSN, last.Ref)
	}
	dp.tailRestore = true
	if !to.Latest {
		// The tail is taken now: STOPAT in the server's current zone.
		dp.tailStop = to.Time.In(time.FixedZone("", int(dp.serverOffset/time.Second)))
	}
	var kept []string
	for _, n := range cp.Notes {
		if !strings.Contains(n, "before the target") {
			kept = append(kept, n)
		}
	}
	cp.Notes = kept
	return nil
}

func stateOf(ti DatabaseInfo) string {
	if !ti.Exists {
		return "absent"
	}
	return ti.State
}
