package status

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/hartonomous/hartvault/internal/engine"
	"github.com/hartonomous/hartvault/internal/plan"
	"github.com/hartonomous/hartvault/internal/repo"
)

// TimelineSpan is how far back a source's timeline (the dashboard's) goes.
const TimelineSpan = 14 * 24 * time.Hour

// Report is the status of every source of a plan: what `status --json` prints and
// the agent's /api/status serves.
type Report struct {
	Generated  time.Time      `json:"generated"`
	Repository string         `json:"repository"`
	Sources    []SourceStatus `json:"sources"`
	// Alerts are all firing alerts, ordered by source, type and kind.
	Alerts []Alert `json:"alerts"`
	// System is what concerns all sources together (the common window, drills).
	System System `json:"system"`
}

// SourceStatus is where one source stands.
type SourceStatus struct {
	Name       string          `json:"name"`
	Kind       string          `json:"kind"`
	Types      []TypeStatus    `json:"types"`
	Restorable RestoreWindow   `json:"restorable"`
	Replicas   []ReplicaStatus `json:"replicas"`
	Alerts     []Alert         `json:"alerts"`
	Timeline   Timeline        `json:"timeline"`
	// Errors are what could not be worked out (the repository could not be read).
	Errors []string `json:"errors,omitempty"`
	// External counts the backups taken outside hartvault merged into Types
	// (Options.ImportExternal; absent otherwise).
	External *ExternalStatus `json:"external,omitempty"`
}

// ReplicaStatus is how far one replica is behind for a source.
type ReplicaStatus struct {
	URL string `json:"url"`
	// Missing counts committed backups not yet on the replica; MissingIDs names
	// the oldest few.
	Missing    int      `json:"missing"`
	MissingIDs []string `json:"missing_ids,omitempty"`
	// BehindSince is when the oldest missing backup finished.
	BehindSince time.Time `json:"behind_since,omitzero"`
	// LastError is the error of the newest attempt to bring it up to date, if it failed.
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	// Error says the replica could not be listed now.
	Error string `json:"error,omitempty"`
}

// Timeline is what the dashboard draws for a source over the last TimelineSpan.
type Timeline struct {
	From     time.Time   `json:"from"`
	To       time.Time   `json:"to"`
	Backups  []BackupRef `json:"backups"`
	Failures []RunRef    `json:"failures"`
	// Log is the span the continuous log (WAL) covers, when the source has one.
	Log []Span `json:"log"`
}

// Options say what Compute looks at.
type Options struct {
	Plan *plan.Plan
	Repo *repo.Repo
	// Engine builds a source's engine (for PostgreSQL's restorable window); nil or an
	// error falls back to the backups' points.
	Engine func(src plan.Source) (engine.Engine, error)
	Now    time.Time
	Log    *slog.Logger
	// ImportExternal merges backups taken outside hartvault into the per-type
	// figures, for sources whose engine records them (ExternalLister: SQL Server's msdb).
	ImportExternal bool
}

var typeOrder = []string{repo.TypeFull, repo.TypeDiff, repo.TypeLog}

// Compute works out the status of every source of the plan at o.Now. What cannot
// be read for a source is in its Errors; Compute fails only when ctx ends.
func Compute(ctx context.Context, o Options) (*Report, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	rep := &Report{Generated: o.Now.UTC(), Repository: o.Repo.String(), Sources: []SourceStatus{}, Alerts: []Alert{}}
	for _, src := range o.Plan.Sources {
		s := computeSource(ctx, o, src)
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		rep.Sources = append(rep.Sources, s)
		rep.Alerts = append(rep.Alerts, s.Alerts...)
	}
	var sysAlerts []Alert
	rep.System, sysAlerts = computeSystem(ctx, o, rep.Sources)
	rep.Alerts = append(rep.Alerts, sysAlerts...)
	SortAlerts(rep.Alerts)
	return rep, nil
}

