package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	neo4jdriver "github.com/neo4j/neo4j-go-driver/v5/neo4j"

	"github.com/hartonomous/hartvault/internal/repo"
	"github.com/hartonomous/hartvault/internal/testutil/neo4jtest"
	"github.com/hartonomous/hartvault/internal/testutil/pgtest"
)

// TestRecoverAndDrill: a PostgreSQL cluster and a file set written together over
// time; recover --to T brings both to T and the checks pass; drills pass, and fail
// when a check cannot hold, each recorded in the repository.
func TestRecoverAndDrill(t *testing.T) {
	p := newPGWorld(t, pgOpts{archive: true})
	c := p.pg
	files := p.owner.Dir(t, "hv-config")
	cfg := filepath.Join(files, "hartonomous.conf")
	setConfig := func(v string) {
		if err := os.WriteFile(cfg, []byte("version = "+v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	recovered := p.owner.Dir(t, "hv-recovered")
	port := pgtest.FreePort(t)
	// The provenance graph: a live server, and the server recovery loads into.
	graphs := neo4jtest.StartN(t, 2)
	live, drTarget := graphs[0], graphs[1]
	ctx := context.Background()
	drv, err := neo4jdriver.NewDriverWithContext(live.URI, neo4jdriver.NoAuth())
	if err != nil {
		t.Fatal(err)
	}
	defer drv.Close(ctx)
	atoms := func(batch int) {
		_, err := neo4jdriver.ExecuteQuery(ctx, drv, "UNWIND range(1, 200) AS i CREATE (:Atom {batch: $b, i: i, at: datetime()})-[:DERIVED_FROM {batch: $b}]->(:Source {i: i})",
			map[string]any{"b": batch}, neo4jdriver.EagerResultTransformer)
		if err != nil {
			t.Fatal(err)
		}
	}
	writePlan := func(extraCheck string) {
		y := fmt.Sprintf(`repository:
  url: %s
  passphrase_env: HARTVAULT_PASSPHRASE
sources:
  - name: pg
    kind: postgres
    data_dir: %s
    conninfo: %q
  - name: config
    kind: files
    paths: [%s]
  - name: provenance
    kind: neo4j
    uri: %s
    database: neo4j
recovery:
  order: [pg, provenance, config]
  targets:
    pg: { data_dir: %s/pg, port: %d }
    config: { dir: %s/config }
    provenance: { uri: %s, database: neo4j }
  checks:
    - source: provenance
      cypher: "MATCH (a:Atom) WHERE a.at > :target RETURN count(a) = 0"
    - source: provenance
      cypher: "MATCH (a:Atom) RETURN count(a) > 0"
    - source: pg
      sql: "SELECT count(*) > 0 FROM accounts WHERE at <= :target"
    - source: pg
      sql: "SELECT NOT EXISTS (SELECT 1 FROM accounts WHERE at > :target)"
%sdrills:
  every: 90d
  sources: [pg, config, provenance]
`, p.url, c.DataDir, c.Conninfo("postgres"), files, live.URI, recovered, port, recovered, drTarget.URI, extraCheck)
		if err := os.WriteFile(p.plan, []byte(y), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writePlan("")
	p.ok("init")
	writes(c, 1, 1000)
	setConfig("1")
	atoms(1)
	p.ok("backup", "pg")
	p.ok("backup", "config")
	p.ok("backup", "provenance")
	writes(c, 2, 1000)
	setConfig("2")
	atoms(2)
	p.ok("backup", "config")
	p.ok("backup", "provenance")
	at := mark()
	want := c.SQL("postgres", "SELECT count(*), max(batch) FROM accounts")
	writes(c, 3, 1000)
	setConfig("3")
	atoms(3)
	p.ok("backup", "config")
	p.ok("backup", "provenance")
	archived(t, c)

	plan := p.ok("recover", "--to", at.Format(time.RFC3339Nano), "--plan")
	for _, want := range []string{"pg (window", "config (window", "provenance (window", "instants every source can reach", "nothing was touched"} {
		if !strings.Contains(plan.stdout, want) {
			t.Fatalf("recover --plan lacks %q:\n%s", want, plan.stdout)
		}
	}
	p.fails(1, "restorable windows", "recover", "--to", "2001-01-01 00:00:00")

	rep := p.ok("recover", "--to", at.Format(time.RFC3339Nano))
	t.Logf("recover report:\n%s", rep.stdout)
	if !strings.Contains(rep.stdout, "recovered in") || strings.Count(rep.stdout, ": passed") != 4 {
		t.Fatalf("recover report:\n%s", rep.stdout)
	}
	rc := pgtest.Attach(t, filepath.Join(recovered, "pg"), port)
	rc.SockDir = rc.DataDir
	if got := rc.SQL("postgres", "SELECT count(*), max(batch) FROM accounts"); got != want {
		t.Fatalf("recovered cluster holds %s, want %s as at %v", got, want, at)
	}
	rc.CheckExact()
	gotCfg := readConfig(t, filepath.Join(recovered, "config"))
	if gotCfg != "version = 2\n" {
		t.Fatalf("recovered config says %q, want version 2", gotCfg)
	}
	rc.Stop()
	// The graph as it was at the instant: batches 1 and 2.
	drDrv, err := neo4jdriver.NewDriverWithContext(drTarget.URI, neo4jdriver.NoAuth())
	if err != nil {
		t.Fatal(err)
	}
	defer drDrv.Close(ctx)
	res, err := neo4jdriver.ExecuteQuery(ctx, drDrv, "MATCH (a:Atom) RETURN count(a) AS n, max(a.batch) AS b", nil, neo4jdriver.EagerResultTransformer)
	if err != nil {
		t.Fatal(err)
	}
	if n, b := res.Records[0].Values[0], res.Records[0].Values[1]; n != int64(400) || b != int64(2) {
		t.Fatalf("recovered graph holds %v atoms up to batch %v, want 400 up to batch 2", n, b)
	}

	// A drill passes and is recorded.
	d := p.ok("drill")
	if !strings.Contains(d.stdout, "passed; recovery time") {
		t.Fatalf("drill:\n%s", d.stdout)
	}
	// The drill borrowed the recovery target's graph database and emptied it after.
	res, err = neo4jdriver.ExecuteQuery(ctx, drDrv, "MATCH (n) RETURN count(n)", nil, neo4jdriver.EagerResultTransformer)
	if err != nil {
		t.Fatal(err)
	}
	if n := res.Records[0].Values[0]; n != int64(0) {
		t.Fatalf("the drill left %v nodes in its scratch graph database", n)
	}
	// One whose check cannot hold fails, and is recorded too.
	writePlan("    - source: pg\n      sql: \"SELECT false\"\n")
	fd := p.fails(1, "the drill failed", "drill")
	t.Logf("passing drill:\n%s\nfailing drill:\n%s%s", d.stdout, fd.stdout, fd.stderr)

	r, err := repo.Open(context.Background(), repo.Options{URL: p.url, Keys: repo.Keys{Passphrase: func() (string, error) { return "pg passphrase", nil }}})
	if err != nil {
		t.Fatal(err)
	}
	drills, err := r.Drills(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(drills) != 2 || !drills[0].Passed || drills[1].Passed || drills[0].Took <= 0 {
		t.Fatalf("drill records: %+v", drills)
	}
	// status shows the drills, the failed one as an alert, and the common window.
	st := p.run("status")
	if i := strings.Index(st.stdout, "Restorable:"); i >= 0 {
		t.Logf("status:\n%s", st.stdout[i:])
	}
	for _, want := range []string{"all sources together (recover --to): any instant from", "last drill", `FAILED: check on pg "SELECT false": it did not hold`, "2 drills recorded"} {
		if !strings.Contains(st.stdout, want) {
			t.Fatalf("status lacks %q:\n%s", want, st.stdout)
		}
	}
	chk := p.run("status", "--check")
	if chk.code != 1 || !strings.Contains(chk.stderr, "drills drill failed") || !strings.Contains(chk.stderr, `SELECT false`) {
		t.Fatalf("status --check after a failed drill: exit %d\n%s", chk.code, chk.stderr)
	}
	// The scratch places are gone and nothing scratch archived into the repository.
	matches, _ := filepath.Glob(filepath.Join(os.TempDir(), "hartvault-drill-*"))
	for _, m := range matches {
		if info, err := os.Stat(m); err == nil && info.ModTime().After(at) {
			t.Fatalf("drill scratch %s left behind", m)
		}
	}
}

// readConfig finds the restored hartonomous.conf under dir.
func readConfig(t *testing.T, dir string) string {
	var got string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Name() == "hartonomous.conf" {
			b, _ := os.ReadFile(p)
			got = string(b)
		}
		return nil
	})
	return got
}
