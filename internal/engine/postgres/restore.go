package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hartonomous/hartvault/internal/engine"
	"github.com/hartonomous/hartvault/internal/fstree"
	"github.com/hartonomous/hartvault/internal/plan"
	"github.com/hartonomous/hartvault/internal/repo"
)

// Restore modes.
const (
	modeImmediate = "immediate" // a chosen backup, made consistent and no further
	modeTime      = "time"      // recovery_target_time
	modeLatest    = "latest"    // the end of the archived WAL
)

// pgPlan is the PostgreSQL part of a restore plan.
type pgPlan struct {
	target   *repo.Manifest // the last backup of the chain
	info     *Info
	mode     string
	time     time.Time
	timeline uint32 // recovery_target_timeline
	// For modeLatest: the end of the archived WAL recovery must reach (0: not
	// known), its segment, and the last commit in it.
	reach      LSN
	lastSeg    string
	lastCommit time.Time
	// replica is the URL of the replica restored from ("" the plan's repository):
	// recovery fetches its WAL from there too.
	replica string
}

// window is what the WAL archive lets a chain of backups reach.
type window struct {
	earliest   time.Time // the consistency point of the chain's last backup
	lastCommit time.Time // the last commit in the WAL contiguous from the chain's start
	firstSeg   string
	lastSeg    string
	segments   int
	timelines  []uint32 // along the path recovery follows
	timeline   uint32   // the timeline recovery ends on
	// missing is the first segment recovery would need that is not archived, and
	// beyond how many segments after it are (WAL past a hole).
	missing string
	beyond  int
}

// postgresBackups returns the PostgreSQL backups with their sections.
func postgresBackups(history []*repo.Manifest) ([]*repo.Manifest, map[string]*Info, error) {
	var out []*repo.Manifest
	infos := map[string]*Info{}
	for _, m := range history {
		if m.Kind != plan.KindPostgres {
			continue
		}
		info, err := ReadInfo(m)
		if err != nil {
			return nil, nil, err
		}
		out = append(out, m)
		infos[m.ID] = info
	}
	return out, infos, nil
}

