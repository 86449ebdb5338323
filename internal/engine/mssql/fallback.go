package mssql

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hartonomous/hartvault/internal/engine"
	"github.com/hartonomous/hartvault/internal/engine/mssql/chain"
	"github.com/hartonomous/hartvault/internal/engine/mssql/tsql"
)

// When the manifests cannot complete a restore chain (a log backup another tool took
// in the middle, a target before hartvault's first full, or past its last log backup),
// or when files are given with --backup-file, the restore reads backups taken outside
// hartvault from their files: the ones msdb's backupmediafamily names, and the given
// ones, each confirmed with RESTORE HEADERONLY (and, under a new name, read with
// RESTORE FILELISTONLY for MOVE). The chain is then planned with the same rules over
// the repository's backups and those. The repository's own are preferred: msdb's log
// backups are added first (they fill gaps without changing the base), its full and
// differential backups only when that is not enough.

// modeExternal marks a backup read from files outside the repository.
const modeExternal = "external"

// external is a backup taken outside hartvault that a restore reads from its files.
type external struct {
	ref     string       // its name in the plan: msdb:ID, or file:PATH (#POSITION)
	devices tsql.Devices // where the server reads it, at its position
	from    string       // "msdb" or "--backup-file"
	checked bool         // RESTORE HEADERONLY found the backup set on its devices
}

// fallback gathers the backups a restore can read from outside the repository.
type fallback struct {
	e   *Engine
	srv Server
	db  string
	si  ServerInfo
	own ownSet
	// given are the backups of the files given with --backup-file; msdb the backups
	// msdb lists that the repository does not hold (checked when a plan uses them).
	given, msdb []*entry
	// rows are msdb's rows of the database (loadMSDB); msdbErr why there are none.
	rows    []chain.Record
	msdbErr error
	// bad says why a backup (by ref) cannot be used.
	bad   map[string]string
	notes []string
}

// fallbackHelps reports whether backups from outside the repository could do better
// than a plan made from the manifests: it failed for a missing backup, or it stops
// before the target time.
func fallbackHelps(cp *chain.Plan, err error, t chain.Target) bool {
	if err != nil {
		return errors.Is(err, chain.ErrGap) || errors.Is(err, chain.ErrNoFull) || errors.Is(err, errNoHistory)
	}
	return !reaches(cp, t)
}

// reaches reports whether a plan brings the database to the target.
func reaches(cp *chain.Plan, t chain.Target) bool {
	if t.Ref != "" || t.Latest {
		return true
	}
	return !cp.StopAt.IsZero() || !cp.To.Before(t.Time)
}

// planChain plans from records, saying so when there are none.
func planChain(db string, recs []chain.Record, t chain.Target) (*chain.Plan, error) {
	if len(recs) == 0 {
		return nil, fmt.Errorf("%w of database %s", errNoHistory, db)
	}
	return chain.PlanRestore(recs, t)
}

func newFallback(ctx context.Context, e *Engine, srv Server, db string, entries []entry) (*fallback, error) {
	si, err := srv.Info(ctx)
	if err != nil {
		return nil, err
	}
	return &fallback{e: e, srv: srv, db: db, si: si, own: ownKeys(entries), bad: map[string]string{}}, nil
}

func (fb *fallback) note(format string, args ...any) {
	fb.notes = append(fb.notes, fmt.Sprintf(format, args...))
}

// mediumOf tells a URL from a file path.
func mediumOf(p string) tsql.Medium {
	l := strings.ToLower(p)
	if strings.HasPrefix(l, "https://") || strings.HasPrefix(l, "http://") || strings.HasPrefix(l, "s3://") {
		return tsql.URL
	}
	return tsql.Disk
}

// loadMSDB reads msdb's history of the database. A failure is kept (the plan may not
// need msdb) and reported with the plan's error.
func (fb *fallback) loadMSDB(ctx context.Context) {
	fb.rows, fb.msdbErr = fb.srv.History(ctx, HistoryQuery{Database: fb.db})
}