func computeSource(ctx context.Context, o Options, src plan.Source) SourceStatus {
	now := o.Now
	s := SourceStatus{Name: src.Name, Kind: src.Kind, Types: []TypeStatus{}, Replicas: []ReplicaStatus{}, Alerts: []Alert{},
		Timeline: Timeline{From: now.Add(-TimelineSpan).UTC(), To: now.UTC(), Backups: []BackupRef{}, Failures: []RunRef{}, Log: []Span{}}}
	fail := func(what string, err error) {
		s.Errors = append(s.Errors, fmt.Sprintf("%s: %s", what, repo.ScrubError(err.Error())))
	}
	manifests, err := o.Repo.Backups(ctx, src.Name)
	if err != nil {
		fail("read backups", err)
	}
	refs := make([]BackupRef, 0, len(manifests))
	for _, m := range manifests {
		refs = append(refs, BackupRef{ID: m.ID, Type: m.Type, Parent: m.Parent, Started: m.Started, Finished: m.Finished,
			Bytes: m.Bytes, StoredBytes: m.StoredBytes})
	}
	// The per-type figures and the timeline count backups taken outside hartvault too
	// when asked (all); the restorable window and replicas are the repository's (refs).
	all := refs
	if o.ImportExternal {
		all = importExternal(ctx, o, src, &s, manifests, refs, err)
	}
	runs, err := o.Repo.Runs(ctx, src.Name, now.Add(-TimelineSpan))
	if err != nil {
		fail("read run log", err)
	}

	// The restorable window.
	s.Restorable = PointsWindow(refs)
	if src.Kind == plan.KindPostgres && o.Engine != nil && len(refs) > 0 {
		if w, err := continuousWindow(ctx, o, src); err != nil {
			fail("restorable window", err)
		} else {
			w.Points = len(refs)
			s.Restorable = w
		}
	}
	continuousLog := src.Kind == plan.KindPostgres && s.Restorable.Continuous
	if continuousLog && s.Restorable.Latest.After(s.Restorable.Earliest) {
		s.Timeline.Log = append(s.Timeline.Log, Span{From: s.Restorable.Earliest, To: s.Restorable.Latest})
	}

	var firstSeen time.Time
	if len(runs) > 0 {
		firstSeen = runs[0].Started
	}
	for _, typ := range typeOrder {
		sched, threshold := src.ScheduleFor(typ), src.AlertAfter(typ)
		hasBackups := false
		for _, b := range all {
			hasBackups = hasBackups || b.Type == typ
		}
		isLog := typ == repo.TypeLog && continuousLog
		if typ != repo.TypeFull && sched == "" && threshold == 0 && !hasBackups && !isLog {
			continue
		}
		ts := Summarize(typ, all, runs, now)
		ts.Schedule = sched
		ts.StaleAfterSeconds = threshold.Seconds()
		if isLog && s.Restorable.Latest.After(ts.LastSuccess) {
			ts.SetLastSuccess(s.Restorable.Latest, now)
		}
		avg := time.Duration(ts.Last7d.DurationSeconds * float64(time.Second))
		if max := MaxDuration(src.MaxDuration.Std(), avg); max > 0 {
			ts.MaxDurationSeconds = max.Seconds()
		}
		var alerts []*Alert
		alerts = append(alerts, EvalStale(src.Name, typ, ts.LastSuccess, threshold, firstSeen, now))
		var lastStart time.Time
		if ts.Last != nil {
			lastStart = ts.Last.Started
		}
		alerts = append(alerts, EvalFailed(src.Name, typ, runs, lastStart))
		var prevAvg time.Duration
		if ts.Last != nil {
			prevAvg = AverageDuration(typ, all, ts.Last.ID, now)
		}
		alerts = append(alerts, EvalSlow(src.Name, typ, ts.Running, ts.Last, src.MaxDuration.Std(), avg, prevAvg, now))
		for _, a := range alerts {
			if a != nil {
				ts.Alerts = append(ts.Alerts, *a)
				s.Alerts = append(s.Alerts, *a)
			}
		}
		s.Types = append(s.Types, ts)
	}

	for _, b := range all {
		if b.Finished.After(s.Timeline.From) {
			s.Timeline.Backups = append(s.Timeline.Backups, b)
		}
	}
	for _, r := range runs {
		if isFailure(r.Result) {
			s.Timeline.Failures = append(s.Timeline.Failures, runRef(r))
		}
	}
	s.Replicas = replicaStatus(ctx, o, src.Name, refs, runs)
	SortAlerts(s.Alerts)
	return s
}

// continuousWindow asks the engine what a restore to "latest" would span.
func continuousWindow(ctx context.Context, o Options, src plan.Source) (RestoreWindow, error) {
	eng, err := o.Engine(src)
	if err != nil {
		return RestoreWindow{}, err
	}
	rp, err := eng.PlanRestore(ctx, engine.RestoreRequest{Repo: o.Repo, To: engine.Target{Latest: true}, Log: o.Log})
	if err != nil {
		if errors.Is(err, repo.ErrNoBackup) {
			return RestoreWindow{Continuous: true}, nil
		}
		return RestoreWindow{}, err
	}
	w := RestoreWindow{Earliest: rp.Earliest, Latest: rp.Latest, Continuous: true}
	if rp.To.After(w.Latest) {
		w.Latest = rp.To
	}
	return w, nil
}

func replicaStatus(ctx context.Context, o Options, source string, refs []BackupRef, runs []repo.Run) []ReplicaStatus {
	out := []ReplicaStatus{}
	for _, url := range o.Plan.Repository.Replicas {
		rs := ReplicaStatus{URL: url}
		have, err := o.Repo.ReplicaBackups(ctx, url, source)
		if err != nil {
			rs.Error = repo.ScrubError(err.Error())
		} else {
			for _, b := range refs { // oldest first
				if have[b.ID] {
					continue
				}
				rs.Missing++
				if len(rs.MissingIDs) < 10 {
					rs.MissingIDs = append(rs.MissingIDs, b.ID)
				}
				if rs.BehindSince.IsZero() {
					rs.BehindSince = b.Finished
				}
			}
		}
		// The newest attempt that reached this replica says whether it failed.
	newest:
		for i := len(runs) - 1; i >= 0; i-- {
			for _, rr := range runs[i].Replicas {
				if rr.URL == url {
					if rr.Error != "" {
						rs.LastError, rs.LastErrorAt = rr.Error, runs[i].Finished
					}
					break newest
				}
			}
		}
		out = append(out, rs)
	}
	return out
}

// Firing lists the alerts of r as single lines ("source/type kind: message").
func (r *Report) Firing() []string {
	out := make([]string, 0, len(r.Alerts))
	for _, a := range r.Alerts {
		out = append(out, fmt.Sprintf("%s %s %s: %s", a.Source, a.Type, a.Kind, a.Message))
	}
	return out
}

// Source returns the status of the named source, or nil.
func (r *Report) Source(name string) *SourceStatus {
	for k := range r.Sources {
		if r.Sources[k].Name == name {
			return &r.Sources[k]
		}
	}
	return nil
}

// WriteJSON writes r the one way it is shown as JSON: by `status --json` and the
// agent's /api/status.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}