// PlanRestore chooses the backups and the WAL that bring the cluster to the target:
// the newest full whose consistency point is at or before it, the newest diff on
// that full also before it, then WAL replay. A target outside what the repository
// can reach is refused, naming the window.
func (e *Engine) PlanRestore(ctx context.Context, req engine.RestoreRequest) (*engine.RestorePlan, error) {
	history, err := req.Repo.Backups(ctx, e.src.Name)
	if err != nil {
		return nil, err
	}
	backups, infos, err := postgresBackups(history)
	if err != nil {
		return nil, err
	}
	if len(backups) == 0 {
		return nil, fmt.Errorf("%w: source %s has no backups", repo.ErrNoBackup, e.src.Name)
	}
	p := &pgPlan{}
	if o := req.Repo.Options(); o.AsReplica {
		p.replica = o.URL
	}
	switch {
	case req.BackupID != "":
		m, err := repo.Find(backups, req.BackupID)
		if err != nil {
			return nil, err
		}
		p.target, p.mode, p.time = m, modeImmediate, infos[m.ID].StopTime
	default:
		// Only backups of the cluster the newest backup belongs to: another system
		// identifier is another cluster and never joins a chain.
		sysid := infos[backups[len(backups)-1].ID].Server.SystemID
		var mine []*repo.Manifest
		for _, m := range backups {
			if infos[m.ID].Server.SystemID == sysid {
				mine = append(mine, m)
			}
		}
		info := infos[mine[0].ID]
		a := &archive{r: req.Repo, source: e.src.Name, sysid: sysid, segSize: info.Server.SegSize}
		v, err := a.view(ctx, false, slog.New(slog.DiscardHandler))
		if err != nil {
			return nil, err
		}
		if req.To.Latest {
			// The chain whose WAL reaches furthest: after a point-in-time restore the
			// newest backup may sit on the timeline that was abandoned.
			p.mode = modeLatest
			var best time.Time
			for _, m := range chainsBefore(mine, infos, time.Time{}) {
				// A chain reaches its last commit, or at least its own consistency
				// point (an idle cluster commits nothing after its newest backup).
				reach := v.window(infos[m.ID]).lastCommit
				if stop := infos[m.ID].StopTime; reach.Before(stop) {
					reach = stop
				}
				if p.target == nil || reach.After(best) {
					p.target, best = m, reach
				}
			}
		} else {
			p.mode, p.time = modeTime, req.To.Time
			// The newest chain consistent before the instant, unless its WAL does not
			// reach it (the instant is on a line of history that branched off behind
			// it): then an older chain whose WAL does.
			for _, m := range chainsBefore(mine, infos, req.To.Time) {
				w := v.window(infos[m.ID])
				if p.target == nil {
					p.target = m
				}
				if !req.To.Time.After(w.lastCommit) {
					p.target = m
					break
				}
			}
			if p.target == nil {
				w, _ := e.window(ctx, req.Repo, newestChain(mine, infos, time.Time{}), infos)
				return nil, e.outside(req.To.Time, infos[mine[0].ID].StopTime, w)
			}
		}
	}
	p.info = infos[p.target.ID]
	w, err := e.window(ctx, req.Repo, p.target, infos)
	if err != nil {
		return nil, err
	}
	p.timeline = w.timeline
	switch p.mode {
	case modeLatest:
		p.time = w.lastCommit
		if p.time.Before(p.info.StopTime) {
			p.time = p.info.StopTime
		}
		if w.beyond > 0 {
			return nil, fmt.Errorf("%w: %s cannot be restored to the latest archived WAL: segment %s is missing from the archive, but %d later segments are archived; "+
				"restore with --to a time up to %s (the last commit before the hole), or put the segment back",
				repo.ErrNoBackup, e.src.Name, w.missing, w.beyond, fmtTime(w.lastCommit))
		}
		if w.lastCommit.After(p.info.StopTime) {
			p.lastCommit = w.lastCommit // replayed for certain: after the backup is consistent
		}
		p.lastSeg = w.lastSeg
		if p.reach, err = e.walEnd(ctx, req.Repo, p.info, w.lastSeg); err != nil {
			return nil, err
		}
	case modeTime:
		if w.lastCommit.IsZero() || p.time.After(w.lastCommit) {
			latest := w.lastCommit
			if latest.IsZero() {
				latest = p.info.StopTime
			}
			if p.time.After(latest) {
				first := infos[backups[0].ID].StopTime
				return nil, e.outside(p.time, first, &window{earliest: first, lastCommit: latest})
			}
		}
		if !p.time.Before(w.lastCommit) {
			// Nothing committed after the target: recovering to the end gives the same
			// state, and recovery_target_time would fail for want of a later commit.
			p.mode = modeLatest
		}
	}
	chain, err := req.Repo.Chain(ctx, p.target)
	if err != nil {
		return nil, err
	}
	// The chain reaches its last commit, or at least its own consistency point (an
	// idle cluster commits nothing after its newest backup).
	latest := w.lastCommit
	if stop := p.info.StopTime; latest.Before(stop) {
		latest = stop
	}
	rp := &engine.RestorePlan{Source: e.src.Name, Kind: e.Kind(), To: p.time, Target: req.Target, Engine: p,
		Earliest: infos[backups[0].ID].StopTime, Latest: latest}
	for _, m := range chain {
		rp.Backups = append(rp.Backups, m)
	}
	repo.SortManifests(rp.Backups)
	rp.Steps = append(rp.Steps, fmt.Sprintf("cluster %d, PostgreSQL %d, timeline %d; backup consistent at LSN %s (%s)",
		p.info.Server.SystemID, p.info.Server.Version/10000, p.info.Timeline, p.info.StopLSN, p.info.StopTime.Local().Format(time.RFC3339)))
	for _, spc := range p.info.Tablespaces {
		rp.Steps = append(rp.Steps, fmt.Sprintf("tablespace %s (oid %s, originally %s) to %s", spc.Name, spc.OID, spc.Location,
			filepath.Join(tablespacesBase(req.Target), spc.OID)))
	}
	if p.target.Type == repo.TypeDiff {
		rp.Steps = append(rp.Steps, fmt.Sprintf("write the full's files, then %d changed pages and %d whole files of the diff", p.info.ChangedPages, p.info.WholeFiles))
	}
	if vm := untrustedVM(p.target, p.info); len(vm) > 0 {
		rp.Steps = append(rp.Steps, legacyNote(p.target, len(vm)))
	}
	tls := make([]string, len(w.timelines))
	for i, t := range w.timelines {
		tls[i] = strconv.Itoa(int(t))
	}
	rp.Steps = append(rp.Steps, fmt.Sprintf("WAL in the repository from this backup: %s .. %s (%d segments, timelines %s), last commit %s",
		w.firstSeg, w.lastSeg, w.segments, strings.Join(tls, " -> "), fmtTime(w.lastCommit)))
	if p.mode != modeImmediate {
		rp.Steps = append(rp.Steps, recoveryTimeline(p))
	}
	switch p.mode {
	case modeImmediate:
		rp.Steps = append(rp.Steps, "recovery_target = 'immediate': stop as soon as the backup is consistent, then promote")
	case modeTime:
		rp.Steps = append(rp.Steps, fmt.Sprintf("recovery_target_time = '%s', recovery_target_action = 'promote'", pgTime(p.time)))
	case modeLatest:
		rp.Steps = append(rp.Steps, "replay all archived WAL (to its end), then promote")
		if p.reach > 0 {
			rp.Steps = append(rp.Steps, fmt.Sprintf("with --start, the restore fails (and takes the cluster out again) unless replay reached LSN %s, the end of %s", p.reach, p.lastSeg))
		}
	}
	rp.Steps = append(rp.Steps, fmt.Sprintf("restore_command = '%s'", e.restoreCommand(p)))
	return rp, nil
}

