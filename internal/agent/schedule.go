package agent

import (
	"fmt"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/hartonomous/hartvault/internal/plan"
	"github.com/hartonomous/hartvault/internal/repo"
)

// entry is one scheduled kind of work: a type of backup of a source on a cron
// schedule (or descriptor, including robfig's "@every <duration>"), or an
// on-change check of a file set every check_every.
type entry struct {
	source string
	typ    string
	expr   string
	sched  cron.Schedule // nil: on-change
	every  time.Duration // on-change: the check interval
	next   time.Time     // the next regular fire

	// After a failure or a lock held elsewhere: when to try again, for which fire.
	retryAt     time.Time
	retryFire   time.Time
	retryReason string
	attempt     int // failures since the last success
}

var typeOrder = []string{repo.TypeFull, repo.TypeDiff, repo.TypeLog}

// entries reads the schedules of a plan; continuous lists the sources whose log is
// streamed continuously.
func entries(p *plan.Plan) (es []*entry, continuous []string, err error) {
	for _, src := range p.Sources {
		for _, typ := range typeOrder {
			expr := src.ScheduleFor(typ)
			switch expr {
			case "":
				continue
			case plan.Continuous:
				continuous = append(continuous, src.Name)
				continue
			case plan.OnChange:
				every := src.CheckEvery.Std()
				if every <= 0 {
					every = plan.DefaultCheckEvery.Std()
				}
				es = append(es, &entry{source: src.Name, typ: typ, expr: expr, every: every})
				continue
			}
			s, err := plan.ParseSchedule(expr)
			if err != nil {
				return nil, nil, fmt.Errorf("source %s: schedule.%s %q: %w", src.Name, typ, expr, err)
			}
			es = append(es, &entry{source: src.Name, typ: typ, expr: expr, sched: s})
		}
	}
	return es, continuous, nil
}

// nextFire is the first fire of s strictly after t, read in loc.
func nextFire(s cron.Schedule, t time.Time, loc *time.Location) time.Time {
	return s.Next(t.In(loc))
}

// prevFire is the last fire of s at or before now, read in loc (zero when there is
// none within a year). robfig/cron only looks forward: this steps forward from
// ever further back until a fire at or before now is found, then to the last one.
func prevFire(s cron.Schedule, now time.Time, loc *time.Location) time.Time {
	now = now.In(loc)
	for _, back := range []time.Duration{time.Minute, time.Hour, 25 * time.Hour, 8 * 24 * time.Hour, 32 * 24 * time.Hour, 367 * 24 * time.Hour} {
		f := s.Next(now.Add(-back))
		if f.IsZero() || f.After(now) {
			continue
		}
		for i := 0; i < 1_000_000; i++ {
			n := s.Next(f)
			if n.IsZero() || n.After(now) || !n.After(f) {
				return f
			}
			f = n
		}
		return f
	}
	return time.Time{}
}
