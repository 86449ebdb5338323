package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/hartonomous/hartvault/internal/plan"
	"github.com/hartonomous/hartvault/internal/status"
)

// sampleReport is a status report with a bit of everything: a PostgreSQL source
// with fulls, a diff, WAL and a running backup; a file set with a failure; alerts;
// a replica behind.
func sampleReport(now time.Time) *status.Report {
	h := time.Hour
	b := func(id, typ string, finished time.Time, took time.Duration) status.BackupRef {
		return status.BackupRef{ID: id, Type: typ, Started: finished.Add(-took), Finished: finished, Bytes: 2 << 30, StoredBytes: 100 << 20}
	}
	age := func(t time.Time) *float64 { v := now.Sub(t).Seconds(); return &v }
	full := b("20260301T010000Z-full-aaaa", "full", now.Add(-35*h), 7*time.Minute)
	diff := b("20260302T020000Z-diff-bbbb", "diff", now.Add(-10*h), time.Minute)
	stale := status.Alert{Source: "assemblies", Type: "full", Kind: status.Failed, Message: "the last full backup of assemblies failed: scan: permission denied", Since: now.Add(-2 * h)}
	return &status.Report{Generated: now, Repository: "file:///var/lib/hartvault", Alerts: []status.Alert{stale},
		Sources: []status.SourceStatus{
			{Name: "hartonomous", Kind: "postgres",
				Types: []status.TypeStatus{
					{Type: "full", Schedule: "0 1 * * SUN", LastSuccess: full.Finished, Last: &full, AgeSeconds: age(full.Finished),
						Last7d: status.Averages{Count: 1, DurationSeconds: 420, Bytes: full.Bytes, StoredBytes: full.StoredBytes}, Count: 3,
						StaleAfterSeconds: (8 * 24 * h).Seconds(), MaxDurationSeconds: 1260, Alerts: []status.Alert{},
						Running: &status.RunRef{Type: "full", Started: now.Add(-5 * time.Minute), Result: "running"}},
					{Type: "diff", Schedule: "0 2 * * *", LastSuccess: diff.Finished, Last: &diff, AgeSeconds: age(diff.Finished),
						Last7d: status.Averages{Count: 1, DurationSeconds: 60}, Count: 1, Alerts: []status.Alert{}},
					{Type: "log", Schedule: "continuous", LastSuccess: now.Add(-2 * time.Second), AgeSeconds: age(now.Add(-2 * time.Second)),
						StaleAfterSeconds: 7200, Alerts: []status.Alert{}},
				},
				Restorable: status.RestoreWindow{Earliest: full.Finished, Latest: now.Add(-2 * time.Second), Continuous: true, Points: 2},
				Replicas:   []status.ReplicaStatus{{URL: "azblob://offsite", Missing: 1, MissingIDs: []string{diff.ID}, BehindSince: diff.Finished, LastError: "timeout"}},
				Alerts:     []status.Alert{},
				Timeline: status.Timeline{From: now.Add(-14 * 24 * h), To: now, Backups: []status.BackupRef{full, diff}, Failures: []status.RunRef{},
					Log: []status.Span{{From: full.Finished, To: now.Add(-2 * time.Second)}}}},
			{Name: "assemblies", Kind: "files",
				Types: []status.TypeStatus{{Type: "full", Schedule: "on-change", Alerts: []status.Alert{stale},
					LastAttempt: &status.RunRef{Type: "full", Started: now.Add(-2 * h), Finished: now.Add(-2 * h), Result: "failed", Error: "scan: permission denied"}}},
				Replicas: []status.ReplicaStatus{}, Alerts: []status.Alert{stale},
				Timeline: status.Timeline{From: now.Add(-14 * 24 * h), To: now, Backups: []status.BackupRef{}, Log: []status.Span{},
					Failures: []status.RunRef{{Type: "full", Started: now.Add(-2 * h), Result: "failed", Error: "scan: permission denied"}}}},
		}}
}

