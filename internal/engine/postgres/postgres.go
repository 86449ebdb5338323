// Package postgres is the PostgreSQL engine: online base backups read straight
// from the data directory (full, and differential at page level), WAL archiving
// (archive_command, and streaming over a replication slot), point-in-time restore,
// and page checksum verification.
package postgres

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/hartonomous/hartvault/internal/plan"
	"github.com/hartonomous/hartvault/internal/repo"
)

// Engine backs up one PostgreSQL cluster.
type Engine struct {
	src plan.Source
	// Config is the absolute path of the plan file; restore writes it into
	// restore_command.
	config string
	// exe is the hartvault binary restore_command runs.
	exe string
	// WALTimeout bounds how long a backup waits for its WAL to reach the repository.
	WALTimeout time.Duration
}

// New returns the engine of a kind: postgres source. configPath is the plan file.
func New(src plan.Source, configPath string) *Engine {
	exe, err := os.Executable()
	if err != nil {
		exe = "hartvault"
	}
	abs, err := filepath.Abs(configPath)
	if err != nil {
		abs = configPath
	}
	return &Engine{src: src, config: abs, exe: exe, WALTimeout: 2 * time.Minute}
}

func (e *Engine) Source() string { return e.src.Name }
func (e *Engine) Kind() string   { return plan.KindPostgres }

// Info is the engine section of a PostgreSQL backup's manifest.
type Info struct {
	Server        ServerInfo   `json:"server"`
	Label         string       `json:"label"`
	StartLSN      string       `json:"start_lsn"`
	StopLSN       string       `json:"stop_lsn"`
	Timeline      uint32       `json:"timeline"`
	StartWAL      string       `json:"start_wal"`
	StopWAL       string       `json:"stop_wal"`
	StopTime      time.Time    `json:"stop_time"`
	TablespaceMap string       `json:"tablespace_map,omitempty"`
	Tablespaces   []tablespace `json:"tablespaces,omitempty"`
	// Diff backups: pages changed since the full's start, and files stored whole.
	ChangedPages int64 `json:"changed_pages,omitempty"`
	WholeFiles   int   `json:"whole_files,omitempty"`
	// Scheme is how the backup was taken (schemeExact, or 0 before it).
	Scheme int `json:"scheme,omitempty"`
	// AllVisible (fulls): per main-fork relation file, the pages whose stored copy
	// carries PD_ALL_VISIBLE, which a diff compares with the live pages.
	AllVisible map[string]pageRuns `json:"all_visible,omitempty"`
}

// ReadInfo decodes a manifest's PostgreSQL section.
func ReadInfo(m *repo.Manifest) (*Info, error) {
	var info Info
	if err := json.Unmarshal(m.Engine, &info); err != nil {
		return nil, fmt.Errorf("backup %s: PostgreSQL section: %w", m.ID, err)
	}
	return &info, nil
}

func (i *Info) startLSN() LSN { l, _ := ParseLSN(i.StartLSN); return l }
func (i *Info) stopLSN() LSN  { l, _ := ParseLSN(i.StopLSN); return l }

// binDir finds the server binaries: the plan's bin_dir, else pg_ctl on PATH, else
// pg_config --bindir, else the newest /usr/lib/postgresql/*/bin.
func (e *Engine) binDir() (string, error) {
	if e.src.BinDir != "" {
		return e.src.BinDir, nil
	}
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		return filepath.Dir(p), nil
	}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		if d := strings.TrimSpace(string(out)); d != "" {
			if _, err := os.Stat(filepath.Join(d, "pg_ctl")); err == nil {
				return d, nil
			}
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	for i := len(dirs) - 1; i >= 0; i-- {
		if _, err := os.Stat(filepath.Join(dirs[i], "pg_ctl")); err == nil {
			return dirs[i], nil
		}
	}
	return "", fmt.Errorf("PostgreSQL binaries (pg_ctl) not found: set bin_dir for source %s", e.src.Name)
}

// Summary is the line `list` prints under a PostgreSQL backup.
func (e *Engine) Summary(m *repo.Manifest) string {
	info, err := ReadInfo(m)
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("PostgreSQL %d, system %d, timeline %d, LSN %s..%s, WAL %s..%s",
		info.Server.Version/10000, info.Server.SystemID, info.Timeline, info.StartLSN, info.StopLSN, info.StartWAL, info.StopWAL)
}
