package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hartonomous/hartvault/internal/repo"
	"github.com/hartonomous/hartvault/internal/testutil/pgtest"
)

// TestPostgresTimelineSwitch: PITR and promote (a new timeline), more writes and a
// backup on it, then PITR to a point on the new timeline, and to one reached only by
// crossing the switch from the old timeline's backup.
func TestPostgresTimelineSwitch(t *testing.T) {
	p := newPGWorld(t, pgOpts{archive: true})
	c := p.pg
	p.ok("init")
	writes(c, 1, 1000)
	f1 := p.ok("backup", "pg").lastLine()
	writes(c, 2, 1000)
	t1 := mark()
	dump1 := comparable(c.DumpAll())
	writes(c, 3, 1000)
	abandoned := p.ok("backup", "pg").lastLine() // on timeline 1, after the instant restored to below
	archived(t, c)
	c.Stop() // the disaster: the cluster is lost after batch 3

	got, r := p.restoreAndDumpArchiving("--to", t1.Format(time.RFC3339Nano))
	if got != dump1 {
		t.Fatalf("PITR to %v: %s", t1, firstDiff(dump1, got))
	}
	if tl := r.SQL("postgres", "SELECT timeline_id FROM pg_control_checkpoint()"); tl != "2" {
		t.Fatalf("restored cluster is on timeline %s, want 2", tl)
	}
	// The restored cluster is the system now: point the plan at it. It archives
	// into the same repository (its archive_command came with the backup).
	p.writePGPlan("", r.DataDir, r.Conninfo("postgres"))
	writes(r, 4, 1000)
	t2 := mark()
	dump2 := comparable(r.DumpAll())
	// A diff on timeline 2 is based on the full timeline 2 descends from, not on the
	// newer full of the abandoned timeline.
	d := p.ok("backup", "pg", "--type", "diff").lastLine()
	for _, b := range p.list() {
		if b.ID == d && (b.Parent == nil || *b.Parent != f1) {
			t.Fatalf("diff on timeline 2 based on %v, want %s (not %s)", b.Parent, f1, abandoned)
		}
	}
	writes(r, 5, 1000)
	f2 := p.ok("backup", "pg").lastLine()
	writes(r, 6, 1000)
	t3 := mark()
	dump3 := comparable(r.DumpAll())
	writes(r, 7, 1000)
	archived(t, r)
	if !strings.Contains(p.ok("list", "pg").stdout, f2+": PostgreSQL 15, system") || !strings.Contains(p.ok("list", "pg").stdout, "timeline 2") {
		t.Fatal("list does not show the backup on timeline 2")
	}

	// On the new timeline, from its own backup.
	plan3 := p.ok("restore", "pg", "--target", filepath.Join(p.work, "x"), "--to", t3.Format(time.RFC3339Nano), "--plan")
	if !strings.Contains(plan3.stdout, f2) {
		t.Fatalf("plan to %v should start from %s:\n%s", t3, f2, plan3.stdout)
	}
	got3, _ := p.restoreAndDump("--to", t3.Format(time.RFC3339Nano))
	if got3 != dump3 {
		t.Fatalf("PITR to %v on timeline 2: %s", t3, firstDiff(dump3, got3))
	}
	// Across the switch: the old timeline's backup, its WAL, then timeline 2's.
	plan2 := p.ok("restore", "pg", "--target", filepath.Join(p.work, "x"), "--to", t2.Format(time.RFC3339Nano), "--plan")
	if !strings.Contains(plan2.stdout, f1) || !strings.Contains(plan2.stdout, "timelines 1 -> 2") {
		t.Fatalf("plan to %v should start from %s and cross to timeline 2:\n%s", t2, f1, plan2.stdout)
	}
	got2, r2 := p.restoreAndDump("--to", t2.Format(time.RFC3339Nano))
	if got2 != dump2 {
		t.Fatalf("PITR to %v across the switch: %s", t2, firstDiff(dump2, got2))
	}
	r2.AmCheck()
	// Latest follows the line of history that went on, not the abandoned backup.
	live := comparable(r.DumpAll())
	// (f2 is a backup of a restored cluster: the recovery settings of that restore
	// are in it and must not stop this one early.)
	gotL, _ := p.restoreAndDump("--to", "latest")
	if gotL != live {
		t.Fatalf("restore to latest after the switch: %s", firstDiff(live, gotL))
	}
}

