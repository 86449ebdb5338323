package retention

import (
	"testing"
	"time"

	"github.com/hartonomous/hartvault/internal/plan"
	"github.com/hartonomous/hartvault/internal/repo"
)

// TestPinnedBackupsStay: a backup under a retention lock stays, and so does what it
// needs (its full), whatever the rules say.
func TestPinnedBackupsStay(t *testing.T) {
	now := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	full := &repo.Manifest{ID: "f1", Source: "s", Type: repo.TypeFull, Started: now.Add(-40 * day), Finished: now.Add(-40 * day)}
	diff := &repo.Manifest{ID: "d1", Source: "s", Type: repo.TypeDiff, Parent: "f1", Started: now.Add(-39 * day), Finished: now.Add(-39 * day)}
	newer := &repo.Manifest{ID: "f2", Source: "s", Type: repo.TypeFull, Started: now.Add(-8 * day), Finished: now.Add(-8 * day)}
	pol := Policy{Full: plan.Keep{Age: 7 * day}, Diff: plan.Keep{Age: 7 * day}, Log: plan.Keep{Age: 7 * day}}
	d := Plan([]*repo.Manifest{full, diff, newer}, pol, now)
	for _, v := range d.Backups {
		if v.Backup.ID != "f2" && v.Keep {
			t.Fatalf("without a lock %s is kept: %s", v.Backup.ID, v.Reason)
		}
	}
	d = pinAndReplan(d, map[string]string{"d1": "under a retention lock"})
	keep := map[string]bool{}
	for _, v := range d.Backups {
		keep[v.Backup.ID] = v.Keep
	}
	if !keep["d1"] || !keep["f1"] || !keep["f2"] {
		t.Fatalf("pinned diff and its full must stay: %+v", keep)
	}
}
