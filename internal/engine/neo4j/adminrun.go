package neo4j

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	neo4jdriver "github.com/neo4j/neo4j-go-driver/v5/neo4j"

	"github.com/hartonomous/hartvault/internal/engine"
	"github.com/hartonomous/hartvault/internal/plan"
	"github.com/hartonomous/hartvault/internal/repo"
)

// AdminInfo is the admin part of a Neo4j manifest.
type AdminInfo struct {
	Method string `json:"method"` // dump (Community, offline) | backup (Enterprise, online)
	// Requested is the backup type asked of neo4j-admin (FULL, DIFF, AUTO); Full says
	// what it produced.
	Requested string `json:"requested,omitempty"`
	Full      bool   `json:"full"`
	// Artifacts are the files this backup added (paths in the backup); a differential
	// backup also lists, as files, the earlier artifacts of its chain.
	Artifacts []string `json:"artifacts"`
	// LastArtifact is the artifact a 5.x restore starts from (the end of the chain).
	LastArtifact       string `json:"last_artifact,omitempty"`
	ConsistencyChecked bool   `json:"consistency_checked"`
	// Downtime is how long the server was stopped for a dump.
	Downtime string `json:"downtime,omitempty"`
}

const adminDir = "admin/"

// adminTimeout bounds the start command run after a dump, even when the backup's own
// context was cancelled: the server must come back.
const adminTimeout = 15 * time.Minute

// adminBin is neo4j-admin of the plan's installation.
func (e *Engine) adminBin() (string, error) {
	name := "neo4j-admin"
	if runtime.GOOS == "windows" {
		name += ".bat"
	}
	p := filepath.Join(e.src.Neo4jHome, "bin", name)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("source %s: neo4j-admin not found at %s (neo4j_home): %w", e.src.Name, p, err)
	}
	return p, nil
}

// detectTool finds neo4j-admin's version and edition (once per Engine).
func (e *Engine) detectTool(ctx context.Context, log *slog.Logger) (AdminTool, error) {
	e.toolMu.Lock()
	defer e.toolMu.Unlock()
	if e.tool != nil {
		return *e.tool, nil
	}
	bin, err := e.adminBin()
	if err != nil {
		return AdminTool{}, err
	}
	out, err := e.runAdmin(ctx, log, bin, []string{"--version"})
	if err != nil {
		return AdminTool{}, err
	}
	t := AdminTool{Path: bin}
	if t.Version, t.Major, err = parseVersion(out); err != nil {
		return AdminTool{}, fmt.Errorf("source %s: %w", e.src.Name, err)
	}
	help, err := e.runAdmin(ctx, log, bin, helpArgs(t.Major))
	if err != nil {
		return AdminTool{}, err
	}
	t.Edition = parseEdition(help)
	log.Info("neo4j-admin detected", "path", bin, "version", t.Version, "edition", t.Edition)
	e.tool = &t
	return t, nil
}

// runAdmin runs neo4j-admin with NEO4J_HOME set to the plan's installation.
func (e *Engine) runAdmin(ctx context.Context, log *slog.Logger, bin string, args []string) (string, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "NEO4J_HOME="+e.src.Neo4jHome)
	return runLogged(log, cmd, commandLine("neo4j-admin", args))
}

// runShell runs one of the plan's stop_command or start_command through the shell.
func (e *Engine) runShell(ctx context.Context, log *slog.Logger, field, command string) error {
	var cmd *exec.Cmd
	if runtime.GOOS == "windows" {
		cmd = exec.CommandContext(ctx, "cmd", "/C", command)
	} else {
		cmd = exec.CommandContext(ctx, "sh", "-c", command)
	}
	_, err := runLogged(log, cmd, field+" ("+command+")")
	return err
}

// runLogged runs cmd, logging the command, its output (without progress lines) and
// its exit status. A failure is one error naming the command and why it failed.
func runLogged(log *slog.Logger, cmd *exec.Cmd, name string) (string, error) {
	var out capBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 10 * time.Second
	log.Info("running", "command", name)
	t0 := time.Now()
	err := cmd.Run()
	text := out.String()
	code := 0
	if cmd.ProcessState != nil {
		code = cmd.ProcessState.ExitCode()
	}
	attrs := []any{"command", name, "exit", code, "took", time.Since(t0).Round(time.Millisecond), "output", trimOutput(text, 16<<10)}
	if err != nil {
		log.Error("command failed", attrs...)
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return text, fmt.Errorf("%s failed (exit status %d): %s", name, code, failureSummary(text))
		}
		return text, fmt.Errorf("%s failed: %w", name, err)
	}
	log.Info("command finished", attrs...)
	return text, nil
}

