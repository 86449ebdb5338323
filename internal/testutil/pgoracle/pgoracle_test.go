//go:build !windows

package pgoracle_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hartonomous/hartvault/internal/testutil/pgoracle"
	"github.com/hartonomous/hartvault/internal/testutil/pgtest"
)

// The oracle must see what a dump cannot: a visibility map older than its heap (the
// shape of the bug a diff once had) makes index-only scans count deleted rows.
func TestOracleFindsAStaleVisibilityMap(t *testing.T) {
	c := pgtest.New(t, pgtest.Options{Conf: []string{"autovacuum = off", "synchronous_commit = on"}})
	c.SQL("postgres", `CREATE TABLE t (id int PRIMARY KEY, v text);
		INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 20000) g`)
	c.SQL("postgres", "VACUUM t")
	ctx := pgtest.Context(t)
	rep, err := pgoracle.Check(ctx, c.Server())
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || rep.IndexOnly == 0 || rep.Tables == 0 {
		t.Fatalf("a healthy cluster: %s (index-only counts %d)", rep, rep.IndexOnly)
	}
	before := c.Snapshot()

	vm := filepath.Join(c.DataDir, c.SQL("postgres", "SELECT pg_relation_filepath('t')")+"_vm")
	c.SQL("postgres", "CHECKPOINT")
	c.Stop()
	stale, err := os.ReadFile(vm)
	if err != nil {
		t.Fatal(err)
	}
	c.Start()
	c.SQL("postgres", "DELETE FROM t WHERE id % 10 = 0")
	c.SQL("postgres", "CHECKPOINT")
	after := c.Snapshot()
	if d := before.Diff(after); len(d) != 1 || !strings.Contains(d[0], "public.t: 18000 rows") {
		t.Fatalf("snapshot diff after deleting 2000 rows: %v", d)
	}
	c.Stop()
	if err := os.WriteFile(vm, stale, 0o600); err != nil {
		t.Fatal(err)
	}
	c.Start()

	rep, err = pgoracle.Check(ctx, c.Server())
	if err != nil {
		t.Fatal(err)
	}
	s := rep.String()
	for _, want := range []string{"count(*) is 20000 by index-only scan but 18000 by sequential scan", "pg_check_visible lists", "not marked PD_ALL_VISIBLE"} {
		if !strings.Contains(s, want) {
			t.Errorf("report lacks %q:\n%s", want, s)
		}
	}
	// What a dump sees is unchanged: the oracle, not the dump, catches it.
	if d := after.Diff(c.Snapshot()); len(d) != 0 {
		t.Fatalf("sequential scans changed: %v", d)
	}
}
