package mssql

import (
	"context"
	"time"

	"github.com/hartonomous/hartvault/internal/engine/mssql/chain"
	"github.com/hartonomous/hartvault/internal/engine/mssql/clr"
	"github.com/hartonomous/hartvault/internal/engine/mssql/tsql"
)

// Server is what the engine asks of a SQL Server instance. The production
// implementation runs T-SQL through go-mssqldb (sqlserver.go); tests use a fake. One
// Server is one session: calls are sequential.
type Server interface {
	// Info describes the instance.
	Info(ctx context.Context) (ServerInfo, error)
	// Database describes one database; Exists is false when there is none of that name.
	Database(ctx context.Context, name string) (DatabaseInfo, error)
	// History returns msdb.dbo.backupset rows of full, differential and log backups of
	// a database, oldest first, each with its devices (backupmediafamily).
	History(ctx context.Context, q HistoryQuery) ([]chain.Record, error)
	// FileList runs RESTORE FILELISTONLY (of the backup set at from.Position).
	FileList(ctx context.Context, from tsql.Devices) ([]tsql.DatabaseFile, error)
	// HeaderOnly runs RESTORE HEADERONLY: every backup set on the media, in position order.
	HeaderOnly(ctx context.Context, from tsql.Devices) ([]BackupHeader, error)
	// Exec runs one statement (BACKUP and RESTORE run in autocommit, never in a
	// transaction) and reports the percentages of message 3211 ("N percent processed",
	// whatever the server's language) to progress, which may be nil.
	Exec(ctx context.Context, stmt string, progress func(percent int)) error
	// ExecIn runs batches in one database, in order, on one session (a deploy script).
	ExecIn(ctx context.Context, database string, batches []string) error
	// CLR reads the user assemblies of a database and the objects bound to them.
	CLR(ctx context.Context, database string) (clr.Export, error)
	Close() error
}

// Connector opens a Server from a go-mssqldb DSN.
type Connector func(ctx context.Context, dsn string) (Server, error)

// ServerInfo describes an instance.
type ServerInfo struct {
	Name          string `json:"server_name"`
	Version       string `json:"product_version"`
	Edition       string `json:"edition"`
	EngineEdition int    `json:"engine_edition"`
	// UTCOffset is the server's current offset from UTC (SYSDATETIME - SYSUTCDATETIME).
	UTCOffset       time.Duration `json:"-"`
	DefaultDataPath string        `json:"-"`
	DefaultLogPath  string        `json:"-"`
}

// Express reports an Express edition, which cannot compress backups.
func (s ServerInfo) Express() bool { return s.EngineEdition == 4 }

// DatabaseInfo describes one database.
type DatabaseInfo struct {
	Name          string
	Exists        bool
	State         string // ONLINE, RESTORING, RECOVERING, OFFLINE, ...
	RecoveryModel string // FULL, BULK_LOGGED, SIMPLE
	ReadOnly      bool
	UserAccess    string // MULTI_USER, SINGLE_USER, RESTRICTED_USER
	DatabaseGUID  string
	// LastLogBackupLSN is where the next log backup starts (sys.database_recovery_status);
	// absent when no log chain exists (no full backup since the database was created or
	// switched to FULL).
	LastLogBackupLSN chain.LSN
	// DiffBaseGUID is the backup_set_uuid of the full backup the next differential is
	// based on (sys.master_files.differential_base_guid of the primary file).
	DiffBaseGUID string
	DiffBaseLSN  chain.LSN
	// DataBytes and LogBytes are the allocated sizes of data and log files.
	DataBytes int64
	LogBytes  int64
}

// HistoryQuery selects backup history rows.
type HistoryQuery struct {
	Database string
	// AfterSetID returns only rows with a greater backup_set_id (0: all).
	AfterSetID int64
	// Device returns only backup sets written to this device (a file or URL).
	Device string
	// Since returns only backup sets that finished at or after it (zero: all); msdb's
	// local times are compared in the server's current UTC offset, so a daylight-saving
	// change can move the edge by an hour: callers filter exactly on Record.Finish.
	Since time.Time
	// NewestOfType also returns the newest backup set of each type (full, diff, log),
	// however old: the last one of a type is known even when it is older than Since.
	NewestOfType bool
}

// BackupHeader is one row of RESTORE HEADERONLY: a backup set on the media.
type BackupHeader struct {
	// Position is the set's position on the media (FILE = n).
	Position int
	// Record holds what the header says of the set: type, LSNs, GUIDs, copy-only,
	// checksums, sizes, server, description. HEADERONLY has no time zone: Start and
	// Finish are the server's wall-clock times, in time.UTC until InZone places them.
	Record chain.Record
	// Skip says why the set cannot be part of a restore chain (a file, filegroup or
	// partial backup; a password-protected set); "" for full, diff and log backups.
	Skip string
}

// InZone places the header's wall-clock times in loc.
func (h *BackupHeader) InZone(loc *time.Location) {
	h.Record.Start, h.Record.Finish = wallIn(h.Record.Start, loc), wallIn(h.Record.Finish, loc)
}

// wallIn reads t's wall clock as a time in loc.
func wallIn(t time.Time, loc *time.Location) time.Time {
	if t.IsZero() {
		return t
	}
	return time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), loc)
}
