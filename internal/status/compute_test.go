package status_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hartonomous/hartvault/internal/engine"
	"github.com/hartonomous/hartvault/internal/engine/files"
	"github.com/hartonomous/hartvault/internal/plan"
	"github.com/hartonomous/hartvault/internal/repo"
	"github.com/hartonomous/hartvault/internal/status"
)

// TestCompute runs real file-set backups into a local repository with a replica
// that cannot be written, then checks the report at several instants.
func TestCompute(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	data := filepath.Join(dir, "assemblies")
	os.MkdirAll(data, 0o755)
	os.WriteFile(filepath.Join(data, "a.dll"), []byte("version 1"), 0o644)
	// The replica's directory lies under a regular file: it can never be created.
	os.WriteFile(filepath.Join(dir, "blocker"), []byte("x"), 0o644)
	replica := "file://" + filepath.ToSlash(filepath.Join(dir, "blocker", "replica"))

	now := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	opts := repo.Options{
		URL:      "file://" + filepath.ToSlash(filepath.Join(dir, "repo")),
		Replicas: []string{replica},
		Keys:     repo.Keys{Passphrase: func() (string, error) { return "pass", nil }}, WorkFactor: 10,
		Now: func() time.Time { return now },
	}
	if _, err := repo.Init(ctx, repo.Options{URL: opts.URL, Keys: opts.Keys, WorkFactor: 10}); err != nil {
		t.Fatal(err)
	}
	r, err := repo.Open(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	src := plan.Source{Name: "assemblies", Kind: plan.KindFiles, Paths: []string{data},
		Schedule: plan.Schedule{Full: "@daily"}, Alerts: plan.Alerts{Full: plan.Duration(26 * time.Hour)}}
	p := &plan.Plan{Sources: []plan.Source{src}, Repository: plan.Repository{Replicas: []string{replica}}}
	eng := files.New(src)
	backup := func(took time.Duration) (*engine.Result, error) {
		t.Helper()
		start := now
		return engine.RunBackup(ctx, eng, engine.BackupRequest{Repo: r, Type: "full",
			Progress: clockProgress(func() { now = start.Add(took) })})
	}
	compute := func() *status.Report {
		t.Helper()
		rep, err := status.Compute(ctx, status.Options{Plan: p, Repo: r, Now: now,
			Engine: func(s plan.Source) (engine.Engine, error) { return files.New(s), nil }})
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}

	// Before any backup: the full is stale ("no backup yet").
	rep := compute()
	if len(rep.Alerts) != 1 || rep.Alerts[0].Kind != status.Stale || !strings.Contains(rep.Alerts[0].Message, "no full backup yet") {
		t.Fatalf("before any backup: %+v", rep.Alerts)
	}

	if _, err := backup(10 * time.Minute); err != nil {
		t.Fatal(err)
	}
	first := now
	now = now.Add(time.Hour)
	rep = compute()
	s := rep.Source("assemblies")
	if len(rep.Alerts) != 0 || s == nil || len(s.Types) != 1 {
		t.Fatalf("after a backup: alerts %+v, source %+v", rep.Alerts, s)
	}
	full := s.Types[0]
	if full.Type != "full" || full.Schedule != "@daily" || full.Count != 1 || !full.LastSuccess.Equal(first) ||
		*full.AgeSeconds != 3600 || full.Last7d.DurationSeconds != 600 || full.Last7d.Bytes != 9 || full.StaleAfterSeconds != 26*3600 ||
		full.MaxDurationSeconds != 1800 || full.LastAttempt == nil || full.LastAttempt.Result != repo.RunOK {
		t.Fatalf("full after one backup: %+v", full)
	}
	if w := s.Restorable; w.Points != 1 || !w.Latest.Equal(first) || w.Continuous {
		t.Fatalf("window: %+v", w)
	}
	if len(s.Replicas) != 1 || s.Replicas[0].Missing != 1 || !s.Replicas[0].BehindSince.Equal(first) || s.Replicas[0].LastError == "" {
		t.Fatalf("replica: %+v", s.Replicas)
	}
	if len(s.Timeline.Backups) != 1 {
		t.Fatalf("timeline: %+v", s.Timeline)
	}

	// A failed attempt: the source's directory is gone.
	os.Rename(data, data+".moved")
	if _, err := backup(time.Minute); err == nil {
		t.Fatal("backup of a missing directory succeeded")
	}
	failedAt := now
	os.Rename(data+".moved", data)
	now = now.Add(26 * time.Hour)
	rep = compute()
	var kinds []string
	for _, a := range rep.Alerts {
		kinds = append(kinds, a.Kind)
	}
	if strings.Join(kinds, ",") != "failed,stale" {
		t.Fatalf("after a failure and 27 hours: %+v", rep.Alerts)
	}
	if !rep.Alerts[0].Since.Equal(failedAt) || !rep.Alerts[1].Since.Equal(first.Add(26*time.Hour)) {
		t.Fatalf("since: %+v", rep.Alerts)
	}
	if s := rep.Source("assemblies"); len(s.Timeline.Failures) != 1 || s.Types[0].Failures7d != 1 {
		t.Fatalf("failures: %+v", s)
	}

	// A slow success (4 times the previous one) clears failed and stale, raises slow.
	os.WriteFile(filepath.Join(data, "a.dll"), []byte("version 2"), 0o644)
	if _, err := backup(40 * time.Minute); err != nil {
		t.Fatal(err)
	}
	rep = compute()
	if len(rep.Alerts) != 1 || rep.Alerts[0].Kind != status.Slow || !strings.Contains(rep.Alerts[0].Message, "took 40m") {
		t.Fatalf("after a slow success: %+v", rep.Alerts)
	}

	// The JSON form round-trips and keeps empty lists as lists.
	raw, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	json.Unmarshal(raw, &back)
	if _, ok := back["alerts"].([]any); !ok {
		t.Fatalf("alerts is not a list in %s", raw)
	}
}

// clockProgress moves the injected clock while a backup writes: the backup takes
// the chosen time between its start and its commit.
type clockProgress func()

func (c clockProgress) SetTotal(int64) {}
func (c clockProgress) Add(int64)      { c() }
