package e2e

import (
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

var legacy struct {
	once sync.Once
	path string
	err  error
}

// legacyBinary builds hartvault as releases before the visibility-map fix took
// PostgreSQL backups (-tags hartvault_legacy_diff: visibility maps and init forks by
// page LSN, no page flags recorded), to make the diffs an existing repository holds.
func legacyBinary(t *testing.T) string {
	t.Helper()
	legacy.once.Do(func() {
		legacy.path = binary + "-legacy"
		cmd := exec.Command("go", "build", "-tags", "hartvault_legacy_diff", "-o", legacy.path, "../cmd/hartvault")
		out, err := cmd.CombinedOutput()
		if err != nil {
			legacy.err = err
			legacy.path = string(out)
		}
	})
	if legacy.err != nil {
		t.Fatalf("building the legacy binary: %v\n%s", legacy.err, legacy.path)
	}
	return legacy.path
}

// runWith runs another hartvault binary in the world, as its commands run.
func (w *world) runWith(bin string, args ...string) result {
	w.t.Helper()
	saved := binary
	binary = bin
	defer func() { binary = saved }()
	return w.ok(args...)
}

// A diff taken by an affected release (visibility map by page LSN) restores
// exactly with this one: its visibility maps are left out and rebuilt by VACUUM,
// and plan, restore and verify say so. A new diff is never based on such a full in
// a cluster without data checksums (a full is taken instead).
func TestPostgresLegacyDiffRestoresExactly(t *testing.T) {
	p := newPGWorld(t, pgOpts{archive: true})
	c := p.pg
	old := legacyBinary(t)
	p.ok("init")
	c.SQL("postgres", `CREATE TABLE items (id int PRIMARY KEY, v text, n int);
		INSERT INTO items SELECT g, md5(g::text), g % 100 FROM generate_series(1, 30000) g;
		CREATE INDEX items_n ON items (n)`)
	c.SQL("postgres", "CHECKPOINT") // VACUUM marks pages all-visible only once the commit is flushed
	c.SQL("postgres", "VACUUM (FREEZE) items")
	full := p.runWith(old, "backup", "pg", "--type", "full").lastLine()
	// Clearing visibility-map bits does not move the map page's LSN: the old diff
	// keeps the full's map, which says these pages are all-visible and all-frozen.
	c.SQL("postgres", "DELETE FROM items WHERE id % 9 = 0; UPDATE items SET v = v || '!' WHERE id % 13 = 0")
	diff := p.runWith(old, "backup", "pg", "--type", "diff").lastLine()
	if !strings.Contains(diff, "-diff-") {
		t.Fatalf("the legacy binary took %s, want a diff", diff)
	}
	c.SQL("postgres", "INSERT INTO items SELECT g, 'late', 1 FROM generate_series(30001, 30500) g")
	archived(t, c)
	want := c.Snapshot()

	note := "copied the visibility map by page LSN"
	plan := p.ok("restore", "pg", "--target", filepath.Join(p.work, "never"), "--backup", diff, "--plan")
	if !strings.Contains(plan.stdout, note) {
		t.Fatalf("--plan does not warn about the legacy diff:\n%s", plan.stdout)
	}
	v := p.ok("verify", "pg")
	if !strings.Contains(v.stdout, "note     pg "+diff+": ") || !strings.Contains(v.stdout, note) || strings.Contains(v.stdout, "note     pg "+full) {
		t.Fatalf("verify does not name the legacy diff (and only it):\n%s", v.stdout)
	}

	r, rc := p.restoreStarted("--to", "latest", "--no-archive")
	if !strings.Contains(r.stdout, note) {
		t.Fatalf("the restore does not say it left the visibility maps out:\n%s", r.stdout)
	}
	if d := want.Diff(rc.Snapshot()); len(d) > 0 {
		t.Fatalf("restore of the legacy diff to latest: %v", d)
	}
	// VACUUM rebuilds the maps, and they are right.
	rc.SQL("postgres", "VACUUM")
	rc.CheckExact()
	if n := rc.SQL("postgres", "SELECT count(*) FROM pg_visibility_map('items') WHERE all_visible"); n == "0" {
		t.Fatal("VACUUM did not rebuild the visibility map of items")
	}
	rc.Stop()

	_, rb := p.restoreAndDump("--backup", diff)
	rb.Stop()

	// This release never bases a diff on that full: without data checksums its pages
	// were marked all-visible without an LSN change, and it recorded no flags.
	next := p.ok("backup", "pg", "--type", "diff")
	if id := next.lastLine(); !strings.Contains(id, "-full-") {
		t.Fatalf("a diff on a legacy full in a cluster without checksums: took %s, want a full", id)
	}
	if !strings.Contains(next.stderr, "did not record page visibility flags") {
		t.Fatalf("the fallback to a full was not explained:\n%s", next.stderr)
	}
}
