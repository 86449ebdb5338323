package retention

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/hartonomous/hartvault/internal/engine"
	"github.com/hartonomous/hartvault/internal/plan"
	"github.com/hartonomous/hartvault/internal/repo"
	"github.com/hartonomous/hartvault/internal/storage"
)

// Result is what Apply did or, on a dry run, would do.
type Result struct {
	Source string
	DryRun bool
	// Decision is the decision carried out (decided again under the lock when the
	// backups changed since it was made).
	Decision Decision
	// Deleted are the backups deleted (or that would be), newest first.
	Deleted []Removed
	// Logs are the log ranges deleted (or that would be).
	Logs []engine.LogRange
	// Leftovers are backups whose data an interrupted run left and that were removed.
	Leftovers []string
}

// Removed is a deleted backup and what it held.
type Removed struct {
	Verdict
	// Objects and Bytes count its stored objects, its manifest included.
	Objects int
	Bytes   int64
}

// Totals counts what the result deletes: backups, stored objects (manifests, data,
// log) and their bytes.
func (res Result) Totals() (backups, objects int, bytes int64) {
	for _, d := range res.Deleted {
		objects += d.Objects
		bytes += d.Bytes
	}
	for _, l := range res.Logs {
		objects += len(l.Objects)
		bytes += l.Bytes
	}
	return len(res.Deleted), objects, bytes
}

// Storage layout of a backup (see package repo): the manifest, and the data prefix
// every object of the backup is stored under.
func manifestKey(source, id string) string { return "backups/" + source + "/" + id + ".manifest" }
func dataPrefix(source, id string) string  { return "data/" + source + "/" + id + "/" }

// PruneSource applies a source's retention rules at now: it reads the source's
// backups, decides (Plan) and carries the decision out (Apply). The agent calls it
// after each successful backup; `hartvault prune` calls it on demand. eng may be nil
// (a source no longer in the plan): then there is no lineage and no log to prune.
func PruneSource(ctx context.Context, r *repo.Repo, src plan.Source, eng engine.Engine, now time.Time, dryRun bool) (Result, error) {
	res := Result{Source: src.Name, DryRun: dryRun}
	pol, err := PolicyFor(src.Retention)
	if err != nil {
		return res, fmt.Errorf("source %s: %w", src.Name, err)
	}
	if l, ok := eng.(Lineager); ok {
		pol.Lineage = l.Lineage
	}
	backups, err := r.Backups(ctx, src.Name)
	if err != nil {
		return res, err
	}
	if rc, ok := eng.(Reacher); ok {
		pol.Spans, err = rc.Reach(ctx, r, backups)
		if err != nil {
			// Not knowing how far each backup reaches, count on none reaching past
			// its own end: every chain inside a window stays.
			r.Options().Logger.Warn("cannot tell how far backups reach through the log: keeping every backup inside the windows",
				"source", src.Name, "err", err)
			pol.Spans = map[string][2]time.Time{}
			for _, m := range backups {
				pol.Spans[m.ID] = [2]time.Time{m.Finished, m.Finished}
			}
		}
	}
	d := Plan(backups, pol, now)
	d.Source = src.Name
	res.Decision = d
	if _, prunesLog := eng.(engine.LogPruner); len(d.Deleted()) == 0 && (!prunesLog || pol.Log.Forever) {
		return res, nil // nothing can go: no need for the lock
	}
	return Apply(ctx, r, eng, d, dryRun)
}

// Apply carries out a decision. Unless dryRun it holds the source's lock throughout;
// under it, when the source's backups changed since the decision was made, it
// decides again with the same policy and time. Each deleted backup goes newest first
// (a diff before its full), its manifest first and then its data, so a crash never
// leaves a visible backup whose data is gone; then the engine's log (LogPruner) is
// pruned for the backups that stay. A dry run reads and reports, and deletes nothing.
func Apply(ctx context.Context, r *repo.Repo, eng engine.Engine, d Decision, dryRun bool) (Result, error) {
	source := d.Source
	if eng != nil {
		source = eng.Source()
	}
	res := Result{Source: source, DryRun: dryRun, Decision: d}
	if source == "" {
		return res, errors.New("prune: no source named")
	}
	for _, v := range d.Backups {
		if v.Backup.Source != source {
			return res, fmt.Errorf("prune %s: the decision holds backup %s of source %s", source, v.Backup.ID, v.Backup.Source)
		}
	}
	log := r.Options().Logger
	if dryRun {
		pinned, err := lockedBackups(ctx, r, d)
		if err != nil {
			return res, err
		}
		if len(pinned) > 0 {
			d = pinAndReplan(d, pinned)
			d.Source = source
			res.Decision = d
		}
	}
	var lock *repo.Lock
	if !dryRun {
		var err error
		lock, err = r.Lock(ctx, source, "prune")
		if err != nil {
			return res, err
		}
		defer lock.Release(context.WithoutCancel(ctx))
		current, err := r.Backups(ctx, source)
		if err != nil {
			return res, err
		}
		pinned, err := lockedBackups(ctx, r, d)
		if err != nil {
			return res, err
		}
		if len(pinned) > 0 {
			// An immutable repository refuses to delete these early: keep them, and
			// what they need, rather than try.
			d.Backups = nil
			for _, m := range current {
				d.Backups = append(d.Backups, Verdict{Backup: m})
			}
			d = pinAndReplan(d, pinned)
			d.Source = source
			res.Decision = d
		} else if !sameBackups(current, d) {
			log.Info("backups changed since the retention decision: deciding again", "source", source)
			d = Plan(current, d.Policy, d.Now)
			d.Source = source
			res.Decision = d
		}
		res.Leftovers, err = r.CleanLeftovers(ctx, source, "")
		if err != nil {
			return res, err
		}
		for _, id := range res.Leftovers {
			log.Info("removed the data of an interrupted backup", "source", source, "backup", id)
		}
	}
	dels := d.Deleted()
	slices.Reverse(dels) // newest first: whatever needs a backup goes before it
	for _, v := range dels {
		rm, err := removeBackup(ctx, r, lock, source, v, dryRun, log)
		if err != nil {
			return res, err
		}
		res.Deleted = append(res.Deleted, rm)
	}
	lp, ok := eng.(engine.LogPruner)
	if !ok {
		return res, nil
	}
	if lock != nil {
		if err := lock.Check(ctx); err != nil {
			return res, err
		}
	}
	ranges, err := lp.PruneLogs(ctx, r, engine.LogPruneRequest{
		Kept: d.Kept(), Since: d.LogSince(), Forever: d.Policy.Log.Forever, DryRun: dryRun, Log: log,
	})
	res.Logs = ranges
	if err != nil {
		return res, fmt.Errorf("prune the log of %s: %w", source, err)
	}
	return res, nil
}

