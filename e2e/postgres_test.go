package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hartonomous/hartvault/internal/testutil/pgtest"
)

// pgWorld is a PostgreSQL cluster archiving into a hartvault repository, with
// hartvault run as the cluster's owner.
type pgWorld struct {
	*world
	pg    *pgtest.Cluster
	owner pgtest.Owner
	work  string
}

type pgOpts struct {
	checksums bool
	repoExtra string // more repository YAML lines
	archive   bool   // archive_command = hartvault wal-push
	conf      []string
}

func newPGWorld(t *testing.T, o pgOpts) *pgWorld {
	t.Helper()
	owner, err := pgtest.CurrentOwner()
	if err != nil {
		t.Fatal(err)
	}
	work := owner.Dir(t, "hv-e2e-pg")
	w := &world{t: t, dir: work, plan: filepath.Join(work, "hartvault.yaml"), url: "file://" + filepath.Join(work, "repo"),
		source: "pg", asUser: &owner, env: []string{"HARTVAULT_PASSPHRASE=pg passphrase"}}
	conf := o.conf
	if o.archive {
		conf = append(conf, "archive_mode = on", fmt.Sprintf("archive_command = '%s --config %s wal-push pg %%p'", binary, w.plan))
	}
	// The plan must exist before the server archives its first segment.
	pw := &pgWorld{world: w, owner: owner, work: work}
	pw.writePGPlan(o.repoExtra, "/nonexistent", "host=/nonexistent")
	pw.pg = pgtest.New(t, pgtest.Options{Checksums: o.checksums, Conf: conf})
	pw.writePGPlan(o.repoExtra, pw.pg.DataDir, pw.pg.Conninfo("postgres"))
	return pw
}

func (p *pgWorld) writePGPlan(repoExtra, dataDir, conninfo string) {
	y := fmt.Sprintf("repository:\n  url: %s\n  passphrase_env: HARTVAULT_PASSPHRASE\n%ssources:\n  - name: pg\n    kind: postgres\n    data_dir: %s\n    conninfo: %q\n",
		p.url, repoExtra, dataDir, conninfo)
	if err := os.WriteFile(p.plan, []byte(y), 0o644); err != nil {
		p.t.Fatal(err)
	}
}

// writes inserts n rows into accounts, creating it on first use.
func writes(c *pgtest.Cluster, batch, n int) {
	c.SQL("postgres", fmt.Sprintf(`CREATE TABLE IF NOT EXISTS accounts (id bigserial PRIMARY KEY, batch int, v text, at timestamptz DEFAULT clock_timestamp());
		INSERT INTO accounts (batch, v) SELECT %d, md5(g::text) || repeat('h', g %% 50) FROM generate_series(1, %d) g;
		UPDATE accounts SET v = v || '+' WHERE id %% 7 = %d;`, batch, n, batch%7))
}

