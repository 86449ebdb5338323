// Package pgoracle checks a restored PostgreSQL cluster the way the engine itself
// would be checked, not only the way a dump sees it: a dump reads every table by
// sequential scan, while a database also answers through its indexes and its
// visibility map. Check compares index-only with sequential counts, asks
// pg_visibility for tuples and pages that contradict the visibility map, and runs
// pg_amcheck --heapallindexed. Snapshot records what sequential scans see (row
// counts and content hashes per table), for comparing a restore with its source
// at an instant.
//
// It is used by the test harness (pgtest) and the benchmarks; it changes the
// cluster it checks only by creating the pg_visibility and amcheck extensions.
package pgoracle

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Server is how to reach a running cluster: a socket directory or host, a port,
// a superuser, and the directory of its client binaries (for pg_amcheck).
type Server struct {
	Host   string
	Port   int
	User   string
	BinDir string
}

// connect opens a session whose every query is planned afresh: with pgx's cached
// prepared statements a parameterless query keeps its first (generic) plan, so a
// count meant to run by sequential scan would reuse the index-only plan.
func (s Server) connect(ctx context.Context, db string) (*pgx.Conn, error) {
	user := s.User
	if user == "" {
		user = "postgres"
	}
	cfg, err := pgx.ParseConfig(fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable", s.Host, s.Port, user, quoteConn(db)))
	if err != nil {
		return nil, err
	}
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to %s:%d database %s: %w", s.Host, s.Port, db, err)
	}
	return conn, nil
}

func quoteConn(v string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}

// Report is what Check found.
type Report struct {
	Databases int
	Tables    int // relations whose visibility was checked
	// IndexOnly counts the tables whose index-only count was compared with a
	// sequential one (tables without a usable index cannot be).
	IndexOnly int
	Problems  []string
}

// OK reports whether nothing contradicts.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

func (r *Report) String() string {
	if r.OK() {
		return fmt.Sprintf("restore exact: %d databases, %d relations (visibility map, frozen map, page flags), %d index-only counts equal sequential counts, pg_amcheck --heapallindexed clean",
			r.Databases, r.Tables, r.IndexOnly)
	}
	const show = 10
	p := r.Problems
	more := ""
	if len(p) > show {
		more = fmt.Sprintf(" (and %d more)", len(p)-show)
		p = p[:show]
	}
	return fmt.Sprintf("restore NOT exact: %d problems%s:\n  %s", len(r.Problems), more, strings.Join(p, "\n  "))
}

func (r *Report) add(format string, a ...any) {
	r.Problems = append(r.Problems, fmt.Sprintf(format, a...))
}

// Check runs every check against every database that accepts connections. An error
// means the checks could not run; what they found is in the report.
func Check(ctx context.Context, s Server) (*Report, error) {
	dbs, err := databases(ctx, s)
	if err != nil {
		return nil, err
	}
	rep := &Report{Databases: len(dbs)}
	for _, db := range dbs {
		if err := checkDatabase(ctx, s, db, rep); err != nil {
			return nil, fmt.Errorf("database %s: %w", db, err)
		}
	}
	if err := amcheck(ctx, s, rep); err != nil {
		return nil, err
	}
	return rep, nil
}

func databases(ctx context.Context, s Server) ([]string, error) {
	conn, err := s.connect(ctx, "postgres")
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, "SELECT datname FROM pg_database WHERE datallowconn ORDER BY datname")
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

type relation struct {
	oid  uint32
	name string
	kind string
	user bool
}

// relations lists the permanent tables, materialized views and TOAST tables of the
// database (catalogs included: their visibility maps are restored like any other).
func relations(ctx context.Context, conn *pgx.Conn) ([]relation, error) {
	rows, err := conn.Query(ctx, `SELECT c.oid, format('%I.%I', n.nspname, c.relname), c.relkind::text,
			n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind IN ('r', 'm', 't') AND c.relpersistence = 'p'
		ORDER BY 2`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (relation, error) {
		var rel relation
		err := r.Scan(&rel.oid, &rel.name, &rel.kind, &rel.user)
		return rel, err
	})
}

