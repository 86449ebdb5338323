package status

import (
	"context"
	"fmt"
	"time"

	"github.com/hartonomous/hartvault/internal/repo"
)

// System is what concerns every source together: the instants they can all be
// recovered to, and the restore drills.
type System struct {
	// Common is the span every source can be recovered to at once (recover --to);
	// Latest zero means up to now. Error says the windows do not meet.
	Common RestoreWindow `json:"common_restorable"`
	Error  string        `json:"common_error,omitempty"`
	Drill  DrillStatus   `json:"drill"`
}

// DrillStatus is the last restore drill and when the next is due.
type DrillStatus struct {
	Every   string            `json:"every,omitempty"` // drills.every; empty: not scheduled
	Last    *repo.DrillRecord `json:"last,omitempty"`
	Count   int               `json:"count"`
	Due     time.Time         `json:"due,omitzero"`
	Overdue bool              `json:"overdue"`
}

// DrillSource names the drill's alerts in the report.
const DrillSource = "drills"

// computeSystem intersects the sources' windows and reads the drill records.
// Sources restorable only to backup points are restorable to any later instant
// (to their newest backup before it), so they bound the common span from below only.
func computeSystem(ctx context.Context, o Options, sources []SourceStatus) (System, []Alert) {
	var sys System
	first := true
	for _, s := range sources {
		w := s.Restorable
		if w.Earliest.IsZero() {
			sys.Error = fmt.Sprintf("%s has no backup", s.Name)
			continue
		}
		if first || w.Earliest.After(sys.Common.Earliest) {
			sys.Common.Earliest = w.Earliest
		}
		if w.Continuous && (sys.Common.Latest.IsZero() || w.Latest.Before(sys.Common.Latest)) {
			sys.Common.Latest, sys.Common.Continuous = w.Latest, true
		}
		first = false
	}
	if sys.Error == "" && !sys.Common.Latest.IsZero() && sys.Common.Latest.Before(sys.Common.Earliest) {
		sys.Error = "the sources' restorable windows do not overlap"
	}
	var alerts []Alert
	drills, err := o.Repo.Drills(ctx)
	if err != nil {
		sys.Error = err.Error()
		return sys, alerts
	}
	sys.Drill.Count = len(drills)
	if len(drills) > 0 {
		sys.Drill.Last = drills[len(drills)-1]
		if !sys.Drill.Last.Passed {
			alerts = append(alerts, Alert{Source: DrillSource, Type: "drill", Kind: "failed", Since: sys.Drill.Last.Finished,
				Message: fmt.Sprintf("the last restore drill (%s) failed: %s", sys.Drill.Last.ID, sys.Drill.Last.Error)})
		}
	}
	if every := o.Plan.Drills.Every.Std(); every > 0 {
		sys.Drill.Every = o.Plan.Drills.Every.String()
		if sys.Drill.Last != nil {
			sys.Drill.Due = sys.Drill.Last.Started.Add(every)
		}
		if sys.Drill.Last == nil || o.Now.After(sys.Drill.Due) {
			sys.Drill.Overdue = true
			msg := "no restore drill recorded yet (drills.every is " + sys.Drill.Every + ")"
			if sys.Drill.Last != nil {
				msg = fmt.Sprintf("the last restore drill was %s ago (drills.every is %s)", o.Now.Sub(sys.Drill.Last.Started).Round(time.Minute), sys.Drill.Every)
			}
			alerts = append(alerts, Alert{Source: DrillSource, Type: "drill", Kind: "overdue", Since: sys.Drill.Due, Message: msg})
		}
	}
	return sys, alerts
}

// DrillDue reports whether a drill should run now (the agent asks).
func DrillDue(ctx context.Context, r *repo.Repo, every time.Duration, now time.Time) (bool, error) {
	if every <= 0 {
		return false, nil
	}
	drills, err := r.Drills(ctx)
	if err != nil {
		return false, err
	}
	return len(drills) == 0 || !now.Before(drills[len(drills)-1].Started.Add(every)), nil
}