// capBuffer keeps the first and last 1 MiB of a command's output.
type capBuffer struct {
	mu      sync.Mutex
	head    bytes.Buffer
	tail    []byte
	dropped int64
}

const capHalf = 1 << 20

func (b *capBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := len(p)
	if room := capHalf - b.head.Len(); room > 0 {
		k := min(room, len(p))
		b.head.Write(p[:k])
		p = p[k:]
	}
	b.tail = append(b.tail, p...)
	if over := len(b.tail) - capHalf; over > 0 {
		b.dropped += int64(over)
		b.tail = append(b.tail[:0], b.tail[over:]...)
	}
	return n, nil
}

func (b *capBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dropped > 0 {
		return b.head.String() + fmt.Sprintf("\n… (%d bytes left out) …\n", b.dropped) + string(b.tail)
	}
	return b.head.String() + string(b.tail)
}

// adminBackup runs neo4j-admin: a dump between the stop and start commands on
// Community, an online backup with a consistency check on Enterprise.
func (e *Engine) adminBackup(ctx context.Context, req engine.BackupRequest) (*repo.Manifest, error) {
	log := req.Log.With("source", e.src.Name)
	tool, err := e.detectTool(ctx, log)
	if err != nil {
		return nil, err
	}
	history, err := req.Repo.Backups(ctx, e.src.Name)
	if err != nil {
		return nil, err
	}
	if req.Tag != "" {
		if _, err := repo.Find(history, req.Tag); err == nil {
			return nil, fmt.Errorf("tag %q is already used by a backup of %s", req.Tag, e.src.Name)
		}
	}
	work, err := os.MkdirTemp(req.Repo.Options().TempDir, "hartvault-neo4j-")
	if err != nil {
		return nil, fmt.Errorf("source %s: work directory: %w", e.src.Name, err)
	}
	defer os.RemoveAll(work)
	info := &Info{Mode: plan.Neo4jModeAdmin, Database: e.src.Database, Version: tool.Version, Edition: tool.Edition,
		Server: "neo4j-admin " + tool.Version + " " + tool.Edition}
	if tool.Edition == EditionCommunity {
		return e.dumpBackup(ctx, req, log, tool, work, info)
	}
	return e.onlineBackup(ctx, req, log, tool, work, info, history)
}

func (e *Engine) dumpBackup(ctx context.Context, req engine.BackupRequest, log *slog.Logger, tool AdminTool, work string, info *Info) (*repo.Manifest, error) {
	if req.Type == repo.TypeDiff {
		return nil, fmt.Errorf("source %s: Neo4j Community has no differential backups: a dump is always full", e.src.Name)
	}
	if e.src.StopCommand == "" {
		return nil, fmt.Errorf("source %s: Neo4j Community can only dump a stopped database: set stop_command and start_command (or use mode: logical, which needs no downtime)", e.src.Name)
	}
	dumpDir := filepath.Join(work, "dump")
	if err := os.MkdirAll(dumpDir, 0o700); err != nil {
		return nil, err
	}
	down := time.Now()
	var dumpErr error
	if err := e.runShell(ctx, log, "stop_command", e.src.StopCommand); err != nil {
		dumpErr = fmt.Errorf("source %s: %w", e.src.Name, err)
	} else if _, err := e.runAdmin(ctx, log, tool.Path, dumpArgs(tool, e.src.Database, dumpDir)); err != nil {
		dumpErr = fmt.Errorf("source %s: %w", e.src.Name, err)
	}
	// The server comes back whatever happened above, even if the backup was cancelled.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), adminTimeout)
	startErr := e.runShell(sctx, log, "start_command", e.src.StartCommand)
	cancel()
	downtime := time.Since(down)
	if startErr != nil {
		startErr = fmt.Errorf("source %s: the server may be down: %w", e.src.Name, startErr)
	} else {
		log.Info("server started again", "downtime", downtime.Round(time.Millisecond))
		e.waitAvailable(ctx, log)
	}
	if dumpErr != nil {
		return nil, errors.Join(dumpErr, startErr)
	}
	if startErr != nil {
		return nil, startErr
	}
	info.Admin = &AdminInfo{Method: "dump", Full: true, Downtime: downtime.Round(time.Millisecond).String()}
	b, err := req.Repo.BeginBackup(ctx, req.Lock, repo.BackupSpec{Source: e.src.Name, Kind: plan.KindNeo4j, Type: repo.TypeFull, Tag: req.Tag})
	if err != nil {
		return nil, err
	}
	return e.storeArtifacts(ctx, req, log, b, dumpDir, info, nil)
}

