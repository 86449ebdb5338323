package chain

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Type is a backup type as the planner sees it.
type Type string

// Backup types (msdb.dbo.backupset.type D, I and L).
const (
	Full Type = "full"
	Diff Type = "diff"
	Log  Type = "log"
)

// TypeFromMSDB maps msdb's backupset.type letter.
func TypeFromMSDB(letter string) (Type, error) {
	switch strings.ToUpper(strings.TrimSpace(letter)) {
	case "D":
		return Full, nil
	case "I":
		return Diff, nil
	case "L":
		return Log, nil
	}
	return "", fmt.Errorf("backup type %q is not a database, differential or log backup (file and partial backups are not planned)", letter)
}

// Record is one backup set: the msdb.dbo.backupset row of a backup, as hartvault
// keeps it in its manifests. Times carry the server's zone offset of the moment.
type Record struct {
	// Ref is the caller's name for the backup (a hartvault backup id); not from msdb.
	Ref string `json:"-"`

	BackupSetID   int64  `json:"backup_set_id,omitempty"`
	BackupSetGUID string `json:"backup_set_uuid,omitempty"`
	Database      string `json:"database_name"`
	Type          Type   `json:"type"`

	FirstLSN             LSN    `json:"first_lsn"`
	LastLSN              LSN    `json:"last_lsn"`
	CheckpointLSN        LSN    `json:"checkpoint_lsn"`
	DatabaseBackupLSN    LSN    `json:"database_backup_lsn"`
	DifferentialBaseLSN  LSN    `json:"differential_base_lsn"`
	DifferentialBaseGUID string `json:"differential_base_guid,omitempty"`
	ForkPointLSN         LSN    `json:"fork_point_lsn"`
	FirstForkGUID        string `json:"first_recovery_fork_guid"`
	LastForkGUID         string `json:"last_recovery_fork_guid"`
	DatabaseGUID         string `json:"database_guid"`
	FamilyGUID           string `json:"family_guid,omitempty"`
	CopyOnly             bool   `json:"is_copy_only"`

	Start  time.Time `json:"backup_start_date"`
	Finish time.Time `json:"backup_finish_date"`

	Size           int64  `json:"backup_size"`
	CompressedSize int64  `json:"compressed_backup_size"`
	RecoveryModel  string `json:"recovery_model,omitempty"`
	ServerName     string `json:"server_name,omitempty"`
	Checksums      bool   `json:"has_backup_checksums"`
	Damaged        bool   `json:"is_damaged,omitempty"`
	KeyAlgorithm   string `json:"key_algorithm,omitempty"`
	// Devices are the backupmediafamily.physical_device_name of the media set: files or
	// URLs, one per stripe.
	Devices []string `json:"devices,omitempty"`
	// DeviceType is backupmediafamily.device_type: 2 disk, 5 tape, 7 virtual device (a
	// snapshot or third-party agent), 9 URL; 102, 105, 107, 109 the same through a
	// backup device (sys.backup_devices); 0 unknown.
	DeviceType int `json:"device_type,omitempty"`
	// Description is backupset.description: hartvault writes "hartvault backup ID of
	// source NAME", which tells its own backups (committed or not) from other tools'.
	Description string `json:"description,omitempty"`
}

// Name is how messages refer to the record: its Ref, else its backup set id.
func (r *Record) Name() string {
	if r.Ref != "" {
		return r.Ref
	}
	if r.BackupSetGUID != "" {
		return "backup set " + r.BackupSetGUID
	}
	return fmt.Sprintf("backup set %d", r.BackupSetID)
}

// describe names the record with its type, LSN range and finish time.
func (r *Record) describe() string {
	copyOnly := ""
	if r.CopyOnly {
		copyOnly = " copy-only"
	}
	return fmt.Sprintf("%s (%s%s, LSN %s..%s, finished %s)", r.Name(), r.Type, copyOnly, r.FirstLSN, r.LastLSN, FormatTime(r.Finish))
}

// FormatTime prints a time with its zone offset, as the server recorded it.
func FormatTime(t time.Time) string { return t.Format("2006-01-02 15:04:05.000 -07:00") }

// Check reports what makes a record unusable for planning.
func (r *Record) Check() error {
	switch r.Type {
	case Full, Diff, Log:
	default:
		return fmt.Errorf("%s: unknown type %q", r.Name(), r.Type)
	}
	if r.FirstLSN.IsZero() || r.LastLSN.IsZero() {
		return fmt.Errorf("%s: first_lsn and last_lsn are required", r.Name())
	}
	if r.LastLSN.Cmp(r.FirstLSN) < 0 {
		return fmt.Errorf("%s: last_lsn %s is before first_lsn %s", r.Name(), r.LastLSN, r.FirstLSN)
	}
	if r.Type != Log && r.CheckpointLSN.IsZero() {
		return fmt.Errorf("%s: a %s backup needs checkpoint_lsn", r.Name(), r.Type)
	}
	if r.Type == Diff && r.DatabaseBackupLSN.IsZero() {
		return fmt.Errorf("%s: a diff backup needs database_backup_lsn", r.Name())
	}
	if r.Finish.IsZero() {
		return fmt.Errorf("%s: backup_finish_date is required", r.Name())
	}
	return nil
}

// onFork reports whether the record's log range touches fork f.
func (r *Record) onFork(f string) bool {
	return strings.EqualFold(r.FirstForkGUID, f) || strings.EqualFold(r.LastForkGUID, f)
}

func sameGUID(a, b string) bool { return strings.EqualFold(a, b) }

// SortByLSN orders records by first LSN, then last LSN, then finish time: the order
// SQL Server applies them in. Dates never decide before LSNs do.
func SortByLSN(rs []*Record) {
	sort.SliceStable(rs, func(i, j int) bool {
		if c := rs[i].FirstLSN.Cmp(rs[j].FirstLSN); c != 0 {
			return c < 0
		}
		if c := rs[i].LastLSN.Cmp(rs[j].LastLSN); c != 0 {
			return c < 0
		}
		return rs[i].Finish.Before(rs[j].Finish)
	})
}
