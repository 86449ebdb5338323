package mssql

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hartonomous/hartvault/internal/engine"
	"github.com/hartonomous/hartvault/internal/engine/mssql/chain"
	"github.com/hartonomous/hartvault/internal/plan"
	"github.com/hartonomous/hartvault/internal/repo"
	"github.com/hartonomous/hartvault/internal/status"
)

// otherTool runs a backup as another tool would (Ola Hallengren's job, a DBA by
// hand): to a file of its own, appended to (NOINIT) unless format is set.
func (te *testEnv) otherTool(stmt string) chain.Record {
	te.t.Helper()
	te.clock.advance(time.Second)
	if err := te.fake.Exec(te.ctx, stmt, nil); err != nil {
		te.t.Fatal(err)
	}
	return te.fake.history[len(te.fake.history)-1]
}

func stepsOf(p *engine.RestorePlan) string { return strings.Join(p.Steps, "\n") }

// Another tool's log backup in the middle of hartvault's chain: a restore to a time
// inside it reads it from the file msdb names, confirmed with RESTORE HEADERONLY.
func TestRestoreReadsAnotherToolsLogFromItsFile(t *testing.T) {
	t.Parallel()
	te := newTestEnv(t, nil)
	te.fake.addDB("Hartonomous", "FULL")
	dir := t.TempDir()
	full, _ := te.mustBackup("full")
	te.fake.work(time.Hour, 30)
	log1, _ := te.mustBackup("log")
	te.fake.work(time.Hour, 30)
	foreign := te.otherTool(fmt.Sprintf("BACKUP LOG [Hartonomous] TO DISK = N'%s' WITH FORMAT, CHECKSUM;", filepath.Join(dir, "ola.trn")))
	te.fake.work(time.Hour, 30)
	if m, _ := te.mustBackup("log"); m.Type != "full" { // the chain is broken: hartvault takes a full
		t.Fatalf("log after another tool's log: %s", m.Type)
	}

	target := foreign.Finish.Add(-20 * time.Minute)
	want := te.fake.rowsAt("Hartonomous", target)
	p, err := te.restore(engine.RestoreRequest{Database: "Hartonomous", As: "PITR", To: engine.Target{Time: target}})
	if err != nil {
		t.Fatal(err)
	}
	steps := stepsOf(p)
	t.Log(steps)
	if got := te.fake.db("PITR"); got == nil || got.rows != want || got.state != "ONLINE" {
		t.Fatalf("restored %+v, want %d rows", got, want)
	}
	if len(p.Backups) != 2 || p.Backups[0].ID != full.ID || p.Backups[1].ID != log1.ID {
		t.Errorf("repository backups %+v", p.Backups)
	}
	if !strings.Contains(steps, fmt.Sprintf("backup msdb:%d (log, finished ", foreign.BackupSetID)) ||
		!strings.Contains(steps, "was taken outside hartvault: SQL Server reads it from "+filepath.Join(dir, "ola.trn")+", position 1 (found by msdb)") ||
		!strings.Contains(steps, "RESTORE LOG [PITR] FROM DISK = N'"+filepath.Join(dir, "ola.trn")+"' WITH FILE = 1, CHECKSUM, NORECOVERY, STOPAT = N'") {
		t.Errorf("plan does not show the backup read from outside:\n%s", steps)
	}
	if n := hasStatement(te.fake.reads, "RESTORE HEADERONLY FROM DISK = N'"+filepath.Join(dir, "ola.trn")+"'"); n == 0 {
		t.Errorf("the file was not confirmed with HEADERONLY: %v", te.fake.reads)
	}
}

// Before hartvault's first full, only another tool's backups cover the target: the
// plan names the files to give; given with --backup-file, they are restored.
func TestRestoreBeforeTheFirstFullNeedsBackupFiles(t *testing.T) {
	t.Parallel()
	te := newTestEnv(t, nil)
	te.fake.addDB("Hartonomous", "FULL")
	dir := t.TempDir()
	bak, trn := filepath.Join(dir, "weekly.bak"), filepath.Join(dir, "hourly.trn")
	te.fake.work(time.Hour, 30)
	te.otherTool(fmt.Sprintf("BACKUP DATABASE [Hartonomous] TO DISK = N'%s' WITH FORMAT, CHECKSUM;", bak))
	te.fake.work(time.Hour, 30)
	lg := te.otherTool(fmt.Sprintf("BACKUP LOG [Hartonomous] TO DISK = N'%s' WITH FORMAT, CHECKSUM;", trn))
	te.fake.work(time.Hour, 30)
	te.mustBackup("full")

	target := lg.Finish.Add(-30 * time.Minute)
	_, err := te.plan(engine.RestoreRequest{As: "Old", To: engine.Target{Time: target}})
	if err == nil || !strings.Contains(err.Error(), "the repository holds none of the backups this restore needs") ||
		!strings.Contains(err.Error(), "--backup-file '"+bak+"' --backup-file '"+trn+"'") {
		t.Fatalf("err %v", err)
	}
	want := te.fake.rowsAt("Hartonomous", target)
	p, err := te.restore(engine.RestoreRequest{As: "Old", To: engine.Target{Time: target}, BackupFiles: []string{bak, trn}})
	if err != nil {
		t.Fatal(err)
	}
	if got := te.fake.db("Old"); got == nil || got.rows != want {
		t.Fatalf("restored %+v, want %d rows", got, want)
	}
	if len(p.Backups) != 0 {
		t.Errorf("repository backups used: %+v", p.Backups)
	}
	// Under a new name, MOVE comes from FILELISTONLY of the file.
	if steps := stepsOf(p); !strings.Contains(steps, "RESTORE FILELISTONLY FROM DISK = N'"+bak+"' WITH FILE = 1") || !strings.Contains(steps, "MOVE N'Hartonomous' TO N'") {
		t.Errorf("steps:\n%s", steps)
	}
}