// walEnd finds where the archived WAL ends in segment seg (or, when one record spans
// it whole, in one of the few before it on its timeline); 0 when it cannot tell.
func (e *Engine) walEnd(ctx context.Context, r *repo.Repo, info *Info, seg string) (LSN, error) {
	tli, segno, ok := ParseSegName(seg, info.Server.SegSize)
	if !ok {
		return 0, nil
	}
	a := &archive{r: r, source: e.src.Name, sysid: info.Server.SystemID, segSize: info.Server.SegSize}
	for i := uint64(0); i < 4 && i <= segno; i++ {
		data, err := a.fetch(ctx, SegName(tli, segno-i, info.Server.SegSize))
		if errors.Is(err, ErrNotArchived) {
			return 0, nil
		}
		if err != nil {
			return 0, fmt.Errorf("read the last archived WAL of %s: %w", e.src.Name, err)
		}
		end, ok, err := WALEnd(data)
		if err != nil {
			return 0, fmt.Errorf("read the last archived WAL of %s (%s): %w", e.src.Name, seg, err)
		}
		if ok {
			return end, nil
		}
	}
	return 0, nil
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "none yet"
	}
	return t.Local().Format("2006-01-02 15:04:05.000000 MST")
}

func (e *Engine) outside(t, earliest time.Time, w *window) error {
	latest := "nothing archived yet"
	if w != nil && !w.lastCommit.IsZero() {
		latest = w.lastCommit.Local().Format(time.RFC3339Nano)
	}
	return fmt.Errorf("%w: %s cannot be restored to %s: the restorable window is %s .. %s",
		repo.ErrNoBackup, e.src.Name, t.Local().Format(time.RFC3339Nano), earliest.Local().Format(time.RFC3339Nano), latest)
}

