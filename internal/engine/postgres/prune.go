package postgres

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hartonomous/hartvault/internal/engine"
	"github.com/hartonomous/hartvault/internal/plan"
	"github.com/hartonomous/hartvault/internal/repo"
)

// Retention of the WAL archive. What stays, per cluster (system identifier):
//
//   - from the first segment of each kept backup on, on the backup's timeline and on
//     every timeline that branched from it after the backup started (a restore from
//     the backup may follow any of them); the backup history files among them;
//   - every timeline history file, while the cluster has a kept backup;
//   - whatever was written at or after the log rule's start (req.Since), needed by a
//     backup or not.
//
// What goes: the rest, all of a cluster with no kept backup, and partial copies of
// segments (from wal-stream) whose complete copy is archived. Names are all it
// takes, except for history files, which are read to know which timeline branched
// from which; when one cannot be read, a higher-numbered timeline is taken to
// branch from every lower one (keeping more, never less).

var _ engine.LogPruner = (*Engine)(nil)

// Lineage names the cluster a backup belongs to: backups of two clusters never
// share a chain (retention keeps the newest full of each).
func (e *Engine) Lineage(m *repo.Manifest) (string, error) {
	info, err := ReadInfo(m)
	if err != nil {
		return "", err
	}
	return "cluster " + strconv.FormatUint(info.Server.SystemID, 10), nil
}

// walNeed is where a kept backup starts reading WAL.
type walNeed struct {
	backup   string
	timeline uint32
	seg      uint64
	start    LSN
	startWAL string
}

// clusterWAL is one cluster's part of the archive.
type clusterWAL struct {
	sysid   uint64
	segSize int64
	needs   []walNeed
	objs    []walObject
	sizes   map[string]int64
	// histories maps a timeline to its history (its ancestors and where each ended);
	// a timeline missing here has no readable history file.
	histories map[uint32][]timelineStep
}

