package postgres

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hartonomous/hartvault/internal/engine"
	"github.com/hartonomous/hartvault/internal/plan"
	"github.com/hartonomous/hartvault/internal/repo"
	"github.com/hartonomous/hartvault/internal/retention"
	"github.com/hartonomous/hartvault/internal/storage"
)

// memDriver is an in-memory storage driver: the WAL property test stores thousands
// of objects per history.
type memDriver struct {
	mu   sync.Mutex
	objs map[string]memObject
	now  func() time.Time
}

type memObject struct {
	data []byte
	mod  time.Time
}

func (d *memDriver) Put(_ context.Context, key string, body io.Reader, size int64, opts storage.PutOptions) error {
	data, err := io.ReadAll(body)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.objs[key]; ok && opts.IfNotExist {
		return storage.ErrExists
	}
	d.objs[key] = memObject{data: data, mod: d.now()}
	return nil
}

func (d *memDriver) Get(_ context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	o, ok := d.objs[key]
	if !ok {
		return nil, fmt.Errorf("%s: %w", key, storage.ErrNotFound)
	}
	b := o.data[min(offset, int64(len(o.data))):]
	if length >= 0 && length < int64(len(b)) {
		b = b[:length]
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

func (d *memDriver) Stat(_ context.Context, key string) (storage.ObjectInfo, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	o, ok := d.objs[key]
	if !ok {
		return storage.ObjectInfo{}, fmt.Errorf("%s: %w", key, storage.ErrNotFound)
	}
	return storage.ObjectInfo{Key: key, Size: int64(len(o.data)), ModTime: o.mod}, nil
}

func (d *memDriver) List(_ context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	d.mu.Lock()
	var infos []storage.ObjectInfo
	for k, o := range d.objs {
		if strings.HasPrefix(k, prefix) {
			infos = append(infos, storage.ObjectInfo{Key: k, Size: int64(len(o.data)), ModTime: o.mod})
		}
	}
	d.mu.Unlock()
	sort.Slice(infos, func(i, j int) bool { return infos[i].Key < infos[j].Key })
	for _, i := range infos {
		if err := fn(i); err != nil {
			return err
		}
	}
	return nil
}

func (d *memDriver) Delete(_ context.Context, key string) error {
	d.mu.Lock()
	delete(d.objs, key)
	d.mu.Unlock()
	return nil
}

func (d *memDriver) String() string { return "mem" }
func (d *memDriver) Close() error   { return nil }

// walWorld is a repository in memory with a PostgreSQL source "pg" and a clock.
type walWorld struct {
	t   testing.TB
	r   *repo.Repo
	d   *memDriver
	now time.Time
	e   *Engine
}

func newWALWorld(t testing.TB) *walWorld {
	w := &walWorld{t: t, now: time.Date(2026, 9, 6, 0, 0, 0, 0, time.UTC)}
	w.d = &memDriver{objs: map[string]memObject{}, now: func() time.Time { return w.now }}
	opts := repo.Options{URL: "mem://", Keys: repo.Keys{None: true}, Compression: "none", Now: func() time.Time { return w.now },
		OpenStore: func(context.Context, string) (*storage.Store, error) { return storage.New(w.d, storage.Options{}), nil }}
	ctx := context.Background()
	if _, err := repo.Init(ctx, opts); err != nil {
		t.Fatal(err)
	}
	r, err := repo.Open(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	w.r = r
	w.e = &Engine{src: plan.Source{Name: "pg", Kind: plan.KindPostgres}}
	return w
}

const testSegSize = 16 << 20

// put stores a WAL object under its archive name, as wal-push and wal-stream name them.
func (w *walWorld) putSegment(sysid uint64, tli uint32, segno uint64, lastCommit time.Time) string {
	seg := SegName(tli, segno, testSegSize)
	data := []byte(fmt.Sprintf("segment %s of %d", seg, sysid))
	name := fmt.Sprintf("%d/%s/%s-%s-%s", sysid, seg[:16], seg, hash32(data), commitStamp(lastCommit, !lastCommit.IsZero()))
	w.put(name, data)
	return name
}

func (w *walWorld) putPartial(sysid uint64, tli uint32, segno uint64, n int, lastCommit time.Time) string {
	seg := SegName(tli, segno, testSegSize)
	data := []byte(strings.Repeat("p", n))
	name := fmt.Sprintf("%d/%s/%s.partial-%x-%s-%s", sysid, seg[:16], seg, len(data), hash32(data), commitStamp(lastCommit, !lastCommit.IsZero()))
	w.put(name, data)
	return name
}

func (w *walWorld) putBackupHistory(sysid uint64, startWAL string, off uint32) string {
	file := fmt.Sprintf("%s.%08X.backup", startWAL, off)
	data := []byte("START WAL LOCATION: ...")
	name := fmt.Sprintf("%d/%s/%s-%s", sysid, startWAL[:16], file, hash32(data))
	w.put(name, data)
	return name
}

// putHistory stores timeline tli's history file: it branched from its parent's
// history at the given switch points.
func (w *walWorld) putHistory(sysid uint64, tli uint32, steps []timelineStep) string {
	var b strings.Builder
	for _, s := range steps {
		fmt.Fprintf(&b, "%d\t%s\tno recovery target specified\n", s.TLI, s.End)
	}
	data := []byte(b.String())
	name := fmt.Sprintf("%d/history/%08X.history-%s", sysid, tli, hash32(data))
	w.put(name, data)
	return name
}

func (w *walWorld) put(name string, data []byte) {
	if _, err := w.r.PutLog(context.Background(), "pg", name, data, false); err != nil {
		w.t.Fatal(err)
	}
}

func (w *walWorld) names() []string {
	var out []string
	err := w.r.ListLogs(context.Background(), "pg", "", func(o repo.LogObject) error {
		out = append(out, o.Name)
		return nil
	})
	if err != nil {
		w.t.Fatal(err)
	}
	return out
}

// backup makes the manifest of a PostgreSQL backup (not stored: retention and the
// WAL prune take manifests as they are).
func pgBackup(id, typ, parent string, sysid uint64, tli uint32, start, stop LSN, stopTime, finished time.Time) *repo.Manifest {
	info := Info{Server: ServerInfo{SystemID: sysid, SegSize: testSegSize, Version: 150000}, Timeline: tli,
		StartLSN: start.String(), StopLSN: stop.String(), StopTime: stopTime,
		StartWAL: SegName(tli, uint64(start)/testSegSize, testSegSize), StopWAL: SegName(tli, uint64(stop-1)/testSegSize, testSegSize)}
	raw, _ := json.Marshal(info)
	return &repo.Manifest{Format: repo.ManifestFormat, ID: id, Source: "pg", Kind: plan.KindPostgres, Type: typ, Parent: parent,
		Started: stopTime.Add(-10 * time.Minute), Finished: finished, Engine: raw}
}

func lsnAt(segno uint64, off uint64) LSN { return LSN(segno*testSegSize + off) }

func TestPruneLogsFromTheOldestKeptBackup(t *testing.T) {
	w := newWALWorld(t)
	ctx := context.Background()
	const sysid = 7300000000000000001
	base := time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC)
	for s := uint64(1); s <= 20; s++ {
		w.putSegment(sysid, 1, s, base.Add(time.Duration(s)*time.Hour))
	}
	// Streaming left partial copies: one of a segment archived since, one of the
	// segment still being written.
	superseded := w.putPartial(sysid, 1, 18, 100, base.Add(17*time.Hour))
	current := w.putPartial(sysid, 1, 21, 100, base.Add(21*time.Hour))
	oldBH := w.putBackupHistory(sysid, SegName(1, 3, testSegSize), 0x28)
	keptBH := w.putBackupHistory(sysid, SegName(1, 10, testSegSize), 0x28)
	hist := w.putHistory(sysid, 2, []timelineStep{{TLI: 1, End: lsnAt(19, 0)}})
	w.putSegment(sysid, 2, 19, base.Add(30*time.Hour))
	kept := pgBackup("b10", repo.TypeFull, "", sysid, 1, lsnAt(10, 0x28), lsnAt(10, 0x1000), base.Add(10*time.Hour), base.Add(10*time.Hour+time.Minute))
	all := w.names()

	ranges, err := w.e.PruneLogs(ctx, w.r, engine.LogPruneRequest{Kept: []*repo.Manifest{kept}, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(all, w.names()) {
		t.Fatal("a dry run deleted")
	}
	var gone []string
	for _, rg := range ranges {
		gone = append(gone, rg.Objects...)
	}
	if len(ranges) != 2 || !strings.Contains(ranges[0].Reason, "before 00000001000000000000000A, where the oldest kept backup (b10) starts") ||
		!strings.Contains(ranges[0].What, "000000010000000000000001..000000010000000000000009") || ranges[0].Bytes <= 0 {
		t.Fatalf("ranges: %+v", ranges)
	}
	if len(ranges[0].Objects) != 10 { // segments 1-9 and the backup history file of segment 3
		t.Fatalf("first range holds %d objects: %v", len(ranges[0].Objects), ranges[0].Objects)
	}
	if ranges[1].Objects[0] != superseded || !strings.Contains(ranges[1].Reason, "complete copy is archived") {
		t.Fatalf("second range: %+v", ranges[1])
	}
	for _, keep := range []string{current, keptBH, hist} {
		if slices.Contains(gone, keep) {
			t.Errorf("%s would go", keep)
		}
	}
	if !slices.Contains(gone, oldBH) {
		t.Errorf("backup history %s of a deleted backup stays", oldBH)
	}
	if _, err := w.e.PruneLogs(ctx, w.r, engine.LogPruneRequest{Kept: []*repo.Manifest{kept}}); err != nil {
		t.Fatal(err)
	}
	left := w.names()
	for _, n := range gone {
		if slices.Contains(left, n) {
			t.Errorf("%s was not deleted", n)
		}
	}
	if len(left) != len(all)-len(gone) {
		t.Errorf("%d objects left of %d, %d deleted", len(left), len(all), len(gone))
	}
	// The timeline that branched after the backup started stays.
	if !slices.ContainsFunc(left, func(n string) bool { return strings.Contains(n, "/000000020000000000000013-") }) {
		t.Errorf("timeline 2 was pruned: %v", left)
	}
	// Forever keeps everything.
	if rs, err := w.e.PruneLogs(ctx, w.r, engine.LogPruneRequest{Forever: true}); err != nil || rs != nil {
		t.Fatalf("forever: %v %v", rs, err)
	}
}

func TestPruneLogsTimelinesAndClusters(t *testing.T) {
	w := newWALWorld(t)
	ctx := context.Background()
	const a, b = 1111, 2222
	base := time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC)
	w.now = base
	for s := uint64(1); s <= 12; s++ {
		w.putSegment(a, 1, s, base.Add(time.Duration(s)*time.Hour))
	}
	// Timeline 2 branched at segment 4, before the kept backup on timeline 1
	// started: no kept backup reads it. Timeline 3 branched from 1 at segment 9,
	// after: it stays. Timeline 4's history cannot be read: kept, to be safe.
	w.putHistory(a, 2, []timelineStep{{TLI: 1, End: lsnAt(4, 0x100)}})
	w.putHistory(a, 3, []timelineStep{{TLI: 1, End: lsnAt(9, 0x100)}})
	for s := uint64(4); s <= 8; s++ {
		w.putSegment(a, 2, s, base.Add(time.Duration(20+s)*time.Hour))
	}
	for s := uint64(9); s <= 11; s++ {
		w.putSegment(a, 3, s, base.Add(time.Duration(40+s)*time.Hour))
	}
	w.put(fmt.Sprintf("%d/history/00000004.history-%s", a, strings.Repeat("0", 32)), []byte("4\tdamaged"))
	w.putSegment(a, 4, 10, base.Add(60*time.Hour))
	// Cluster b has no kept backup: all of it goes, but for what the log rule keeps.
	w.putHistory(b, 2, []timelineStep{{TLI: 1, End: lsnAt(2, 0)}})
	w.putSegment(b, 1, 1, base.Add(time.Hour))
	w.now = base.Add(100 * time.Hour)
	w.putSegment(b, 1, 2, time.Time{}) // no commit in it: its storage time counts, and it stays
	kept := pgBackup("k", repo.TypeFull, "", a, 1, lsnAt(6, 0x28), lsnAt(6, 0x1000), base.Add(6*time.Hour), base.Add(6*time.Hour))
	ranges, err := w.e.PruneLogs(ctx, w.r, engine.LogPruneRequest{Kept: []*repo.Manifest{kept}, Since: base.Add(99 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	byReason := map[string][]string{}
	for _, rg := range ranges {
		for _, o := range rg.Objects {
			byReason[rg.Reason] = append(byReason[rg.Reason], o[strings.LastIndexByte(o, '/')+1:strings.IndexByte(o, '-')])
		}
	}
	got := fmt.Sprint(byReason)
	for _, want := range []string{
		"before 000000010000000000000006, where the oldest kept backup (k) starts; written before 2026-09-05 03:00:00 UTC, where the log rule starts:[000000010000000000000001 000000010000000000000002 000000010000000000000003 000000010000000000000004 000000010000000000000005]",
		"timeline 2 leads on from no kept backup; written before 2026-09-05 03:00:00 UTC, where the log rule starts:[000000020000000000000004 000000020000000000000005 000000020000000000000006 000000020000000000000007 000000020000000000000008]",
		"cluster 2222 has no kept backup; written before 2026-09-05 03:00:00 UTC, where the log rule starts:[000000010000000000000001 00000002.history]",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %s\nin %s", want, got)
		}
	}
	if strings.Contains(got, "00000003000000000000000") || strings.Contains(got, "00000004000000000000000A") ||
		strings.Contains(got, "00000003.history") || strings.Contains(got, "00000004.history") {
		t.Errorf("pruned what stays: %s", got)
	}
	if l, err := w.e.Lineage(kept); err != nil || l != "cluster 1111" {
		t.Errorf("lineage %q %v", l, err)
	}
}

// TestWALRetentionProperty builds WAL archives in memory (segments every six hours
// and at each backup, weekly fulls and daily diffs with failures and days without
// any, a cluster replaced by another, restores that start new timelines, streamed
// partial copies), applies random policies through retention.Plan and PruneLogs, and
// checks with the restore's own chain and window logic that:
//   - every instant of the window restorable before is restorable after, and so is
//     every instant from the oldest kept full of each cluster on;
//   - every kept backup reaches as far through the WAL as it did before;
//   - no WAL is kept that no kept backup reads, but for what the log rule keeps.
func TestWALRetentionProperty(t *testing.T) {
	histories := 150
	if testing.Short() {
		histories = 40
	}
	for seed := int64(1); seed <= int64(histories); seed++ {
		rng := rand.New(rand.NewSource(seed))
		sim := simulate(t, rng)
		pol := retention.Policy{Lineage: sim.w.e.Lineage}
		pol.Full = pick(rng, plan.Keep{Count: 1 + rng.Intn(4)}, plan.Keep{Age: time.Duration(1+rng.Intn(5)) * 7 * 24 * time.Hour}, plan.Keep{Forever: true})
		pol.Diff = pick(rng, plan.Keep{Count: 1 + rng.Intn(7)}, plan.Keep{Age: time.Duration(1+rng.Intn(10)) * 24 * time.Hour}, plan.Keep{Forever: true})
		pol.Log = pick(rng, plan.Keep{Count: 3}, plan.Keep{Age: time.Duration(1+rng.Intn(14)) * 24 * time.Hour}, plan.Keep{Forever: true})
		now := sim.end.Add(time.Duration(rng.Intn(48*60)) * time.Minute)
		if err := sim.check(pol, now); err != nil {
			t.Fatalf("seed %d, policy %s, now %s: %v", seed, pol, now.Format(time.RFC3339), err)
		}
	}
}

func pick(rng *rand.Rand, count, age, forever plan.Keep) plan.Keep {
	switch r := rng.Float64(); {
	case r < 0.05:
		return forever
	case r < 0.3:
		return count
	}
	return age
}

type simCluster struct {
	sysid      uint64
	begin, end time.Time // end zero: still running
	backups    []*repo.Manifest
}

type simulation struct {
	w        *walWorld
	clusters []*simCluster
	infos    map[string]*Info
	end      time.Time
	// timelines is set when a restore started a new timeline: PlanRestore's choice
	// of chain ignores timelines, so only "some chain restores it" is checked then.
	timelines bool
}

// simulate writes one random history into a fresh in-memory repository.
func simulate(t testing.TB, rng *rand.Rand) *simulation {
	w := newWALWorld(t)
	sim := &simulation{w: w, infos: map[string]*Info{}}
	start := time.Date(2026, 9, 6, 0, 0, 0, 0, time.UTC) // a Sunday
	days := 21 + rng.Intn(36)
	sim.end = start.AddDate(0, 0, days)
	switchDay := -1
	if rng.Intn(3) == 0 {
		switchDay = 3 + rng.Intn(days-6)
	}
	restoreDays := map[int]bool{}
	for range rng.Intn(3) {
		restoreDays[2+rng.Intn(days-2)] = true
	}
	failures := rng.Float64() * 0.25
	stream := rng.Intn(2) == 0

	var c *simCluster
	var tli uint32
	var segno uint64
	var segOpened time.Time
	var lastFull *repo.Manifest
	// timeline histories of the current cluster
	hist := map[uint32][]timelineStep{}
	// commit times of archived segments by (tli, segno), to branch from
	segEnd := map[uint64]time.Time{}
	newCluster := func(at time.Time) {
		if c != nil {
			c.end = at
		}
		c = &simCluster{sysid: 7300000000000000000 + uint64(rng.Int63n(1e15)), begin: at}
		sim.clusters = append(sim.clusters, c)
		tli, segno, segOpened, lastFull = 1, 1, at, nil
		hist = map[uint32][]timelineStep{}
		segEnd = map[uint64]time.Time{}
	}
	// closeSeg archives the current segment, its last commit just before at.
	closeSeg := func(at time.Time) {
		w.now = at
		last := at.Add(-time.Second)
		w.putSegment(c.sysid, tli, segno, last)
		if stream && rng.Intn(4) == 0 {
			w.putPartial(c.sysid, tli, segno, 10+rng.Intn(100), last.Add(-time.Minute)) // superseded
		}
		segEnd[segno] = last
		segno++
		segOpened = at
	}
	// advance archives the segments that fill up (every six hours) until t.
	advance := func(t time.Time) {
		for next := segOpened.Truncate(6 * time.Hour).Add(6 * time.Hour); !next.After(t); next = next.Add(6 * time.Hour) {
			if next.After(segOpened) {
				closeSeg(next)
			}
		}
	}
	backup := func(typ string, at time.Time) {
		advance(at)
		if typ == repo.TypeDiff && lastFull == nil {
			typ = repo.TypeFull
		}
		took := time.Duration(5+rng.Intn(50)) * time.Minute
		startLSN := lsnAt(segno, 0x28+uint64(rng.Intn(1000)))
		advance(at.Add(took))
		stopTime := at.Add(took)
		stopLSN := lsnAt(segno, 0x100000)
		closeSeg(stopTime) // pg_backup_stop switches segments
		parent := ""
		if typ == repo.TypeDiff {
			parent = lastFull.ID
		}
		id := fmt.Sprintf("%08x-%s", rng.Uint32(), typ) // never sorted by name
		m := pgBackup(id, typ, parent, c.sysid, tli, startLSN, stopLSN, stopTime, stopTime.Add(30*time.Second))
		m.Started = at
		w.putBackupHistory(c.sysid, SegName(tli, uint64(startLSN)/testSegSize, testSegSize), uint32(startLSN%testSegSize))
		info, _ := ReadInfo(m)
		sim.infos[m.ID] = info
		c.backups = append(c.backups, m)
		if typ == repo.TypeFull {
			lastFull = m
		}
	}
	newCluster(start)
	for day := 0; day < days; day++ {
		date := start.AddDate(0, 0, day)
		if day == switchDay {
			advance(date.Add(12 * time.Hour))
			newCluster(date.Add(12 * time.Hour)) // a new cluster (pg_upgrade, a rebuilt server)
		}
		if rng.Float64() < 0.05 {
			continue // the agent was down
		}
		if date.Weekday() == time.Sunday && rng.Float64() >= failures {
			backup(repo.TypeFull, date.Add(time.Hour))
		}
		if rng.Float64() >= failures {
			backup(repo.TypeDiff, date.Add(2*time.Hour))
		}
		if restoreDays[day] && segno > 6 {
			// A point-in-time restore after an accident: back to a few segments ago,
			// on a new timeline the cluster lives on from now on.
			at := date.Add(15 * time.Hour)
			advance(at)
			back := segno - 1 - uint64(rng.Intn(min(int(segno)-2, 8)))
			switchLSN := lsnAt(back, 0x2000)
			steps := append(slices.Clone(hist[tli]), timelineStep{TLI: tli, End: switchLSN})
			tli++
			hist[tli] = steps
			sim.timelines = true
			w.now = at
			w.putHistory(c.sysid, tli, steps)
			segno, segOpened = back, at
		}
	}
	advance(sim.end)
	if stream {
		w.putPartial(c.sysid, tli, segno, 500, sim.end.Add(-time.Minute)) // the segment being streamed
	}
	return sim
}

// reach is how far a restore from backup m can go: its chain's window through the
// WAL, as PlanRestore computes it.
func (s *simulation) reach(ctx context.Context, m *repo.Manifest) (time.Time, error) {
	w, err := s.w.e.window(ctx, s.w.r, m, s.infos)
	if err != nil {
		return time.Time{}, err
	}
	latest := w.lastCommit
	if stop := s.infos[m.ID].StopTime; latest.Before(stop) {
		latest = stop
	}
	return latest, nil
}

// restorable reports, for each instant, whether a restore to it can be planned:
// some chain among backups (a full, or a diff whose full is there) consistent by
// then whose WAL reaches it. With strict, only the chain newestChain picks (what
// PlanRestore does) counts.
func (s *simulation) restorable(ctx context.Context, backups []*repo.Manifest, ts []time.Time, strict bool) ([]bool, error) {
	reaches := map[string]time.Time{}
	reach := func(m *repo.Manifest) (time.Time, error) {
		if r, ok := reaches[m.ID]; ok {
			return r, nil
		}
		r, err := s.reach(ctx, m)
		reaches[m.ID] = r
		return r, err
	}
	ids := map[string]bool{}
	for _, m := range backups {
		ids[m.ID] = true
	}
	out := make([]bool, len(ts))
	for i, t := range ts {
		if strict {
			chain := newestChain(backups, s.infos, t)
			if chain == nil {
				continue
			}
			r, err := reach(chain)
			if err != nil {
				return nil, err
			}
			out[i] = !t.After(r)
			continue
		}
		for _, m := range backups {
			if s.infos[m.ID].StopTime.After(t) || (m.Type == repo.TypeDiff && !ids[m.Parent]) {
				continue
			}
			r, err := reach(m)
			if err != nil {
				return nil, err
			}
			if !t.After(r) {
				out[i] = true
				break
			}
		}
	}
	return out, nil
}

func (s *simulation) check(pol retention.Policy, now time.Time) error {
	ctx := context.Background()
	var all []*repo.Manifest
	for _, c := range s.clusters {
		all = append(all, c.backups...)
	}
	spans, err := s.w.e.Reach(ctx, s.w.r, all)
	if err != nil {
		return err
	}
	pol.Spans = spans
	d := retention.Plan(all, pol, now)
	kept := map[string]bool{}
	for _, m := range d.Kept() {
		kept[m.ID] = true
	}
	window := max(pol.Full.Age, pol.Diff.Age, pol.Log.Age)
	forever := pol.Full.Forever || pol.Diff.Forever || pol.Log.Forever
	type probe struct {
		c            *simCluster
		ts           []time.Time
		before       []bool
		strictBefore []bool
		mine         []*repo.Manifest
	}
	var probes []*probe
	reachBefore := map[string]time.Time{}
	for _, c := range s.clusters {
		p := &probe{c: c}
		for _, m := range c.backups {
			if kept[m.ID] {
				p.mine = append(p.mine, m)
			}
		}
		end := c.end
		if end.IsZero() {
			end = now
		}
		add := func(t time.Time) {
			if !t.Before(c.begin) && !t.After(end) {
				p.ts = append(p.ts, t)
			}
		}
		from := now.Add(-window)
		for _, m := range c.backups {
			st := s.infos[m.ID].StopTime
			add(st)
			add(st.Add(time.Second))
			add(st.Add(-time.Second))
		}
		for t := c.begin.Truncate(time.Hour); t.Before(end); t = t.Add(3 * time.Hour) {
			add(t)
		}
		add(from)
		add(from.Add(time.Second))
		add(end.Add(-time.Second))
		if p.before, err = s.restorable(ctx, c.backups, p.ts, false); err != nil {
			return err
		}
		if !s.timelines {
			if p.strictBefore, err = s.restorable(ctx, c.backups, p.ts, true); err != nil {
				return err
			}
		}
		for _, m := range p.mine {
			if reachBefore[m.ID], err = s.reach(ctx, m); err != nil {
				return err
			}
		}
		probes = append(probes, p)
	}

	if _, err := s.w.e.PruneLogs(ctx, s.w.r, engine.LogPruneRequest{Kept: d.Kept(), Since: d.LogSince(), Forever: pol.Log.Forever}); err != nil {
		return err
	}

	for _, p := range probes {
		after, err := s.restorable(ctx, p.mine, p.ts, false)
		if err != nil {
			return err
		}
		strictAfter := after
		if !s.timelines {
			if strictAfter, err = s.restorable(ctx, p.mine, p.ts, true); err != nil {
				return err
			}
		}
		var oldestKept time.Time
		for _, m := range p.mine {
			if m.Type == repo.TypeFull && (oldestKept.IsZero() || s.infos[m.ID].StopTime.Before(oldestKept)) {
				oldestKept = s.infos[m.ID].StopTime
			}
		}
		for i, t := range p.ts {
			inWindow := forever || window > 0 && !t.Before(now.Add(-window))
			// Without timeline switches the kept WAL runs on from the oldest kept
			// full, so every instant since is restorable too.
			sinceKept := !s.timelines && !oldestKept.IsZero() && !t.Before(oldestKept)
			if p.before[i] && !after[i] && (inWindow || sinceKept) {
				return fmt.Errorf("cluster %d at %s: restorable before pruning, not after (in the window: %v; after the oldest kept full: %v)\n%s",
					p.c.sysid, t.Format(time.RFC3339), inWindow, sinceKept, describeSim(d, s.infos))
			}
			if !s.timelines && p.strictBefore[i] && !strictAfter[i] && (inWindow || sinceKept) {
				return fmt.Errorf("cluster %d at %s: PlanRestore's chain restored it before pruning, not after\n%s",
					p.c.sysid, t.Format(time.RFC3339), describeSim(d, s.infos))
			}
		}
		for _, m := range p.mine {
			r, err := s.reach(ctx, m)
			if err != nil {
				return err
			}
			if !r.Equal(reachBefore[m.ID]) {
				return fmt.Errorf("kept backup %s reached %s before pruning, %s after", m.ID, reachBefore[m.ID].Format(time.RFC3339), r.Format(time.RFC3339))
			}
		}
	}
	return s.checkLeft(d, pol)
}

// checkLeft checks that what stays of the archive is what kept backups read and the
// log rule keeps.
func (s *simulation) checkLeft(d retention.Decision, pol retention.Policy) error {
	needs := map[uint64][]*Info{}
	for _, m := range d.Kept() {
		info := s.infos[m.ID]
		needs[info.Server.SystemID] = append(needs[info.Server.SystemID], info)
	}
	since := d.LogSince()
	var objs []walObject
	err := s.w.r.ListLogs(context.Background(), "pg", "", func(o repo.LogObject) error {
		if w, ok := parseWALName(o.Name, o.ModTime); ok {
			objs = append(objs, w)
		}
		return nil
	})
	if err != nil {
		return err
	}
	complete := map[string]bool{}
	for _, o := range objs {
		if !o.Partial {
			complete[o.Rel[:strings.IndexByte(o.Rel, '/')]+o.File] = true
		}
	}
	for _, o := range objs {
		var sysid uint64
		fmt.Sscan(o.Rel[:strings.IndexByte(o.Rel, '/')], &sysid)
		if pol.Log.Forever {
			continue
		}
		if o.Partial && complete[o.Rel[:strings.IndexByte(o.Rel, '/')]+o.File] {
			return fmt.Errorf("%s: a superseded partial copy stays", o.Rel)
		}
		written := o.LastCommit
		if written.IsZero() {
			written = o.Modified
		}
		if !since.IsZero() && !written.Before(since) {
			continue
		}
		infos := needs[sysid]
		if len(infos) == 0 {
			return fmt.Errorf("%s stays, but its cluster has no kept backup", o.Rel)
		}
		if IsHistoryName(o.File) {
			continue
		}
		_, seg, _ := ParseSegName(o.File[:24], testSegSize)
		needed := false
		for _, info := range infos {
			_, start, _ := ParseSegName(info.StartWAL, testSegSize)
			if seg >= start {
				needed = true
			}
		}
		if !needed {
			return fmt.Errorf("%s stays, but every kept backup of its cluster starts later", o.Rel)
		}
	}
	return nil
}

func describeSim(d retention.Decision, infos map[string]*Info) string {
	var b strings.Builder
	for _, v := range d.Backups {
		i := infos[v.Backup.ID]
		fmt.Fprintf(&b, "  %-5v %-4s %s tl %d %s..%s stop %s  %s\n", v.Keep, v.Backup.Type, v.Lineage, i.Timeline, i.StartWAL, i.StopWAL,
			i.StopTime.Format("01-02 15:04"), v.Reason)
	}
	return b.String()
}
