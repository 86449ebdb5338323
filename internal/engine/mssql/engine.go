// Package mssql is the SQL Server engine: full, differential and log backups of
// databases with BACKUP DATABASE / BACKUP LOG, written by SQL Server straight into an
// Azure Blob repository (mode url) or staged on the server and stored through
// hartvault's own pipeline (mode stream); RESTORE VERIFYONLY after each backup; point-
// in-time restores planned from the msdb rows hartvault keeps in its manifests (see
// chain); and the CLR assemblies of each database with their deploy script.
package mssql

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/hartonomous/hartvault/internal/engine/mssql/chain"
	"github.com/hartonomous/hartvault/internal/engine/mssql/tsql"
	"github.com/hartonomous/hartvault/internal/plan"
	"github.com/hartonomous/hartvault/internal/repo"
)

// Options tune an Engine. Zero values take the defaults.
type Options struct {
	// Connect opens a session on the server (default: Connect, through go-mssqldb).
	Connect Connector
	// Getenv reads the environment (default os.Getenv): the DSN and the SAS come from it.
	Getenv func(string) string
	// Now is the clock (default time.Now): SAS expiry, staging names.
	Now func() time.Time
	// TailLog makes Restore back up the tail of the log (BACKUP LOG ... WITH
	// NORECOVERY) into the repository before it restores over the same database.
	TailLog bool
}

// Engine backs up and restores the databases of one kind mssql source.
type Engine struct {
	src  plan.Source
	opts Options
}

