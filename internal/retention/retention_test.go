package retention

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hartonomous/hartvault/internal/plan"
	"github.com/hartonomous/hartvault/internal/repo"
)

// seedHistory is the seed's schedule for weeks weeks: a full every Sunday at 01:00,
// a diff every day at 02:00, from Sunday 2026-09-06.
func seedHistory(weeks int) []*repo.Manifest {
	start := time.Date(2026, 9, 6, 0, 0, 0, 0, time.UTC)
	var out []*repo.Manifest
	var full *repo.Manifest
	for day := 0; day < 7*weeks; day++ {
		date := start.AddDate(0, 0, day)
		if date.Weekday() == time.Sunday {
			full = mk(repo.NewID(date.Add(time.Hour), "full"), repo.TypeFull, "", date.Add(time.Hour), 25*time.Minute)
			out = append(out, full)
		}
		out = append(out, mk(repo.NewID(date.Add(2*time.Hour), "diff"), repo.TypeDiff, full.ID, date.Add(2*time.Hour), 6*time.Minute))
	}
	return out
}

func mk(id, typ, parent string, started time.Time, took time.Duration) *repo.Manifest {
	return &repo.Manifest{Format: repo.ManifestFormat, ID: id, Source: "src", Kind: "test", Type: typ, Parent: parent,
		Started: started, Finished: started.Add(took)}
}

func keeps(t *testing.T, d Decision) map[string]Verdict {
	t.Helper()
	out := map[string]Verdict{}
	for _, v := range d.Backups {
		out[v.Backup.ID] = v
	}
	return out
}