// PruneLogs lists the archived WAL no kept backup needs and the log rule does not
// keep, in ranges with the reason, and deletes it unless req.DryRun.
func (e *Engine) PruneLogs(ctx context.Context, r *repo.Repo, req engine.LogPruneRequest) ([]engine.LogRange, error) {
	if req.Forever {
		return nil, nil
	}
	log := req.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	clusters := map[uint64]*clusterWAL{}
	cluster := func(sysid uint64) *clusterWAL {
		c := clusters[sysid]
		if c == nil {
			c = &clusterWAL{sysid: sysid, sizes: map[string]int64{}}
			clusters[sysid] = c
		}
		return c
	}
	for _, m := range req.Kept {
		if m.Kind != plan.KindPostgres {
			continue
		}
		info, err := ReadInfo(m)
		if err != nil {
			return nil, err
		}
		_, seg, ok := ParseSegName(info.StartWAL, info.Server.SegSize)
		if !ok || info.Server.SegSize <= 0 {
			return nil, fmt.Errorf("backup %s: start WAL %q is not a segment name", m.ID, info.StartWAL)
		}
		c := cluster(info.Server.SystemID)
		c.segSize = info.Server.SegSize
		c.needs = append(c.needs, walNeed{backup: m.ID, timeline: info.Timeline, seg: seg, start: info.startLSN(), startWAL: info.StartWAL})
	}
	err := r.ListLogs(ctx, e.src.Name, "", func(o repo.LogObject) error {
		head, _, ok := strings.Cut(o.Name, "/")
		sysid, err := strconv.ParseUint(head, 10, 64)
		if !ok || err != nil {
			return nil // not a cluster's directory: not ours to judge
		}
		w, ok := parseWALName(o.Name, o.ModTime)
		if !ok {
			log.Debug("unrecognised object in the WAL archive left in place", "source", e.src.Name, "object", o.Name)
			return nil
		}
		c := cluster(sysid)
		c.objs = append(c.objs, w)
		c.sizes[w.Rel] = o.Size
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list the WAL archive of %s: %w", e.src.Name, err)
	}
	sysids := make([]uint64, 0, len(clusters))
	for id := range clusters {
		sysids = append(sysids, id)
	}
	slices.Sort(sysids)
	var ranges []engine.LogRange
	for _, id := range sysids {
		c := clusters[id]
		if len(c.needs) > 0 {
			a := &archive{r: r, source: e.src.Name, sysid: id, segSize: c.segSize}
			c.histories, _ = a.readHistories(ctx, c.objs, log) // what cannot be read is kept
		}
		ranges = append(ranges, c.prune(req.Since)...)
	}
	if req.DryRun {
		return ranges, nil
	}
	for _, rg := range ranges {
		for _, name := range rg.Objects {
			if err := r.DeleteLog(ctx, e.src.Name, name); err != nil {
				return ranges, fmt.Errorf("delete %s%s: %w", repo.LogPrefix(e.src.Name), name, err)
			}
		}
		log.Info("deleted WAL", "source", e.src.Name, "range", rg.What, "objects", len(rg.Objects), "reason", rg.Reason)
	}
	return ranges, nil
}

// readHistories reads the cluster's timeline history files. One that cannot be read
// is left out (and its timeline treated as branching from every lower one), and the
// first such error returned.
func (a *archive) readHistories(ctx context.Context, objs []walObject, log *slog.Logger) (map[uint32][]timelineStep, error) {
	out := map[uint32][]timelineStep{}
	var first error
	for _, o := range objs {
		if !IsHistoryName(o.File) {
			continue
		}
		tli, err := strconv.ParseUint(strings.TrimSuffix(o.File, ".history"), 16, 32)
		if err != nil {
			continue
		}
		data, err := a.fetch(ctx, o.File)
		if err == nil {
			var steps []timelineStep
			if steps, err = parseHistory(data); err == nil {
				out[uint32(tli)] = steps
				continue
			}
		}
		log.Warn("cannot read a timeline history: keeping its timeline's WAL as if it branched from every earlier one",
			"source", a.source, "cluster", a.sysid, "history", o.File, "err", err)
		if first == nil {
			first = fmt.Errorf("timeline history %s of cluster %d: %w", o.File, a.sysid, err)
		}
	}
	return out, first
}

// Reach tells, by backup id, the stretch of time a restore starting from each
// PostgreSQL backup can reach: from its consistency point to the last commit of the
// WAL contiguous from its start, along the timeline a restore follows (the one
// PlanRestore picks: of the backup's timeline and those branching from it after it
// was consistent, the one with the latest commit). A backup left behind by a restore
// that started a new timeline earlier, or by a gap in the archive, reaches less far;
// one that reaches the newest commit archived has no end (zero).
// It reads the archive's listing and history files once per cluster.
func (e *Engine) Reach(ctx context.Context, r *repo.Repo, backups []*repo.Manifest) (map[string][2]time.Time, error) {
	infos := map[string]*Info{}
	bySys := map[uint64][]*repo.Manifest{}
	var sysids []uint64
	for _, m := range backups {
		if m.Kind != plan.KindPostgres {
			continue
		}
		info, err := ReadInfo(m)
		if err != nil {
			continue // retention keeps a backup whose cluster it cannot tell
		}
		infos[m.ID] = info
		id := info.Server.SystemID
		if bySys[id] == nil {
			sysids = append(sysids, id)
		}
		bySys[id] = append(bySys[id], m)
	}
	out := map[string][2]time.Time{}
	for _, id := range sysids {
		ms := bySys[id]
		a := &archive{r: r, source: e.src.Name, sysid: id, segSize: infos[ms[0].ID].Server.SegSize}
		v, err := a.view(ctx, false, slog.New(slog.DiscardHandler))
		if err != nil {
			return nil, err
		}
		segs := v.segs
		// The newest commit archived: a restore that reaches it reaches the present
		// (the WAL written since is on its way), and has no end yet.
		var newest time.Time
		for _, o := range segs {
			if o.LastCommit.After(newest) {
				newest = o.LastCommit
			}
		}
		for _, m := range ms {
			info := infos[m.ID]
			to := v.window(info).lastCommit
			switch {
			case !to.Before(newest):
				to = time.Time{}
			case to.Before(info.StopTime):
				to = info.StopTime
			}
			out[m.ID] = [2]time.Time{info.StopTime, to}
		}
	}
	return out, nil
}

// descends reports whether a restore from a backup that starts on n.timeline at
// n.start may read WAL of timeline tli.
func (c *clusterWAL) descends(tli uint32, n walNeed) bool {
	if tli == n.timeline {
		return true
	}
	if tli < n.timeline {
		return false
	}
	steps, ok := c.histories[tli]
	if !ok {
		return true // unknown ancestry: keep
	}
	for _, s := range steps {
		if s.TLI == n.timeline {
			return s.End >= n.start
		}
	}
	return false
}

// prune decides, object by object in name order, and gathers what goes into runs
// of neighbouring objects that go for the same reason.
func (c *clusterWAL) prune(since time.Time) []engine.LogRange {
	slices.SortFunc(c.objs, func(a, b walObject) int { return strings.Compare(a.Rel, b.Rel) })
	complete := map[string]bool{}
	for _, o := range c.objs {
		if !o.Partial {
			complete[o.File] = true
		}
	}
	oldest := walNeed{}
	for i, n := range c.needs {
		if i == 0 || n.seg < oldest.seg {
			oldest = n
		}
	}
	sinceNote := ""
	if !since.IsZero() {
		sinceNote = fmt.Sprintf("; written before %s, where the log rule starts", since.UTC().Format("2006-01-02 15:04:05 MST"))
	}
	var out []engine.LogRange
	var cur *engine.LogRange
	var curDir, curFirst, curLast string
	flush := func() {
		if cur == nil {
			return
		}
		what := fmt.Sprintf("WAL of cluster %d: %s", c.sysid, curFirst)
		if curLast != curFirst {
			what += ".." + curLast
		}
		cur.What = what
		out = append(out, *cur)
		cur = nil
	}
	for _, o := range c.objs {
		reason := c.dropReason(o, complete, since, oldest, sinceNote)
		if reason == "" {
			flush()
			continue
		}
		dir := o.Rel[:strings.LastIndexByte(o.Rel, '/')+1]
		if cur == nil || cur.Reason != reason || dir != curDir {
			flush()
			cur = &engine.LogRange{Reason: reason}
			curDir, curFirst = dir, o.File
		}
		curLast = o.File
		cur.Objects = append(cur.Objects, o.Rel)
		cur.Bytes += c.sizes[o.Rel]
	}
	flush()
	return out
}

// dropReason says why an object goes, or "" when it stays.
func (c *clusterWAL) dropReason(o walObject, complete map[string]bool, since time.Time, oldest walNeed, sinceNote string) string {
	if o.Partial && complete[o.File] {
		return "partial copy of a segment whose complete copy is archived"
	}
	written := o.LastCommit
	if written.IsZero() {
		written = o.Modified
	}
	if !since.IsZero() && !written.Before(since) {
		return ""
	}
	if len(c.needs) == 0 {
		return fmt.Sprintf("cluster %d has no kept backup%s", c.sysid, sinceNote)
	}
	if IsHistoryName(o.File) {
		return ""
	}
	segName := o.File
	if len(segName) > 24 {
		segName = segName[:24] // a backup history file: the segment it lies in
	}
	tli, seg, ok := ParseSegName(segName, c.segSize)
	if !ok {
		return ""
	}
	related := false
	for _, n := range c.needs {
		if c.descends(tli, n) {
			related = true
			if seg >= n.seg {
				return ""
			}
		}
	}
	if !related {
		return fmt.Sprintf("timeline %d leads on from no kept backup%s", tli, sinceNote)
	}
	return fmt.Sprintf("before %s, where the oldest kept backup (%s) starts%s", oldest.startWAL, oldest.backup, sinceNote)
}