// listMSDB makes the backups msdb lists that neither the repository holds nor the
// given files are candidates; those hartvault cannot read are marked bad at once.
func (fb *fallback) listMSDB() {
	given := map[string]bool{}
	for _, en := range fb.given {
		for _, k := range recordKeys(en.db.BackupSet) {
			given[k] = true
		}
	}
	for _, r := range fb.rows {
		if fb.own.has(r) {
			continue
		}
		if (ownSet(given)).has(r) {
			continue
		}
		en := &entry{db: &DatabaseBackup{Database: fb.db, Type: string(r.Type), Mode: modeExternal, BackupSet: r},
			ext: &external{ref: fmt.Sprintf("msdb:%d", r.BackupSetID), from: "msdb"}}
		en.db.BackupSet.Ref = en.ext.ref
		switch dt := r.DeviceType; {
		case len(r.Devices) == 0:
			fb.bad[en.ext.ref] = "msdb names no device for it"
		case dt == 7 || dt == 107:
			fb.bad[en.ext.ref] = fmt.Sprintf("it was taken through a virtual device (%s: a snapshot or a third-party agent), which only that tool can restore", r.Devices[0])
		case dt == 5 || dt == 105:
			fb.bad[en.ext.ref] = "it is on tape"
		case dt == 9 || dt == 109:
			en.ext.devices = tsql.ToURL(r.Devices...)
		case dt == 2 || dt == 102:
			en.ext.devices = tsql.ToDisk(r.Devices...)
		default:
			en.ext.devices = tsql.Devices{Medium: mediumOf(r.Devices[0]), Paths: r.Devices}
		}
		if err := r.Check(); err != nil {
			fb.bad[en.ext.ref] = err.Error()
		}
		fb.msdb = append(fb.msdb, en)
	}
}

// readGiven reads the headers of the files given with --backup-file. Every file must
// be readable; sets of other databases, and file or partial backups, are skipped with
// a note. Stripes of one media set (the same backup set GUID) become one backup.
func (fb *fallback) readGiven(ctx context.Context, files []string) error {
	byGUID := map[string]*entry{}
	zones := map[string]*time.Location{}
	for _, r := range fb.rows {
		zones[strings.ToLower(r.BackupSetGUID)] = r.Finish.Location()
	}
	serverZone := time.FixedZone("", int(fb.si.UTCOffset/time.Second))
	var others []string
	for _, f := range files {
		devs := tsql.Devices{Medium: mediumOf(f), Paths: []string{f}}
		stmt, err := tsql.HeaderOnly(devs)
		if err != nil {
			return fmt.Errorf("--backup-file %s: %w", f, err)
		}
		hs, err := fb.srv.HeaderOnly(ctx, devs)
		if err != nil {
			return fmt.Errorf("--backup-file %s: %w", f, err)
		}
		fb.note("read %s", stmt)
		for _, h := range hs {
			r := h.Record
			switch {
			case h.Skip != "":
				fb.note("%s, backup set %d: not used: %s", f, h.Position, h.Skip)
				continue
			case !strings.EqualFold(r.Database, fb.db):
				others = append(others, fmt.Sprintf("%s (%s, position %d)", r.Database, r.Type, h.Position))
				continue
			case r.Check() != nil:
				fb.note("%s, backup set %d: not used: %v", f, h.Position, r.Check())
				continue
			}
			key := strings.ToLower(r.BackupSetGUID)
			if en := byGUID[key]; key != "" && en != nil {
				en.ext.devices.Paths = append(en.ext.devices.Paths, f) // another stripe of the same media set
				en.db.BackupSet.Devices = en.ext.devices.Paths
				continue
			}
			if loc, ok := zones[key]; ok {
				h.InZone(loc)
			} else {
				h.InZone(serverZone)
				fb.note("%s, backup set %d: msdb has no row for it: its times are taken in the server's current offset from UTC (%s)", f, h.Position, time.Time{}.In(serverZone).Format("-07:00"))
			}
			r = h.Record
			if fb.own.has(r) {
				fb.note("%s, backup set %d: the repository holds this backup: it is restored from there", f, h.Position)
				continue
			}
			ref := "file:" + f
			if len(hs) > 1 {
				ref = fmt.Sprintf("file:%s#%d", f, h.Position)
			}
			r.Ref, r.Devices = ref, []string{f}
			d := devs
			d.Position = h.Position
			d.Paths = []string{f}
			en := &entry{db: &DatabaseBackup{Database: fb.db, Type: string(r.Type), Mode: modeExternal, BackupSet: r},
				ext: &external{ref: ref, devices: d, from: "--backup-file", checked: true}}
			fb.given = append(fb.given, en)
			if key != "" {
				byGUID[key] = en
			}
		}
	}
	if len(fb.given) == 0 && len(others) > 0 {
		return fmt.Errorf("--backup-file: no file holds a full, differential or log backup of database %s (they hold %s): name the database with --database", fb.db, strings.Join(others, ", "))
	}
	if len(others) > 0 {
		fb.note("not used (other databases): %s", strings.Join(others, ", "))
	}
	return nil
}