// archived switches to a new WAL segment and waits until the archiver has stored it.
func archived(t *testing.T, c *pgtest.Cluster) {
	t.Helper()
	seg := c.SQL("postgres", "SELECT pg_walfile_name(pg_switch_wal())")
	pgtest.WaitFor(t, 60*time.Second, "WAL "+seg+" to be archived", func() bool {
		last, _ := c.TrySQL("postgres", "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
		return last >= seg
	})
}

// mark returns a time strictly between what was committed before and after it.
func mark() time.Time {
	time.Sleep(600 * time.Millisecond)
	t := time.Now()
	time.Sleep(600 * time.Millisecond)
	return t
}

// restoreAndDump restores a test copy to a point (it does not archive into the
// repository), starts it, and returns its dump.
func (p *pgWorld) restoreAndDump(args ...string) (string, *pgtest.Cluster) {
	return p.restoreAndDumpArchiving(append(args, "--no-archive")...)
}

// restoreAndDumpArchiving restores a copy that goes on archiving into the
// repository, as a system replacing the lost one does.
func (p *pgWorld) restoreAndDumpArchiving(args ...string) (string, *pgtest.Cluster) {
	p.t.Helper()
	_, rc := p.restoreStart(args...)
	dump := comparable(rc.DumpAll()) // before the oracle adds its extensions
	rc.CheckExact()
	return dump, rc
}

// restoreStarted restores into a new directory, starts the cluster, and checks it
// the way the engine itself would be checked (a dump reads by sequential scan; the
// cluster must also answer right through its indexes and visibility map).
func (p *pgWorld) restoreStarted(args ...string) (result, *pgtest.Cluster) {
	p.t.Helper()
	r, rc := p.restoreStart(args...)
	rc.CheckExact()
	return r, rc
}

func (p *pgWorld) restoreStart(args ...string) (result, *pgtest.Cluster) {
	p.t.Helper()
	dst := filepath.Join(p.owner.Dir(p.t, "hv-restore"), "data")
	port := pgtest.FreePort(p.t)
	r := p.ok(append([]string{"restore", "pg", "--target", dst, "--start", "--port", fmt.Sprint(port)}, args...)...)
	if !strings.Contains(r.stdout, "promotion took") {
		p.t.Fatalf("restore did not report replay time:\n%s", r.stdout)
	}
	rc := pgtest.Attach(p.t, dst, port)
	rc.SockDir = dst
	return r, rc
}

func TestPostgresPointInTimeRestore(t *testing.T) {
	p := newPGWorld(t, pgOpts{archive: true, checksums: true})
	c := p.pg
	p.ok("init")
	// A tablespace: restored in place, under the restored data directory.
	spc := p.owner.Dir(t, "hv-tablespace")
	c.SQL("postgres", fmt.Sprintf("CREATE TABLESPACE ts LOCATION '%s'", spc))
	c.SQL("postgres", "CREATE TABLE elsewhere (id int, v text) TABLESPACE ts; INSERT INTO elsewhere SELECT g, md5(g::text) FROM generate_series(1, 3000) g")
	writes(c, 1, 2000)
	full := p.ok("backup", "pg", "--type", "full").lastLine()
	c.SQL("postgres", "INSERT INTO elsewhere SELECT g, 'after the full' FROM generate_series(1, 500) g")

	writes(c, 2, 2000)
	t1 := mark()
	dump1 := comparable(c.DumpAll())
	writes(c, 3, 2000)
	diff := p.ok("backup", "pg", "--type", "diff").lastLine()
	writes(c, 4, 2000)
	t2 := mark()
	dump2 := comparable(c.DumpAll())
	writes(c, 5, 3000)
	archived(t, c)
	live := comparable(c.DumpAll())

	list := p.ok("list", "pg")
	for _, want := range []string{full, diff, "PostgreSQL 15", "timeline 1", "LSN "} {
		if !strings.Contains(list.stdout, want) {
			t.Fatalf("list does not show %q:\n%s", want, list.stdout)
		}
	}
	backups := p.list()
	if backups[1].Type != "diff" || backups[1].Parent == nil || *backups[1].Parent != full {
		t.Fatalf("diff listed as %+v", backups[1])
	}

	// The plan names the chain and the window and touches nothing.
	planOut := p.ok("restore", "pg", "--target", filepath.Join(p.work, "never"), "--to", t2.Format(time.RFC3339Nano), "--plan")
	for _, want := range []string{full, diff, "window:", "recovery_target_time", "restore_command", "nothing was touched"} {
		if !strings.Contains(planOut.stdout, want) {
			t.Fatalf("--plan does not show %q:\n%s", want, planOut.stdout)
		}
	}
	if _, err := os.Stat(filepath.Join(p.work, "never")); !os.IsNotExist(err) {
		t.Fatal("--plan created the target")
	}
	// Outside the window: refused, naming it.
	p.fails(1, "restorable window", "restore", "pg", "--target", filepath.Join(p.work, "x"), "--to", time.Now().Add(time.Hour).Format(time.RFC3339))
	p.fails(1, "restorable window", "restore", "pg", "--target", filepath.Join(p.work, "x"), "--to", "2001-01-01 00:00:00")

	// Between the full and the diff: the full plus WAL.
	got1, r1 := p.restoreAndDump("--to", t1.Format(time.RFC3339Nano))
	if got1 != dump1 {
		t.Fatalf("restore to %v differs from the dump taken then:\n%s", t1, firstDiff(dump1, got1))
	}
	r1.AmCheck()
	if loc := r1.SQL("postgres", "SELECT pg_tablespace_location(oid) FROM pg_tablespace WHERE spcname = 'ts'"); strings.HasPrefix(loc, spc) {
		t.Fatalf("restored tablespace points at the original location %s", loc)
	}
	if n := r1.SQL("postgres", "SELECT count(*) FROM elsewhere"); n != "3500" {
		t.Fatalf("restored tablespace table holds %s rows, want 3500", n)
	}
	// After the diff: full, diff pages, WAL.
	got2, r2 := p.restoreAndDump("--to", t2.Format("2006-01-02 15:04:05.999999-07:00"))
	if got2 != dump2 {
		t.Fatalf("restore to %v differs from the dump taken then:\n%s", t2, firstDiff(dump2, got2))
	}
	r2.AmCheck()
	// Latest: everything archived.
	got3, _ := p.restoreAndDump("--to", "latest")
	if got3 != live {
		t.Fatalf("restore to latest differs from the live cluster:\n%s", firstDiff(live, got3))
	}
	// A chosen backup, made consistent and no further.
	_, rb := p.restoreAndDump("--backup", full)
	if got := rb.SQL("postgres", "SELECT count(*), max(batch) FROM accounts"); got != "2000|1" {
		t.Fatalf("restore of the full alone holds %q rows|batch, want 2000|1", got)
	}
	p.ok("verify")
}

// comparable drops what point-in-time recovery legitimately changes: sequences are
// not transactional, and their WAL records (logged ahead) replay up to the stop point.
func comparable(dump string) string {
	var out []string
	for _, l := range strings.Split(dump, "\n") {
		// Tablespaces come back in place (under pg_tblspc), so their location differs.
		if !strings.HasPrefix(l, "SELECT pg_catalog.setval(") && !strings.HasPrefix(l, "CREATE TABLESPACE ") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// firstDiff shows where two dumps part.
func firstDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := 0; i < len(al) && i < len(bl); i++ {
		if al[i] != bl[i] {
			return fmt.Sprintf("line %d:\n want %q\n got  %q", i+1, al[i], bl[i])
		}
	}
	return fmt.Sprintf("lengths differ: %d vs %d lines", len(al), len(bl))
}
