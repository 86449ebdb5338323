package retention

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hartonomous/hartvault/internal/engine"
	"github.com/hartonomous/hartvault/internal/plan"
	"github.com/hartonomous/hartvault/internal/repo"
	"github.com/hartonomous/hartvault/internal/storage"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// spy records deletions, can fail one, and checks each is made under the lock.
type spy struct {
	storage.Driver
	mu      sync.Mutex
	deletes []string
	// fail, when it returns an error for a key, makes that deletion fail.
	fail func(key string) error
	// unlocked lists deletions made while the source's lock object was absent.
	unlocked []string
}

func (s *spy) Create(ctx context.Context) error {
	if c, ok := s.Driver.(interface{ Create(context.Context) error }); ok {
		return c.Create(ctx)
	}
	return nil
}

func (s *spy) Delete(ctx context.Context, key string) error {
	if _, err := s.Driver.Stat(ctx, "locks/src.lock"); err != nil && !strings.HasPrefix(key, "locks/") {
		s.mu.Lock()
		s.unlocked = append(s.unlocked, key)
		s.mu.Unlock()
	}
	if s.fail != nil {
		if err := s.fail(key); err != nil {
			return err
		}
	}
	s.mu.Lock()
	if !strings.HasPrefix(key, "locks/") {
		s.deletes = append(s.deletes, key)
	}
	s.mu.Unlock()
	return s.Driver.Delete(ctx, key)
}

type testRepo struct {
	t     *testing.T
	r     *repo.Repo
	spy   *spy
	clock *clock
	url   string
}

