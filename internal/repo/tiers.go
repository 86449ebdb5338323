package repo

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/hartonomous/hartvault/internal/storage"
)

// ArchiveState is where a restore's objects stand with respect to the archive tier.
type ArchiveState struct {
	Archived    []string // in the archive tier and not yet being brought back
	Rehydrating []string // being brought back online
}

// Offline reports whether some objects cannot be read yet.
func (a ArchiveState) Offline() int { return len(a.Archived) + len(a.Rehydrating) }

// ArchiveStateOf looks at every object of the given backups.
func (r *Repo) ArchiveStateOf(ctx context.Context, backups []*Manifest) (ArchiveState, error) {
	var st ArchiveState
	for _, m := range backups {
		for _, o := range m.Objects {
			info, err := r.store.Stat(ctx, o.Key)
			if errors.Is(err, storage.ErrNotFound) {
				continue // lost: the restore reads a replica's copy, or names the loss
			}
			if err != nil {
				return st, fmt.Errorf("stat %s: %w", o.Key, err)
			}
			switch {
			case info.Rehydrating:
				st.Rehydrating = append(st.Rehydrating, o.Key)
			case info.Tier == "archive":
				st.Archived = append(st.Archived, o.Key)
			}
		}
	}
	sort.Strings(st.Archived)
	sort.Strings(st.Rehydrating)
	return st, nil
}

// Rehydrate starts bringing archived objects back online.
func (r *Repo) Rehydrate(ctx context.Context, keys []string, priority string) error {
	for _, k := range keys {
		if err := r.store.Rehydrate(ctx, k, priority); err != nil {
			return fmt.Errorf("rehydrate %s: %w", k, err)
		}
	}
	return nil
}

// RehydrationTime is how long bringing objects back may take, as the clouds state it.
func RehydrationTime(priority string) time.Duration {
	if priority == "high" {
		return time.Hour
	}
	return 15 * time.Hour
}

// LockedUntil returns the latest retention lock end among a backup's objects and
// manifest (zero when none is locked): retention must not delete it before then.
func (r *Repo) LockedUntil(ctx context.Context, m *Manifest) (time.Time, error) {
	var until time.Time
	keys := []string{manifestKey(m.Source, m.ID)}
	for _, o := range m.Objects {
		keys = append(keys, o.Key)
	}
	for _, k := range keys {
		info, err := r.store.Stat(ctx, k)
		if err != nil {
			return until, fmt.Errorf("stat %s: %w", k, err)
		}
		if info.LockedUntil.After(until) {
			until = info.LockedUntil
		}
	}
	return until, nil
}
