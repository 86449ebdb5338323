package engine

import (
	"fmt"
	"strings"
	"time"

	"github.com/hartonomous/hartvault/internal/repo"
)

// Target is a restore point: Latest, or a time.
type Target struct {
	Latest bool
	Time   time.Time
}

func (t Target) String() string {
	if t.Latest {
		return "latest"
	}
	return t.Time.Format(time.RFC3339)
}

// ParseTime reads a --to value: "latest", RFC 3339, or "YYYY-MM-DD HH:MM:SS" with an
// optional fraction and an optional zone offset ("+00", "+02:00"); without a zone
// the time is in loc.
func ParseTime(s string, loc *time.Location) (Target, error) {
	s = strings.TrimSpace(s)
	if s == "" || strings.EqualFold(s, "latest") {
		return Target{Latest: true}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return Target{Time: t}, nil
	}
	for _, layout := range []string{
		"2006-01-02 15:04:05.999999999Z07:00", "2006-01-02 15:04:05.999999999Z07", "2006-01-02 15:04:05.999999999 Z07:00",
		"2006-01-02 15:04:05.999999999 Z07", "2006-01-02 15:04:05.999999999 MST",
	} {
		if t, err := time.Parse(layout, s); err == nil {
			return Target{Time: t}, nil
		}
	}
	for _, layout := range []string{"2006-01-02 15:04:05.999999999", "2006-01-02T15:04:05.999999999", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, loc); err == nil {
			return Target{Time: t}, nil
		}
	}
	return Target{}, fmt.Errorf("cannot read time %q: use RFC 3339 (2025-11-19T14:30:00Z), \"YYYY-MM-DD HH:MM:SS\" (local time, optional +HH:MM) or latest", s)
}

// Select picks the backup to restore: by id or tag when backupID is set, else the
// newest backup finished at or before the target.
func Select(backups []*repo.Manifest, backupID string, to Target) (*repo.Manifest, error) {
	if backupID != "" {
		return repo.Find(backups, backupID)
	}
	if len(backups) == 0 {
		return nil, fmt.Errorf("%w: the source has no backups", repo.ErrNoBackup)
	}
	if to.Latest {
		return backups[len(backups)-1], nil
	}
	m := repo.Latest(backups, to.Time)
	if m == nil {
		return nil, fmt.Errorf("%w: no backup finished at or before %s (the first finished at %s)", repo.ErrNoBackup,
			to.Time.Format(time.RFC3339), backups[0].Finished.Format(time.RFC3339))
	}
	return m, nil
}

// Bytes formats a byte count for people (1.5 GiB).
func Bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
