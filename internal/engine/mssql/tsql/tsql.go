// Package tsql writes the T-SQL statements of the SQL Server engine: BACKUP, RESTORE,
// RESTORE VERIFYONLY/FILELISTONLY/HEADERONLY, credentials, recovery model changes. Every
// identifier is quoted with [] and every string with N”, so any database name
// (spaces, ], ', unicode) is safe. Statements are one line each: they are what
// `restore --plan` prints.
package tsql

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// QuoteName quotes an identifier as QUOTENAME does: [name] with ] doubled.
func QuoteName(s string) string { return "[" + strings.ReplaceAll(s, "]", "]]") + "]" }

// QuoteString quotes a Unicode string literal: N'text' with ' doubled.
func QuoteString(s string) string { return "N'" + strings.ReplaceAll(s, "'", "''") + "'" }

// Medium is where a backup is read or written.
type Medium string

// Media.
const (
	URL  Medium = "URL"
	Disk Medium = "DISK"
)

// Devices are the stripes of one media set: all URLs or all files.
type Devices struct {
	Medium Medium
	Paths  []string
	// Position is the backup set's position in the media set (FILE = n; 0 is 1): a file
	// another tool appended several backups to holds them at positions 1, 2, ...
	Position int
}

// fileOption is the FILE = n option of the backup set the devices name.
func (d Devices) fileOption() string { return "FILE = " + strconv.Itoa(max(d.Position, 1)) }

// ToURL and ToDisk build Devices.
func ToURL(urls ...string) Devices   { return Devices{Medium: URL, Paths: urls} }
func ToDisk(paths ...string) Devices { return Devices{Medium: Disk, Paths: paths} }

func (d Devices) check() error {
	if d.Medium != URL && d.Medium != Disk {
		return fmt.Errorf("unknown medium %q", d.Medium)
	}
	if len(d.Paths) == 0 {
		return errors.New("no backup device")
	}
	if d.Position < 0 || d.Position > 32767 {
		return fmt.Errorf("backup set position %d (FILE = 1..32767)", d.Position)
	}
	if len(d.Paths) > MaxStripes {
		return fmt.Errorf("%d stripes: SQL Server takes at most %d devices", len(d.Paths), MaxStripes)
	}
	for _, p := range d.Paths {
		if p == "" {
			return errors.New("empty backup device path")
		}
		if d.Medium == URL && strings.ContainsAny(p, "?#") {
			// A SAS in the URL would be written into msdb and the plan output.
			return errors.New("a backup URL must not carry a query or fragment (the SAS belongs in the credential)")
		}
	}
	return nil
}

func (d Devices) clause() string {
	parts := make([]string, len(d.Paths))
	for i, p := range d.Paths {
		parts[i] = string(d.Medium) + " = " + QuoteString(p)
	}
	return strings.Join(parts, ", ")
}

// Backup types.
const (
	TypeFull = "full"
	TypeDiff = "diff"
	TypeLog  = "log"
)

// Backup describes one BACKUP DATABASE or BACKUP LOG.
type Backup struct {
	Database string
	Type     string // full, diff or log
	To       Devices
	// Options.
	Compression bool
	Checksum    bool
	CopyOnly    bool
	// EncryptionCertificate names a server certificate: ENCRYPTION (ALGORITHM =
	// AES_256, SERVER CERTIFICATE = [name]).
	EncryptionCertificate string
	// MaxTransferSize and BlockSize are written when not zero (see Stripes).
	MaxTransferSize int
	BlockSize       int
	// NoRecovery makes a tail-log backup: the database is left RESTORING.
	NoRecovery bool
	// Name and Description are kept in msdb.dbo.backupset (at most 128 and 255 characters).
	Name        string
	Description string
	Stats       int // STATS = n when > 0
}

// BackupStatement writes the BACKUP statement. FORMAT makes every device a new media
// set, so a stale file of the same name is overwritten, never appended to.
func BackupStatement(b Backup) (string, error) {
	if b.Database == "" {
		return "", errors.New("backup: no database")
	}
	if err := b.To.check(); err != nil {
		return "", fmt.Errorf("backup of %s: %w", b.Database, err)
	}
	var head string
	opts := []string{"FORMAT"}
	switch b.Type {
	case TypeFull:
		head = "BACKUP DATABASE "
	case TypeDiff:
		head = "BACKUP DATABASE "
		opts = append(opts, "DIFFERENTIAL")
		if b.CopyOnly {
			return "", fmt.Errorf("backup of %s: a differential backup cannot be copy-only", b.Database)
		}
	case TypeLog:
		head = "BACKUP LOG "
	default:
		return "", fmt.Errorf("backup of %s: unknown type %q", b.Database, b.Type)
	}
	if b.NoRecovery && b.Type != TypeLog {
		return "", fmt.Errorf("backup of %s: NORECOVERY is for a tail-log backup", b.Database)
	}
	if b.CopyOnly {
		opts = append(opts, "COPY_ONLY")
	}
	if b.Compression {
		opts = append(opts, "COMPRESSION")
	} else {
		opts = append(opts, "NO_COMPRESSION") // explicit: the server default may be on
	}
	if b.Checksum {
		opts = append(opts, "CHECKSUM")
	}
	if b.EncryptionCertificate != "" {
		opts = append(opts, "ENCRYPTION (ALGORITHM = AES_256, SERVER CERTIFICATE = "+QuoteName(b.EncryptionCertificate)+")")
	}
	if b.MaxTransferSize > 0 {
		opts = append(opts, "MAXTRANSFERSIZE = "+strconv.Itoa(b.MaxTransferSize))
	}
	if b.BlockSize > 0 {
		opts = append(opts, "BLOCKSIZE = "+strconv.Itoa(b.BlockSize))
	}
	if b.NoRecovery {
		opts = append(opts, "NORECOVERY")
	}
	if b.Name != "" {
		opts = append(opts, "NAME = "+QuoteString(truncate(b.Name, 128)))
	}
	if b.Description != "" {
		opts = append(opts, "DESCRIPTION = "+QuoteString(truncate(b.Description, 255)))
	}
	if b.Stats > 0 {
		opts = append(opts, "STATS = "+strconv.Itoa(b.Stats))
	}
	return head + QuoteName(b.Database) + " TO " + b.To.clause() + " WITH " + strings.Join(opts, ", ") + ";", nil
}