// chainsBefore lists the backups a restore to t (any time when zero) could start
// from, preferred first: fulls newest first, each preceded by its diffs consistent
// by t, newest first.
func chainsBefore(backups []*repo.Manifest, infos map[string]*Info, t time.Time) []*repo.Manifest {
	before := func(m *repo.Manifest) bool { return t.IsZero() || !infos[m.ID].StopTime.After(t) }
	var out []*repo.Manifest
	for i := len(backups) - 1; i >= 0; i-- {
		full := backups[i]
		if full.Type != repo.TypeFull || !before(full) {
			continue
		}
		var diffs []*repo.Manifest
		for _, m := range backups {
			if m.Type == repo.TypeDiff && m.Parent == full.ID && before(m) {
				diffs = append(diffs, m)
			}
		}
		sort.Slice(diffs, func(a, b int) bool { return infos[diffs[a].ID].StopTime.After(infos[diffs[b].ID].StopTime) })
		out = append(append(out, diffs...), full)
	}
	return out
}

// newestChain returns the newest backup that a restore to t starts from: the
// newest full consistent at or before t, or the newest diff on it that also is.
func newestChain(backups []*repo.Manifest, infos map[string]*Info, t time.Time) *repo.Manifest {
	before := func(m *repo.Manifest) bool { return t.IsZero() || !infos[m.ID].StopTime.After(t) }
	var full *repo.Manifest
	for _, m := range backups {
		if m.Type == repo.TypeFull && before(m) {
			full = m
		}
	}
	if full == nil {
		return nil
	}
	best := full
	for _, m := range backups {
		if m.Type == repo.TypeDiff && m.Parent == full.ID && before(m) && infos[m.ID].StopTime.After(infos[best.ID].StopTime) {
			best = m
		}
	}
	return best
}

// window finds how far the archived WAL carries a restore from backup m.
func (e *Engine) window(ctx context.Context, r *repo.Repo, m *repo.Manifest, infos map[string]*Info) (*window, error) {
	if m == nil {
		return &window{}, nil
	}
	info := infos[m.ID]
	a := &archive{r: r, source: e.src.Name, sysid: info.Server.SystemID, segSize: info.Server.SegSize}
	v, err := a.view(ctx, false, slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, err
	}
	return v.window(info), nil
}

// pgTime formats a time the way recovery_target_time reads it.
func pgTime(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05.999999") + "+00" }

func (e *Engine) restoreCommand(p *pgPlan) string {
	cmd := fmt.Sprintf("%s --config %s wal-fetch %s %%f %%p", shellQuote(e.exe), shellQuote(e.config), e.src.Name)
	if p.replica != "" {
		cmd += " --from-replica " + shellQuote(p.replica)
	}
	return cmd
}

func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r == '/' || r == '.' || r == '-' || r == '_' || r == ':' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
	}) < 0 {
		return s
	}
	return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"`
}