func mustPolicy(t *testing.T, full, diff, log string) Policy {
	t.Helper()
	p, err := PolicyFor(plan.Retention{Full: plan.RetentionRule(full), Diff: plan.RetentionRule(diff), Log: plan.RetentionRule(log)})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSeedPolicyOnSixWeeks(t *testing.T) {
	bs := seedHistory(6)
	now := time.Date(2026, 10, 18, 0, 0, 0, 0, time.UTC) // Sunday, 6 weeks after the first full
	d := Plan(bs, mustPolicy(t, "4w", "7d", "7d"), now)
	var kept []string
	for _, v := range d.Backups {
		if v.Keep {
			kept = append(kept, v.Backup.Started.Format("01-02 15")+" "+v.Backup.Type)
		}
	}
	want := []string{
		// the newest full finished by 09-20 00:00, where the 4w window starts
		"09-13 01 full",
		// the fulls inside the window
		"09-20 01 full", "09-27 01 full", "10-04 01 full",
		// the chain that restores 10-11 00:00, where the 7d diff and log windows start
		"10-10 02 diff",
		"10-11 01 full",
		// the diffs inside the window
		"10-11 02 diff", "10-12 02 diff", "10-13 02 diff", "10-14 02 diff", "10-15 02 diff", "10-16 02 diff", "10-17 02 diff",
	}
	if strings.Join(kept, ", ") != strings.Join(want, ", ") {
		t.Fatalf("kept:\n%s\nwant:\n%s\n%s", strings.Join(kept, "\n"), strings.Join(want, "\n"), describe(d))
	}
	v := keeps(t, d)
	first := bs[0]
	if v[first.ID].Keep || !strings.Contains(v[first.ID].Reason, "older than 4w") {
		t.Errorf("the first full: %+v", v[first.ID])
	}
	if r := v[bs[2].ID].Reason; !strings.Contains(r, "older than 7d") || !strings.Contains(r, "neither a window nor a kept backup needs it") {
		t.Errorf("an old diff: %q", r)
	}
	if d.Window() != 4*7*24*time.Hour || !d.LogSince().Equal(now.Add(-7*24*time.Hour)) {
		t.Errorf("window %v, log since %v", d.Window(), d.LogSince())
	}
}

func TestOrdersByFinishTimeNotByName(t *testing.T) {
	// After an upgrade, ids from the new host sort before the old ones (wal-g#636
	// deleted the newest backups this way).
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	old1 := mk("zz-old-1", repo.TypeFull, "", base, time.Hour)
	old2 := mk("zz-old-2", repo.TypeFull, "", base.Add(24*time.Hour), time.Hour)
	new1 := mk("aa-new-1", repo.TypeFull, "", base.Add(48*time.Hour), time.Hour)
	new2 := mk("aa-new-2", repo.TypeFull, "", base.Add(72*time.Hour), time.Hour)
	d := Plan([]*repo.Manifest{new2, old1, new1, old2}, mustPolicy(t, "2 backups", "1 backup", "1 backup"), base.Add(100*time.Hour))
	v := keeps(t, d)
	if !v["aa-new-1"].Keep || !v["aa-new-2"].Keep || v["zz-old-1"].Keep || v["zz-old-2"].Keep {
		t.Fatalf("kept by name, not by finish time:\n%s", describe(d))
	}
	if d.Backups[0].Backup.ID != "zz-old-1" || d.Backups[3].Backup.ID != "aa-new-2" {
		t.Fatalf("verdicts not in finish order:\n%s", describe(d))
	}
}

func TestNewestFullOfEachClusterIsNeverDeleted(t *testing.T) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var bs []*repo.Manifest
	lin := map[string]string{}
	for i := 0; i < 6; i++ {
		c := "cluster 1"
		if i >= 3 {
			c = "cluster 2" // a major upgrade: a new system identifier
		}
		m := mk(fmt.Sprintf("f%d", i), repo.TypeFull, "", base.Add(time.Duration(i)*7*24*time.Hour), time.Hour)
		lin[m.ID] = c
		bs = append(bs, m)
	}
	pol := mustPolicy(t, "1 backup", "1 backup", "1 backup")
	pol.Lineage = func(m *repo.Manifest) (string, error) { return lin[m.ID], nil }
	d := Plan(bs, pol, base.Add(60*24*time.Hour))
	v := keeps(t, d)
	if !v["f2"].Keep || !strings.Contains(v["f2"].Reason, "newest full of cluster 1") || !v["f5"].Keep {
		t.Fatalf("newest full of each cluster:\n%s", describe(d))
	}
	if v["f0"].Keep || v["f1"].Keep || v["f3"].Keep || v["f4"].Keep {
		t.Fatalf("kept more than the newest fulls:\n%s", describe(d))
	}
	if v["f2"].Lineage != "cluster 1" {
		t.Errorf("lineage %q", v["f2"].Lineage)
	}
}

func TestForeverKeepsEverything(t *testing.T) {
	bs := seedHistory(3)
	d := Plan(bs, mustPolicy(t, "", "", ""), time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC))
	if n := len(d.Deleted()); n != 0 {
		t.Fatalf("forever deleted %d backups", n)
	}
	// A forever rule for diffs keeps every diff and so every full they are on.
	d = Plan(bs, mustPolicy(t, "1 backup", "forever", "1d"), time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC))
	if n := len(d.Deleted()); n != 0 {
		t.Fatalf("diff forever deleted %d backups:\n%s", n, describe(d))
	}
}

func TestAKeptDiffKeepsItsFull(t *testing.T) {
	bs := seedHistory(3)
	// Only the newest full by the full rule, but a week of diffs: the diffs of the
	// week before the newest full need theirs.
	now := time.Date(2026, 9, 24, 12, 0, 0, 0, time.UTC) // Thursday of the third week
	d := Plan(bs, mustPolicy(t, "1 backup", "7d", "1 backup"), now)
	v := keeps(t, d)
	secondFull := bs[8] // Sunday 09-13
	if secondFull.Type != repo.TypeFull {
		t.Fatal("history layout changed")
	}
	if !v[secondFull.ID].Keep {
		t.Fatalf("the full of kept diffs is deleted:\n%s", describe(d))
	}
	for _, vv := range d.Backups {
		if vv.Keep && vv.Backup.Type == repo.TypeDiff && !v[vv.Backup.Parent].Keep {
			t.Fatalf("diff %s kept without its full", vv.Backup.ID)
		}
	}
}

