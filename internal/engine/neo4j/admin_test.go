package neo4j

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	neo4jdriver "github.com/neo4j/neo4j-go-driver/v5/neo4j"

	"github.com/hartonomous/hartvault/internal/engine"
	"github.com/hartonomous/hartvault/internal/plan"
	"github.com/hartonomous/hartvault/internal/repo"
	"github.com/hartonomous/hartvault/internal/testutil/neo4jtest"
)

func testdata(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "admin", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestParseVersionAndEdition(t *testing.T) {
	for _, tc := range []struct {
		version, help string
		want          string
		major         int
		edition       string
	}{
		{"5.26-community-version.txt", "5.26-community-database-help.txt", "5.26.30", 5, EditionCommunity},
		{"5.26-enterprise-version.txt", "5.26-enterprise-database-help.txt", "5.26.0", 5, EditionEnterprise},
		{"4.4-community-version.txt", "4.4-community-help.txt", "4.4.26", 4, EditionCommunity},
		{"4.4-enterprise-version.txt", "4.4-enterprise-help.txt", "4.4.26", 4, EditionEnterprise},
	} {
		v, major, err := parseVersion(testdata(t, tc.version))
		if err != nil || v != tc.want || major != tc.major {
			t.Errorf("%s: %q %d %v, want %q %d", tc.version, v, major, err, tc.want, tc.major)
		}
		if got := parseEdition(testdata(t, tc.help)); got != tc.edition {
			t.Errorf("%s: edition %q, want %q (commands %v)", tc.help, got, tc.edition, parseCommands(testdata(t, tc.help)))
		}
	}
	if cmds := parseCommands(testdata(t, "5.26-community-database-help.txt")); !reflect.DeepEqual(cmds, []string{"help", "check", "dump", "import", "info", "load", "migrate"}) {
		t.Errorf("5.26 community database commands: %v", cmds)
	}
	if v, major, err := parseVersion("2025.01.0\n"); err != nil || major != 2025 || v != "2025.01.0" {
		t.Errorf("calendar version: %q %d %v", v, major, err)
	}
	for _, bad := range []string{"", "neo4j-admin: command not found", "3.5.35"} {
		if _, _, err := parseVersion(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	if got := helpArgs(4); !reflect.DeepEqual(got, []string{"help"}) {
		t.Errorf("4.x help: %v", got)
	}
	if got := helpArgs(5); !reflect.DeepEqual(got, []string{"database", "--help"}) {
		t.Errorf("5.x help: %v", got)
	}
}

func TestAdminCommands(t *testing.T) {
	v5 := AdminTool{Major: 5, Edition: EditionEnterprise}
	v4 := AdminTool{Major: 4, Edition: EditionEnterprise}
	until := time.Date(2025, 11, 19, 14, 30, 0, 0, time.FixedZone("CET", 3600))
	dir := filepath.Join("w", "d")
	for _, tc := range []struct {
		name string
		got  []string
		want []string
	}{
		{"5.x backup", backupArgs(v5, "neo4j", "db:6362", dir, adminDiff), []string{"database", "backup", "--from=db:6362", "--to-path=" + dir, "--type=DIFF", "neo4j"}},
		{"4.x backup", backupArgs(v4, "neo4j", "db:6362", dir, adminFull), []string{"backup", "--from=db:6362", "--backup-dir=" + dir, "--database=neo4j", "--fallback-to-full=true", "--check-consistency=true", "--report-dir=" + dir}},
		{"5.x check", checkArgs("neo4j", dir, "r"), []string{"database", "check", "--from-path=" + dir, "--report-path=r", "neo4j"}},
		{"5.x inspect", inspectArgs(dir), []string{"database", "backup", "--inspect-path=" + dir}},
		{"5.x dump", dumpArgs(v5, "neo4j", dir), []string{"database", "dump", "neo4j", "--to-path=" + dir, "--overwrite-destination=true"}},
		{"4.x dump", dumpArgs(v4, "graph", dir), []string{"dump", "--database=graph", "--to=" + filepath.Join(dir, "graph.dump")}},
		{"5.x load", loadArgs(v5, "neo4j", dir), []string{"database", "load", "neo4j", "--from-path=" + dir, "--overwrite-destination=true"}},
		{"4.x load", loadArgs(v4, "graph", dir), []string{"load", "--from=" + filepath.Join(dir, "graph.dump"), "--database=graph", "--force"}},
		{"5.x restore", restoreArgs(v5, "neo4j", "a.backup", time.Time{}), []string{"database", "restore", "--from-path=a.backup", "--overwrite-destination=true", "neo4j"}},
		{"5.x restore until", restoreArgs(v5, "neo4j", "a.backup", until), []string{"database", "restore", "--from-path=a.backup", "--overwrite-destination=true", "--restore-until=2025-11-19 13:30:00", "neo4j"}},
		{"4.x restore", restoreArgs(v4, "neo4j", dir, until), []string{"restore", "--from=" + dir, "--database=neo4j", "--force"}},
	} {
		if !reflect.DeepEqual(tc.got, tc.want) {
			t.Errorf("%s:\n got %q\nwant %q", tc.name, tc.got, tc.want)
		}
	}
	if got := commandLine("neo4j-admin", []string{"database", "restore", "--restore-until=2025-11-19 13:30:00", "it's"}); got != `neo4j-admin database restore '--restore-until=2025-11-19 13:30:00' 'it'\''s'` {
		t.Errorf("command line: %s", got)
	}
	for uri, want := range map[string]string{
		"bolt://127.0.0.1:7687": "127.0.0.1:6362", "neo4j+s://db.example.com": "db.example.com:6362",
		"bolt://[::1]:7687/x": "[::1]:6362", "neo4j://u@host:7687?policy=a": "host:6362",
	} {
		if got := backupAddress(uri); got != want {
			t.Errorf("backupAddress(%s) = %s, want %s", uri, got, want)
		}
	}
}

func TestFailureSummary(t *testing.T) {
	for file, want := range map[string]string{
		"5.26-community-dump-in-use.txt":         "Failed to dump database 'neo4j': The database is in use. Stop database 'neo4j' and try again.",
		"5.26-community-load-in-use.txt":         "Failed to load database 'neo4j': The database is in use. Stop database 'neo4j' and try again.",
		"5.26-community-load-missing.txt":        "/tmp/lt/nodump is not an existing directory",
		"5.26-enterprise-backup-failed.txt":      "Failed to backup database 'neo4j' from server db.internal:6362: Connection refused: db.internal/10.0.0.5:6362",
		"5.26-enterprise-check-failed.txt":       "Database 'neo4j' is inconsistent. See report at /tmp/hartvault-neo4j-1/check/inconsistencies-2025-01-15.10.00.05.report for details.",
		"4.4-community-dump-in-use.txt":          "command failed: The database is in use. Stop database 'neo4j' and try again.",
		"4.4-enterprise-backup-inconsistent.txt": "command failed: Inconsistencies found. See '/var/backups/neo4j/inconsistencies-2025-01-15.10.00.03.report' for details.",
	} {
		if got := failureSummary(testdata(t, file)); got != want {
			t.Errorf("%s:\n got %q\nwant %q", file, got, want)
		}
	}
	if got := failureSummary(""); got != "no output" {
		t.Errorf("empty output: %q", got)
	}
	out := trimOutput(testdata(t, "5.26-community-dump-ok.txt"), 4096)
	if strings.Contains(out, "Files: ") || !strings.Contains(out, "Dump completed successfully") {
		t.Errorf("trimmed output keeps progress or loses the result:\n%s", out)
	}
	long := strings.Repeat("x", 10000)
	if got := trimOutput(long, 100); len(got) > 200 || !strings.Contains(got, "left out") {
		t.Errorf("trimOutput of a long output: %d bytes", len(got))
	}
}

func TestParseInspect(t *testing.T) {
	arts, err := parseInspect(testdata(t, "5.26-enterprise-inspect.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(arts) != 3 || !arts[0].Full || arts[1].Full || arts[2].HighestTx != 18 || arts[1].LowestTx != 12 ||
		arts[2].File != "/path/to/mybackups/neo4j-2023-06-29T14-51-33.backup" || arts[0].Database != "neo4j" {
		t.Fatalf("artifacts: %+v", arts)
	}
	if n := newestArtifact(arts); n == nil || n.File != arts[2].File {
		t.Errorf("newest: %+v", n)
	}
	if _, err := parseInspect("no table here"); err == nil {
		t.Error("no table: no error")
	}
	if _, err := parseInspect("| A | B |\n| 1 | 2 |\n"); err == nil {
		t.Error("a table without FILE: no error")
	}
}

// TestAdminCommunityDumpAndLoad runs admin mode for real against a Community server:
// neo4j-admin (Neo4j's own AdminTool from the harness's class path) dumps the stopped
// database between the plan's stop and start commands, and loads it back.
func TestAdminCommunityDumpAndLoad(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("the test's neo4j-admin is a sh script")
	}
	ctx := context.Background()
	home := t.TempDir()
	srv := neo4jtest.StartHome(t, home)
	srv.AdminScript(t)
	drv := driver(t, srv.URI)
	count := func() int64 {
		t.Helper()
		// No bookmarks: a load takes the database back to an older transaction.
		res, err := neo4jdriver.ExecuteQuery(ctx, drv, "MATCH (n:Item) RETURN count(n)", nil, neo4jdriver.EagerResultTransformer,
			neo4jdriver.ExecuteQueryWithoutBookmarkManager())
		if err != nil {
			t.Fatal(err)
		}
		return res.Records[0].Values[0].(int64)
	}
	if _, err := neo4jdriver.ExecuteQuery(ctx, drv, "UNWIND range(0, 49) AS i CREATE (:Item {n: i, at: datetime('2025-01-01T00:00:00[Europe/Berlin]')})-[:NEXT]->(:Tail)", nil, neo4jdriver.EagerResultTransformer); err != nil {
		t.Fatal(err)
	}
	r := newRepo(t)
	marker := filepath.Join(t.TempDir(), "started")
	src := plan.Source{Name: "graph", Kind: plan.KindNeo4j, URI: srv.URI, Database: "neo4j", Mode: plan.Neo4jModeAdmin,
		Neo4jHome: home, StopCommand: srv.Command("stop"), StartCommand: srv.Command("start") + " && touch " + quoteArg(marker)}
	eng := New(src)

	t0 := time.Now()
	res, err := engine.RunBackup(ctx, eng, engine.BackupRequest{Repo: r, Log: testLogger(t)})
	if err != nil {
		t.Fatalf("admin backup: %v", err)
	}
	info, err := readInfo(res.Manifest)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("dump backup in %s: %+v", time.Since(t0).Round(time.Millisecond), *info.Admin)
	if info.Admin.Method != "dump" || !reflect.DeepEqual(info.Admin.Artifacts, []string{"admin/neo4j.dump"}) || info.Edition != EditionCommunity ||
		info.Admin.Downtime == "" || res.Manifest.Type != repo.TypeFull {
		t.Errorf("manifest: type %s, info %+v %+v", res.Manifest.Type, info, info.Admin)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Errorf("start_command did not run: %v", err)
	}
	if n := count(); n != 50 {
		t.Fatalf("after the backup the server holds %d items, want 50 (is it up again?)", n)
	}

	// Change the graph, then load the dump back over it.
	if _, err := neo4jdriver.ExecuteQuery(ctx, drv, "UNWIND range(50, 79) AS i CREATE (:Item {n: i})", nil, neo4jdriver.EagerResultTransformer); err != nil {
		t.Fatal(err)
	}
	req := engine.RestoreRequest{Repo: r, Log: testLogger(t)}
	p, err := eng.PlanRestore(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	steps := strings.Join(p.Steps, "\n")
	for _, want := range []string{"stop_command", "neo4j-admin load", "start_command (also when the load fails)"} {
		if !strings.Contains(steps, want) {
			t.Errorf("plan steps lack %q:\n%s", want, steps)
		}
	}
	t0 = time.Now()
	if err := eng.Restore(ctx, req, p); err != nil {
		t.Fatalf("admin restore: %v", err)
	}
	t.Logf("load in %s: %v", time.Since(t0).Round(time.Millisecond), p.Notes)
	if n := count(); n != 50 {
		t.Errorf("after the load the server holds %d items, want the 50 of the dump", n)
	}
	rec, err := neo4jdriver.ExecuteQuery(ctx, drv, "MATCH (i:Item {n: 7})-[:NEXT]->(:Tail) RETURN i.at", nil, neo4jdriver.EagerResultTransformer,
		neo4jdriver.ExecuteQueryWithoutBookmarkManager())
	if err != nil || len(rec.Records) != 1 {
		t.Fatalf("item 7 after the load: %v", err)
	}
	if at := rec.Records[0].Values[0].(time.Time); at.Location().String() != "Europe/Berlin" {
		t.Errorf("datetime after the load: %v", at)
	}

	// A dump that fails (the stop command leaves the server running) still runs the
	// start command, and the error names the command and why it failed.
	os.Remove(marker)
	bad := src
	bad.StopCommand = "true"
	bad.StartCommand = "touch " + quoteArg(marker)
	_, err = engine.RunBackup(ctx, New(bad), engine.BackupRequest{Repo: r, Log: testLogger(t)})
	if err == nil || !strings.Contains(err.Error(), "neo4j-admin database dump neo4j") || !strings.Contains(err.Error(), "in use") {
		t.Errorf("dump of a running database: %v, want neo4j-admin's refusal", err)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Errorf("start_command did not run after the failed dump: %v", err)
	}
	if backups, _ := r.Backups(ctx, "graph"); len(backups) != 1 {
		t.Errorf("%d backups, want only the first: a failed dump commits nothing", len(backups))
	}
}