// onlineBackup is Enterprise's neo4j-admin backup, checked for consistency.
func (e *Engine) onlineBackup(ctx context.Context, req engine.BackupRequest, log *slog.Logger, tool AdminTool, work string, info *Info, history []*repo.Manifest) (*repo.Manifest, error) {
	from := backupAddress(e.src.URI)
	dir := filepath.Join(work, "backup")
	typ := adminFull
	var prev *repo.Manifest
	if !tool.v4() {
		switch req.Type {
		case repo.TypeDiff:
			typ = adminDiff
		case "":
			typ = adminAuto
		}
		if typ != adminFull {
			prev = lastAdminBackup(history)
			if prev == nil {
				log.Warn("no earlier neo4j-admin backup to continue: taking a full backup", "asked", typ)
				typ = adminFull
			}
		}
	} else if req.Type == repo.TypeDiff {
		log.Warn("neo4j-admin 4.x backups are stored whole: taking a full backup")
	}
	var prevFiles []repo.File
	if prev != nil {
		// neo4j-admin continues a chain from the artifacts in --to-path.
		if err := materialize(ctx, req.Repo, prev, work); err != nil {
			return nil, fmt.Errorf("source %s: fetch the backup chain ending at %s: %w", e.src.Name, prev.ID, err)
		}
		prevFiles = prev.Files
		if err := os.Rename(filepath.Join(work, strings.TrimSuffix(adminDir, "/")), dir); err != nil {
			return nil, err
		}
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if _, err := e.runAdmin(ctx, log, tool.Path, backupArgs(tool, e.src.Database, from, dir, typ)); err != nil {
		return nil, fmt.Errorf("source %s: %w", e.src.Name, err)
	}
	adm := &AdminInfo{Method: "backup", Requested: typ, Full: true}
	info.Admin = adm
	if tool.v4() {
		adm.ConsistencyChecked = true // --check-consistency=true is part of the 4.x backup
	} else {
		out, err := e.runAdmin(ctx, log, tool.Path, inspectArgs(dir))
		if err != nil {
			return nil, fmt.Errorf("source %s: %w", e.src.Name, err)
		}
		arts, err := parseInspect(out)
		if err != nil {
			return nil, fmt.Errorf("source %s: %w", e.src.Name, err)
		}
		newest := newestArtifact(arts)
		if newest == nil {
			return nil, fmt.Errorf("source %s: neo4j-admin database backup left no artifact in %s", e.src.Name, dir)
		}
		adm.Full = newest.Full
		adm.LastArtifact = adminDir + filepath.Base(newest.File)
		report := filepath.Join(work, "check")
		if err := os.MkdirAll(report, 0o700); err != nil {
			return nil, err
		}
		if _, err := e.runAdmin(ctx, log, tool.Path, checkArgs(e.src.Database, dir, report)); err != nil {
			return nil, fmt.Errorf("source %s: the backup failed its consistency check: %w", e.src.Name, err)
		}
		adm.ConsistencyChecked = true
	}
	spec := repo.BackupSpec{Source: e.src.Name, Kind: plan.KindNeo4j, Type: repo.TypeFull, Tag: req.Tag}
	var reuse map[string]repo.File
	if !adm.Full && prev != nil {
		spec.Type, spec.Parent = repo.TypeDiff, prev.ID
		reuse = map[string]repo.File{}
		for _, f := range prevFiles {
			for i := range f.Extents {
				if f.Extents[i].Backup == "" {
					f.Extents[i].Backup = prev.ID
				}
			}
			reuse[f.Path] = f
		}
	}
	b, err := req.Repo.BeginBackup(ctx, req.Lock, spec)
	if err != nil {
		return nil, err
	}
	return e.storeArtifacts(ctx, req, log, b, dir, info, reuse)
}

// lastAdminBackup is the newest neo4j-admin online backup of the history (the end of
// the chain a differential backup continues).
func lastAdminBackup(history []*repo.Manifest) *repo.Manifest {
	for i := len(history) - 1; i >= 0; i-- {
		info, err := readInfo(history[i])
		if err == nil && info.Admin != nil && info.Admin.Method == "backup" {
			return history[i]
		}
	}
	return nil
}

func newestArtifact(arts []artifact) *artifact {
	var best *artifact
	for i := range arts {
		if best == nil || arts[i].HighestTx > best.HighestTx || (arts[i].HighestTx == best.HighestTx && arts[i].File > best.File) {
			best = &arts[i]
		}
	}
	return best
}

// storeArtifacts stores every file under dir as admin/<relative path> (files found in
// reuse are referred to, not stored again) and commits the backup.
func (e *Engine) storeArtifacts(ctx context.Context, req engine.BackupRequest, log *slog.Logger, b *repo.Backup, dir string, info *Info, reuse map[string]repo.File) (*repo.Manifest, error) {
	ok := false
	defer func() {
		if !ok {
			b.Abort(context.WithoutCancel(ctx))
		}
	}()
	var paths []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		paths = append(paths, p)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("source %s: list %s: %w", e.src.Name, dir, err)
	}
	sort.Strings(paths)
	if len(paths) == 0 {
		return nil, fmt.Errorf("source %s: neo4j-admin wrote nothing to %s", e.src.Name, dir)
	}
	var total int64
	for _, p := range paths {
		if fi, err := os.Stat(p); err == nil {
			total += fi.Size()
		}
	}
	req.Progress.SetTotal(total)
	pw := b.NewPackWriter(ctx)
	for _, p := range paths {
		rel, _ := filepath.Rel(dir, p)
		name := adminDir + filepath.ToSlash(rel)
		if f, found := reuse[name]; found {
			b.AddFile(f)
			continue
		}
		f, err := storeFile(pw, p, name, req.Progress)
		if err != nil {
			pw.Abort()
			return nil, fmt.Errorf("source %s: %w", e.src.Name, err)
		}
		b.AddBytes(f.Size)
		b.AddFile(f)
		info.Admin.Artifacts = append(info.Admin.Artifacts, name)
		log.Info("stored", "artifact", name, "bytes", f.Size)
	}
	if err := pw.Close(); err != nil {
		pw.Abort()
		return nil, err
	}
	if err := b.SetEngine(info); err != nil {
		return nil, err
	}
	m, err := b.Commit(ctx)
	if err != nil {
		return nil, err
	}
	ok = true
	log.Info("neo4j-admin backup committed", "backup", m.ID, "method", info.Admin.Method, "full", info.Admin.Full)
	return m, nil
}