func TestDependenciesWithoutParent(t *testing.T) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	holder := mk("holder", repo.TypeFull, "", base, time.Hour)
	extentsOnly := mk("extents", repo.TypeFull, "", base.Add(24*time.Hour), time.Hour)
	// A diff naming its data by extents only, and a log naming a backup in its engine
	// section (SQL Server's CLR export of an unchanged database).
	diff := mk("d", repo.TypeDiff, "", base.Add(48*time.Hour), time.Hour)
	diff.Files = []repo.File{{Path: "x", Extents: []repo.Extent{{Backup: "extents"}}}}
	newest := mk("newest", repo.TypeFull, "", base.Add(72*time.Hour), time.Hour)
	lg := mk("log", repo.TypeLog, "", base.Add(96*time.Hour), time.Minute)
	lg.Engine = json.RawMessage(`{"clr":[{"database":"db","holder":"holder"}]}`)
	d := Plan([]*repo.Manifest{holder, extentsOnly, diff, newest, lg}, mustPolicy(t, "1 backup", "1 backup", "1 backup"), base.Add(100*time.Hour))
	v := keeps(t, d)
	if !v["extents"].Keep || !strings.Contains(v["extents"].Reason, "kept diff d needs it") {
		t.Errorf("the full a diff's extents are in: %+v", v["extents"])
	}
	if !v["holder"].Keep || !strings.Contains(v["holder"].Reason, "kept log log needs it") {
		t.Errorf("the backup a log's engine section names: %+v", v["holder"])
	}
}

func TestBackupsRetentionCannotPlaceAreKept(t *testing.T) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	odd := mk("odd", "snapshot", "", base, time.Hour)
	bad := mk("bad", repo.TypeFull, "", base.Add(time.Hour), time.Hour)
	good := mk("good", repo.TypeFull, "", base.Add(48*time.Hour), time.Hour)
	pol := mustPolicy(t, "1 backup", "1 backup", "1 backup")
	pol.Lineage = func(m *repo.Manifest) (string, error) {
		if m.ID == "bad" {
			return "", errors.New("engine section is damaged")
		}
		return "cluster 1", nil
	}
	d := Plan([]*repo.Manifest{good, bad, odd}, pol, base.Add(72*time.Hour))
	v := keeps(t, d)
	if !v["odd"].Keep || !strings.Contains(v["odd"].Reason, "no retention rule") {
		t.Errorf("unknown type: %+v", v["odd"])
	}
	if !v["bad"].Keep || !strings.Contains(v["bad"].Reason, "engine section is damaged") {
		t.Errorf("unknown line: %+v", v["bad"])
	}
}