// Restore writes the chain's files into the target (through a staging directory),
// sets up recovery, and with req.Start starts the cluster and waits until it has
// replayed the WAL and been promoted.
func (e *Engine) Restore(ctx context.Context, req engine.RestoreRequest, rp *engine.RestorePlan) error {
	p, ok := rp.Engine.(*pgPlan)
	if !ok {
		return fmt.Errorf("restore of %s: plan was not made by the PostgreSQL engine", e.src.Name)
	}
	if req.Target == "" {
		return errors.New("restore of a PostgreSQL source needs --target DATA_DIR")
	}
	if err := req.Repo.CheckKey(ctx, p.target); err != nil {
		return err
	}
	if pidFile := filepath.Join(req.Target, "postmaster.pid"); fileExists(pidFile) {
		if !req.Force {
			return fmt.Errorf("%s holds a running (or crashed) cluster (postmaster.pid): stop it, or use --force to replace it", req.Target)
		}
	}
	m := p.target
	skip := untrustedVM(m, p.info)
	files := make([]*repo.File, 0, len(m.Files))
	var total int64
	var owner *repo.Owner
	for i := range m.Files {
		f := &m.Files[i]
		if f.Path == "PG_VERSION" {
			owner = f.Owner
		}
		if skip[f.Path] {
			continue
		}
		files = append(files, f)
		total += f.Size
	}
	if len(skip) > 0 {
		rp.Notes = append(rp.Notes, legacyNote(m, len(skip)))
	}
	if req.Progress == nil {
		req.Progress = engine.NoProgress{}
	}
	req.Progress.SetTotal(total)
	spcs, err := tablespaceDirs(req.Target, p.info.Tablespaces, req.Force)
	if err != nil {
		return err
	}
	// Undoable: a cluster that does not recover to the target is taken out again,
	// and what the target held before is put back.
	t, err := fstree.PrepareTarget(req.Target, fstree.TargetOptions{Force: req.Force, Exact: true, Undoable: true})
	if err != nil {
		return err
	}
	err = fstree.RestoreFiles(ctx, req.Repo, m, files, t.Staging(), req.Progress.Add)
	if err == nil {
		err = e.setupRecovery(t.Staging(), p, req.Port, req.NoArchive, owner)
	}
	if err == nil {
		err = t.Commit()
	}
	if err != nil {
		t.Abort()
		return err
	}
	fail := func(err error) error {
		if uerr := undoTablespaces(spcs); uerr != nil {
			return fmt.Errorf("%w; and %v", err, uerr)
		}
		if uerr := t.Undo(); uerr != nil {
			return fmt.Errorf("%w; and %v", err, uerr)
		}
		return err
	}
	if err := chownTree(t.Dir(), owner, false); err != nil {
		return fail(err)
	}
	os.Chmod(t.Dir(), 0o700)
	if err := placeTablespaces(t.Dir(), spcs, owner); err != nil {
		return fail(err)
	}
	if !req.Start {
		rp.Notes = append(rp.Notes, fmt.Sprintf("start it with: pg_ctl -D %s start (recovery replays WAL through restore_command, then promotes; "+
			"a WAL file that cannot be read intact stops recovery instead of ending it early)", t.Dir()))
		return finishPlacement(t, spcs)
	}
	reached, err := e.start(ctx, t.Dir(), req.Port, owner)
	if err == nil {
		err = p.checkReached(reached)
		if err != nil {
			err = fmt.Errorf("%w%s", err, logTail(reached.log))
		}
	}
	if err != nil {
		e.stop(t.Dir(), owner)
		return fail(fmt.Errorf("restore of %s: %w; %s was put back as it was", e.src.Name, keepLog(err, reached.log, t.Dir()), t.Dir()))
	}
	rp.Notes = append(rp.Notes, fmt.Sprintf("started on port %d; WAL replay and promotion took %s; %s",
		req.Port, reached.took.Round(time.Millisecond), p.reachedNote(reached)))
	return finishPlacement(t, spcs)
}

// finishPlacement drops what the restore replaced: the restore stands.
func finishPlacement(t *fstree.Target, spcs []spcPlace) error {
	if err := doneTablespaces(spcs); err != nil {
		return err
	}
	return t.Done()
}

// tablespacesBase is where a restore puts tablespaces: next to the data directory,
// never at their original locations (which may belong to a running cluster).
func tablespacesBase(target string) string {
	abs, err := filepath.Abs(target)
	if err != nil {
		abs = target
	}
	return abs + ".tablespaces"
}

// spcPlace is where one tablespace of a restore goes.
type spcPlace struct {
	oid     string
	dir     string
	aside   string // what dir held before (with --force), until the restore stands
	placed  bool
	madeDir bool // the tablespaces' base directory was created by this restore
}

// tablespaceDirs checks where each tablespace will go, before anything is written:
// a directory holding files is refused without --force.
func tablespaceDirs(target string, spcs []tablespace, force bool) ([]spcPlace, error) {
	var out []spcPlace
	for _, s := range spcs {
		dir := filepath.Join(tablespacesBase(target), s.OID)
		if des, err := os.ReadDir(dir); err == nil && len(des) > 0 && !force {
			return nil, fmt.Errorf("tablespace %s would be restored to %s, which is not empty (use --force to replace it)", s.Name, dir)
		}
		out = append(out, spcPlace{oid: s.OID, dir: dir})
	}
	return out, nil
}