func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n])
}

// VerifyOnly writes RESTORE VERIFYONLY. checksum must be false for a backup taken
// without CHECKSUM (SQL Server refuses RESTORE ... WITH CHECKSUM on it).
func VerifyOnly(from Devices, checksum bool, stats int) (string, error) {
	if err := from.check(); err != nil {
		return "", fmt.Errorf("verify: %w", err)
	}
	opts := []string{from.fileOption()}
	if checksum {
		opts = append(opts, "CHECKSUM")
	}
	if stats > 0 {
		opts = append(opts, "STATS = "+strconv.Itoa(stats))
	}
	return "RESTORE VERIFYONLY FROM " + from.clause() + " WITH " + strings.Join(opts, ", ") + ";", nil
}

// FileListOnly writes RESTORE FILELISTONLY: the files a backup restores, for MOVE.
func FileListOnly(from Devices) (string, error) {
	if err := from.check(); err != nil {
		return "", fmt.Errorf("file list: %w", err)
	}
	return "RESTORE FILELISTONLY FROM " + from.clause() + " WITH " + from.fileOption() + ";", nil
}

// HeaderOnly writes RESTORE HEADERONLY: one row for every backup set of the media
// (whatever from.Position says), with its LSNs, when msdb has no history.
func HeaderOnly(from Devices) (string, error) {
	if err := from.check(); err != nil {
		return "", fmt.Errorf("header: %w", err)
	}
	return "RESTORE HEADERONLY FROM " + from.clause() + ";", nil
}

// Move relocates one database file on restore.
type Move struct {
	LogicalName string
	To          string
}

// Restore describes one RESTORE DATABASE or RESTORE LOG of a chain.
type Restore struct {
	Database string
	Log      bool // RESTORE LOG; else RESTORE DATABASE (full or differential)
	From     Devices
	Moves    []Move
	Replace  bool // overwrite an existing database
	Checksum bool // verify backup and page checksums (the backup must have them)
	// StopAt is the server's local wall-clock time to stop at (zero: the log's end).
	// Only for RESTORE LOG.
	StopAt time.Time
	// Recovery brings the database online; otherwise it stays RESTORING (NORECOVERY).
	Recovery bool
	Stats    int
}

// StopAtLayout is how STOPAT times are written: ISO 8601 without a zone, which SQL
// Server reads the same way whatever the session's language and DATEFORMAT.
const StopAtLayout = "2006-01-02T15:04:05.000"

// RestoreStatement writes one step of a restore.
func RestoreStatement(r Restore) (string, error) {
	if r.Database == "" {
		return "", errors.New("restore: no database")
	}
	if err := r.From.check(); err != nil {
		return "", fmt.Errorf("restore of %s: %w", r.Database, err)
	}
	head := "RESTORE DATABASE "
	if r.Log {
		head = "RESTORE LOG "
	} else if !r.StopAt.IsZero() {
		return "", fmt.Errorf("restore of %s: STOPAT belongs on RESTORE LOG", r.Database)
	}
	opts := []string{r.From.fileOption()}
	for _, m := range r.Moves {
		if m.LogicalName == "" || m.To == "" {
			return "", fmt.Errorf("restore of %s: MOVE needs a logical file name and a path", r.Database)
		}
		opts = append(opts, "MOVE "+QuoteString(m.LogicalName)+" TO "+QuoteString(m.To))
	}
	if r.Replace {
		opts = append(opts, "REPLACE")
	}
	if r.Checksum {
		opts = append(opts, "CHECKSUM")
	}
	if r.Recovery {
		opts = append(opts, "RECOVERY")
	} else {
		opts = append(opts, "NORECOVERY")
	}
	if !r.StopAt.IsZero() {
		opts = append(opts, "STOPAT = "+QuoteString(r.StopAt.Format(StopAtLayout)))
	}
	if r.Stats > 0 {
		opts = append(opts, "STATS = "+strconv.Itoa(r.Stats))
	}
	return head + QuoteName(r.Database) + " FROM " + r.From.clause() + " WITH " + strings.Join(opts, ", ") + ";", nil
}

// Recover brings a database left RESTORING online.
func Recover(database string) string {
	return "RESTORE DATABASE " + QuoteName(database) + " WITH RECOVERY;"
}

// SingleUser takes exclusive access before a database is replaced; open transactions
// of other sessions are rolled back.
func SingleUser(database string) string {
	return "ALTER DATABASE " + QuoteName(database) + " SET SINGLE_USER WITH ROLLBACK IMMEDIATE;"
}

// MultiUser gives the database back to everyone (after a failed restore step).
func MultiUser(database string) string {
	return "ALTER DATABASE " + QuoteName(database) + " SET MULTI_USER;"
}

// SetRecoveryFull switches a database to the FULL recovery model.
func SetRecoveryFull(database string) string {
	return "ALTER DATABASE " + QuoteName(database) + " SET RECOVERY FULL;"
}

// UseDatabase switches the session's database.
func UseDatabase(database string) string { return "USE " + QuoteName(database) + ";" }