// msdb's history was purged and another tool appended three log backups to one file:
// --backup-file reads every backup set of it (FILE = 1, 2, 3), times in the server's
// offset from UTC.
func TestBackupFileWithAppendedSetsAndNoHistory(t *testing.T) {
	t.Parallel()
	te := newTestEnv(t, nil)
	te.fake.addDB("Hartonomous", "FULL")
	dir := t.TempDir()
	trn := filepath.Join(dir, "Hartonomous_LOG.trn")
	te.mustBackup("full")
	var last chain.Record
	for i := 0; i < 3; i++ {
		te.fake.work(time.Hour, 30)
		last = te.otherTool(fmt.Sprintf("BACKUP LOG [Hartonomous] TO DISK = N'%s' WITH CHECKSUM;", trn))
	}
	// sp_delete_backuphistory: msdb keeps hartvault's rows only.
	te.fake.history = te.fake.history[:len(te.fake.history)-3]

	target := last.Finish.Add(-10 * time.Minute)
	if _, err := te.plan(engine.RestoreRequest{As: "X", To: engine.Target{Time: target}}); err != nil {
		// Without the file the repository's full stands, stopping short: that is a plan,
		// with a note saying why it stops.
		t.Fatalf("plan without files: %v", err)
	}
	want := te.fake.rowsAt("Hartonomous", target)
	p, err := te.restore(engine.RestoreRequest{As: "X", To: engine.Target{Time: target}, BackupFiles: []string{trn}})
	if err != nil {
		t.Fatal(err)
	}
	steps := stepsOf(p)
	t.Log(steps)
	if got := te.fake.db("X"); got == nil || got.rows != want {
		t.Fatalf("restored %+v, want %d rows", got, want)
	}
	for n := 1; n <= 3; n++ {
		if !strings.Contains(steps, fmt.Sprintf("RESTORE LOG [X] FROM DISK = N'%s' WITH FILE = %d,", trn, n)) {
			t.Errorf("no restore of backup set %d:\n%s", n, steps)
		}
	}
	if !strings.Contains(steps, "msdb has no row for it: its times are taken in the server's current offset from UTC (+01:00)") {
		t.Errorf("no note on times:\n%s", steps)
	}
}

// A backup that cannot be read from outside (a snapshot agent's virtual device, a file
// overwritten since) is named, and the plan stops where the repository's backups do.
func TestUnreadableOutsideBackupsAreExplained(t *testing.T) {
	t.Parallel()
	te := newTestEnv(t, nil)
	te.fake.addDB("Hartonomous", "FULL")
	dir := t.TempDir()
	te.mustBackup("full")
	te.fake.work(time.Hour, 30)
	log1, _ := te.mustBackup("log")
	te.fake.work(time.Hour, 30)
	vdi := te.otherTool(fmt.Sprintf("BACKUP LOG [Hartonomous] TO DISK = N'%s' WITH FORMAT;", filepath.Join(dir, "vdi")))
	h := &te.fake.history[len(te.fake.history)-1]
	h.DeviceType, h.Devices = 7, []string{"{5D1B3C2A-0000-4000-8000-000000000001}"}

	p, err := te.plan(engine.RestoreRequest{As: "Y", To: engine.Target{Time: vdi.Finish.Add(-time.Minute)}})
	if err != nil {
		t.Fatal(err)
	}
	steps := stepsOf(p)
	if !p.To.Equal(mustReadInfo(t, log1).Databases[0].BackupSet.Finish) || !strings.Contains(steps, "backups taken outside hartvault do not reach further") ||
		!strings.Contains(steps, "taken through a virtual device ({5D1B3C2A-0000-4000-8000-000000000001}: a snapshot or a third-party agent)") {
		t.Errorf("to %v:\n%s", p.To, steps)
	}

	// An ordinary file, overwritten by a later backup to the same path.
	te2 := newTestEnv(t, nil)
	te2.fake.addDB("Hartonomous", "FULL")
	te2.mustBackup("full")
	te2.fake.work(time.Hour, 30)
	path := filepath.Join(dir, "reused.trn")
	first := te2.otherTool(fmt.Sprintf("BACKUP LOG [Hartonomous] TO DISK = N'%s' WITH FORMAT;", path))
	te2.fake.work(time.Hour, 30)
	te2.otherTool(fmt.Sprintf("BACKUP LOG [Hartonomous] TO DISK = N'%s' WITH FORMAT;", path))
	p, err = te2.plan(engine.RestoreRequest{As: "Z", To: engine.Target{Time: first.Finish.Add(-time.Minute)}})
	if err != nil {
		t.Fatal(err)
	}
	if steps := stepsOf(p); !strings.Contains(steps, path+" no longer holds backup set "+first.BackupSetGUID+" (overwritten?)") {
		t.Errorf("overwritten file not named:\n%s", steps)
	}
}