// TestPostgresKillMidBackup kills full backups at several moments: no backup becomes
// visible, the repository and WAL archive verify, and the next backup succeeds.
func TestPostgresKillMidBackup(t *testing.T) {
	p := newPGWorld(t, pgOpts{archive: true})
	c := p.pg
	p.ok("init")
	c.Pgbench("-i", "-s", "8", "-q")
	committed := 0
	for _, delay := range []time.Duration{150 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, 1500 * time.Millisecond} {
		cmd := p.cmd("backup", "pg")
		var out bytes.Buffer
		cmd.Stdout = &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(delay)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		n := len(p.list())
		switch {
		case n == committed+1 && strings.Contains(out.String(), "full backup of"):
			committed++
		case n != committed:
			t.Fatalf("kill after %v: %d backups visible, want %d", delay, n, committed)
		}
		// The server is not left in backup mode: the killed session ended it.
		c.Pgbench("-t", "200", "-c", "2")
	}
	p.ok("backup", "pg")
	archived(t, c)
	p.ok("verify")
	live := comparable(c.DumpAll())
	got, _ := p.restoreAndDump("--to", "latest")
	if got != live {
		t.Fatalf("restore to latest after the kills: %s", firstDiff(live, got))
	}
}

// TestPostgresPageDamage flips one byte inside a stored data page: verify names the
// relation file and block, and the object.
func TestPostgresPageDamage(t *testing.T) {
	owner, _ := pgtest.CurrentOwner()
	p := newPGWorld(t, pgOpts{archive: true, checksums: true})
	// A repository without compression or encryption, so the page can be damaged in
	// place and still be decoded around the damage.
	y, _ := os.ReadFile(p.plan)
	y = bytes.Replace(y, []byte("  passphrase_env: HARTVAULT_PASSPHRASE\n"), []byte("  encryption: none\n  compression: none\n"), 1)
	os.WriteFile(p.plan, y, 0o644)
	c := p.pg
	p.ok("init")
	writes(c, 1, 5000)
	c.SQL("postgres", "CHECKPOINT")
	id := p.ok("backup", "pg").lastLine()
	p.ok("verify")
	rel := c.SQL("postgres", "SELECT pg_relation_filepath('accounts')")

	r, err := repo.Open(context.Background(), repo.Options{URL: p.url, Keys: repo.Keys{None: true}})
	if err != nil {
		t.Fatal(err)
	}
	m, err := r.Manifest(context.Background(), "pg", id)
	if err != nil {
		t.Fatal(err)
	}
	var obj string
	var at int64
	for _, f := range m.Files {
		if f.Path == rel {
			if len(f.Extents) == 0 || f.Extents[0].Length < 3*8192 {
				t.Fatalf("%s: extents %+v", rel, f.Extents)
			}
			obj, at = m.Objects[f.Extents[0].Object].Key, f.Extents[0].At
		}
	}
	if obj == "" {
		t.Fatalf("%s not in the backup", rel)
	}
	path := filepath.Join(strings.TrimPrefix(p.url, "file://"), obj)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[at+8192+300] ^= 0x10 // inside block 1 of the table
	os.WriteFile(path, b, 0o600)
	os.Chown(path, owner.UID, owner.GID)

	res := p.fails(1, "damaged", "verify")
	for _, want := range []string{rel + " block 1", "page checksum", "object " + obj} {
		if !strings.Contains(res.stdout, want) {
			t.Fatalf("verify output lacks %q:\n%s", want, res.stdout)
		}
	}
}