func newHTTPAgent(t *testing.T, now time.Time) *Agent {
	t.Helper()
	p := &plan.Plan{Location: time.UTC, Sources: []plan.Source{
		{Name: "hartonomous", Kind: plan.KindPostgres, Schedule: plan.Schedule{Full: "0 1 * * SUN", Diff: "0 2 * * *", Log: plan.Continuous}},
		{Name: "assemblies", Kind: plan.KindFiles, Schedule: plan.Schedule{Full: plan.OnChange}},
	}}
	a, err := New(Config{Plan: p, Clock: newFakeClock(now), Backup: func(context.Context, Job) Result { return Result{} },
		Stream: func(ctx context.Context, _ string) error { <-ctx.Done(); return nil }})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func get(t *testing.T, url string) (int, http.Header, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func TestHTTPEndpoints(t *testing.T) {
	now := time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)
	a := newHTTPAgent(t, now)
	srv := httptest.NewServer(a.Handler())
	defer srv.Close()

	// Before the first evaluation: /api/status says so.
	if code, _, body := get(t, srv.URL+"/api/status"); code != http.StatusServiceUnavailable || !strings.Contains(body, "not evaluated yet") {
		t.Fatalf("/api/status before any evaluation: %d %s", code, body)
	}
	rep := sampleReport(now)
	a.mu.Lock()
	a.report, a.reportAt = rep, now
	a.mu.Unlock()

	code, hdr, body := get(t, srv.URL+"/api/status")
	var want bytes.Buffer
	rep.WriteJSON(&want)
	if code != 200 || hdr.Get("Content-Type") != "application/json" || body != want.String() {
		t.Fatalf("/api/status: %d %s\n%s", code, hdr.Get("Content-Type"), body)
	}
	code, _, body = get(t, srv.URL+"/healthz")
	var hz health
	if code != 200 || json.Unmarshal([]byte(body), &hz) != nil || hz.Status != "ok" || hz.Alerts != 1 {
		t.Fatalf("/healthz: %d %s", code, body)
	}
	code, hdr, body = get(t, srv.URL+"/")
	if code != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), "text/html") || !strings.Contains(body, `id="initial-status"`) ||
		!strings.Contains(body, `"name":"hartonomous"`) || strings.Contains(body, statusPlaceholder) {
		t.Fatalf("/: %d\n%s", code, body)
	}
	for _, f := range []string{"app.js", "style.css"} {
		if code, _, body := get(t, srv.URL+"/static/"+f); code != 200 || len(body) < 500 {
			t.Fatalf("/static/%s: %d (%d bytes)", f, code, len(body))
		}
	}
	if code, _, _ := get(t, srv.URL+"/nothing"); code != 404 {
		t.Fatalf("/nothing: %d", code)
	}
	// Nothing the page loads comes from elsewhere (no CDN).
	for _, f := range []string{"index.html", "app.js", "style.css"} {
		b, _ := webFiles.ReadFile("web/" + f)
		if strings.Contains(string(b), "//cdn") || strings.Contains(string(b), "https://") {
			t.Fatalf("web/%s refers to another site", f)
		}
	}
}

func TestMetrics(t *testing.T) {
	now := time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)
	a := newHTTPAgent(t, now)
	a.metrics.attempt(Job{Source: "hartonomous", Type: "full"}, OutcomeOK)
	a.metrics.attempt(Job{Source: "assemblies", Type: "full"}, OutcomeFailed)
	a.mu.Lock()
	a.report = sampleReport(now)
	a.mu.Unlock()

	problems, err := testutil.GatherAndLint(a.metrics.Registry)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	srv := httptest.NewServer(a.Handler())
	defer srv.Close()
	_, _, body := get(t, srv.URL+"/metrics")
	for _, want := range []string{
		`hartvault_last_success_timestamp_seconds{source="hartonomous",type="full"} 1.7723268e+09`,
		`hartvault_last_backup_duration_seconds{source="hartonomous",type="full"} 420`,
		`hartvault_last_backup_read_bytes{source="hartonomous",type="full"} 2.147483648e+09`,
		`hartvault_last_backup_stored_bytes{source="hartonomous",type="full"} 1.048576e+08`,
		`hartvault_backup_running_seconds{source="hartonomous",type="full"} 300`,
		`hartvault_restorable_window_end_timestamp_seconds{source="hartonomous"} 1.772452798e+09`,
		`hartvault_wal_lag_seconds{source="hartonomous",type="log"} 2`,
		`hartvault_backup_failures_total{source="assemblies",type="full"} 1`,
		`hartvault_backup_failures_total{source="hartonomous",type="diff"} 0`,
		`hartvault_last_attempt_failed{source="assemblies",type="full"} 1`,
		`hartvault_alert_firing{kind="failed",source="assemblies",type="full"} 1`,
		`hartvault_replica_missing_backups{replica="azblob://offsite",source="hartonomous"} 1`,
		`hartvault_backup_attempts_total{result="ok",source="hartonomous",type="full"} 1`,
	} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	promtoolCheck(t, body, "check", "metrics")
}

// promtoolCheck runs promtool with input on stdin; promtool must be installed
// (scripts/test.sh installs Debian's prometheus package, which has it).
func promtoolCheck(t *testing.T, input string, args ...string) {
	t.Helper()
	bin := Promtool(t)
	cmd := exec.Command(bin, args...)
	cmd.Stdin = strings.NewReader(input)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// Promtool finds promtool on PATH or in /usr/bin, or fails the test saying how to
// get it.
func Promtool(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("promtool"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/bin/promtool"); err == nil {
		return "/usr/bin/promtool"
	}
	t.Fatal("promtool not found: run scripts/test.sh (it installs the Debian package prometheus, which ships promtool), or install it")
	return ""
}