// check confirms an msdb backup with RESTORE HEADERONLY on its devices: the backup set
// must be there (by GUID, same LSNs); its position is the FILE = n of its restore.
func (fb *fallback) check(ctx context.Context, en *entry) {
	r := en.db.BackupSet
	stmt, err := tsql.HeaderOnly(en.ext.devices)
	if err != nil {
		fb.bad[en.ext.ref] = err.Error()
		return
	}
	hs, err := fb.srv.HeaderOnly(ctx, en.ext.devices)
	if err != nil {
		fb.bad[en.ext.ref] = "RESTORE HEADERONLY failed: " + oneLine(err.Error())
		return
	}
	fb.note("read %s", stmt)
	for _, h := range hs {
		hr := h.Record
		if h.Skip != "" || !strings.EqualFold(hr.BackupSetGUID, r.BackupSetGUID) {
			continue
		}
		if hr.FirstLSN.Cmp(r.FirstLSN) != 0 || hr.LastLSN.Cmp(r.LastLSN) != 0 {
			fb.bad[en.ext.ref] = fmt.Sprintf("its file holds LSNs %s..%s, msdb says %s..%s", hr.FirstLSN, hr.LastLSN, r.FirstLSN, r.LastLSN)
			return
		}
		en.ext.devices.Position = h.Position
		en.ext.checked = true
		if !hr.Checksums {
			en.db.BackupSet.Checksums = false
		}
		return
	}
	fb.bad[en.ext.ref] = fmt.Sprintf("%s no longer holds backup set %s (overwritten?)", strings.Join(en.ext.devices.Paths, ", "), r.BackupSetGUID)
}

// plan plans over the repository's backups and the external ones: the given files,
// then msdb's log backups too, then all of msdb's; each plan that uses msdb backups
// not yet confirmed confirms them and is made again without those that fail. It
// returns the first plan that reaches the target, else the one that goes furthest,
// with every backup it may use by ref.
func (fb *fallback) plan(ctx context.Context, entries []entry, t chain.Target) (*chain.Plan, map[string]*entry, error) {
	var logs []*entry
	for _, en := range fb.msdb {
		if en.db.BackupSet.Type == chain.Log {
			logs = append(logs, en)
		}
	}
	var phases [][]*entry
	if len(fb.given) > 0 {
		phases = append(phases, nil)
	}
	if len(logs) > 0 && len(logs) < len(fb.msdb) {
		phases = append(phases, logs)
	}
	if len(fb.msdb) > 0 {
		phases = append(phases, fb.msdb)
	}
	var best *chain.Plan
	var bestUsed map[string]*entry
	var lastErr error
	for _, extra := range phases {
		cp, used, err := fb.planPhase(ctx, entries, extra, t)
		if err != nil {
			lastErr = err
			continue
		}
		if reaches(cp, t) {
			return cp, used, nil
		}
		if best == nil || cp.To.After(best.To) {
			best, bestUsed = cp, used
		}
	}
	if best != nil {
		return best, bestUsed, nil
	}
	if lastErr == nil {
		lastErr = fmt.Errorf("%w of database %s", errNoHistory, fb.db)
	}
	return nil, nil, lastErr
}

func (fb *fallback) planPhase(ctx context.Context, entries []entry, extra []*entry, t chain.Target) (*chain.Plan, map[string]*entry, error) {
	for {
		used := map[string]*entry{}
		var recs []chain.Record
		add := func(en *entry) {
			if fb.bad[en.name()] != "" {
				return
			}
			used[en.name()] = en
			r := en.db.BackupSet
			r.Ref = en.name()
			recs = append(recs, r)
		}
		for i := range entries {
			add(&entries[i])
		}
		for _, en := range fb.given {
			add(en)
		}
		for _, en := range extra {
			add(en)
		}
		cp, err := planChain(fb.db, recs, t)
		if err != nil {
			return nil, nil, err
		}
		changed := false
		for _, r := range cp.Records() {
			en := used[r.Ref]
			if en.ext != nil && !en.ext.checked {
				if fb.check(ctx, en); fb.bad[en.name()] != "" {
					changed = true
				}
			}
		}
		if !changed {
			return cp, used, nil
		}
	}
}