func newTestRepo(t *testing.T) *testRepo {
	t.Helper()
	ctx := t.Context()
	tr := &testRepo{t: t, clock: &clock{t: time.Date(2026, 9, 6, 0, 0, 0, 0, time.UTC)},
		url: "file://" + filepath.ToSlash(filepath.Join(t.TempDir(), "repo"))}
	opts := repo.Options{URL: tr.url, Keys: repo.Keys{None: true}, Now: tr.clock.Now,
		OpenStore: func(ctx context.Context, url string) (*storage.Store, error) {
			d, err := storage.OpenDriver(ctx, url)
			if err != nil {
				return nil, err
			}
			tr.spy = &spy{Driver: d}
			return storage.New(tr.spy, storage.Options{}), nil
		}}
	if _, err := repo.Init(ctx, opts); err != nil {
		t.Fatal(err)
	}
	r, err := repo.Open(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	tr.r = r
	return tr
}

// commit stores a backup of source src started at `at`: a full with its own data,
// a diff whose file refers to its full's extents and overlays its own.
func (tr *testRepo) commit(typ string, parent *repo.Manifest, at time.Time, took time.Duration) *repo.Manifest {
	tr.t.Helper()
	ctx := tr.t.Context()
	tr.clock.Set(at)
	lock, err := tr.r.Lock(ctx, "src", "test backup")
	if err != nil {
		tr.t.Fatal(err)
	}
	defer lock.Release(ctx)
	spec := repo.BackupSpec{Source: "src", Kind: "test", Type: typ}
	if parent != nil {
		spec.Parent = parent.ID
	}
	b, err := tr.r.BeginBackup(ctx, lock, spec)
	if err != nil {
		tr.t.Fatal(err)
	}
	pw := b.NewPackWriter(ctx)
	content := fmt.Sprintf("%s backup taken at %s", typ, at)
	exts, err := pw.Write(strings.NewReader(content), 0)
	if err != nil {
		tr.t.Fatal(err)
	}
	if err := pw.Close(); err != nil {
		tr.t.Fatal(err)
	}
	f := repo.File{Path: "f", Type: repo.TypeRegular, Mode: 0o644, Size: int64(len(content)), Extents: exts}
	if parent != nil {
		var base []repo.Extent
		for _, x := range parent.Files[0].Extents {
			x.Backup = parent.ID
			base = append(base, x)
		}
		for i := range exts {
			exts[i].Overlay = true
		}
		f.Extents = append(base, exts...)
	}
	b.AddFile(f)
	tr.clock.Set(at.Add(took))
	m, err := b.Commit(ctx)
	if err != nil {
		tr.t.Fatal(err)
	}
	return m
}

// keys lists every object under prefix.
func (tr *testRepo) keys(prefix string) []string {
	tr.t.Helper()
	var out []string
	if err := tr.r.Store().List(tr.t.Context(), prefix, func(o storage.ObjectInfo) error {
		out = append(out, o.Key)
		return nil
	}); err != nil {
		tr.t.Fatal(err)
	}
	return out
}

// intact fails unless every visible backup can be read whole: its chain and every
// object of it.
func (tr *testRepo) intact() {
	tr.t.Helper()
	ctx := tr.t.Context()
	bs, err := tr.r.Backups(ctx, "src")
	if err != nil {
		tr.t.Fatal(err)
	}
	for _, m := range bs {
		chain, err := tr.r.Chain(ctx, m)
		if err != nil {
			tr.t.Fatalf("visible backup %s: %v", m.ID, err)
		}
		for _, cm := range chain {
			err := tr.r.VerifyObjects(ctx, nil, cm, func(o repo.ObjectResult) {
				if o.Err != nil {
					tr.t.Errorf("visible backup %s needs %s, which is damaged: %v", m.ID, o.Object.Key, o.Err)
				}
			})
			if err != nil {
				tr.t.Fatal(err)
			}
		}
	}
}

// twoWeeks makes two weekly chains: F1 D1a D1b, F2 D2a.
func (tr *testRepo) twoWeeks() []*repo.Manifest {
	day := func(n int, h int) time.Time { return time.Date(2026, 9, 6+n, h, 0, 0, 0, time.UTC) }
	f1 := tr.commit(repo.TypeFull, nil, day(0, 1), 20*time.Minute)
	d1a := tr.commit(repo.TypeDiff, f1, day(1, 2), 5*time.Minute)
	d1b := tr.commit(repo.TypeDiff, f1, day(2, 2), 5*time.Minute)
	f2 := tr.commit(repo.TypeFull, nil, day(7, 1), 20*time.Minute)
	d2a := tr.commit(repo.TypeDiff, f2, day(8, 2), 5*time.Minute)
	return []*repo.Manifest{f1, d1a, d1b, f2, d2a}
}

func TestApplyDeletesManifestFirstNewestFirstUnderTheLock(t *testing.T) {
	tr := newTestRepo(t)
	bs := tr.twoWeeks()
	f1, d1a, d1b, f2, d2a := bs[0], bs[1], bs[2], bs[3], bs[4]
	now := time.Date(2026, 9, 20, 0, 0, 0, 0, time.UTC)
	d := Plan(bs, mustPolicy(t, "1 backup", "1 backup", "1 backup"), now)
	tr.spy.deletes = nil
	res, err := Apply(t.Context(), tr.r, nil, d, false)
	if err != nil {
		t.Fatal(err)
	}
	var gone []string
	for _, rm := range res.Deleted {
		gone = append(gone, rm.Backup.ID)
		if rm.Objects < 2 || rm.Bytes <= 0 {
			t.Errorf("%s: %d objects, %d bytes", rm.Backup.ID, rm.Objects, rm.Bytes)
		}
	}
	if want := []string{d1b.ID, d1a.ID, f1.ID}; !slices.Equal(gone, want) {
		t.Fatalf("deleted %v, want %v (newest first)", gone, want)
	}
	// Per backup: the manifest, then its data; a diff before its full.
	var order []string
	for _, k := range tr.spy.deletes {
		for _, m := range bs {
			switch k {
			case manifestKey("src", m.ID):
				order = append(order, "manifest "+m.ID)
			}
			if strings.HasPrefix(k, dataPrefix("src", m.ID)) && (len(order) == 0 || order[len(order)-1] != "data "+m.ID) {
				order = append(order, "data "+m.ID)
			}
		}
	}
	want := []string{"manifest " + d1b.ID, "data " + d1b.ID, "manifest " + d1a.ID, "data " + d1a.ID, "manifest " + f1.ID, "data " + f1.ID}
	if !slices.Equal(order, want) {
		t.Fatalf("deletion order:\n%s\nwant:\n%s", strings.Join(order, "\n"), strings.Join(want, "\n"))
	}
	if len(tr.spy.unlocked) > 0 {
		t.Fatalf("deleted without the lock: %v", tr.spy.unlocked)
	}
	left, err := tr.r.Backups(t.Context(), "src")
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 2 || left[0].ID != f2.ID || left[1].ID != d2a.ID {
		t.Fatalf("left: %v", left)
	}
	for _, m := range []*repo.Manifest{f1, d1a, d1b} {
		if ks := tr.keys(dataPrefix("src", m.ID)); len(ks) > 0 {
			t.Errorf("data of %s left: %v", m.ID, ks)
		}
	}
	tr.intact()
	if ks := tr.keys("locks/"); len(ks) > 0 {
		t.Errorf("lock left behind: %v", ks)
	}
	b, objs, bytes := res.Totals()
	if b != 3 || objs < 6 || bytes <= 0 {
		t.Errorf("totals %d %d %d", b, objs, bytes)
	}
}

func TestApplyDryRunDeletesNothing(t *testing.T) {
	tr := newTestRepo(t)
	bs := tr.twoWeeks()
	// The source may even be locked by a running backup: a dry run only reads.
	lock, err := tr.r.Lock(t.Context(), "src", "backup")
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Release(t.Context())
	before := tr.keys("")
	d := Plan(bs, mustPolicy(t, "1 backup", "1 backup", "1 backup"), time.Date(2026, 9, 20, 0, 0, 0, 0, time.UTC))
	pruner := &fakePruner{}
	res, err := Apply(t.Context(), tr.r, pruner, d, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Deleted) != 3 || !res.DryRun {
		t.Fatalf("dry run reports %d backups", len(res.Deleted))
	}
	if after := tr.keys(""); !slices.Equal(before, after) {
		t.Fatalf("dry run changed the repository:\n%v\n%v", before, after)
	}
	if len(pruner.reqs) != 1 || !pruner.reqs[0].DryRun {
		t.Fatalf("log pruner asked %+v", pruner.reqs)
	}
}

func TestApplyRefusesWhileAnotherRunHoldsTheLock(t *testing.T) {
	tr := newTestRepo(t)
	bs := tr.twoWeeks()
	lock, err := tr.r.Lock(t.Context(), "src", "backup")
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Release(t.Context())
	d := Plan(bs, mustPolicy(t, "1 backup", "1 backup", "1 backup"), time.Date(2026, 9, 20, 0, 0, 0, 0, time.UTC))
	before := tr.keys("backups/")
	_, err = Apply(t.Context(), tr.r, nil, d, false)
	var le *repo.LockedError
	if !errors.As(err, &le) {
		t.Fatalf("want a LockedError, got %v", err)
	}
	if after := tr.keys("backups/"); !slices.Equal(before, after) {
		t.Fatal("deleted while locked")
	}
}

// TestCrashMidPruneNeverLeavesABrokenBackup fails each deletion in turn (a crash
// there): every backup still visible must be whole, and the next run finishes.
func TestCrashMidPruneNeverLeavesABrokenBackup(t *testing.T) {
	for n := 1; ; n++ {
		tr := newTestRepo(t)
		bs := tr.twoWeeks()
		pol := mustPolicy(t, "1 backup", "1 backup", "1 backup")
		now := time.Date(2026, 9, 20, 0, 0, 0, 0, time.UTC)
		count := 0
		tr.spy.fail = func(key string) error {
			if strings.HasPrefix(key, "locks/") {
				return nil
			}
			count++
			if count == n {
				return errors.New("injected: the process died here")
			}
			return nil
		}
		_, err := Apply(t.Context(), tr.r, nil, Plan(bs, pol, now), false)
		if err == nil {
			if n == 1 {
				t.Fatal("no deletion was made")
			}
			break // every deletion point has been tried
		}
		tr.intact()
		// The next run finishes the job and leaves no orphan.
		tr.spy.fail = nil
		left, err := tr.r.Backups(t.Context(), "src")
		if err != nil {
			t.Fatal(err)
		}
		res, err := Apply(t.Context(), tr.r, nil, Plan(left, pol, now), false)
		if err != nil {
			t.Fatalf("after a crash at deletion %d: %v", n, err)
		}
		tr.intact()
		var dirs []string
		for _, k := range tr.keys("data/src/") {
			dirs = append(dirs, strings.Split(k, "/")[2])
		}
		dirs = slices.Compact(dirs)
		if want := []string{bs[3].ID, bs[4].ID}; !slices.Equal(dirs, want) {
			t.Fatalf("after a crash at deletion %d and a second run: data of %v (leftovers removed: %v), want %v", n, dirs, res.Leftovers, want)
		}
	}
}

func TestApplyDecidesAgainWhenBackupsChanged(t *testing.T) {
	tr := newTestRepo(t)
	bs := tr.twoWeeks()
	pol := mustPolicy(t, "1 backup", "1 backup", "1 backup")
	now := time.Date(2026, 9, 30, 0, 0, 0, 0, time.UTC)
	stale := Plan(bs, pol, now)
	// A full and a diff committed after the decision was made.
	f3 := tr.commit(repo.TypeFull, nil, time.Date(2026, 9, 27, 1, 0, 0, 0, time.UTC), time.Hour)
	tr.commit(repo.TypeDiff, f3, time.Date(2026, 9, 28, 2, 0, 0, 0, time.UTC), time.Minute)
	res, err := Apply(t.Context(), tr.r, nil, stale, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Decision.Backups) != 7 || len(res.Deleted) != 5 {
		t.Fatalf("decided on %d backups, deleted %d:\n%s", len(res.Decision.Backups), len(res.Deleted), describe(res.Decision))
	}
	tr.intact()
}

// fakePruner is an engine with a log to prune.
type fakePruner struct {
	reqs   []engine.LogPruneRequest
	locked []bool
	tr     *testRepo
}

func (f *fakePruner) Source() string { return "src" }
func (f *fakePruner) Kind() string   { return "test" }
func (f *fakePruner) Backup(context.Context, engine.BackupRequest) (*repo.Manifest, error) {
	return nil, errors.New("not here")
}
func (f *fakePruner) PlanRestore(context.Context, engine.RestoreRequest) (*engine.RestorePlan, error) {
	return nil, errors.New("not here")
}
func (f *fakePruner) Restore(context.Context, engine.RestoreRequest, *engine.RestorePlan) error {
	return errors.New("not here")
}
func (f *fakePruner) Lineage(m *repo.Manifest) (string, error) { return "line", nil }
func (f *fakePruner) PruneLogs(ctx context.Context, r *repo.Repo, req engine.LogPruneRequest) ([]engine.LogRange, error) {
	f.reqs = append(f.reqs, req)
	if f.tr != nil {
		f.locked = append(f.locked, len(f.tr.keys("locks/")) > 0)
	}
	return []engine.LogRange{{What: "log 1..2", Reason: "old", Objects: []string{"a", "b"}, Bytes: 10}}, nil
}

func TestPruneSourceAppliesThePlansRules(t *testing.T) {
	tr := newTestRepo(t)
	bs := tr.twoWeeks()
	pruner := &fakePruner{tr: tr}
	src := plan.Source{Name: "src", Retention: plan.Retention{Full: "1 backup", Diff: "1 backup", Log: "3d"}}
	now := time.Date(2026, 9, 20, 0, 0, 0, 0, time.UTC)
	res, err := PruneSource(t.Context(), tr.r, src, pruner, now, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Deleted) != 3 || len(pruner.reqs) != 1 {
		t.Fatalf("deleted %d, log pruner called %d times", len(res.Deleted), len(pruner.reqs))
	}
	req := pruner.reqs[0]
	if req.DryRun || req.Forever || !req.Since.Equal(now.Add(-72*time.Hour)) || !pruner.locked[0] {
		t.Fatalf("log prune request %+v, locked %v", req, pruner.locked)
	}
	if len(req.Kept) != 2 || req.Kept[0].ID != bs[3].ID || req.Kept[1].ID != bs[4].ID {
		t.Fatalf("kept passed to the log pruner: %v", req.Kept)
	}
	if res.Deleted[0].Lineage != "line" {
		t.Errorf("lineage from the engine: %q", res.Deleted[0].Lineage)
	}
	var out strings.Builder
	if err := res.Write(&out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"src: retention full 1 backup, diff 1 backup, log 3d", "delete  " + bs[0].ID, "keep    " + bs[3].ID,
		"delete log 1..2 (2 objects, 10 B): old", "src: deleted 3 of 5 backups and 2 log objects"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
	// With everything kept forever there is nothing to do, and no lock is taken.
	lock, err := tr.r.Lock(t.Context(), "src", "backup")
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Release(t.Context())
	if _, err := PruneSource(t.Context(), tr.r, plan.Source{Name: "src"}, pruner, now, false); err != nil {
		t.Fatalf("forever: %v", err)
	}
	if _, err := PruneSource(t.Context(), tr.r, plan.Source{Name: "src", Retention: plan.Retention{Full: "often"}}, pruner, now, false); err == nil {
		t.Fatal("a bad rule was accepted")
	}
}