func checkDatabase(ctx context.Context, s Server, db string, rep *Report) error {
	conn, err := s.connect(ctx, db)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE EXTENSION IF NOT EXISTS pg_visibility"); err != nil {
		return fmt.Errorf("create extension pg_visibility (postgresql-contrib): %w", err)
	}
	rels, err := relations(ctx, conn)
	if err != nil {
		return err
	}
	for _, rel := range rels {
		rep.Tables++
		var visible, frozen, flags int64
		err := conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM pg_check_visible($1::oid::regclass)),
				(SELECT count(*) FROM pg_check_frozen($1::oid::regclass)),
				(SELECT count(*) FROM pg_visibility($1::oid::regclass) WHERE all_visible AND NOT pd_all_visible)`, rel.oid).
			Scan(&visible, &frozen, &flags)
		if err != nil {
			return fmt.Errorf("pg_visibility of %s: %w", rel.name, err)
		}
		if visible > 0 {
			rep.add("%s %s: pg_check_visible lists %d tuples the visibility map calls all-visible that are not", db, rel.name, visible)
		}
		if frozen > 0 {
			rep.add("%s %s: pg_check_frozen lists %d tuples the visibility map calls all-frozen that are not", db, rel.name, frozen)
		}
		if flags > 0 {
			rep.add("%s %s: %d pages are all-visible in the visibility map but not marked PD_ALL_VISIBLE (the next change to them would not clear the map)", db, rel.name, flags)
		}
		if rel.kind == "t" {
			continue
		}
		ios, seq, used, err := counts(ctx, conn, rel.name)
		if err != nil {
			return err
		}
		if used {
			rep.IndexOnly++
			if ios != seq {
				rep.add("%s %s: count(*) is %d by index-only scan but %d by sequential scan", db, rel.name, ios, seq)
			}
		}
	}
	return nil
}

// counts returns count(*) with an index-only scan forced (used is false when the
// planner cannot use one: no index) and by sequential scan.
func counts(ctx context.Context, conn *pgx.Conn, table string) (ios, seq int64, used bool, err error) {
	q := "SELECT count(*) FROM " + table
	err = inTx(ctx, conn, []string{"SET LOCAL enable_seqscan = off", "SET LOCAL enable_bitmapscan = off",
		"SET LOCAL enable_indexscan = on", "SET LOCAL enable_indexonlyscan = on"}, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, "EXPLAIN (FORMAT TEXT) "+q)
		if err != nil {
			return err
		}
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		used = strings.Contains(strings.Join(lines, "\n"), "Index Only Scan")
		if !used {
			return nil
		}
		return tx.QueryRow(ctx, q).Scan(&ios)
	})
	if err != nil {
		return 0, 0, false, fmt.Errorf("index-only count of %s: %w", table, err)
	}
	err = inTx(ctx, conn, seqOnly, func(tx pgx.Tx) error { return tx.QueryRow(ctx, q).Scan(&seq) })
	if err != nil {
		return 0, 0, false, fmt.Errorf("sequential count of %s: %w", table, err)
	}
	return ios, seq, used, nil
}

var seqOnly = []string{"SET LOCAL enable_seqscan = on", "SET LOCAL enable_bitmapscan = off",
	"SET LOCAL enable_indexscan = off", "SET LOCAL enable_indexonlyscan = off"}

func inTx(ctx context.Context, conn *pgx.Conn, settings []string, fn func(pgx.Tx) error) error {
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	for _, s := range settings {
		if _, err := tx.Exec(ctx, s); err != nil {
			return err
		}
	}
	return fn(tx)
}

// amcheck runs pg_amcheck on every database: heap pages, TOAST, and every B-tree
// index, with every heap tuple looked up in each index.
func amcheck(ctx context.Context, s Server, rep *Report) error {
	user := s.User
	if user == "" {
		user = "postgres"
	}
	cmd := exec.CommandContext(ctx, filepath.Join(s.BinDir, "pg_amcheck"), "-h", s.Host, "-p", strconv.Itoa(s.Port), "-U", user,
		"--all", "--install-missing", "--heapallindexed")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ee) && ee.ExitCode() == 2:
		// Exit 2: corruption was found (1 is a failure to run).
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if l = strings.TrimSpace(l); l != "" {
				rep.add("pg_amcheck: %s", l)
			}
		}
		return nil
	default:
		return fmt.Errorf("pg_amcheck: %v: %s", err, strings.TrimSpace(string(out)))
	}
}

// Table is what sequential scans see of one table.
type Table struct {
	Rows int64
	Hash string // the sum of 64-bit hashes of the rows' text forms
}

// State maps "database schema.table" to what sequential scans see of it: every user
// table of every database that accepts connections.
type State map[string]Table

// Snapshot reads every user table by sequential scan. Taken on the source at an
// instant, it is what a restore to that instant must hold.
func Snapshot(ctx context.Context, s Server) (State, error) {
	dbs, err := databases(ctx, s)
	if err != nil {
		return nil, err
	}
	st := State{}
	for _, db := range dbs {
		if err := snapshotDatabase(ctx, s, db, st); err != nil {
			return nil, fmt.Errorf("database %s: %w", db, err)
		}
	}
	return st, nil
}

func snapshotDatabase(ctx context.Context, s Server, db string, st State) error {
	conn, err := s.connect(ctx, db)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	rels, err := relations(ctx, conn)
	if err != nil {
		return err
	}
	return inTx(ctx, conn, seqOnly, func(tx pgx.Tx) error {
		for _, rel := range rels {
			if !rel.user || rel.kind != "r" {
				continue
			}
			var t Table
			// An order-free sum of 64-bit row hashes: no sort, so it stays cheap on
			// the benchmark's ten million rows.
			err := tx.QueryRow(ctx, `SELECT count(*), coalesce(sum(hashtextextended(x::text, 0)), 0)::text FROM `+rel.name+` x`).
				Scan(&t.Rows, &t.Hash)
			if err != nil {
				return fmt.Errorf("read %s: %w", rel.name, err)
			}
			st[db+" "+rel.name] = t
		}
		return nil
	})
}

// Diff lists how got differs from want, table by table.
func (want State) Diff(got State) []string {
	var out []string
	for name, w := range want {
		g, ok := got[name]
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("%s: missing (want %d rows)", name, w.Rows))
		case g != w:
			out = append(out, fmt.Sprintf("%s: %d rows, hash %.12s; want %d rows, hash %.12s", name, g.Rows, g.Hash, w.Rows, w.Hash))
		}
	}
	for name, g := range got {
		if _, ok := want[name]; !ok {
			out = append(out, fmt.Sprintf("%s: not expected (%d rows)", name, g.Rows))
		}
	}
	sort.Strings(out)
	return out
}
