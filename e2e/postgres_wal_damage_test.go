package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hartonomous/hartvault/internal/testutil/pgtest"
)

// walObjects lists the stored WAL segment objects of the repository at repoDir,
// by segment name, oldest first.
func walObjects(t *testing.T, repoDir string) (names []string, paths map[string]string) {
	t.Helper()
	paths = map[string]string{}
	filepath.WalkDir(filepath.Join(repoDir, "logs"), func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		base := filepath.Base(p)
		seg, _, ok := strings.Cut(base, "-")
		if ok && len(seg) == 24 {
			paths[seg] = p
			names = append(names, seg)
		}
		return nil
	})
	sort.Strings(names)
	return names, paths
}

func flipByte(t *testing.T, p string) (undo func()) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	orig := append([]byte(nil), b...)
	b[len(b)/2] ^= 0x5a
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := os.WriteFile(p, orig, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// A damaged WAL segment in the middle of what a restore needs must stop recovery,
// not end it: PostgreSQL takes a failed restore_command as the end of the archive
// and would promote with every later commit lost. The restore fails, names the
// segment, and leaves the target as it was; a hole in the archive is refused at
// plan time for --to latest.
func TestPostgresDamagedWALStopsRecovery(t *testing.T) {
	p := newPGWorld(t, pgOpts{archive: true})
	c := p.pg
	p.ok("init")
	writes(c, 1, 2000)
	p.ok("backup", "pg", "--type", "full")
	for b := 2; b <= 5; b++ {
		writes(c, b, 1000)
		archived(t, c)
	}
	at := mark()
	writes(c, 6, 1000)
	archived(t, c)
	live := c.Snapshot()

	names, paths := walObjects(t, filepath.Join(p.work, "repo"))
	if len(names) < 5 {
		t.Fatalf("only %d WAL segments archived: %v", len(names), names)
	}
	victim := names[len(names)-3] // after the full, before the newest
	undo := flipByte(t, paths[victim])

	// Into a directory that holds something, with --force: it must come back as it was.
	target := filepath.Join(p.owner.Dir(t, "hv-restore"), "data")
	if err := os.MkdirAll(target, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(target, "keep-me"), []byte("the old contents"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{target, filepath.Join(target, "keep-me")} {
		if err := os.Chown(f, p.owner.UID, p.owner.GID); err != nil {
			t.Fatal(err)
		}
	}
	port := fmt.Sprint(pgtest.FreePort(t))
	r := p.fails(1, "put back as it was", "restore", "pg", "--target", target, "--to", "latest", "--start", "--port", port, "--no-archive", "--force")
	t.Logf("restore over a damaged segment: %s", r.stderr)
	if !strings.Contains(r.stderr, victim) {
		t.Fatalf("the error does not name the damaged segment %s:\n%s", victim, r.stderr)
	}
	if strings.Contains(r.stdout, "restored pg") {
		t.Fatalf("a failed restore reported success:\n%s", r.stdout)
	}
	des, err := os.ReadDir(target)
	if err != nil || len(des) != 1 || des[0].Name() != "keep-me" {
		t.Fatalf("the target after a failed restore holds %v (%v), want only keep-me", des, err)
	}
	if b, _ := os.ReadFile(filepath.Join(target, "keep-me")); string(b) != "the old contents" {
		t.Fatalf("keep-me holds %q", b)
	}
	if _, err := os.Stat(target + ".failed-restore.log"); err != nil {
		t.Fatalf("the failed recovery's server log was not kept: %v", err)
	}

	// To a time after the damage, into a new directory: refused the same way, and the
	// directory is gone again.
	fresh := filepath.Join(p.owner.Dir(t, "hv-restore"), "data")
	p.fails(1, "put back as it was", "restore", "pg", "--target", fresh, "--to", at.Format(time.RFC3339Nano), "--start", "--port", port, "--no-archive")
	if _, err := os.Stat(fresh); !os.IsNotExist(err) {
		t.Fatalf("a failed restore into a new directory left it behind: %v", err)
	}

	// wal-fetch itself: damage is not "not archived".
	dest := filepath.Join(p.work, "fetched")
	f := p.run("wal-fetch", "pg", victim, dest)
	if f.code != 200 || !strings.Contains(f.stderr, victim) {
		t.Fatalf("wal-fetch of a damaged segment: exit %d, want 200\n%s", f.code, f.stderr)
	}
	if nf := p.run("wal-fetch", "pg", "0000000100000000000000FF", dest); nf.code != 1 {
		t.Fatalf("wal-fetch of a segment never archived: exit %d, want 1\n%s", nf.code, nf.stderr)
	}

	// Repaired, the same restore reaches the end.
	undo()
	_, rc := p.restoreAndDump("--to", "latest")
	if d := live.Diff(rc.Snapshot()); len(d) > 0 {
		t.Fatalf("restore to latest differs from the live cluster: %v", d)
	}
	rc.Stop()

	// A hole: --to latest cannot reach the newest archived WAL, and says so before
	// touching anything.
	if err := os.Remove(paths[victim]); err != nil {
		t.Fatal(err)
	}
	p.fails(1, "segment "+victim+" is missing from the archive", "restore", "pg", "--target", filepath.Join(p.work, "never"), "--to", "latest", "--plan")
	if _, err := os.Stat(filepath.Join(p.work, "never")); !os.IsNotExist(err) {
		t.Fatal("a refused plan created the target")
	}
}