// placeTablespaces moves each restored tablespace out of pg_tblspc/<oid> to its
// directory and links it back, as PostgreSQL expects (13 and 14 accept only links).
// What a directory held before is set aside until the restore stands.
func placeTablespaces(dataDir string, spcs []spcPlace, owner *repo.Owner) error {
	for i := range spcs {
		sp := &spcs[i]
		src := filepath.Join(dataDir, "pg_tblspc", sp.oid)
		if info, err := os.Lstat(src); err != nil || !info.IsDir() {
			continue
		}
		base := filepath.Dir(sp.dir)
		if _, err := os.Stat(base); errors.Is(err, os.ErrNotExist) {
			sp.madeDir = true
		}
		if err := os.MkdirAll(base, 0o700); err != nil {
			return err
		}
		if err := chownTree(base, owner, false); err != nil {
			return err
		}
		if des, err := os.ReadDir(sp.dir); err == nil && len(des) > 0 {
			sp.aside = sp.dir + ".hartvault-replaced"
			os.RemoveAll(sp.aside) // left by a restore that was killed
			if err := os.Rename(sp.dir, sp.aside); err != nil {
				return fmt.Errorf("set aside tablespace directory %s: %w", sp.dir, err)
			}
		}
		os.Remove(sp.dir) // an empty directory left by an earlier restore
		if err := os.Rename(src, sp.dir); err != nil {
			return fmt.Errorf("place tablespace %s at %s: %w", sp.oid, sp.dir, err)
		}
		sp.placed = true
		if err := os.Symlink(sp.dir, src); err != nil {
			return fmt.Errorf("link tablespace %s: %w", sp.oid, err)
		}
		if err := chownTree(src, owner, false); err != nil {
			return err
		}
	}
	return nil
}

// undoTablespaces takes restored tablespaces out and puts back what they replaced.
func undoTablespaces(spcs []spcPlace) error {
	var errs []error
	for _, sp := range spcs {
		if sp.placed {
			errs = append(errs, os.RemoveAll(sp.dir))
		}
		if sp.aside != "" {
			errs = append(errs, os.Rename(sp.aside, sp.dir))
		}
		if sp.madeDir {
			os.Remove(filepath.Dir(sp.dir)) // only if empty
		}
	}
	return errors.Join(errs...)
}

func doneTablespaces(spcs []spcPlace) error {
	var errs []error
	for _, sp := range spcs {
		if sp.aside != "" {
			errs = append(errs, os.RemoveAll(sp.aside))
		}
	}
	return errors.Join(errs...)
}

// recoveryTimeline names the timeline chosen by the plan: "latest" would follow the
// highest-numbered one, which may be a branch made by another restore.
func recoveryTimeline(p *pgPlan) string {
	if p.timeline == 0 || p.timeline == p.info.Timeline {
		return "recovery_target_timeline = 'current'"
	}
	return fmt.Sprintf("recovery_target_timeline = '%d'", p.timeline)
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// setupRecovery writes what recovery needs into the restored data directory.
func (e *Engine) setupRecovery(dir string, p *pgPlan, port int, noArchive bool, owner *repo.Owner) error {
	for _, d := range []string{"pg_wal", filepath.Join("pg_wal", "archive_status")} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return err
		}
		if err := chownTree(filepath.Join(dir, d), owner, false); err != nil {
			return err
		}
	}
	lines := []string{"", fmt.Sprintf("# added by hartvault restore of %s backup %s", e.src.Name, p.target.ID),
		fmt.Sprintf("restore_command = '%s'", strings.ReplaceAll(e.restoreCommand(p), "'", "''"))}
	switch p.mode {
	case modeImmediate:
		lines = append(lines, "recovery_target = 'immediate'", "recovery_target_timeline = 'current'")
	case modeTime:
		lines = append(lines, fmt.Sprintf("recovery_target_time = '%s'", pgTime(p.time)), recoveryTimeline(p))
	case modeLatest:
		lines = append(lines, recoveryTimeline(p))
	}
	lines = append(lines, "recovery_target_action = 'promote'")
	if noArchive {
		lines = append(lines, "archive_mode = off "+scratchMarker)
	}
	if port > 0 {
		lines = append(lines, fmt.Sprintf("port = %d", port))
	}
	conf := filepath.Join(dir, "postgresql.auto.conf")
	if err := rewriteAutoConf(conf, lines); err != nil {
		return fmt.Errorf("write recovery settings: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "recovery.signal"), nil, 0o600); err != nil {
		return err
	}
	for _, f := range []string{conf, filepath.Join(dir, "recovery.signal")} {
		if err := chownTree(f, owner, false); err != nil {
			return err
		}
	}
	return nil
}

