package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hartonomous/hartvault/internal/testutil/pgtest"
)

// countFiles counts the regular files under dir (0 when it does not exist).
func countFiles(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			n++
		}
		return nil
	})
	return n
}

// A PostgreSQL source with a replica: the replica receives the WAL as well as the
// backups, so a restore from the replica alone reaches the newest archived WAL; and
// prune applies the same rules to the replica, over what it holds.
func TestPostgresReplicaHoldsTheWAL(t *testing.T) {
	owner, err := pgtest.CurrentOwner()
	if err != nil {
		t.Fatal(err)
	}
	replicaDir := filepath.Join(owner.Dir(t, "hv-replica"), "dr")
	replica := "file://" + replicaDir
	repoExtra := fmt.Sprintf("  replicas: [%q]\n", replica)
	p := newPGWorld(t, pgOpts{archive: true, repoExtra: repoExtra})
	c := p.pg
	p.ok("init")
	writes(c, 1, 2000)
	full1 := p.ok("backup", "pg", "--type", "full").lastLine()
	writes(c, 2, 2000)
	archived(t, c)
	full2 := p.ok("backup", "pg", "--type", "full").lastLine()
	writes(c, 3, 2000)
	archived(t, c)
	live := comparable(c.DumpAll())

	// The WAL archived since the last backup reaches the replica with replicate (the
	// agent runs the same copy every minute).
	rep := p.ok("replicate")
	if !strings.Contains(rep.stdout, "replica "+replica+": up to date") || !strings.Contains(rep.stdout, "log object") {
		t.Fatalf("replicate:\n%s", rep.stdout)
	}
	primaryLogs, replicaLogs := countFiles(t, filepath.Join(p.work, "repo", "logs")), countFiles(t, filepath.Join(replicaDir, "logs"))
	if primaryLogs == 0 || replicaLogs != primaryLogs {
		t.Fatalf("log objects: primary %d, replica %d", primaryLogs, replicaLogs)
	}
	again := p.ok("replicate")
	if !strings.Contains(again.stdout, "(0 backups and 0 log objects copied)") {
		t.Fatalf("a second replicate copied again:\n%s", again.stdout)
	}

	// The primary is lost: the replica alone restores to the newest archived WAL.
	lost := filepath.Join(p.work, "repo-lost")
	if err := os.Rename(filepath.Join(p.work, "repo"), lost); err != nil {
		t.Fatal(err)
	}
	got, _ := p.restoreAndDump("--from-replica", "1", "--to", "latest")
	if got != live {
		t.Fatalf("restore from the replica differs from the live cluster:\n%s", firstDiff(live, got))
	}
	if err := os.Rename(lost, filepath.Join(p.work, "repo")); err != nil {
		t.Fatal(err)
	}
	// A WAL segment damaged on the primary: recovery reads the replica's intact copy
	// instead of stopping (or, worse, ending early).
	names, paths := walObjects(t, filepath.Join(p.work, "repo"))
	undo := flipByte(t, paths[names[len(names)-2]])
	got, rd := p.restoreAndDump("--to", "latest")
	if got != live {
		t.Fatalf("restore over a segment damaged on the primary differs from the live cluster:\n%s", firstDiff(live, got))
	}
	if log, _ := os.ReadFile(filepath.Join(rd.DataDir, "log", "hartvault-restore.log")); !strings.Contains(string(log), "read an intact copy from a replica") {
		t.Fatalf("recovery did not say it read %s from the replica:\n%s", names[len(names)-2], log)
	}
	undo()

	// Retention keeps one full: prune removes the older full and the WAL only it needs,
	// from the primary and from the replica.
	plan, err := os.ReadFile(p.plan)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p.plan, append(plan, []byte("    retention: { full: 1 backups, diff: 1 backups, log: 1 backups }\n")...), 0o644); err != nil {
		t.Fatal(err)
	}
	pr := p.ok("prune")
	if strings.Count(pr.stdout, "delete  "+full1) != 2 || !strings.Contains(pr.stdout, "replica "+replica+":") {
		t.Fatalf("prune did not delete %s on both:\n%s", full1, pr.stdout)
	}
	for _, where := range []string{"", "1"} {
		args := []string{"list", "pg"}
		if where != "" {
			args = append(args, "--replica", where)
		}
		l := p.ok(args...)
		if strings.Contains(l.stdout, full1) || !strings.Contains(l.stdout, full2) {
			t.Fatalf("list %v after prune:\n%s", args, l.stdout)
		}
	}
	if got := countFiles(t, filepath.Join(replicaDir, "logs")); got >= replicaLogs {
		t.Fatalf("the replica still holds %d log objects (had %d): its WAL was not pruned", got, replicaLogs)
	}
	if got, want := countFiles(t, filepath.Join(replicaDir, "logs")), countFiles(t, filepath.Join(p.work, "repo", "logs")); got != want {
		t.Fatalf("after prune the replica holds %d log objects, the primary %d", got, want)
	}
	p.ok("verify", "--replica", "1")
}

// An object the primary lost is read from a replica's copy during the restore (with
// a warning); verify still reports the primary's loss.
func TestRestoreReadsLostObjectsFromAReplica(t *testing.T) {
	b := backends(t)[0]
	assemblies, script := smallTree(t)
	replica := "file://" + filepath.ToSlash(filepath.Join(t.TempDir(), "dr"))
	w := newWorld(t, b, planOpts{paths: []string{assemblies, script}, extraRepo: "  replicas: [\"" + replica + "\"]\n"})
	w.ok("init")
	id := w.ok("backup", "assemblies").lastLine()
	keys := w.keys("data/assemblies/" + id + "/")
	if len(keys) == 0 {
		t.Fatal("no data objects")
	}
	if err := w.openStore().Delete(context.Background(), keys[0]); err != nil {
		t.Fatal(err)
	}
	if v := w.fails(1, "are damaged", "verify"); !strings.Contains(v.stdout+v.stderr, keys[0]) {
		t.Fatalf("verify does not name the lost object %s:\n%s%s", keys[0], v.stdout, v.stderr)
	}
	dst := filepath.Join(t.TempDir(), "r")
	r := w.ok("restore", "assemblies", "--target", dst)
	if !strings.Contains(r.stderr, "read from a replica") || !strings.Contains(r.stderr, keys[0]) {
		t.Fatalf("no warning that %s came from the replica:\n%s", keys[0], r.stderr)
	}
	sameTree(t, expected(t, assemblies), snapshot(t, filepath.Join(dst, "assemblies")))
}