func TestLogManifestsKeepTheirChain(t *testing.T) {
	// SQL Server: a full on Sundays, a diff daily, a log every hour. Logs for 2 days,
	// one full and one diff: the logs need the chain they apply to.
	start := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC) // a Sunday
	var bs []*repo.Manifest
	var full *repo.Manifest
	for day := 0; day < 14; day++ {
		date := start.AddDate(0, 0, day)
		if date.Weekday() == time.Sunday {
			full = mk(fmt.Sprintf("full-%02d", day), repo.TypeFull, "", date.Add(time.Hour), 30*time.Minute)
			bs = append(bs, full)
		}
		bs = append(bs, mk(fmt.Sprintf("diff-%02d", day), repo.TypeDiff, full.ID, date.Add(2*time.Hour), 5*time.Minute))
		for h := 0; h < 24; h++ {
			bs = append(bs, mk(fmt.Sprintf("log-%02d-%02d", day, h), repo.TypeLog, "", date.Add(time.Duration(h)*time.Hour+30*time.Minute), time.Minute))
		}
	}
	now := start.AddDate(0, 0, 14).Add(-time.Hour) // day 13, 23:00
	d := Plan(bs, mustPolicy(t, "1 backup", "1 backup", "2d"), now)
	v := keeps(t, d)
	// The window starts on day 11 at 23:00: the chain then is full-07 and diff-11;
	// every log from diff-11's start on stays, and those before go.
	for _, id := range []string{"full-07", "diff-11", "log-11-02", "log-11-23", "log-13-22", "diff-13"} {
		if !v[id].Keep {
			t.Errorf("%s deleted: %s", id, v[id].Reason)
		}
	}
	for _, id := range []string{"full-00", "diff-10", "diff-12", "log-11-01", "log-05-05"} {
		if v[id].Keep {
			t.Errorf("%s kept: %s", id, v[id].Reason)
		}
	}
	// By count: the newest 5 logs need the newest chain and nothing older.
	d = Plan(bs, mustPolicy(t, "1 backup", "1 backup", "5 backups"), now)
	v = keeps(t, d)
	if !v["diff-13"].Keep || v["diff-12"].Keep || v["log-13-01"].Keep || !v["log-13-02"].Keep || !v["log-13-22"].Keep {
		t.Errorf("log count:\n%s", describe(d))
	}
}

func TestPolicyStrings(t *testing.T) {
	for _, c := range []struct{ full, diff, log, want string }{
		{"4w", "7d", "7d", "full 4w, diff 7d, log 7d"},
		{"2 backups", "1 backup", "", "full 2 backups, diff 1 backup, log forever"},
		{"26h", "90m", "forever", "full 26h, diff 90m, log forever"},
	} {
		if got := mustPolicy(t, c.full, c.diff, c.log).String(); got != c.want {
			t.Errorf("%q %q %q: %q, want %q", c.full, c.diff, c.log, got, c.want)
		}
	}
	if _, err := PolicyFor(plan.Retention{Diff: "sometimes"}); err == nil || !strings.Contains(err.Error(), "retention.diff") {
		t.Errorf("bad rule: %v", err)
	}
}

func TestWhereKeptBackupsStopReachingAnOlderOneStays(t *testing.T) {
	// Weekly fulls; on day 10 a restore went back to day 5 and the cluster lives on
	// a new timeline from there: the full of day 7 reaches no further than day 10.
	// An instant of day 12 is restored from the full of day 0 (its WAL follows the
	// new timeline), until the next full on the new timeline (day 14).
	base := time.Date(2026, 3, 1, 1, 0, 0, 0, time.UTC)
	f0 := mk("f0", repo.TypeFull, "", base, time.Hour)
	f7 := mk("f7", repo.TypeFull, "", base.AddDate(0, 0, 7), time.Hour)
	f14 := mk("f14", repo.TypeFull, "", base.AddDate(0, 0, 14), time.Hour)
	pol := mustPolicy(t, "8d", "1 backup", "1 backup")
	now := base.AddDate(0, 0, 16)
	// Without spans the full of day 7 restores the window's start, and that is all.
	d := Plan([]*repo.Manifest{f0, f7, f14}, pol, now)
	if v := keeps(t, d); v["f0"].Keep || !v["f7"].Keep {
		t.Fatalf("without spans:\n%s", describe(d))
	}
	pol.Spans = map[string][2]time.Time{"f7": {f7.Finished, base.AddDate(0, 0, 10)}}
	d = Plan([]*repo.Manifest{f0, f7, f14}, pol, now)
	v := keeps(t, d)
	if !v["f0"].Keep || !strings.Contains(v["f0"].Reason, "do not reach") {
		t.Fatalf("with spans:\n%s", describe(d))
	}
	if !v["f7"].Keep {
		t.Fatalf("the start of the window is restored from f7:\n%s", describe(d))
	}
}
