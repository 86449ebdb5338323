package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hartonomous/hartvault/internal/storage"
)

func TestRunLog(t *testing.T) {
	ctx := context.Background()
	r := newRepo(t)
	now := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	r.opts.Now = func() time.Time { return now }

	// A successful attempt: "running" while it runs, then ok with the backup.
	lock, err := r.Lock(ctx, "s", "backup")
	if err != nil {
		t.Fatal(err)
	}
	rec := r.StartRun(ctx, "s", TypeFull, lock)
	runs, err := r.Runs(ctx, "s", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 1 || runs[0].Result != RunRunning || runs[0].Type != TypeFull || !runs[0].Started.Equal(now) {
		t.Fatalf("while running: %+v", runs)
	}
	now = now.Add(90 * time.Second)
	m := &Manifest{ID: "20260301T100000Z-full-abcd", Type: TypeFull, Bytes: 1000, StoredBytes: 300}
	got := rec.Finish(ctx, Outcome{Manifest: m, Replicas: []ReplicaReport{{URL: "file:///r1", Copied: []string{m.ID}},
		{URL: "file:///r2", Err: errors.New("replica down: password=hunter2 refused")}}})
	lock.Release(ctx)
	if got.Result != RunOK || got.Backup != m.ID || got.Duration() != 90*time.Second {
		t.Fatalf("finished: %+v", got)
	}
	runs, _ = r.Runs(ctx, "s", time.Time{})
	if len(runs) != 1 || runs[0].Result != RunOK || runs[0].Bytes != 1000 || runs[0].StoredBytes != 300 || runs[0].Key != got.Key {
		t.Fatalf("after finish, one record rewritten: %+v", runs)
	}
	if len(runs[0].Replicas) != 2 || runs[0].Replicas[0].Copied != 1 || !strings.Contains(runs[0].Replicas[1].Error, "replica down") ||
		strings.Contains(runs[0].Replicas[1].Error, "hunter2") {
		t.Fatalf("replicas: %+v", runs[0].Replicas)
	}
	// Encrypted at rest in passphrase mode, like manifests.
	raw, err := r.store.ReadAll(ctx, got.Key)
	if err != nil || !bytes.HasPrefix(raw, ageMagic) {
		t.Fatalf("run record is not encrypted: %v %.20q", err, raw)
	}

	// A failure, an unchanged check and a cancelled attempt.
	now = now.Add(time.Hour)
	lock, _ = r.Lock(ctx, "s", "backup")
	r.StartRun(ctx, "s", TypeDiff, lock).Finish(ctx, Outcome{Err: fmt.Errorf("read /data: AccountKey=abc123; permission denied")})
	now = now.Add(time.Minute)
	r.StartRun(ctx, "s", TypeFull, lock).Finish(ctx, Outcome{Err: errors.New("s is unchanged"), Unchanged: true})
	now = now.Add(time.Minute)
	r.StartRun(ctx, "s", TypeFull, lock).Finish(ctx, Outcome{Err: fmt.Errorf("backup: %w", context.Canceled)})
	lock.Release(ctx)
	runs, _ = r.Runs(ctx, "s", time.Time{})
	var results []string
	for _, run := range runs {
		results = append(results, run.Type+":"+run.Result)
	}
	if strings.Join(results, " ") != "full:ok diff:failed full:unchanged full:abandoned" {
		t.Fatalf("results: %v", results)
	}
	if e := runs[1].Error; !strings.Contains(e, "permission denied") || strings.Contains(e, "abc123") {
		t.Fatalf("error text %q: want the cause without the key", e)
	}

	// since filters by start time.
	since, _ := r.Runs(ctx, "s", now.Add(-time.Minute))
	if len(since) != 2 {
		t.Fatalf("runs since %v: %d, want 2", now.Add(-time.Minute), len(since))
	}
	if other, _ := r.Runs(ctx, "other", time.Time{}); len(other) != 0 {
		t.Fatalf("another source's runs: %+v", other)
	}

	// A "running" record whose process died (its lock is gone) reads as interrupted;
	// one whose lock is still held reads as running.
	now = now.Add(time.Hour)
	lock, _ = r.Lock(ctx, "s", "backup")
	r.StartRun(ctx, "s", TypeFull, lock)
	runs, _ = r.Runs(ctx, "s", now)
	if len(runs) != 1 || runs[0].Result != RunRunning {
		t.Fatalf("live attempt: %+v", runs)
	}
	lock.Release(ctx)
	runs, _ = r.Runs(ctx, "s", now)
	if len(runs) != 1 || runs[0].Result != RunInterrupted {
		t.Fatalf("attempt whose lock is gone: %+v", runs)
	}

	// Cleanup removes what started before the cut (the one checked record stays).
	n, err := r.CleanRuns(ctx, "s", now)
	if err != nil || n != 3 {
		t.Fatalf("CleanRuns: %d %v, want 3", n, err)
	}
	runs, _ = r.Runs(ctx, "s", time.Time{})
	if len(runs) != 2 || runs[0].Result != RunUnchanged {
		t.Fatalf("after cleanup: %+v", runs)
	}

	// Frequent unchanged checks keep one record per type: the newest.
	for i := 0; i < 5; i++ {
		now = now.Add(time.Minute)
		r.StartRun(ctx, "s", TypeFull, nil).Finish(ctx, Outcome{Unchanged: true, Err: errors.New("unchanged")})
	}
	var keys []string
	r.store.List(ctx, "runs/s/", func(o storage.ObjectInfo) error { keys = append(keys, o.Key); return nil })
	if len(keys) != 2 {
		t.Fatalf("after 5 more unchanged checks: %v", keys)
	}
	runs, _ = r.Runs(ctx, "s", now)
	if len(runs) != 1 || runs[0].Result != RunUnchanged || !runs[0].Started.Equal(now) {
		t.Fatalf("newest check: %+v", runs)
	}
}

func TestRunLogCleanedAfterSuccess(t *testing.T) {
	ctx := context.Background()
	r := newRepo(t)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r.opts.Now = func() time.Time { return now }
	for i := 0; i < 3; i++ {
		r.StartRun(ctx, "s", TypeFull, nil).Finish(ctx, Outcome{Err: errors.New("boom")})
		now = now.Add(20 * 24 * time.Hour)
	}
	// Now at day 60: a success removes records older than RunLogKeep (days 0 and 20).
	r.StartRun(ctx, "s", TypeFull, nil).Finish(ctx, Outcome{Manifest: &Manifest{ID: "x", Type: TypeFull}})
	runs, _ := r.Runs(ctx, "s", time.Time{})
	if len(runs) != 2 || !runs[0].Started.Equal(time.Date(2026, 2, 10, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("after a success 60 days on: %+v", runs)
	}
}

func TestScrubError(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"connect: password=s3cret host=x", "connect: password=[redacted] host=x"},
		{"DefaultEndpointsProtocol=https;AccountName=a;AccountKey=Zm9v==;EndpointSuffix=x", "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=[redacted];EndpointSuffix=x"},
		{"GET https://a.blob/c?sv=1&sig=abc%2F&se=2 failed", "GET https://a.blob/c?sv=1&sig=[redacted]&se=2 failed"},
		{"line one\n  line two", "line one line two"},
		{"pwd: 'a b c' rest", "pwd=[redacted] rest"},
	} {
		if got := ScrubError(c.in); got != c.want {
			t.Errorf("ScrubError(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	if got := ScrubError(strings.Repeat("x", 3000)); len(got) > 2010 {
		t.Errorf("long error kept %d bytes", len(got))
	}
}

func TestAgentState(t *testing.T) {
	ctx := context.Background()
	r := newRepo(t)
	var got []string
	if found, err := r.ReadAgentState(ctx, "host1", &got); found || err != nil {
		t.Fatalf("before any write: %v %v", found, err)
	}
	if err := r.WriteAgentState(ctx, "host1", []string{"pg/diff/stale"}); err != nil {
		t.Fatal(err)
	}
	if found, err := r.ReadAgentState(ctx, "host1", &got); !found || err != nil || len(got) != 1 || got[0] != "pg/diff/stale" {
		t.Fatalf("read back: %v %v %v", found, err, got)
	}
	if found, _ := r.ReadAgentState(ctx, "host2", &got); found {
		t.Fatal("another host's state")
	}
}