// recoverySettings are the parameters a restore sets; settings of an earlier
// restore (a backup of a cluster that was itself restored carries them) are
// removed first, or an old recovery_target_time would stop this recovery early.
func isRecoverySetting(name string) bool {
	switch name {
	case "restore_command", "recovery_target", "recovery_target_time", "recovery_target_lsn", "recovery_target_xid",
		"recovery_target_name", "recovery_target_inclusive", "recovery_target_timeline", "recovery_target_action":
		return true
	}
	return false
}

// scratchMarker marks the archive_mode line of a test copy, so a restore of a
// backup of that copy does not inherit it.
const scratchMarker = "# hartvault: a test copy does not archive into the repository"

// rewriteAutoConf drops earlier recovery settings from postgresql.auto.conf and
// appends lines.
func rewriteAutoConf(conf string, lines []string) error {
	old, err := os.ReadFile(conf)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	var kept []string
	for _, l := range strings.Split(string(old), "\n") {
		name := strings.TrimSpace(l)
		if i := strings.IndexAny(name, " =\t"); i >= 0 {
			name = name[:i]
		}
		if isRecoverySetting(name) || strings.HasPrefix(strings.TrimSpace(l), "# added by hartvault restore") ||
			strings.Contains(l, scratchMarker) {
			continue
		}
		kept = append(kept, l)
	}
	content := strings.TrimRight(strings.Join(kept, "\n"), "\n") + "\n" + strings.Join(lines, "\n") + "\n"
	tmp := conf + ".hartvault-tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, conf)
}

// reached is where a started restore's recovery ended.
type reached struct {
	took     time.Duration
	lsn      LSN       // pg_last_wal_replay_lsn: the end of the last record replayed
	lastXact time.Time // pg_last_xact_replay_timestamp: the last commit or abort replayed
	log      string    // the server log of the recovery
}