// TestPostgresWALStream: WAL comes by streaming replication instead of
// archive_command; commits become restorable seconds after they happen.
func TestPostgresWALStream(t *testing.T) {
	p := newPGWorld(t, pgOpts{archive: false})
	c := p.pg
	p.ok("init")
	stream := p.cmd("wal-stream", "pg", "--flush-every", "1s")
	var streamOut bytes.Buffer
	stream.Stdout, stream.Stderr = &streamOut, &streamOut
	if err := stream.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			stream.Process.Kill()
			stream.Wait()
		}
	}()
	pgtest.WaitFor(t, 30*time.Second, "the replication slot to be active", func() bool {
		out, _ := c.TrySQL("postgres", "SELECT count(*) FROM pg_replication_slots WHERE active")
		return out == "1"
	})
	writes(c, 1, 2000)
	p.ok("backup", "pg") // its WAL arrives by streaming
	c.SQL("postgres", "CREATE TABLE marks (i int, at timestamptz DEFAULT clock_timestamp())")

	logs := filepath.Join(strings.TrimPrefix(p.url, "file://"), "logs", "pg")
	var worst time.Duration
	for i := 1; i <= 5; i++ {
		before := time.Now()
		c.SQL("postgres", fmt.Sprintf("INSERT INTO marks (i) VALUES (%d)", i))
		committed := time.Now()
		var restorable time.Time
		pgtest.WaitFor(t, 60*time.Second, "the commit to reach the repository", func() bool {
			if newestCommit(logs).Before(before) {
				return false
			}
			restorable = time.Now()
			return true
		})
		lat := restorable.Sub(committed)
		worst = max(worst, lat)
		t.Logf("commit %d restorable after %v", i, lat.Round(time.Millisecond))
		time.Sleep(300 * time.Millisecond)
	}
	t.Logf("worst commit-to-restorable latency with wal-stream: %v", worst.Round(time.Millisecond))

	live := comparable(c.DumpAll())
	got, rc := p.restoreAndDump("--to", "latest")
	if got != live {
		t.Fatalf("restore to latest from streamed WAL: %s", firstDiff(live, got))
	}
	if n := rc.SQL("postgres", "SELECT count(*) FROM marks"); n != "5" {
		t.Fatalf("restored %s marks, want 5", n)
	}
	stream.Process.Signal(syscall.SIGTERM)
	if err := stream.Wait(); err != nil {
		t.Fatalf("wal-stream did not exit cleanly on SIGTERM: %v\n%s", err, streamOut.String())
	}
	stopped = true
}

var commitStampRE = regexp.MustCompile(`-c(\d+)$`)

// newestCommit reads the newest commit time among the archive's object names.
func newestCommit(dir string) time.Time {
	var newest time.Time
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if m := commitStampRE.FindStringSubmatch(d.Name()); m != nil {
			us, _ := strconv.ParseInt(m[1], 10, 64)
			if t := time.UnixMicro(us); t.After(newest) {
				newest = t
			}
		}
		return nil
	})
	return newest
}

// TestPostgresTwoClustersOneSource: a source whose cluster was re-created (another
// system identifier) never mixes the two: a diff is not based on the old cluster's
// full, WAL is kept apart, and restores follow the new cluster.
func TestPostgresTwoClustersOneSource(t *testing.T) {
	p := newPGWorld(t, pgOpts{archive: true})
	old := p.pg
	p.ok("init")
	writes(old, 1, 500)
	oldFull := p.ok("backup", "pg").lastLine()
	archived(t, old)
	old.Stop()

	// A new cluster under the same source name, archiving to the same place.
	conf := []string{"archive_mode = on", fmt.Sprintf("archive_command = '%s --config %s wal-push pg %%p'", binary, p.plan)}
	fresh := pgtest.New(t, pgtest.Options{Conf: conf})
	p.writePGPlan("", fresh.DataDir, fresh.Conninfo("postgres"))
	writes(fresh, 7, 800)
	r := p.ok("backup", "pg", "--type", "diff", "--log-level", "warn")
	if !strings.Contains(r.stderr, "no full backup of this cluster") {
		t.Fatalf("a diff on another cluster's full was not refused:\n%s", r.stderr)
	}
	list := p.list()
	if list[1].Type != "full" || list[1].Parent != nil {
		t.Fatalf("the new cluster's first backup is %+v, want a full", list[1])
	}
	writes(fresh, 8, 100)
	archived(t, fresh)
	live := comparable(fresh.DumpAll())
	got, _ := p.restoreAndDump("--to", "latest")
	if got != live {
		t.Fatalf("restore of the new cluster: %s", firstDiff(live, got))
	}
	// The old cluster's backup still restores, with its own WAL.
	_, ro := p.restoreAndDump("--backup", oldFull)
	if n := ro.SQL("postgres", "SELECT count(*), min(batch), max(batch) FROM accounts"); n != "500|1|1" {
		t.Fatalf("old cluster's backup restored %q", n)
	}
	sysids := map[string]bool{}
	des, _ := os.ReadDir(filepath.Join(strings.TrimPrefix(p.url, "file://"), "logs", "pg"))
	for _, de := range des {
		sysids[de.Name()] = true
	}
	if len(sysids) != 2 {
		t.Fatalf("WAL of %d clusters in the archive, want 2 kept apart: %v", len(sysids), sysids)
	}
}
