package e2e

import (
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hartonomous/hartvault/internal/testutil/pgoracle"
	"github.com/hartonomous/hartvault/internal/testutil/pgtest"
)

// TestPostgresRandomizedExactness takes several rounds of full and diff backups of a
// cluster under a seeded random workload that updates, deletes, vacuums (plain and
// FREEZE, and FULL), truncates, creates and drops indexes and tables, reindexes,
// moves tables between tablespaces and creates databases (both strategies), with
// writes running while each backup is taken. Every backup is restored to its end,
// and each round to an instant inside it; every restored cluster must pass the
// oracle (index-only counts, pg_visibility, pg_amcheck --heapallindexed) and hold
// exactly what sequential scans of the source saw at that instant.
//
// HARTVAULT_TEST_SEED reruns a seed; HARTVAULT_TEST_ROUNDS sets the rounds (3).
func TestPostgresRandomizedExactness(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("HARTVAULT_TEST_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("HARTVAULT_TEST_SEED=%q: %v", s, err)
		}
		seed = v
	}
	rounds := 3
	if s := os.Getenv("HARTVAULT_TEST_ROUNDS"); s != "" {
		rounds, _ = strconv.Atoi(s)
	}
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	checksums := rng.IntN(2) == 0
	t.Logf("seed %d, %d rounds, data checksums %v (rerun with HARTVAULT_TEST_SEED=%d)", seed, rounds, checksums, seed)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("FAILED with seed %d: rerun with HARTVAULT_TEST_SEED=%d go test -run TestPostgresRandomizedExactness ./e2e", seed, seed)
		}
	})

	p := newPGWorld(t, pgOpts{archive: true, checksums: checksums, conf: []string{
		// VACUUM marks pages all-visible only once their commits are flushed, and the
		// workload wants autovacuum to race with it.
		"synchronous_commit = on", "autovacuum_naptime = 1s",
		"autovacuum_vacuum_scale_factor = 0.01", "autovacuum_vacuum_insert_scale_factor = 0.01",
	}})
	c := p.pg
	p.ok("init")
	w := newWorkload(t, c, rng, p.owner.Dir(t, "hv-random-ts"))

	type target struct {
		what string
		args []string
		want pgoracle.State
	}
	var targets []target
	var backups []string
	for round := 0; round < rounds; round++ {
		w.steps(4 + rng.IntN(5))
		if round > 0 {
			at := mark()
			targets = append(targets, target{fmt.Sprintf("round %d, at %s", round, at.Format(time.RFC3339Nano)),
				[]string{"--to", at.Format(time.RFC3339Nano)}, w.state()})
		}
		w.steps(3 + rng.IntN(4))
		typ := "diff"
		if round == 0 || rng.IntN(5) == 0 {
			typ = "full"
		}
		want := w.state()
		stop := w.noise()
		id := p.ok("backup", "pg", "--type", typ).lastLine()
		stop()
		t.Logf("round %d: %s backup %s after: %s", round, typ, id, strings.Join(w.log, "; "))
		w.log = nil
		backups = append(backups, id)
		targets = append(targets, target{fmt.Sprintf("round %d, %s backup %s at its end", round, typ, id), []string{"--backup", id}, want})
	}
	w.steps(3)
	archived(t, c)
	targets = append(targets, target{"latest", []string{"--to", "latest"}, w.state()})

	for _, tg := range targets {
		_, rc := p.restoreStarted(append(tg.args, "--no-archive")...)
		got := w.filter(rc.Snapshot())
		if d := tg.want.Diff(got); len(d) > 0 {
			t.Fatalf("restore to %s differs from the source then:\n  %s", tg.what, strings.Join(d, "\n  "))
		}
		rc.Stop()
	}
	p.ok("verify", "pg")
}

// workload is the random workload of the randomized test: tables in the postgres
// database and in databases it creates, one tablespace to move them to, and a
// noise table written while backups run (left out of the comparisons: only the
// oracle judges it).
type workload struct {
	t      *testing.T
	c      *pgtest.Cluster
	rng    *rand.Rand
	next   int
	tables map[string][]string // database -> tables
	dbs    int
	log    []string
}

func newWorkload(t *testing.T, c *pgtest.Cluster, rng *rand.Rand, spcDir string) *workload {
	w := &workload{t: t, c: c, rng: rng, tables: map[string][]string{}}
	c.SQL("postgres", fmt.Sprintf("CREATE TABLESPACE ts LOCATION '%s'", spcDir))
	c.SQL("postgres", "CREATE TABLE noise (id bigserial PRIMARY KEY, v text)")
	// An unlogged table with an index: only its init forks are backed up.
	c.SQL("postgres", "CREATE UNLOGGED TABLE scratch (id int PRIMARY KEY, v text); INSERT INTO scratch SELECT g, 'x' FROM generate_series(1, 1000) g")
	// A template with data, for CREATE DATABASE ... STRATEGY FILE_COPY.
	c.SQL("postgres", "CREATE DATABASE tmpl")
	c.SQL("tmpl", "CREATE TABLE kept (id bigint PRIMARY KEY, grp int, v text, pad text); INSERT INTO kept SELECT g, g % 50, md5(g::text), '' FROM generate_series(1, 5000) g")
	w.tables["tmpl"] = []string{"kept"}
	for i := 0; i < 3; i++ {
		w.createTable("postgres")
	}
	return w
}

func (w *workload) sql(db, q string) {
	w.t.Helper()
	w.c.SQL(db, q)
}