// start runs pg_ctl start as the data directory's owner and waits until recovery
// has finished and the cluster is promoted; it returns where replay ended and how
// long it took.
func (e *Engine) start(ctx context.Context, dir string, port int, owner *repo.Owner) (reached, error) {
	var r reached
	if port == 0 {
		return r, errors.New("--start needs --port")
	}
	bin, err := e.binDir()
	if err != nil {
		return r, err
	}
	logDir := filepath.Join(dir, "log")
	os.MkdirAll(logDir, 0o700)
	chownTree(logDir, owner, true)
	r.log = filepath.Join(logDir, "hartvault-restore.log")
	began := time.Now()
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "pg_ctl"), "-D", dir, "-l", r.log, "-w", "-t", "3600",
		"-o", fmt.Sprintf("-p %d -k %s", port, dir), "start")
	runAs(cmd, owner)
	if out, err := cmd.CombinedOutput(); err != nil {
		return r, fmt.Errorf("start the restored cluster: %v: %s%s", err, strings.TrimSpace(string(out)), logTail(r.log))
	}
	cfg, err := pgx.ParseConfig(e.src.Conninfo)
	if err != nil {
		return r, err
	}
	cfg.Host, cfg.Port, cfg.Database = dir, uint16(port), "postgres"
	cfg.Fallbacks = nil
	for {
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err == nil {
			var inRecovery bool
			var lsn string
			var last *time.Time
			err = conn.QueryRow(ctx, "SELECT pg_is_in_recovery(), coalesce(pg_last_wal_replay_lsn()::text, '0/0'), pg_last_xact_replay_timestamp()").
				Scan(&inRecovery, &lsn, &last)
			conn.Close(ctx)
			if err == nil && !inRecovery {
				r.took = time.Since(began)
				r.lsn, _ = ParseLSN(lsn)
				if last != nil {
					r.lastXact = last.UTC()
				}
				return r, nil
			}
		}
		if !fileExists(filepath.Join(dir, "postmaster.pid")) {
			return r, fmt.Errorf("the restored cluster stopped during recovery%s", logTail(r.log))
		}
		select {
		case <-ctx.Done():
			return r, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// stop stops a restored cluster that is not to be kept, at once.
func (e *Engine) stop(dir string, owner *repo.Owner) {
	if !fileExists(filepath.Join(dir, "postmaster.pid")) {
		return
	}
	bin, err := e.binDir()
	if err != nil {
		return
	}
	cmd := exec.Command(filepath.Join(bin, "pg_ctl"), "-D", dir, "-m", "immediate", "-w", "-t", "60", "stop")
	runAs(cmd, owner)
	cmd.Run()
}

// keepLog copies the server log of a failed recovery next to the target before the
// target is put back, and says where it is.
func keepLog(err error, log, target string) error {
	b, rerr := os.ReadFile(log)
	if rerr != nil || len(b) == 0 {
		return err
	}
	kept := filepath.Clean(target) + ".failed-restore.log"
	if os.WriteFile(kept, b, 0o600) != nil {
		return err
	}
	return fmt.Errorf("%w (the server log is kept in %s)", err, kept)
}

// checkReached fails a restore whose recovery ended short of the plan: PostgreSQL
// stops at a time target or at consistency by itself (and fails when it cannot),
// but "the end of the archive" is only where restore_command first said "not
// archived", which a segment lost since the plan would move.
func (p *pgPlan) checkReached(r reached) error {
	if p.mode != modeLatest {
		return nil
	}
	if p.reach > 0 && r.lsn < p.reach {
		return fmt.Errorf("recovery ended at LSN %s, short of the end of the archived WAL at %s (segment %s): WAL in between could not be fetched",
			r.lsn, p.reach, p.lastSeg)
	}
	if !p.lastCommit.IsZero() && r.lastXact.Before(p.lastCommit) {
		last := "none"
		if !r.lastXact.IsZero() {
			last = r.lastXact.Format(time.RFC3339Nano)
		}
		return fmt.Errorf("recovery ended after the commit of %s, short of the last archived commit at %s",
			last, p.lastCommit.Format(time.RFC3339Nano))
	}
	return nil
}

// reachedNote says where replay ended, as checked.
func (p *pgPlan) reachedNote(r reached) string {
	if p.mode == modeLatest && p.reach > 0 {
		return fmt.Sprintf("replay reached LSN %s, the end of the archived WAL (%s or later)", r.lsn, p.reach)
	}
	return fmt.Sprintf("replay ended at LSN %s", r.lsn)
}

func logTail(p string) string {
	b, err := os.ReadFile(p)
	if err != nil || len(b) == 0 {
		return ""
	}
	// The cause is in the FATAL, PANIC or ERROR lines (and what restore_command said),
	// not in the shutdown that follows.
	var picked []string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if strings.Contains(l, "FATAL:") || strings.Contains(l, "PANIC:") || strings.Contains(l, "ERROR:") || strings.HasPrefix(l, "hartvault: ") {
			picked = append(picked, strings.TrimSpace(l))
		}
	}
	if len(picked) > 3 {
		picked = picked[len(picked)-3:]
	}
	return " (server log: " + strings.Join(picked, " | ") + ")"
}
