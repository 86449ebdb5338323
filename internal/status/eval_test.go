package status

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hartonomous/hartvault/internal/repo"
)

var t0 = time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC) // "now" in these tests

func ago(d time.Duration) time.Time { return t0.Add(-d) }

func TestEvalStale(t *testing.T) {
	for _, c := range []struct {
		name      string
		last      time.Time
		threshold time.Duration
		fires     bool
		since     time.Time
		msg       string
	}{
		{"no threshold never fires", ago(100 * 24 * time.Hour), 0, false, time.Time{}, ""},
		{"young enough", ago(25 * time.Hour), 26 * time.Hour, false, time.Time{}, ""},
		{"exactly at the threshold", ago(26 * time.Hour), 26 * time.Hour, false, time.Time{}, ""},
		{"one second over", ago(26*time.Hour + time.Second), 26 * time.Hour, true, ago(time.Second), "threshold 26h"},
		{"full 9 days old against 8d", ago(9 * 24 * time.Hour), 8 * 24 * time.Hour, true, ago(24 * time.Hour), "is 9d old"},
		{"never backed up", time.Time{}, 2 * time.Hour, true, ago(time.Hour), "no log backup yet"},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := EvalStale("db", "log", c.last, c.threshold, ago(time.Hour), t0)
			if (a != nil) != c.fires {
				t.Fatalf("fires = %v, want %v (%+v)", a != nil, c.fires, a)
			}
			if a == nil {
				return
			}
			if a.Kind != Stale || a.Source != "db" || a.Type != "log" || !a.Since.Equal(c.since) || !strings.Contains(a.Message, c.msg) {
				t.Fatalf("alert %+v: want since %v and message containing %q", a, c.since, c.msg)
			}
		})
	}
}

func run(typ, result string, started time.Time, took time.Duration, errText string) repo.Run {
	r := repo.Run{Type: typ, Result: result, Started: started, Error: errText}
	if result != repo.RunRunning && result != repo.RunInterrupted {
		r.Finished = started.Add(took)
	}
	return r
}

func TestEvalFailed(t *testing.T) {
	h := time.Hour
	for _, c := range []struct {
		name       string
		runs       []repo.Run
		lastBackup time.Time
		fires      bool
		since      time.Time
		msg        string
	}{
		{"no runs", nil, time.Time{}, false, time.Time{}, ""},
		{"last ok", []repo.Run{run("full", "failed", ago(3*h), h, "x"), run("full", "ok", ago(2*h), h, "")}, ago(2 * h), false, time.Time{}, ""},
		{"last failed", []repo.Run{run("full", "ok", ago(5*h), h, ""), run("full", "failed", ago(2*h), h, "disk full")}, ago(5 * h), true, ago(h), "disk full"},
		{"streak since the first failure", []repo.Run{run("full", "ok", ago(9*h), h, ""), run("full", "failed", ago(6*h), h, "a"),
			run("full", "failed", ago(4*h), h, "b"), run("full", "failed", ago(2*h), h, "c")}, ago(9 * h), true, ago(5 * h), "3 failed attempts"},
		{"unchanged clears", []repo.Run{run("full", "failed", ago(3*h), h, "x"), run("full", "unchanged", ago(h), time.Minute, "")}, time.Time{}, false, time.Time{}, ""},
		{"abandoned is neither", []repo.Run{run("full", "failed", ago(3*h), h, "x"), run("full", "abandoned", ago(h), time.Minute, "canceled")}, time.Time{}, true, ago(2 * h), "x"},
		{"running after a failure keeps it", []repo.Run{run("full", "failed", ago(3*h), h, "x"), run("full", "running", ago(h), 0, "")}, time.Time{}, true, ago(2 * h), "x"},
		{"other types do not count", []repo.Run{run("full", "failed", ago(3*h), h, "x"), run("diff", "ok", ago(h), h, "")}, time.Time{}, true, ago(2 * h), ""},
		{"interrupted counts", []repo.Run{run("diff", "ok", ago(3*h), h, ""), run("full", "interrupted", ago(2*h), 0, "died")}, time.Time{}, true, ago(2 * h), "was interrupted"},
		{"a newer committed backup clears it", []repo.Run{run("full", "failed", ago(3*h), h, "x")}, ago(h), false, time.Time{}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := EvalFailed("db", "full", c.runs, c.lastBackup)
			if (a != nil) != c.fires {
				t.Fatalf("fires = %v, want %v (%+v)", a != nil, c.fires, a)
			}
			if a == nil {
				return
			}
			if a.Kind != Failed || !a.Since.Equal(c.since) || !strings.Contains(a.Message, c.msg) {
				t.Fatalf("alert %+v: want since %v and message containing %q", a, c.since, c.msg)
			}
		})
	}
}