// explain says what the fallback found, for an error: what msdb could not give.
func (fb *fallback) explain() string {
	var parts []string
	if fb.msdbErr != nil {
		parts = append(parts, "msdb could not be read: "+oneLine(fb.msdbErr.Error()))
	}
	var bad []string
	for _, en := range fb.msdb {
		if why := fb.bad[en.name()]; why != "" {
			r := en.db.BackupSet
			bad = append(bad, fmt.Sprintf("%s (%s finished %s, %s): %s", en.name(), r.Type, chain.FormatTime(r.Finish), strings.Join(r.Devices, ", "), why))
		}
	}
	switch {
	case len(fb.msdb) == 0 && fb.msdbErr == nil:
		parts = append(parts, fmt.Sprintf("msdb lists no backup of %s that the repository lacks", fb.db))
	case len(bad) > 0:
		if len(bad) > 5 {
			bad = append(bad[:5], fmt.Sprintf("and %d more", len(bad)-5))
		}
		parts = append(parts, fmt.Sprintf("msdb lists %d backup(s) of %s taken outside hartvault; these cannot be read: %s", len(fb.msdb), fb.db, strings.Join(bad, "; ")))
	}
	return strings.Join(parts, "; ")
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// planFallback plans with backups taken outside hartvault, when the manifests' plan
// (cp, or its error perr) fails for a missing backup or stops before the target, or
// when files are given. It adds the backups the plan may use to byRef. A plan that
// would read no backup of the repository is made only from files given with
// --backup-file: otherwise the error names the files to give.
func (e *Engine) planFallback(ctx context.Context, req engine.RestoreRequest, srv Server, db string, entries []entry, t chain.Target,
	cp *chain.Plan, perr error, byRef map[string]*entry) (*fallback, *chain.Plan, error) {
	fb, err := newFallback(ctx, e, srv, db, entries)
	if err != nil {
		return nil, nil, e.errorf("%w", err)
	}
	fb.loadMSDB(ctx)
	if len(req.BackupFiles) > 0 {
		if err := fb.readGiven(ctx, req.BackupFiles); err != nil {
			return nil, nil, e.errorf("restore of %s: %w", db, err)
		}
	}
	fb.listMSDB()
	fcp, used, ferr := fb.plan(ctx, entries, t)
	better := ferr == nil && (perr != nil || len(req.BackupFiles) > 0 || reaches(fcp, t) || fcp.To.After(cp.To))
	if !better {
		if perr == nil { // the manifests' plan stands; it stops before the target
			why := "backups taken outside hartvault do not reach further"
			if x := fb.explain(); x != "" {
				why += ": " + x
			}
			cp.Notes = append(cp.Notes, why)
			return fb, cp, nil
		}
		if ferr != nil && !errors.Is(ferr, errNoHistory) {
			perr = ferr // planned over more backups: the gap it names is the one left
		}
		if x := fb.explain(); x != "" {
			return nil, nil, e.errorf("restore of %s: %w; %s", db, perr, x)
		}
		return nil, nil, e.errorf("restore of %s: %w", db, perr)
	}
	fromRepo := false
	var flags, what []string
	for _, r := range fcp.Records() {
		en := used[r.Ref]
		if en.ext == nil {
			fromRepo = true
			continue
		}
		what = append(what, fmt.Sprintf("%s finished %s", r.Type, chain.FormatTime(r.Finish)))
		for _, p := range en.ext.devices.Paths {
			flags = append(flags, "--backup-file '"+p+"'")
		}
	}
	if !fromRepo && len(req.BackupFiles) == 0 {
		return nil, nil, e.errorf("restore of %s: the repository holds none of the backups this restore needs; backups taken outside hartvault can do it (%s): to restore from them, give their files: %s",
			db, strings.Join(what, ", "), strings.Join(flags, " "))
	}
	for ref, en := range used {
		byRef[ref] = en
	}
	return fb, fcp, nil
}
