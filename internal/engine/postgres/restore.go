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
	}
	rp.Steps = append(rp.Steps, fmt.Sprintf("restore_command = '%s'", e.restoreCommand(p)))
	return rp, nil
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
	files := make([]*repo.File, len(m.Files))
	var total int64
	var owner *repo.Owner
	for i := range m.Files {
		files[i] = &m.Files[i]
		total += m.Files[i].Size
		if m.Files[i].Path == "PG_VERSION" {
			owner = m.Files[i].Owner
		}
	}
	if req.Progress == nil {
		req.Progress = engine.NoProgress{}
	}
	req.Progress.SetTotal(total)
	spcDirs, err := tablespaceDirs(req.Target, p.info.Tablespaces, req.Force)
	if err != nil {
		return err
	}
	t, err := fstree.PrepareTarget(req.Target, fstree.TargetOptions{Force: req.Force, Exact: true})
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
	if err := chownTree(t.Dir(), owner, false); err != nil {
		return err
	}
	os.Chmod(t.Dir(), 0o700)
	if err := placeTablespaces(t.Dir(), spcDirs, owner); err != nil {
		return err
	}
	if !req.Start {
		rp.Notes = append(rp.Notes, fmt.Sprintf("start it with: pg_ctl -D %s start (recovery replays WAL through restore_command, then promotes)", t.Dir()))
		return nil
	}
	took, err := e.start(ctx, t.Dir(), req.Port, owner)
	if err != nil {
		return err
	}
	rp.Notes = append(rp.Notes, fmt.Sprintf("started on port %d; WAL replay and promotion took %s", req.Port, took.Round(time.Millisecond)))
	return nil
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

// tablespaceDirs checks where each tablespace will go, before anything is written:
// a directory holding files is refused without --force.
func tablespaceDirs(target string, spcs []tablespace, force bool) (map[string]string, error) {
	out := map[string]string{}
	for _, s := range spcs {
		dir := filepath.Join(tablespacesBase(target), s.OID)
		if des, err := os.ReadDir(dir); err == nil && len(des) > 0 {
			if !force {
				return nil, fmt.Errorf("tablespace %s would be restored to %s, which is not empty (use --force to replace it)", s.Name, dir)
			}
			if err := os.RemoveAll(dir); err != nil {
				return nil, err
			}
		}
		out[s.OID] = dir
	}
	return out, nil
}

// placeTablespaces moves each restored tablespace out of pg_tblspc/<oid> to its
// directory and links it back, as PostgreSQL expects (13 and 14 accept only links).
func placeTablespaces(dataDir string, dirs map[string]string, owner *repo.Owner) error {
	for oid, dir := range dirs {
		src := filepath.Join(dataDir, "pg_tblspc", oid)
		if info, err := os.Lstat(src); err != nil || !info.IsDir() {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
			return err
		}
		if err := chownTree(filepath.Dir(dir), owner, false); err != nil {
			return err
		}
		os.Remove(dir) // an empty directory left by an earlier restore
		if err := os.Rename(src, dir); err != nil {
			return fmt.Errorf("place tablespace %s at %s: %w", oid, dir, err)
		}
		if err := os.Symlink(dir, src); err != nil {
			return fmt.Errorf("link tablespace %s: %w", oid, err)
		}
		if err := chownTree(src, owner, false); err != nil {
			return err
		}
	}
	return nil
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

// start runs pg_ctl start as the data directory's owner and waits until recovery
// has finished and the cluster is promoted; it returns how long that took.
func (e *Engine) start(ctx context.Context, dir string, port int, owner *repo.Owner) (time.Duration, error) {
	if port == 0 {
		return 0, errors.New("--start needs --port")
	}
	bin, err := e.binDir()
	if err != nil {
		return 0, err
	}
	logDir := filepath.Join(dir, "log")
	os.MkdirAll(logDir, 0o700)
	chownTree(logDir, owner, true)
	logFile := filepath.Join(logDir, "hartvault-restore.log")
	began := time.Now()
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "pg_ctl"), "-D", dir, "-l", logFile, "-w", "-t", "3600",
		"-o", fmt.Sprintf("-p %d -k %s", port, dir), "start")
	runAs(cmd, owner)
	if out, err := cmd.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("start the restored cluster: %v: %s%s", err, strings.TrimSpace(string(out)), logTail(logFile))
	}
	cfg, err := pgx.ParseConfig(e.src.Conninfo)
	if err != nil {
		return 0, err
	}
	cfg.Host, cfg.Port, cfg.Database = dir, uint16(port), "postgres"
	cfg.Fallbacks = nil
	for {
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err == nil {
			var inRecovery bool
			err = conn.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery)
			conn.Close(ctx)
			if err == nil && !inRecovery {
				return time.Since(began), nil
			}
		}
		if !fileExists(filepath.Join(dir, "postmaster.pid")) {
			return 0, fmt.Errorf("the restored cluster stopped during recovery%s", logTail(logFile))
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func logTail(p string) string {
	b, err := os.ReadFile(p)
	if err != nil || len(b) == 0 {
		return ""
	}
	// The cause is in the FATAL, PANIC or ERROR lines, not in the shutdown that follows.
	var picked []string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if strings.Contains(l, "FATAL:") || strings.Contains(l, "PANIC:") || strings.Contains(l, "ERROR:") {
			picked = append(picked, strings.TrimSpace(l))
		}
	}
	if len(picked) > 3 {
		picked = picked[len(picked)-3:]
	}
	return " (server log " + p + ": " + strings.Join(picked, " | ") + ")"
}
