package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// writeRetention rewrites the PostgreSQL plan with retention rules.
func (p *pgWorld) writeRetention(full, diff, log string) {
	p.t.Helper()
	y := fmt.Sprintf("repository:\n  url: %s\n  passphrase_env: HARTVAULT_PASSPHRASE\nsources:\n  - name: pg\n    kind: postgres\n    data_dir: %s\n    conninfo: %q\n    retention: { full: %q, diff: %q, log: %q }\n",
		p.url, p.pg.DataDir, p.pg.Conninfo("postgres"), full, diff, log)
	if err := os.WriteFile(p.plan, []byte(y), 0o644); err != nil {
		p.t.Fatal(err)
	}
}

// at runs hartvault with its clock started at now (HARTVAULT_NOW, for tests).
func (p *pgWorld) at(now time.Time, args ...string) result {
	p.t.Helper()
	env := p.env
	p.env = append(append([]string(nil), env...), "HARTVAULT_NOW="+now.UTC().Format(time.RFC3339Nano))
	defer func() { p.env = env }()
	return p.ok(args...)
}

// walFiles lists the archived WAL objects of the source, by name.
func (p *pgWorld) walFiles() []string {
	p.t.Helper()
	var out []string
	root := filepath.Join(p.work, "repo", "logs", "pg")
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(root, path)
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		p.t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// TestPrune: a cluster with three weekly-like chains; retention run "ten minutes
// later" (the binary's clock is started ahead) with a 10-minute window: the dry run
// shows what goes and why and changes nothing, the prune deletes exactly that, the
// repository verifies, the oldest instant of the window restores to the same data,
// and an instant before the oldest kept full is refused. Then count rules on the
// real clock.
func TestPrune(t *testing.T) {
	p := newPGWorld(t, pgOpts{archive: true})
	c := p.pg
	p.ok("init")
	writes(c, 1, 1000)
	full1 := p.ok("backup", "pg", "--type", "full").lastLine()
	writes(c, 2, 1000)
	before := mark() // only the first chain restores this
	diff1 := p.ok("backup", "pg", "--type", "diff").lastLine()
	writes(c, 3, 1000)
	full2 := p.ok("backup", "pg", "--type", "full").lastLine()
	writes(c, 4, 1000)
	start := mark() // the window's start: between the second full and its diff
	dumpStart := comparable(c.DumpAll())
	writes(c, 5, 1000)
	diff2 := p.ok("backup", "pg", "--type", "diff").lastLine()
	writes(c, 6, 1000)
	full3 := p.ok("backup", "pg", "--type", "full").lastLine()
	writes(c, 7, 1000)
	diff3 := p.ok("backup", "pg", "--type", "diff").lastLine()
	writes(c, 8, 1000)
	archived(t, c)
	// Before pruning, the first chain restores `before`.
	p.ok("restore", "pg", "--target", filepath.Join(p.work, "never"), "--to", before.Format(time.RFC3339Nano), "--plan")

	p.writeRetention("10m", "5m", "10m")
	now := start.Add(10 * time.Minute)
	walBefore := p.walFiles()
	listed := len(p.list())

	dry := p.at(now, "prune", "pg", "--dry-run")
	if len(p.list()) != listed || strings.Join(p.walFiles(), "\n") != strings.Join(walBefore, "\n") {
		t.Fatalf("--dry-run changed the repository:\n%s", dry.stdout)
	}
	lines := map[string]string{}
	for _, l := range strings.Split(dry.stdout, "\n") {
		for _, id := range []string{full1, diff1, full2, diff2, full3, diff3} {
			if strings.Contains(l, "  "+id+"  ") {
				lines[id] = l
			}
		}
	}
	for _, c := range []struct{ id, action, why string }{
		{full1, "would delete", "older than 10m, not the newest full"},
		{diff1, "would delete", "older than 5m"},
		{diff2, "would delete", "older than 5m"},
		{full2, "keep", "restores the start of the 10m full window"},
		{full3, "keep", "younger than 10m"},
		{diff3, "keep", "restores the start of the 5m diff window"},
	} {
		if l := strings.TrimSpace(lines[c.id]); !strings.HasPrefix(l, c.action) || !strings.Contains(l, c.why) {
			t.Errorf("backup %s: want %q because %q, got %q", c.id, c.action, c.why, l)
		}
	}
	for _, want := range []string{"pg: retention full 10m, diff 5m, log 10m", "would delete WAL of cluster ",
		"where the oldest kept backup (" + full2 + ") starts", "pg: would delete 3 of 6 backups and ", "dry run: nothing was deleted"} {
		if !strings.Contains(dry.stdout, want) {
			t.Errorf("--dry-run output lacks %q:\n%s", want, dry.stdout)
		}
	}

	pruned := p.at(now, "prune", "pg")
	if !strings.Contains(pruned.stdout, "pg: deleted 3 of 6 backups and ") || !strings.Contains(pruned.stdout, "delete WAL of cluster ") {
		t.Fatalf("prune output:\n%s", pruned.stdout)
	}
	var left []string
	for _, b := range p.list() {
		left = append(left, b.ID)
	}
	if strings.Join(left, " ") != strings.Join([]string{full2, full3, diff3}, " ") {
		t.Fatalf("left %v, want %s %s %s", left, full2, full3, diff3)
	}
	walAfter := p.walFiles()
	if len(walAfter) >= len(walBefore) || walAfter[0] == walBefore[0] {
		t.Fatalf("no WAL was pruned: %d objects before, %d after", len(walBefore), len(walAfter))
	}
	p.ok("verify")

	// The oldest instant of the window restores to what the cluster held then.
	got, r := p.restoreAndDump("--to", start.Format(time.RFC3339Nano))
	if got != dumpStart {
		t.Fatalf("restore to the window's start %v: %s", start, firstDiff(dumpStart, got))
	}
	r.AmCheck()
	// Before the oldest kept full, nothing can restore: refused, naming the window.
	p.fails(1, "restorable window", "restore", "pg", "--target", filepath.Join(p.work, "x"), "--to", before.Format(time.RFC3339Nano))

	// Pruning again at the same time has nothing left to do.
	again := p.at(now, "prune", "pg")
	if !strings.Contains(again.stdout, "pg: deleted 0 of 3 backups and 0 log objects") {
		t.Fatalf("second prune:\n%s", again.stdout)
	}

	// Counts, on the real clock: one full and one diff.
	p.writeRetention("1 backup", "1 backup", "1 backup")
	counted := p.ok("prune", "--dry-run")
	if !strings.Contains(counted.stdout, "would delete  "+full2) || !strings.Contains(counted.stdout, "keep          "+full3) {
		t.Fatalf("count rules, dry run:\n%s", counted.stdout)
	}
	p.ok("prune")
	if n := len(p.list()); n != 2 {
		t.Fatalf("%d backups left, want 2 (%s, %s)", n, full3, diff3)
	}
	p.ok("verify")
	plan := p.ok("restore", "pg", "--target", filepath.Join(p.work, "never"), "--to", "latest", "--plan")
	if !strings.Contains(plan.stdout, diff3) {
		t.Fatalf("restore to latest after pruning:\n%s", plan.stdout)
	}
}