func (w *workload) pick() (db, table string) {
	var dbs []string
	for d, ts := range w.tables {
		if len(ts) > 0 && d != "tmpl" {
			dbs = append(dbs, d)
		}
	}
	sort.Strings(dbs)
	db = dbs[w.rng.IntN(len(dbs))]
	ts := w.tables[db]
	return db, ts[w.rng.IntN(len(ts))]
}

func (w *workload) createTable(db string) string {
	w.next++
	name := fmt.Sprintf("t%d", w.next)
	w.sql(db, fmt.Sprintf(`CREATE TABLE %s (id bigint PRIMARY KEY, grp int, v text, pad text);
		INSERT INTO %s SELECT g, g %% 50, md5(g::text), repeat('p', g %% 200) FROM generate_series(1, %d) g`, name, name, 2000+w.rng.IntN(8000)))
	w.tables[db] = append(w.tables[db], name)
	return name
}

// steps runs n random operations.
func (w *workload) steps(n int) {
	for i := 0; i < n; i++ {
		w.step()
	}
}

func (w *workload) step() {
	db, tb := w.pick()
	r := w.rng
	var what string
	switch op := r.IntN(17); op {
	case 0, 1:
		lo := 1_000_000 + r.IntN(1_000_000_000)
		n := 100 + r.IntN(3000)
		big := ""
		if r.IntN(4) == 0 {
			big = " || repeat(md5(g::text), 100)" // TOASTed
		}
		w.sql(db, fmt.Sprintf("INSERT INTO %s SELECT g, g %% 50, md5(g::text)%s, 'i' FROM generate_series(%d, %d) g ON CONFLICT DO NOTHING", tb, big, lo, lo+n))
		what = fmt.Sprintf("insert %d into %s.%s", n, db, tb)
	case 2, 3:
		m := 2 + r.IntN(20)
		w.sql(db, fmt.Sprintf("UPDATE %s SET v = v || 'u', grp = grp + 1 WHERE id %% %d = %d", tb, m, r.IntN(m)))
		what = fmt.Sprintf("update 1/%d of %s.%s", m, db, tb)
	case 4, 5:
		m := 3 + r.IntN(30)
		w.sql(db, fmt.Sprintf("DELETE FROM %s WHERE id %% %d = %d", tb, m, r.IntN(m)))
		what = fmt.Sprintf("delete 1/%d of %s.%s", m, db, tb)
	case 6, 7:
		w.sql(db, "VACUUM "+tb)
		what = "vacuum " + db + "." + tb
	case 8:
		w.sql(db, "VACUUM (FREEZE) "+tb)
		what = "vacuum freeze " + db + "." + tb
	case 9:
		w.sql(db, fmt.Sprintf("TRUNCATE %s; INSERT INTO %s SELECT g, g %% 50, 'after truncate', '' FROM generate_series(1, %d) g", tb, tb, 100+r.IntN(2000)))
		what = "truncate " + db + "." + tb
	case 10:
		if r.IntN(2) == 0 {
			w.sql(db, fmt.Sprintf("CREATE INDEX IF NOT EXISTS %s_grp ON %s (grp, v)", tb, tb))
			what = "create index on " + db + "." + tb
		} else {
			w.sql(db, fmt.Sprintf("DROP INDEX IF EXISTS %s_grp", tb))
			what = "drop index of " + db + "." + tb
		}
	case 11:
		if len(w.tables[db]) > 2 && r.IntN(2) == 0 {
			w.sql(db, "DROP TABLE "+tb)
			w.tables[db] = remove(w.tables[db], tb)
			what = "drop table " + db + "." + tb
		} else {
			what = "create table " + db + "." + w.createTable(db)
		}
	case 12:
		spc := "ts"
		if r.IntN(2) == 0 {
			spc = "pg_default"
		}
		w.sql(db, fmt.Sprintf("ALTER TABLE %s SET TABLESPACE %s", tb, spc))
		what = fmt.Sprintf("move %s.%s to %s", db, tb, spc)
	case 13:
		w.dbs++
		name := fmt.Sprintf("db%d", w.dbs)
		strategy := "WAL_LOG"
		if r.IntN(2) == 0 {
			strategy = "FILE_COPY"
		}
		w.sql("postgres", fmt.Sprintf("CREATE DATABASE %s TEMPLATE tmpl STRATEGY %s", name, strategy))
		w.tables[name] = []string{"kept"}
		w.sql(name, fmt.Sprintf("UPDATE kept SET v = '%s' WHERE id %% 10 = 0", name))
		what = fmt.Sprintf("create database %s (%s)", name, strategy)
	case 14:
		w.sql(db, "VACUUM FULL "+tb)
		what = "vacuum full " + db + "." + tb
	case 15:
		w.sql(db, "REINDEX TABLE "+tb)
		what = "reindex " + db + "." + tb
	case 16:
		w.sql("postgres", "CHECKPOINT")
		what = "checkpoint"
	}
	w.log = append(w.log, what)
}

// noise writes to the noise table until the returned function is called.
func (w *workload) noise() (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			default:
			}
			w.c.TrySQL("postgres", fmt.Sprintf("INSERT INTO noise (v) SELECT md5(g::text) FROM generate_series(1, 200) g; DELETE FROM noise WHERE id %% 5 = %d", i%5))
		}
	}()
	return func() { close(done); wg.Wait() }
}

// state is what sequential scans of the source see now, noise left out.
func (w *workload) state() pgoracle.State { return w.filter(w.c.Snapshot()) }

func (w *workload) filter(s pgoracle.State) pgoracle.State {
	delete(s, "postgres public.noise")
	return s
}

func remove(list []string, s string) []string {
	var out []string
	for _, x := range list {
		if x != s {
			out = append(out, x)
		}
	}
	return out
}
