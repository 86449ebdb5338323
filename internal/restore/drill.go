package restore

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/hartonomous/hartvault/internal/engine"
	"github.com/hartonomous/hartvault/internal/plan"
	"github.com/hartonomous/hartvault/internal/repo"
)

// DrillOptions shape a drill.
type DrillOptions struct {
	// Sources to drill (default: the plan's drills.sources, else all).
	Sources []string
	// Scratch is where scratch restores go (default the OS temp directory).
	Scratch string
	Rand    *rand.Rand
	Now     func() time.Time
	Log     *slog.Logger
}

// Drill restores the sources into scratch places (a throwaway PostgreSQL cluster on
// a free port that does not archive, a scratch directory, ...), to a random
// instant of their common window or to the latest, runs the plan's checks for
// them, records the outcome in the repository and cleans up. The record says
// when, what, to which instant, how long the recovery took, and pass or fail.
func Drill(ctx context.Context, p *plan.Plan, r *repo.Repo, engines Engines, o DrillOptions) (*repo.DrillRecord, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Rand == nil {
		o.Rand = rand.New(rand.NewPCG(uint64(o.Now().UnixNano()), 1))
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	sources := o.Sources
	if len(sources) == 0 {
		sources = p.Drills.Sources
	}
	if len(sources) == 0 {
		for _, s := range p.Sources {
			sources = append(sources, s.Name)
		}
	}
	rec := &repo.DrillRecord{Started: o.Now().UTC()}
	fail := func(err error) (*repo.DrillRecord, error) {
		rec.Finished, rec.Error, rec.Passed = o.Now().UTC(), err.Error(), false
		if rerr := r.RecordDrill(ctx, rec); rerr != nil {
			return rec, rerr
		}
		return rec, nil
	}
	_, common, err := Windows(ctx, r, sources, engines)
	if err != nil {
		return fail(err)
	}
	to := engine.Target{Latest: true}
	rec.To = common.Latest
	if end := common.Latest; !end.IsZero() && end.After(common.Earliest) && o.Rand.IntN(4) != 0 {
		// Three drills in four go to a random instant of the window; the rest to its end.
		at := common.Earliest.Add(time.Duration(o.Rand.Int64N(int64(end.Sub(common.Earliest)))))
		to, rec.To = engine.Target{Time: at}, at
	}
	scratch, err := os.MkdirTemp(o.Scratch, "hartvault-drill-")
	if err != nil {
		return fail(fmt.Errorf("scratch directory: %w", err))
	}
	os.Chmod(scratch, 0o755) // a cluster restored there runs as its own user
	defer os.RemoveAll(scratch)

	targets := map[string]plan.RecoveryTarget{}
	sub := &plan.Plan{Path: p.Path, Sources: p.Sources, Recovery: plan.Recovery{Order: orderOf(p, sources)}}
	for _, name := range sources {
		src := p.Source(name)
		if src == nil {
			return fail(fmt.Errorf("no source %q in the plan", name))
		}
		dir := filepath.Join(scratch, name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fail(err)
		}
		switch src.Kind {
		case plan.KindPostgres:
			port, err := freePort()
			if err != nil {
				return fail(err)
			}
			targets[name] = plan.RecoveryTarget{DataDir: filepath.Join(dir, "data"), Port: port}
		case plan.KindFiles:
			targets[name] = plan.RecoveryTarget{Dir: filepath.Join(dir, "files")}
		default:
			// A server is needed: drill into the recovery target the plan names.
			t, ok := p.Recovery.Targets[name]
			if !ok {
				return fail(fmt.Errorf("source %s (%s) needs recovery.targets.%s for drills", name, src.Kind, name))
			}
			targets[name] = t
		}
	}
	plans, err := PlanRecovery(ctx, sub, r, engines, to, targets)
	if err != nil {
		return fail(err)
	}
	for _, sp := range plans {
		sp.Request.NoArchive, sp.Request.Log = true, o.Log
		// A drill owns its targets: scratch places, or the recovery servers the
		// plan names, which it may overwrite.
		sp.Request.Force = true
	}
	var checks []plan.Check
	for _, c := range p.Recovery.Checks {
		for _, name := range sources {
			if c.Source == name {
				checks = append(checks, c)
			}
		}
	}
	at := rec.To
	if to.Latest {
		at = o.Now()
	}
	rep := Execute(ctx, plans, checks, engines, at)
	for _, sp := range plans {
		if eng, err := engines(sp.Source); err == nil {
			if st, ok := eng.(engine.Stopper); ok {
				if err := st.StopRestored(context.WithoutCancel(ctx), sp.Request); err != nil {
					o.Log.Warn("drill: stop a scratch restore", "source", sp.Source, "err", err)
				}
			}
		}
	}
	rec.Finished, rec.Took, rec.Passed = o.Now().UTC(), rep.Took, rep.OK()
	for _, s := range rep.Sources {
		ds := repo.DrillSource{Source: s.Source, Backups: s.Backups, Bytes: s.Bytes, Took: s.Took}
		if s.Err != nil {
			ds.Error = s.Err.Error()
			rec.Error = fmt.Sprintf("%s: %v", s.Source, s.Err)
		}
		rec.Sources = append(rec.Sources, ds)
	}
	for _, c := range rep.Checks {
		dc := repo.DrillCheck{Source: c.Check.Source, Query: c.Check.Query(), Passed: c.Passed}
		if c.Err != nil {
			dc.Error = c.Err.Error()
		}
		if !c.Passed && rec.Error == "" {
			// The first failed check says why the drill failed (status, alerts).
			why := "it did not hold"
			if c.Err != nil {
				why = c.Err.Error()
			}
			rec.Error = fmt.Sprintf("check on %s %q: %s", c.Check.Source, c.Check.Query(), why)
		}
		rec.Checks = append(rec.Checks, dc)
	}
	if err := r.RecordDrill(ctx, rec); err != nil {
		return rec, err
	}
	return rec, nil
}

func orderOf(p *plan.Plan, sources []string) []string {
	want := map[string]bool{}
	for _, s := range sources {
		want[s] = true
	}
	var out []string
	for _, name := range p.RecoveryOrder() {
		if want[name] {
			out = append(out, name)
		}
	}
	return out
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
