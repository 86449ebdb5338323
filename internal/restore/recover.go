// Package restore brings the whole system back: every source of the plan to one
// instant (recover), and scheduled rehearsals of that into scratch places (drills).
package restore

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/hartonomous/hartvault/internal/engine"
	"github.com/hartonomous/hartvault/internal/plan"
	"github.com/hartonomous/hartvault/internal/repo"
)

// Engines gives the engine of a source.
type Engines func(source string) (engine.Engine, error)

// SourcePlan is one source's part of a recovery.
type SourcePlan struct {
	Source  string
	Request engine.RestoreRequest
	Plan    *engine.RestorePlan
	Err     error // the source cannot reach the instant
}

// Window is the span of instants a source (or all of them) can be restored to.
type Window struct {
	Earliest, Latest time.Time // Latest zero: open (a file set is restorable to any later time)
}

func (w Window) String() string {
	l := "now"
	if !w.Latest.IsZero() {
		l = w.Latest.Local().Format(time.RFC3339)
	}
	return w.Earliest.Local().Format(time.RFC3339) + " .. " + l
}

// windowOf reads a source's window from its latest restore plan.
func windowOf(rp *engine.RestorePlan) Window {
	return Window{Earliest: rp.Earliest, Latest: rp.Latest}
}

// Common intersects windows; ok is false when they do not meet.
func Common(ws []Window) (Window, bool) {
	var c Window
	for i, w := range ws {
		if i == 0 || w.Earliest.After(c.Earliest) {
			c.Earliest = w.Earliest
		}
		if !w.Latest.IsZero() && (c.Latest.IsZero() || w.Latest.Before(c.Latest)) {
			c.Latest = w.Latest
		}
	}
	return c, c.Latest.IsZero() || !c.Latest.Before(c.Earliest)
}

// Windows returns every source's restorable window (planning a restore to the
// latest point of each) and the window they share.
func Windows(ctx context.Context, r *repo.Repo, sources []string, engines Engines) (map[string]Window, Window, error) {
	out := map[string]Window{}
	var ws []Window
	for _, name := range sources {
		eng, err := engines(name)
		if err != nil {
			return nil, Window{}, err
		}
		rp, err := eng.PlanRestore(ctx, engine.RestoreRequest{Repo: r, To: engine.Target{Latest: true}})
		if err != nil {
			return nil, Window{}, fmt.Errorf("%s: %w", name, err)
		}
		w := windowOf(rp)
		out[name] = w
		ws = append(ws, w)
	}
	c, ok := Common(ws)
	if !ok {
		return out, c, errors.New("the sources' restorable windows do not overlap")
	}
	return out, c, nil
}

// requestFor builds the restore request of a source for a recovery target.
func requestFor(r *repo.Repo, src *plan.Source, t plan.RecoveryTarget, to engine.Target) engine.RestoreRequest {
	req := engine.RestoreRequest{Repo: r, To: to}
	switch src.Kind {
	case plan.KindPostgres:
		req.Target, req.Port, req.Start = t.DataDir, t.Port, true
	case plan.KindFiles:
		req.Target = t.Dir
	case plan.KindNeo4j:
		req.Target, req.Database = t.URI, t.Database
	case plan.KindMSSQL:
		req.As = t.Database
	}
	return req
}

// PlanRecovery plans every source's restore to one instant. A source that cannot
// reach it makes the whole plan fail, naming every source's window.
func PlanRecovery(ctx context.Context, p *plan.Plan, r *repo.Repo, engines Engines, to engine.Target, targets map[string]plan.RecoveryTarget) ([]*SourcePlan, error) {
	var plans []*SourcePlan
	var failed []string
	for _, name := range p.RecoveryOrder() {
		src := p.Source(name)
		t, ok := targets[name]
		if !ok {
			return nil, fmt.Errorf("no recovery target for source %s: add recovery.targets.%s to %s", name, name, p.Path)
		}
		eng, err := engines(name)
		if err != nil {
			return nil, err
		}
		sp := &SourcePlan{Source: name, Request: requestFor(r, src, t, to)}
		sp.Plan, sp.Err = eng.PlanRestore(ctx, sp.Request)
		if sp.Err != nil {
			failed = append(failed, name)
		}
		plans = append(plans, sp)
	}
	if len(failed) > 0 {
		ws, _, _ := Windows(ctx, r, p.RecoveryOrder(), engines)
		var desc []string
		for _, name := range p.RecoveryOrder() {
			if w, ok := ws[name]; ok {
				desc = append(desc, fmt.Sprintf("%s [%s]", name, w))
			} else {
				desc = append(desc, name+" [no backups]")
			}
		}
		return plans, fmt.Errorf("%s cannot be recovered to %s: restorable windows: %s", strings.Join(failed, ", "), to, strings.Join(desc, "; "))
	}
	return plans, nil
}

// SourceResult is one source's part of a recovery report.
type SourceResult struct {
	Source  string
	Backups []string
	Bytes   int64
	Took    time.Duration
	Notes   []string
	Err     error
}

// CheckResult is one check's outcome.
type CheckResult struct {
	Check  plan.Check
	Passed bool
	Err    error
}

// Report is what a recovery did.
type Report struct {
	To      time.Time
	Sources []SourceResult
	Checks  []CheckResult
	Took    time.Duration // all restores, not the checks
}

// OK reports whether every source was restored and every check held.
func (rep *Report) OK() bool {
	for _, s := range rep.Sources {
		if s.Err != nil {
			return false
		}
	}
	for _, c := range rep.Checks {
		if !c.Passed {
			return false
		}
	}
	return true
}

// Execute restores each source in order, then runs the checks with :target bound
// to the instant. A failed source stops the recovery (later sources are not
// restored on top of an inconsistent system); checks run only when all succeeded.
func Execute(ctx context.Context, plans []*SourcePlan, checks []plan.Check, engines Engines, to time.Time) *Report {
	rep := &Report{To: to}
	began := time.Now()
	for _, sp := range plans {
		res := SourceResult{Source: sp.Source}
		for _, m := range sp.Plan.Backups {
			res.Backups = append(res.Backups, m.ID)
		}
		// The last backup of a chain lists every file, with extents in the earlier ones.
		for _, f := range sp.Plan.Backups[len(sp.Plan.Backups)-1].Files {
			res.Bytes += f.Size
		}
		eng, err := engines(sp.Source)
		start := time.Now()
		if err == nil {
			err = eng.Restore(ctx, sp.Request, sp.Plan)
		}
		res.Took, res.Err, res.Notes = time.Since(start), err, sp.Plan.Notes
		rep.Sources = append(rep.Sources, res)
		if err != nil {
			rep.Took = time.Since(began)
			return rep
		}
	}
	rep.Took = time.Since(began)
	requests := map[string]engine.RestoreRequest{}
	for _, sp := range plans {
		requests[sp.Source] = sp.Request
	}
	for _, c := range checks {
		req, ok := requests[c.Source]
		if !ok {
			continue // a source not recovered here (a drill of some sources)
		}
		cr := CheckResult{Check: c}
		eng, err := engines(c.Source)
		if err == nil {
			ch, ok := eng.(engine.Checker)
			if !ok {
				err = fmt.Errorf("source %s (%s) cannot run checks", c.Source, eng.Kind())
			} else {
				cr.Passed, err = ch.Check(ctx, req, c.Query(), to)
			}
		}
		cr.Err = err
		rep.Checks = append(rep.Checks, cr)
	}
	sort.SliceStable(rep.Checks, func(i, j int) bool { return rep.Checks[i].Check.Source < rep.Checks[j].Check.Source })
	return rep
}
