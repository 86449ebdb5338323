// Package engine defines what every engine (file sets, PostgreSQL, SQL Server, Neo4j)
// provides, and runs a backup around an engine: lock, cleanup of interrupted runs,
// the engine's own work, replicas. An engine knows its database, not storage: it
// writes through the repository's pack writers and manifests.
package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/hartonomous/hartvault/internal/repo"
)

// Progress receives byte counts for a progress bar. Implementations must be safe for
// concurrent use.
type Progress interface {
	SetTotal(n int64)
	Add(n int64)
}

// NoProgress discards progress.
type NoProgress struct{}

func (NoProgress) SetTotal(int64) {}
func (NoProgress) Add(int64)      {}

// BackupRequest asks an engine for one backup.
type BackupRequest struct {
	Repo *repo.Repo
	Lock *repo.Lock
	// Type is "full" or "diff" ("" lets the engine choose its default).
	Type     string
	Tag      string
	Force    bool
	Progress Progress
	Log      *slog.Logger
}

// RestoreRequest asks an engine to restore a source.
type RestoreRequest struct {
	Repo *repo.Repo
	// BackupID (an id or a tag) names the backup to restore; when empty, To says
	// which point to restore to (its zero value is the latest).
	BackupID string
	To       Target
	// Target is where to restore (a directory for files and PostgreSQL).
	Target   string
	Force    bool
	Progress Progress
	Log      *slog.Logger

	// Engine-specific options; an engine ignores those it has no use for.
	Database string // SQL Server: the database to restore
	As       string // SQL Server: restore under this name
	TailLog  bool   // SQL Server: back up the tail of the log before replacing a database
	Apply    bool   // SQL Server CLR: run the deploy script after restoring
	Start    bool   // PostgreSQL: start the restored cluster and wait for recovery
	Port     int    // PostgreSQL: the port to start it on
	// NoArchive keeps a restored copy from archiving into the repository (drills,
	// scratch restores): only a system that replaces the original should.
	NoArchive bool
	// BackupFiles are backup files or URLs (as the server names them) that SQL Server
	// reads with RESTORE HEADERONLY when the repository lacks backups a restore needs.
	BackupFiles []string
}

// RestorePlan is what a restore will do, worked out before anything is touched.
type RestorePlan struct {
	Source string
	Kind   string
	// Backups are the backups the restore reads, oldest first (a full, then its diff).
	Backups []*repo.Manifest
	// To is the point restored to: a backup's end, or a time within the window.
	To time.Time
	// Earliest and Latest bound the instants the source can be restored to; Latest
	// is zero when any later instant is (a file set restores its newest backup
	// before it).
	Earliest, Latest time.Time
	Target           string
	// Steps are engine-specific lines (WAL range, T-SQL statements, ...) that --plan prints.
	Steps []string
	// Engine carries the engine's own plan from PlanRestore to Restore.
	Engine any
	// Notes are lines Restore adds about what it did (replay time, checks run).
	Notes []string
}

// Engine backs up and restores one source.
type Engine interface {
	Source() string
	Kind() string
	// Backup takes one backup and commits it, or returns *UnchangedError when the
	// source has not changed since its last backup and a new one would be identical.
	Backup(ctx context.Context, req BackupRequest) (*repo.Manifest, error)
	// PlanRestore works out what Restore would do, touching nothing.
	PlanRestore(ctx context.Context, req RestoreRequest) (*RestorePlan, error)
	// Restore carries out a plan made by PlanRestore for the same request.
	Restore(ctx context.Context, req RestoreRequest, plan *RestorePlan) error
}

// UnchangedError says no backup was needed.
type UnchangedError struct {
	Source string
	Last   *repo.Manifest
}

func (e *UnchangedError) Error() string {
	return fmt.Sprintf("%s is unchanged since backup %s: no new backup taken (--force takes one anyway)", e.Source, e.Last.ID)
}

// checkTag refuses a tag a backup of the source already carries: a tag must name
// one backup wherever an id is accepted. Every engine's backup passes here.
func checkTag(ctx context.Context, r *repo.Repo, source, tag string) error {
	if tag == "" {
		return nil
	}
	history, err := r.Backups(ctx, source)
	if err != nil {
		return err
	}
	if _, err := repo.Find(history, tag); err == nil {
		return fmt.Errorf("tag %q is already used by a backup of %s", tag, source)
	}
	return nil
}