func storeFile(pw *repo.PackWriter, p, name string, progress engine.Progress) (repo.File, error) {
	fh, err := os.Open(p)
	if err != nil {
		return repo.File{}, fmt.Errorf("read %s: %w", p, err)
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err != nil {
		return repo.File{}, err
	}
	exts, err := pw.Write(&progressReader{r: fh, p: progress}, 0)
	if err != nil {
		return repo.File{}, fmt.Errorf("store %s: %w", p, err)
	}
	f := repo.File{Path: name, Type: repo.TypeRegular, Mode: 0o600, ModTime: fi.ModTime().UTC(), Extents: exts}
	for _, x := range exts {
		f.Size += x.Length
	}
	if len(exts) == 1 {
		f.SHA256 = exts[0].SHA256
	}
	return f, nil
}

type progressReader struct {
	r io.Reader
	p engine.Progress
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.p.Add(int64(n))
	return n, err
}

// materialize writes every file of backup m (its content read from m and the
// backups it refers to, every extent checked) under dir, at its path in the backup.
func materialize(ctx context.Context, r *repo.Repo, m *repo.Manifest, dir string) error {
	files := make([]*repo.File, 0, len(m.Files))
	handles := map[string]*os.File{}
	var mu sync.Mutex
	defer func() {
		for _, h := range handles {
			h.Close()
		}
	}()
	for i := range m.Files {
		f := &m.Files[i]
		if f.Type != repo.TypeRegular {
			continue
		}
		p := filepath.Join(dir, filepath.FromSlash(f.Path))
		if !strings.HasPrefix(p, filepath.Clean(dir)+string(filepath.Separator)) {
			return fmt.Errorf("backup %s: file %q lies outside the backup", m.ID, f.Path)
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return err
		}
		h, err := os.OpenFile(p, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
		if err != nil {
			return err
		}
		handles[f.Path] = h
		if err := h.Truncate(f.Size); err != nil {
			return err
		}
		files = append(files, f)
	}
	err := r.ReadFiles(ctx, m, files, nil, func(f *repo.File, e repo.Extent, data io.Reader) error {
		mu.Lock()
		h := handles[f.Path]
		mu.Unlock()
		_, err := io.Copy(io.NewOffsetWriter(h, e.Offset), data)
		return err
	})
	if err != nil {
		return err
	}
	for path, h := range handles {
		if err := h.Sync(); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
	}
	return nil
}

// waitAvailable waits (up to two minutes) until the plan's database answers over
// Bolt again, and says so in the log; a database that stays unavailable is a warning.
func (e *Engine) waitAvailable(ctx context.Context, log *slog.Logger) {
	if e.src.URI == "" {
		return
	}
	deadline := time.Now().Add(2 * time.Minute)
	var last error
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if last = e.ping(ctx); last == nil {
			log.Info("database available again", "database", e.src.Database, "uri", redactURI(e.src.URI))
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	log.Warn("the database did not answer over Bolt after the start command", "database", e.src.Database, "error", last)
}

func (e *Engine) ping(ctx context.Context) error {
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	drv, err := e.connect(pctx, e.src.URI)
	if err != nil {
		return err
	}
	defer drv.Close(context.WithoutCancel(ctx))
	_, err = neo4jdriver.ExecuteQuery(pctx, drv, "RETURN 1", nil, neo4jdriver.EagerResultTransformer,
		neo4jdriver.ExecuteQueryWithDatabase(e.src.Database))
	return err
}

// planAdminRestore describes an admin restore: the artifacts are fetched into a work
// directory, then loaded (Community) or restored (Enterprise) into the server of the
// plan's neo4j_home.
func (e *Engine) planAdminRestore(ctx context.Context, req engine.RestoreRequest, p *engine.RestorePlan, rp *restorePlan, history []*repo.Manifest) (*engine.RestorePlan, error) {
	m, info := rp.manifest, rp.info
	if info.Admin == nil {
		return nil, fmt.Errorf("backup %s of %s has no neo4j-admin section", m.ID, m.Source)
	}
	var until time.Time
	// A point in time inside a 5.x chain: restore the next differential backup and stop
	// its replay at the time asked.
	if req.BackupID == "" && !req.To.Latest && !req.To.Time.IsZero() && info.Admin.Method == "backup" && info.Version != "" && !strings.HasPrefix(info.Version, "4.") {
		for _, h := range history {
			if h.Parent == m.ID && h.Finished.After(req.To.Time) {
				if hi, err := readInfo(h); err == nil && hi.Admin != nil && !hi.Admin.Full {
					m, info, until = h, hi, req.To.Time
					rp.manifest, rp.info = h, hi
					p.To = req.To.Time
					break
				}
			}
		}
	}
	rp.until = until
	chain, err := req.Repo.Chain(ctx, m)
	if err != nil {
		return nil, err
	}
	for _, cm := range chain {
		p.Backups = append(p.Backups, cm)
	}
	repo.SortManifests(p.Backups)
	p.Target = fmt.Sprintf("database %s of the server at %s (neo4j_home)", rp.database, e.src.Neo4jHome)
	var size int64
	for _, f := range m.Files {
		size += f.Size
	}
	p.Steps = []string{
		fmt.Sprintf("fetch %d artifacts (%s) into a work directory, checking every extent's SHA-256", len(m.Files), engine.Bytes(size)),
	}
	if req.Target != "" {
		p.Steps = append(p.Steps, "note: --target is not used: a neo4j-admin restore goes to the server of neo4j_home")
	}
	switch info.Admin.Method {
	case "dump":
		p.Steps = append(p.Steps,
			"run stop_command: "+e.src.StopCommand,
			fmt.Sprintf("neo4j-admin load of %s.dump over database %s (replacing it)", info.Database, rp.database),
			"run start_command (also when the load fails): "+e.src.StartCommand,
			"wait until the database answers over Bolt")
	default:
		step := fmt.Sprintf("STOP DATABASE %s; neo4j-admin restore (replacing it)", rp.database)
		if !until.IsZero() {
			step += " until " + until.UTC().Format("2006-01-02 15:04:05") + " UTC (--restore-until)"
		}
		p.Steps = append(p.Steps, step, fmt.Sprintf("CREATE DATABASE %s IF NOT EXISTS; START DATABASE %s", rp.database, rp.database))
	}
	return p, nil
}

// adminRestore carries out an admin restore plan.
func (e *Engine) adminRestore(ctx context.Context, req engine.RestoreRequest, p *engine.RestorePlan, rp *restorePlan) error {
	log := req.Log.With("source", e.src.Name)
	tool, err := e.detectTool(ctx, log)
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp(req.Repo.Options().TempDir, "hartvault-neo4j-")
	if err != nil {
		return fmt.Errorf("restore of %s: work directory: %w", e.src.Name, err)
	}
	defer os.RemoveAll(work)
	if err := materialize(ctx, req.Repo, rp.manifest, work); err != nil {
		return fmt.Errorf("restore of %s: fetch the artifacts: %w", e.src.Name, err)
	}
	dir := filepath.Join(work, strings.TrimSuffix(adminDir, "/"))
	db := rp.database
	if rp.info.Admin.Method == "dump" {
		if e.src.StopCommand == "" {
			return fmt.Errorf("restore of %s: loading a dump needs the server stopped: set stop_command and start_command", e.src.Name)
		}
		if db != rp.info.Database {
			// neo4j-admin load reads <database>.dump
			if err := os.Rename(filepath.Join(dir, rp.info.Database+".dump"), filepath.Join(dir, db+".dump")); err != nil {
				return fmt.Errorf("restore of %s: %w", e.src.Name, err)
			}
		}
		var loadErr error
		if err := e.runShell(ctx, log, "stop_command", e.src.StopCommand); err != nil {
			loadErr = fmt.Errorf("restore of %s: %w", e.src.Name, err)
		} else if _, err := e.runAdmin(ctx, log, tool.Path, loadArgs(tool, db, dir)); err != nil {
			loadErr = fmt.Errorf("restore of %s: %w", e.src.Name, err)
		}
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), adminTimeout)
		startErr := e.runShell(sctx, log, "start_command", e.src.StartCommand)
		cancel()
		if startErr != nil {
			startErr = fmt.Errorf("restore of %s: the server may be down: %w", e.src.Name, startErr)
		} else {
			e.waitAvailable(ctx, log)
		}
		if err := errors.Join(loadErr, startErr); err != nil {
			return err
		}
		p.Notes = append(p.Notes, fmt.Sprintf("loaded the dump of backup %s into database %s with neo4j-admin %s", rp.manifest.ID, db, tool.Version))
		return nil
	}
	if tool.Edition != EditionEnterprise {
		return fmt.Errorf("restore of %s: backup %s is a neo4j-admin online backup, which only Neo4j Enterprise restores (this neo4j-admin is %s %s)",
			e.src.Name, rp.manifest.ID, tool.Edition, tool.Version)
	}
	drv, err := e.connect(ctx, e.src.URI)
	if err != nil {
		return err
	}
	defer drv.Close(context.WithoutCancel(ctx))
	system := func(q string) error {
		_, err := neo4jdriver.ExecuteQuery(ctx, drv, q, nil, neo4jdriver.EagerResultTransformer, neo4jdriver.ExecuteQueryWithDatabase("system"))
		if err != nil {
			return fmt.Errorf("restore of %s: %s: %w", e.src.Name, q, err)
		}
		log.Info("ran", "statement", q)
		return nil
	}
	if err := system("STOP DATABASE " + quoteName(db) + " WAIT"); err != nil && !strings.Contains(err.Error(), "DatabaseNotFound") {
		return err
	}
	from := filepath.Join(dir, rp.info.Database)
	if !tool.v4() {
		from = filepath.Join(work, filepath.FromSlash(rp.info.Admin.LastArtifact))
	}
	if _, err := e.runAdmin(ctx, log, tool.Path, restoreArgs(tool, db, from, rp.until)); err != nil {
		return fmt.Errorf("restore of %s: %w", e.src.Name, err)
	}
	if err := system("CREATE DATABASE " + quoteName(db) + " IF NOT EXISTS WAIT"); err != nil {
		return err
	}
	if err := system("START DATABASE " + quoteName(db) + " WAIT"); err != nil {
		return err
	}
	p.Notes = append(p.Notes, fmt.Sprintf("restored backup %s into database %s with neo4j-admin %s and started it", rp.manifest.ID, db, tool.Version))
	return nil
}
