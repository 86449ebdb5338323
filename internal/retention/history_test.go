package retention

import (
	"fmt"
	"math/rand"
	"slices"
	"time"

	"github.com/hartonomous/hartvault/internal/plan"
	"github.com/hartonomous/hartvault/internal/repo"
)

// history is a generated backup history of one source: weekly fulls, daily diffs,
// optionally hourly log manifests (as SQL Server takes them), with failures, days
// the agent was down, and changes of cluster (lines of history).
type history struct {
	backups []*repo.Manifest
	lineage map[string]string
	// lines are the lines of history in order, with when each ended (the next began;
	// the last one runs to now).
	lines []line
	logs  bool
	start time.Time
	end   time.Time
	// spans, when set, limit how far some backups reach through the log (a restore
	// that started a new timeline behind them, a gap in the archive).
	spans map[string][2]time.Time
}

type line struct {
	name       string
	begin, end time.Time
}

func (h *history) policyLineage() func(*repo.Manifest) (string, error) {
	return func(m *repo.Manifest) (string, error) {
		l, ok := h.lineage[m.ID]
		if !ok {
			return "", fmt.Errorf("backup %s is unknown", m.ID)
		}
		return l, nil
	}
}

type genOptions struct {
	days     int
	lines    int  // how many clusters, one after the other
	logs     bool // hourly log manifests
	failures float64
	downs    float64 // chance a day starts a stretch of days with no backups
	deadEnds float64 // chance a full or diff stops reaching some days after it ends
}

// randomID makes ids that do not sort by time: retention must never order by name.
func randomID(rng *rand.Rand, t time.Time, typ string) string {
	switch rng.Intn(3) {
	case 0:
		return repo.NewID(t, typ)
	case 1: // the same form, in another zone: sorts wrongly across backups
		return t.In(time.FixedZone("X", (rng.Intn(25)-12)*3600)).Format("20060102T150405") + "-" + typ + fmt.Sprintf("-%04x", rng.Intn(1<<16))
	default:
		return fmt.Sprintf("%08x-%s", rng.Uint32(), typ)
	}
}

func generate(rng *rand.Rand, o genOptions) *history {
	// A Sunday, 2026-01-04, plus some weeks.
	start := time.Date(2026, 1, 4, 0, 0, 0, 0, time.UTC).AddDate(0, 0, 7*rng.Intn(20))
	h := &history{lineage: map[string]string{}, logs: o.logs, start: start}
	switchDays := map[int]bool{}
	for i := 1; i < o.lines; i++ {
		switchDays[1+rng.Intn(o.days-1)] = true
	}
	lineNo := 0
	cur := line{name: "cluster 1", begin: start}
	var lastFull *repo.Manifest // of the current line
	add := func(typ string, at time.Time, dur time.Duration) *repo.Manifest {
		m := &repo.Manifest{Format: repo.ManifestFormat, ID: randomID(rng, at, typ), Source: "src", Kind: "test", Type: typ,
			Started: at, Finished: at.Add(dur)}
		if typ == repo.TypeDiff {
			m.Parent = lastFull.ID
			// Like a file-set or page-level diff: extents in the full.
			m.Files = []repo.File{{Path: "f", Type: repo.TypeRegular, Extents: []repo.Extent{{Backup: lastFull.ID, Length: 1}}}}
		}
		h.backups = append(h.backups, m)
		h.lineage[m.ID] = cur.name
		if typ != repo.TypeLog && rng.Float64() < o.deadEnds {
			if h.spans == nil {
				h.spans = map[string][2]time.Time{}
			}
			h.spans[m.ID] = [2]time.Time{m.Finished, m.Finished.Add(time.Duration(rng.Intn(5*24*60)) * time.Minute)}
		}
		if typ == repo.TypeFull {
			lastFull = m
		}
		return m
	}
	down := 0
	retryFull := false
	for day := 0; day < o.days; day++ {
		date := start.AddDate(0, 0, day)
		if switchDays[day] {
			// A new cluster (a major upgrade, a rebuilt server) from noon on.
			at := date.Add(12 * time.Hour)
			cur.end = at
			h.lines = append(h.lines, cur)
			lineNo++
			cur = line{name: fmt.Sprintf("cluster %d", lineNo+1), begin: at}
			lastFull = nil
		}
		if down > 0 {
			down--
			continue
		}
		if rng.Float64() < o.downs {
			down = rng.Intn(6)
			continue
		}
		type slot struct {
			typ string
			at  time.Time
			dur time.Duration
		}
		var slots []slot
		if date.Weekday() == time.Sunday || retryFull {
			slots = append(slots, slot{repo.TypeFull, date.Add(time.Hour), time.Duration(20+rng.Intn(40)) * time.Minute})
		}
		slots = append(slots, slot{repo.TypeDiff, date.Add(2 * time.Hour), time.Duration(5+rng.Intn(10)) * time.Minute})
		if o.logs {
			for hr := 0; hr < 24; hr++ {
				slots = append(slots, slot{repo.TypeLog, date.Add(time.Duration(hr)*time.Hour + 30*time.Minute), time.Duration(1+rng.Intn(3)) * time.Minute})
			}
		}
		slices.SortFunc(slots, func(a, b slot) int { return a.at.Compare(b.at) })
		for _, s := range slots {
			if s.at.Before(cur.begin) {
				continue
			}
			if rng.Float64() < o.failures {
				if s.typ == repo.TypeFull {
					retryFull = rng.Intn(2) == 0
				}
				continue // failed: nothing committed
			}
			typ := s.typ
			if typ != repo.TypeLog && lastFull == nil {
				typ = repo.TypeFull // no full to base a diff on: the engine takes a full
			}
			if typ == repo.TypeLog && lastFull == nil {
				continue // no log chain before the first full
			}
			if typ == repo.TypeFull {
				retryFull = false
			}
			add(typ, s.at, s.dur)
		}
	}
	h.end = start.AddDate(0, 0, o.days)
	cur.end = time.Time{}
	h.lines = append(h.lines, cur)
	// Shuffle: retention must not depend on the order it is given.
	rng.Shuffle(len(h.backups), func(i, j int) { h.backups[i], h.backups[j] = h.backups[j], h.backups[i] })
	return h
}

func randomKeep(rng *rand.Rand, maxCount int, unit time.Duration, maxUnits int) plan.Keep {
	switch r := rng.Float64(); {
	case r < 0.07:
		return plan.Keep{Forever: true}
	case r < 0.35:
		return plan.Keep{Count: 1 + rng.Intn(maxCount)}
	default:
		d := time.Duration(1+rng.Intn(maxUnits)) * unit
		if rng.Intn(3) == 0 {
			d += time.Duration(rng.Intn(24)) * time.Hour
		}
		return plan.Keep{Age: d}
	}
}