// Result is what RunBackup did.
type Result struct {
	Manifest  *repo.Manifest
	Leftovers []string // interrupted backups whose data was removed
	Replicas  []repo.ReplicaReport
}

// RunBackup takes the source's lock, removes what interrupted runs left, runs the
// engine's backup, and brings replicas up to date. Replica failures do not fail the
// backup (it is committed on the primary); they are in Result.Replicas.
func RunBackup(ctx context.Context, eng Engine, req BackupRequest) (res *Result, err error) {
	lock, err := req.Repo.Lock(ctx, eng.Source(), "backup")
	if err != nil {
		return nil, err
	}
	defer lock.Release(context.WithoutCancel(ctx))
	req.Lock = lock
	// The run log records every attempt that got the lock, whatever its outcome.
	rec := req.Repo.StartRun(ctx, eng.Source(), req.Type, lock)
	defer func() {
		o := repo.Outcome{Err: err, Unchanged: errors.As(err, new(*UnchangedError))}
		if res != nil {
			o.Manifest, o.Replicas = res.Manifest, res.Replicas
		}
		rec.Finish(ctx, o)
	}()
	if req.Progress == nil {
		req.Progress = NoProgress{}
	}
	if req.Log == nil {
		req.Log = slog.New(slog.DiscardHandler)
	}
	if err := checkTag(ctx, req.Repo, eng.Source(), req.Tag); err != nil {
		return nil, err
	}
	res = &Result{}
	res.Leftovers, err = req.Repo.CleanLeftovers(ctx, eng.Source(), "")
	if err != nil {
		return nil, err
	}
	for _, id := range res.Leftovers {
		req.Log.Info("removed the data of an interrupted backup", "source", eng.Source(), "backup", id)
	}
	m, err := eng.Backup(ctx, req)
	if err != nil {
		return res, err
	}
	res.Manifest = m
	res.Replicas = req.Repo.SyncReplicas(ctx, eng.Source())
	return res, nil
}

// Problem is damage found inside a backup's content (a page whose checksum fails).
type Problem struct {
	Where  string
	Reason string
}

// ContentVerifier is implemented by engines that can check a backup's content
// beyond the objects' hashes (PostgreSQL page checksums, a parsable export).
type ContentVerifier interface {
	VerifyContent(ctx context.Context, r *repo.Repo, m *repo.Manifest, report func(Problem)) error
}

// Summarizer is implemented by engines with details worth a line in `list`.
type Summarizer interface {
	Summary(m *repo.Manifest) string
}

// LogVerifier is implemented by engines with a continuous log outside manifests
// (PostgreSQL's WAL archive); it returns how many log files it checked.
type LogVerifier interface {
	VerifyLogs(ctx context.Context, r *repo.Repo, report func(Problem)) (int, error)
}

// Warner is implemented by engines whose backups can carry warnings worth showing
// (a backup type changed, another tool's backups found).
type Warner interface {
	Warnings(m *repo.Manifest) []string
}

// LogPruner is implemented by engines with a continuous log outside manifests
// (PostgreSQL's WAL archive). Retention calls it once it has decided which backups
// stay: it lists the log objects that neither a kept backup nor the log rule needs
// and, unless req.DryRun, deletes them, oldest first.
type LogPruner interface {
	PruneLogs(ctx context.Context, r *repo.Repo, req LogPruneRequest) ([]LogRange, error)
}

// LogPruneRequest is what retention keeps.
type LogPruneRequest struct {
	// Kept are the source's backups that stay, oldest first.
	Kept []*repo.Manifest
	// Since keeps every log object written at or after it, needed by a backup or
	// not (the log rule's age: "log: 7d"); zero keeps nothing more.
	Since time.Time
	// Forever keeps every log object ("log: forever"): nothing is listed.
	Forever bool
	DryRun  bool
	Log     *slog.Logger
}

// LogRange is a run of log objects pruned for one reason.
type LogRange struct {
	// What names the run ("WAL of cluster 7301..., timeline 1: 0000000100000000000000A0..0000000100000000000000C7").
	What   string
	Reason string
	// Objects are the names relative to the source's log prefix (repo.LogPrefix).
	Objects []string
	Bytes   int64
}