// New returns the engine of a kind mssql source.
func New(src plan.Source, opts Options) *Engine {
	if opts.Connect == nil {
		opts.Connect = Connect
	}
	if opts.Getenv == nil {
		opts.Getenv = os.Getenv
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if src.MSSQLOptions.Stats == 0 {
		src.MSSQLOptions.Stats = plan.DefaultMSSQLStats
	}
	return &Engine{src: src, opts: opts}
}

func (e *Engine) Source() string { return e.src.Name }
func (e *Engine) Kind() string   { return plan.KindMSSQL }

// Info is the engine section of a SQL Server manifest.
type Info struct {
	Server    string           `json:"server"`
	Version   string           `json:"version"`
	Edition   string           `json:"edition"`
	Mode      string           `json:"mode"`
	Databases []DatabaseBackup `json:"databases"`
	// CLR holds the CLR export of each database that has one (clr: true).
	CLR []CLRExport `json:"clr,omitempty"`
	// Warnings are what the run wants its operator to know (a diff base reset by another
	// tool, a log backup turned into a full): printed by the CLI, kept here.
	Warnings []string `json:"warnings,omitempty"`
}

// DatabaseBackup is one database's backup in a run.
type DatabaseBackup struct {
	Database string `json:"database"`
	// Type is what was taken; Requested what was asked when it differs, and Reason why.
	Type      string `json:"type"`
	Requested string `json:"requested,omitempty"`
	Reason    string `json:"reason,omitempty"`
	Mode      string `json:"mode"`
	// Paths are the manifest files holding the backup's stripes, in stripe order (the
	// .bak files in stream mode, the blobs in url mode).
	Paths []string `json:"paths"`
	// URLs are the blobs SQL Server wrote, in stripe order (url mode; no SAS).
	URLs []string `json:"urls,omitempty"`
	// BackupSet is the msdb.dbo.backupset row: LSNs as decimal strings, fork and
	// database GUIDs, copy-only, times with the server's zone offset, sizes.
	BackupSet chain.Record `json:"backupset"`
	// Files is RESTORE FILELISTONLY of full and differential backups (for MOVE).
	Files    []tsql.DatabaseFile `json:"files,omitempty"`
	Verified bool                `json:"verified"`
	// Statement is the BACKUP statement that ran.
	Statement string `json:"statement"`
	// TailLog marks a tail-log backup taken before a restore (the database was left
	// RESTORING by it).
	TailLog bool `json:"tail_log,omitempty"`
}

// CLRExport is the CLR export of one database.
type CLRExport struct {
	Database string `json:"database"`
	// SHA256 identifies the export's content (bits, script): unchanged exports are not
	// stored again.
	SHA256 string `json:"sha256"`
	// Holder is the backup whose files hold this export ("" for the manifest itself).
	Holder string `json:"holder,omitempty"`
	// Paths are the manifest files of the export: one .dll per assembly file, then
	// deploy-clr.sql.
	Paths      []string `json:"paths"`
	Assemblies []string `json:"assemblies"` // in dependency order
	Skipped    []string `json:"skipped,omitempty"`
}

// ReadInfo decodes the engine section of a SQL Server manifest.
func ReadInfo(m *repo.Manifest) (*Info, error) {
	if m.Kind != plan.KindMSSQL {
		return nil, fmt.Errorf("backup %s is of kind %s, not %s", m.ID, m.Kind, plan.KindMSSQL)
	}
	var info Info
	if len(m.Engine) == 0 {
		return &info, nil
	}
	if err := json.Unmarshal(m.Engine, &info); err != nil {
		return nil, fmt.Errorf("backup %s: engine section: %w", m.ID, err)
	}
	return &info, nil
}

// Warnings returns the warnings a backup recorded, for the CLI to print after
// `backup`.
func Warnings(m *repo.Manifest) []string {
	info, err := ReadInfo(m)
	if err != nil {
		return nil
	}
	return info.Warnings
}

// dsn reads the DSN from the plan's environment variable, never printing it.
func (e *Engine) dsn() (string, error) {
	v := e.opts.Getenv(e.src.DSNEnv)
	if strings.TrimSpace(v) == "" {
		return "", fmt.Errorf("source %s: environment variable %s (dsn_env) is not set: it must hold the go-mssqldb DSN (sqlserver://...)", e.src.Name, e.src.DSNEnv)
	}
	return v, nil
}

func (e *Engine) connect(ctx context.Context) (Server, error) {
	dsn, err := e.dsn()
	if err != nil {
		return nil, err
	}
	s, err := e.opts.Connect(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("source %s: %w", e.src.Name, err)
	}
	return s, nil
}

// entry is one database backup of the repository with the manifest holding it, or
// (ext set, m nil) a backup taken outside hartvault, read from its files.
type entry struct {
	m   *repo.Manifest
	db  *DatabaseBackup
	ext *external
}

// name is how messages refer to the backup: its id, or the external backup's name.
func (en *entry) name() string {
	if en.ext != nil {
		return en.ext.ref
	}
	return en.m.ID
}

// catalog is what the repository holds of this source.
type catalog struct {
	manifests []*repo.Manifest
	infos     map[string]*Info // by manifest id
}

func (e *Engine) catalog(ctx context.Context, r *repo.Repo) (*catalog, error) {
	ms, err := r.Backups(ctx, e.src.Name)
	if err != nil {
		return nil, err
	}
	return catalogOf(ms)
}

// catalogOf reads the SQL Server manifests among ms.
func catalogOf(ms []*repo.Manifest) (*catalog, error) {
	c := &catalog{infos: map[string]*Info{}}
	for _, m := range ms {
		if m.Kind != plan.KindMSSQL {
			continue
		}
		info, err := ReadInfo(m)
		if err != nil {
			return nil, err
		}
		c.manifests = append(c.manifests, m)
		c.infos[m.ID] = info
	}
	return c, nil
}

// entries returns the backups of one database, oldest first.
func (c *catalog) entries(database string) []entry {
	var out []entry
	for _, m := range c.manifests {
		info := c.infos[m.ID]
		for i := range info.Databases {
			if strings.EqualFold(info.Databases[i].Database, database) {
				out = append(out, entry{m: m, db: &info.Databases[i]})
			}
		}
	}
	return out
}

// records turns entries into planner records, each named by its backup id.
func records(es []entry) []chain.Record {
	out := make([]chain.Record, len(es))
	for i, en := range es {
		out[i] = en.db.BackupSet
		out[i].Ref = en.name()
	}
	return out
}

// databases lists the databases the repository holds for this source, and those of
// the plan.
func (e *Engine) knownDatabases(c *catalog) []string {
	seen := map[string]bool{}
	var out []string
	add := func(n string) {
		if !seen[strings.ToLower(n)] {
			seen[strings.ToLower(n)] = true
			out = append(out, n)
		}
	}
	for _, d := range e.src.Databases {
		add(d)
	}
	for _, m := range c.manifests {
		for _, d := range c.infos[m.ID].Databases {
			add(d.Database)
		}
	}
	sort.Strings(out)
	return out
}

func (e *Engine) log(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l.With("source", e.src.Name)
}

// errorf wraps err with the source name.
func (e *Engine) errorf(format string, args ...any) error {
	return fmt.Errorf("source %s: "+format, append([]any{e.src.Name}, args...)...)
}

// clrExportOf returns the CLR export entry of one database in a manifest.
func (info *Info) clrExportOf(database string) *CLRExport {
	for i := range info.CLR {
		if strings.EqualFold(info.CLR[i].Database, database) {
			return &info.CLR[i]
		}
	}
	return nil
}

var errNoHistory = errors.New("no backup in this repository")

// Warnings implements engine.Warner.
func (e *Engine) Warnings(m *repo.Manifest) []string { return Warnings(m) }