func TestEvalSlow(t *testing.T) {
	m := time.Minute
	last := func(took time.Duration) *BackupRef {
		return &BackupRef{ID: "b", Type: "full", Started: ago(5 * time.Hour), Finished: ago(5 * time.Hour).Add(took)}
	}
	for _, c := range []struct {
		name                 string
		running              *RunRef
		last                 *BackupRef
		planMax, avg, before time.Duration
		fires                bool
		since                time.Time
		msg                  string
	}{
		{"nothing known", &RunRef{Started: ago(10 * time.Hour)}, nil, 0, 0, 0, false, time.Time{}, ""},
		{"running within 3x average", &RunRef{Started: ago(29 * m)}, last(10 * m), 0, 10 * m, 10 * m, false, time.Time{}, ""},
		{"running past 3x average", &RunRef{Started: ago(31 * m)}, last(10 * m), 0, 10 * m, 10 * m, true, ago(m), "3 times its 7-day average"},
		{"running past max_duration", &RunRef{Started: ago(2 * time.Hour)}, nil, time.Hour, 0, 0, true, ago(time.Hour), "max_duration 1h"},
		{"max_duration overrides the average", &RunRef{Started: ago(40 * m)}, last(10 * m), time.Hour, 10 * m, 10 * m, false, time.Time{}, ""},
		{"last took too long", nil, last(45 * m), 0, 20 * m, 10 * m, true, ago(5 * time.Hour).Add(30 * m), "took 45m"},
		{"last within its previous average", nil, last(25 * m), 0, 15 * m, 10 * m, false, time.Time{}, ""},
		{"no previous backups: no default", nil, last(5 * time.Hour), 0, 5 * time.Hour, 0, false, time.Time{}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := EvalSlow("db", "full", c.running, c.last, c.planMax, c.avg, c.before, t0)
			if (a != nil) != c.fires {
				t.Fatalf("fires = %v, want %v (%+v)", a != nil, c.fires, a)
			}
			if a == nil {
				return
			}
			if a.Kind != Slow || !a.Since.Equal(c.since) || !strings.Contains(a.Message, c.msg) {
				t.Fatalf("alert %+v: want since %v and message containing %q", a, c.since, c.msg)
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	h := time.Hour
	b := func(id, typ string, finishedAgo, took time.Duration, bytes, stored int64) BackupRef {
		f := ago(finishedAgo)
		return BackupRef{ID: id, Type: typ, Started: f.Add(-took), Finished: f, Bytes: bytes, StoredBytes: stored}
	}
	backups := []BackupRef{
		b("f0", "full", 10*24*h, 4*h, 9000, 900), // outside the 7 days
		b("f1", "full", 6*24*h, 2*h, 1000, 100),
		b("d1", "diff", 5*24*h, 10*time.Minute, 50, 5),
		b("f2", "full", 24*h, 1*h, 3000, 300),
	}
	runs := []repo.Run{
		run("full", "ok", ago(6*24*h+2*h), 2*h, ""),
		run("full", "failed", ago(3*24*h), h, "boom"),
		run("full", "failed", ago(8*24*h), h, "old"), // outside the 7 days (listed out of order on purpose)
		run("full", "ok", ago(25*h), h, ""),
		run("full", "abandoned", ago(3*h), h, "canceled"),
		run("full", "running", ago(30*time.Minute), 0, ""),
	}
	ts := Summarize("full", backups, runs, t0)
	if ts.Count != 3 || ts.Last == nil || ts.Last.ID != "f2" || !ts.LastSuccess.Equal(ago(24*h)) || *ts.AgeSeconds != (24*h).Seconds() {
		t.Fatalf("last: %+v", ts)
	}
	if ts.Last7d.Count != 2 || ts.Last7d.DurationSeconds != (90*time.Minute).Seconds() || ts.Last7d.Bytes != 2000 || ts.Last7d.StoredBytes != 200 {
		t.Fatalf("7-day averages: %+v", ts.Last7d)
	}
	if ts.Failures7d != 1 {
		t.Fatalf("failures in 7 days: %d, want 1", ts.Failures7d)
	}
	if ts.Running == nil || !ts.Running.Started.Equal(ago(30*time.Minute)) {
		t.Fatalf("running: %+v", ts.Running)
	}
	if ts.LastAttempt == nil || ts.LastAttempt.Result != "ok" {
		t.Fatalf("last attempt (abandoned and running do not count): %+v", ts.LastAttempt)
	}
	if d := Summarize("diff", backups, runs, t0); d.Count != 1 || d.Last.ID != "d1" || d.LastAttempt != nil {
		t.Fatalf("diff: %+v", d)
	}
	// A newer unchanged check makes the last backup current as of the check.
	checked := append(slices.Clone(runs), run("full", "unchanged", ago(2*h), time.Minute, ""))
	if c := Summarize("full", backups, checked, t0); !c.LastSuccess.Equal(ago(2*h-time.Minute)) || c.Last.ID != "f2" ||
		*c.AgeSeconds != (2*h-time.Minute).Seconds() {
		t.Fatalf("after an unchanged check: last success %v, age %v", c.LastSuccess, *c.AgeSeconds)
	}
	if l := Summarize("log", backups, nil, t0); l.Count != 0 || l.Last != nil || l.AgeSeconds != nil || l.Alerts == nil {
		t.Fatalf("log: %+v", l)
	}
	if avg := AverageDuration("full", backups, "f2", t0); avg != 2*h {
		t.Fatalf("average without f2: %v", avg)
	}
	w := PointsWindow(backups)
	if w.Points != 4 || !w.Earliest.Equal(ago(10*24*h)) || !w.Latest.Equal(ago(24*h)) || w.Continuous {
		t.Fatalf("points window: %+v", w)
	}
}

func TestDiff(t *testing.T) {
	a := Alert{Source: "s", Type: "full", Kind: Stale}
	b := Alert{Source: "s", Type: "full", Kind: Failed}
	c := Alert{Source: "t", Type: "log", Kind: Stale, Message: "changed message, same alert"}
	raised, cleared := Diff([]Alert{a, c}, []Alert{b, c})
	if len(raised) != 1 || raised[0].Key() != b.Key() || len(cleared) != 1 || cleared[0].Key() != a.Key() {
		t.Fatalf("raised %v cleared %v", raised, cleared)
	}
	if r, c := Diff(nil, nil); r != nil || c != nil {
		t.Fatal("empty diff")
	}
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		8 * 24 * time.Hour: "8d", 50 * time.Hour: "2d2h", 26 * time.Hour: "26h", 90 * time.Minute: "1h30m",
		45 * time.Second: "45s", 61 * time.Second: "1m1s", 1500 * time.Millisecond: "1s",
	} {
		if got := FormatDuration(d); got != want {
			t.Errorf("FormatDuration(%v) = %q, want %q", d, got, want)
		}
	}
}