// status --import-msdb: backups taken outside hartvault count in the per-type figures
// (a full by another tool keeps the full alert quiet), marked as external; hartvault's
// own backups and its uncommitted attempts are not counted twice.
func TestStatusImportsOtherToolsBackups(t *testing.T) {
	t.Parallel()
	te := newTestEnv(t, func(s *plan.Source) {
		s.Alerts.Full = plan.Duration(8 * 24 * time.Hour)
	})
	te.fake.addDB("Hartonomous", "FULL")
	te.mustBackup("full")
	te.mustBackup("log")
	te.clock.advance(9 * 24 * time.Hour)
	dir := t.TempDir()
	other := te.otherTool(fmt.Sprintf("BACKUP DATABASE [Hartonomous] TO DISK = N'%s' WITH FORMAT, CHECKSUM, COPY_ONLY;", filepath.Join(dir, "dba.bak")))
	// A run of hartvault that failed after BACKUP: in msdb, in no manifest.
	te.otherTool(fmt.Sprintf("BACKUP LOG [Hartonomous] TO DISK = N'%s' WITH FORMAT, DESCRIPTION = N'hartvault backup 20251119T000000Z of source hartonomous-sql';", filepath.Join(dir, "attempt.trn")))

	compute := func(imp bool) status.SourceStatus {
		rep, err := status.Compute(te.ctx, status.Options{Plan: &plan.Plan{Sources: []plan.Source{te.src}}, Repo: te.repo, Now: te.clock.Now(),
			Engine: func(plan.Source) (engine.Engine, error) { return te.engine(), nil }, ImportExternal: imp})
		if err != nil {
			t.Fatal(err)
		}
		return rep.Sources[0]
	}
	full := func(s status.SourceStatus) status.TypeStatus {
		for _, ts := range s.Types {
			if ts.Type == "full" {
				return ts
			}
		}
		t.Fatalf("no full in %+v", s.Types)
		return status.TypeStatus{}
	}
	if ts := full(compute(false)); len(ts.Alerts) == 0 {
		t.Errorf("without import: no stale-full alert after 9 days")
	}
	s := compute(true)
	if len(s.Errors) > 0 {
		t.Fatal(s.Errors)
	}
	ts := full(s)
	if ts.Last == nil || ts.Last.ID != fmt.Sprintf("external:msdb:FAKESQL:%d", other.BackupSetID) || !ts.Last.IsExternal() || len(ts.Alerts) != 0 {
		t.Errorf("full with import: %+v", ts)
	}
	if s.External == nil || len(s.External.Backups) != 1 || s.External.Backups[0].Devices[0] != filepath.Join(dir, "dba.bak") || !s.External.Backups[0].CopyOnly {
		t.Errorf("external %+v", s.External)
	}

	// An unreachable server is one line in the source's errors, not a failed status.
	te.env["HV_DSN"] = "sqlserver://nobody:s3cret@unreachable:1433"
	bad := status.Options{Plan: &plan.Plan{Sources: []plan.Source{te.src}}, Repo: te.repo, Now: te.clock.Now(), ImportExternal: true,
		Engine: func(plan.Source) (engine.Engine, error) {
			return New(te.src, Options{Connect: func(context.Context, string) (Server, error) {
				return nil, fmt.Errorf("dial tcp unreachable:1433: connect: connection refused")
			}, Getenv: func(k string) string { return te.env[k] }, Now: te.clock.Now}), nil
		}}
	rep, err := status.Compute(te.ctx, bad)
	if err != nil {
		t.Fatal(err)
	}
	if e := strings.Join(rep.Sources[0].Errors, "\n"); !strings.Contains(e, "import msdb: ") || !strings.Contains(e, "connection refused") || strings.Contains(e, "s3cret") {
		t.Errorf("errors %q", e)
	}
}

func mustReadInfo(t *testing.T, m *repo.Manifest) *Info {
	t.Helper()
	info, err := ReadInfo(m)
	if err != nil {
		t.Fatal(err)
	}
	return info
}
