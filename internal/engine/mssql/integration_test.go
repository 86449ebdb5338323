package mssql

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/microsoft/go-mssqldb/azuread"

	"github.com/hartonomous/hartvault/internal/engine"
	"github.com/hartonomous/hartvault/internal/engine/mssql/tsql"
	"github.com/hartonomous/hartvault/internal/plan"
	"github.com/hartonomous/hartvault/internal/repo"
)

// TestIntegration runs the engine against a real SQL Server: full, differential and
// log backups of a scratch database in mode stream into a local repository, then a
// point-in-time restore under a new name and a restore to the latest point, comparing
// row counts.
//
//	HARTVAULT_TEST_MSSQL                go-mssqldb DSN of a login that may create databases and back them up
//	HARTVAULT_TEST_MSSQL_STAGING        a directory SQL Server writes and this test reads (default: a temp dir, for a server on this host)
//	HARTVAULT_TEST_MSSQL_STAGING_SERVER the same directory as the server names it, when it differs (a container's volume)
func TestIntegration(t *testing.T) {
	dsn := os.Getenv("HARTVAULT_TEST_MSSQL")
	if dsn == "" {
		t.Skip("HARTVAULT_TEST_MSSQL not set: no SQL Server on this machine; set it to a go-mssqldb DSN " +
			"(and HARTVAULT_TEST_MSSQL_STAGING to a directory the server writes) to run backups and restores against a real server")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()

	local := os.Getenv("HARTVAULT_TEST_MSSQL_STAGING")
	if local == "" {
		local = t.TempDir()
		if err := os.Chmod(local, 0o777); err != nil { // the server's service account writes here
			t.Fatal(err)
		}
	}
	server := os.Getenv("HARTVAULT_TEST_MSSQL_STAGING_SERVER")
	if server == "" {
		server = local
	}

	connector, err := azuread.NewConnector(dsn)
	if err != nil {
		t.Fatalf("DSN: %v", err)
	}
	sqldb := sql.OpenDB(connector)
	defer sqldb.Close()
	suffix := make([]byte, 4)
	rand.Read(suffix)
	db := "hartvault_it_" + hex.EncodeToString(suffix)
	pit, latest := db+"_pit", db+"_latest"
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := sqldb.ExecContext(ctx, q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	count := func(name string) int {
		t.Helper()
		var n int
		if err := sqldb.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+tsql.QuoteName(name)+".dbo.rows_t").Scan(&n); err != nil {
			t.Fatalf("count %s: %v", name, err)
		}
		return n
	}
	insert := func(n int) {
		t.Helper()
		exec("INSERT INTO "+tsql.QuoteName(db)+".dbo.rows_t (v) SELECT TOP (@p1) 1 FROM sys.all_objects", n)
	}
	exec("CREATE DATABASE " + tsql.QuoteName(db))
	t.Cleanup(func() {
		for _, n := range []string{db, pit, latest} {
			_, _ = sqldb.ExecContext(context.Background(), "IF DB_ID(@p1) IS NOT NULL BEGIN ALTER DATABASE "+tsql.QuoteName(n)+" SET SINGLE_USER WITH ROLLBACK IMMEDIATE; DROP DATABASE "+tsql.QuoteName(n)+"; END", n)
		}
	})
	exec(tsql.SetRecoveryFull(db))
	exec("CREATE TABLE " + tsql.QuoteName(db) + ".dbo.rows_t (id int IDENTITY PRIMARY KEY, v int NOT NULL, at datetime2 NOT NULL DEFAULT SYSDATETIME())")
	insert(100)

	r := openLocalRepo(t, ctx)
	src := plan.Source{Name: "it", Kind: plan.KindMSSQL, DSNEnv: "HV_IT_DSN", Databases: []string{db}, Mode: plan.MSSQLModeStream,
		StagingDir: server, LocalStagingDir: local, MSSQLOptions: plan.MSSQLOptions{Compression: true, Checksum: true, Verify: true, Stats: 10}}
	eng := New(src, Options{Getenv: func(k string) string {
		if k == "HV_IT_DSN" {
			return dsn
		}
		return ""
	}})
	backup := func(typ string) *Info {
		t.Helper()
		res, err := engine.RunBackup(ctx, eng, engine.BackupRequest{Repo: r, Type: typ})
		if err != nil {
			t.Fatalf("backup --type %s: %v", typ, err)
		}
		info, err := ReadInfo(res.Manifest)
		if err != nil {
			t.Fatal(err)
		}
		d := info.Databases[0]
		if d.Type != typ || !d.Verified || d.BackupSet.LastLSN.IsZero() {
			t.Fatalf("backup --type %s: %+v", typ, d)
		}
		return info
	}
	backup("full")
	insert(50)
	backup("diff")
	insert(50)
	backup("log")
	insert(50)
	time.Sleep(1500 * time.Millisecond)
	var target time.Time
	if err := sqldb.QueryRowContext(ctx, "SELECT SYSDATETIMEOFFSET()").Scan(&target); err != nil {
		t.Fatal(err)
	}
	atTarget := count(db)
	time.Sleep(1500 * time.Millisecond)
	insert(50)
	backup("log")
	final := count(db)

	restore := func(req engine.RestoreRequest) {
		t.Helper()
		req.Repo = r
		p, err := eng.PlanRestore(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range p.Steps {
			t.Log(s)
		}
		if err := eng.Restore(ctx, req, p); err != nil {
			t.Fatal(err)
		}
	}
	restore(engine.RestoreRequest{Database: db, As: pit, To: engine.Target{Time: target}})
	if got := count(pit); got != atTarget {
		t.Errorf("point in time: %d rows, want %d", got, atTarget)
	}
	restore(engine.RestoreRequest{Database: db, As: latest, To: engine.Target{Latest: true}})
	if got := count(latest); got != final {
		t.Errorf("latest: %d rows, want %d", got, final)
	}

	// Another tool's log backups, two appended to one file (NOINIT): status counts them
	// from msdb, and a restore to a time inside the second reads both from the file msdb
	// names, their positions found with RESTORE HEADERONLY.
	other := serverJoin(server, db+"_other.trn")
	insert(50)
	exec("BACKUP LOG " + tsql.QuoteName(db) + " TO DISK = " + tsql.QuoteString(other) + " WITH NOINIT, CHECKSUM")
	insert(50)
	time.Sleep(1500 * time.Millisecond)
	var inside time.Time
	if err := sqldb.QueryRowContext(ctx, "SELECT SYSDATETIMEOFFSET()").Scan(&inside); err != nil {
		t.Fatal(err)
	}
	atInside := count(db)
	time.Sleep(1500 * time.Millisecond)
	insert(50)
	exec("BACKUP LOG " + tsql.QuoteName(db) + " TO DISK = " + tsql.QuoteString(other) + " WITH NOINIT, CHECKSUM")
	known, err := r.Backups(ctx, src.Name)
	if err != nil {
		t.Fatal(err)
	}
	ext, err := eng.ExternalBackups(ctx, known, time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(ext) != 2 || ext[0].Type != "log" || ext[0].Devices[0] != other {
		t.Errorf("external backups: %+v", ext)
	}
	outside := db + "_outside"
	t.Cleanup(func() {
		_, _ = sqldb.ExecContext(context.Background(), "IF DB_ID(@p1) IS NOT NULL BEGIN ALTER DATABASE "+tsql.QuoteName(outside)+" SET SINGLE_USER WITH ROLLBACK IMMEDIATE; DROP DATABASE "+tsql.QuoteName(outside)+"; END", outside)
	})
	restore(engine.RestoreRequest{Database: db, As: outside, To: engine.Target{Time: inside}})
	if got := count(outside); got != atInside {
		t.Errorf("through another tool's log backups: %d rows, want %d", got, atInside)
	}
}

// serverJoin joins a file name to a directory as the server names it (Windows or not).
func serverJoin(dir, name string) string {
	if strings.Contains(dir, `\`) {
		return strings.TrimRight(dir, `\`) + `\` + name
	}
	return strings.TrimRight(dir, "/") + "/" + name
}

func openLocalRepo(t *testing.T, ctx context.Context) *repo.Repo {
	t.Helper()
	opts := repo.Options{URL: "file://" + filepath.ToSlash(filepath.Join(t.TempDir(), "repo")), Keys: repo.Keys{None: true}}
	if _, err := repo.Init(ctx, opts); err != nil {
		t.Fatal(err)
	}
	r, err := repo.Open(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}