// sameBackups reports whether backups are exactly those the decision covers.
func sameBackups(backups []*repo.Manifest, d Decision) bool {
	if len(backups) != len(d.Backups) {
		return false
	}
	ids := make(map[string]bool, len(backups))
	for _, m := range backups {
		ids[m.ID] = true
	}
	for _, v := range d.Backups {
		if !ids[v.Backup.ID] {
			return false
		}
	}
	return true
}

// removeBackup deletes a backup's manifest, then every object under its data prefix.
func removeBackup(ctx context.Context, r *repo.Repo, lock *repo.Lock, source string, v Verdict, dryRun bool, log *slog.Logger) (Removed, error) {
	st := r.Store()
	id := v.Backup.ID
	rm := Removed{Verdict: v}
	mkey, prefix := manifestKey(source, id), dataPrefix(source, id)
	info, err := st.Stat(ctx, mkey)
	switch {
	case err == nil:
		rm.Objects++
		rm.Bytes += info.Size
	case errors.Is(err, storage.ErrNotFound):
		// Gone already (another prune): its data may still be there.
	default:
		return rm, fmt.Errorf("read manifest %s in %s: %w", mkey, r, err)
	}
	var keys []string
	err = st.List(ctx, prefix, func(o storage.ObjectInfo) error {
		keys = append(keys, o.Key)
		rm.Objects++
		rm.Bytes += o.Size
		return nil
	})
	if err != nil {
		return rm, fmt.Errorf("list the data of backup %s in %s: %w", id, r, err)
	}
	for _, o := range v.Backup.Objects {
		if !strings.HasPrefix(o.Key, prefix) {
			log.Warn("object of a deleted backup is outside its data prefix: left in place", "backup", id, "object", o.Key)
		}
	}
	if dryRun {
		return rm, nil
	}
	if err := lock.Check(ctx); err != nil {
		return rm, err
	}
	if err := st.Delete(ctx, mkey); err != nil {
		return rm, fmt.Errorf("delete manifest %s in %s: %w", mkey, r, err)
	}
	for _, k := range keys {
		if err := st.Delete(ctx, k); err != nil {
			return rm, fmt.Errorf("delete %s of backup %s in %s (its manifest is gone; the next backup or prune removes the rest): %w", k, id, r, err)
		}
	}
	log.Info("deleted backup", "source", source, "backup", id, "type", v.Backup.Type, "objects", rm.Objects, "reason", v.Reason)
	return rm, nil
}

// lockedBackups finds, among the backups a decision would delete, those still under
// a retention lock (repository.immutable), with the reason to keep them.
func lockedBackups(ctx context.Context, r *repo.Repo, d Decision) (map[string]string, error) {
	if r.Options().Immutable <= 0 {
		return nil, nil
	}
	out := map[string]string{}
	for _, v := range d.Backups {
		if v.Keep {
			continue
		}
		until, err := r.LockedUntil(ctx, v.Backup)
		if err != nil {
			return nil, err
		}
		if until.After(d.Now) {
			out[v.Backup.ID] = "under a retention lock until " + until.UTC().Format(time.RFC3339) + " (repository.immutable)"
		}
	}
	return out, nil
}

// pinAndReplan decides again with the pinned backups kept.
func pinAndReplan(d Decision, pinned map[string]string) Decision {
	pol := d.Policy
	pol.Pinned = map[string]string{}
	for id, why := range d.Policy.Pinned {
		pol.Pinned[id] = why
	}
	for id, why := range pinned {
		pol.Pinned[id] = why
	}
	backups := make([]*repo.Manifest, len(d.Backups))
	for i, v := range d.Backups {
		backups[i] = v.Backup
	}
	return Plan(backups, pol, d.Now)
}
