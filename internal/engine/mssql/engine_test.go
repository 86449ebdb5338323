package mssql

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/hartonomous/hartvault/internal/engine"
	"github.com/hartonomous/hartvault/internal/engine/mssql/chain"
	"github.com/hartonomous/hartvault/internal/engine/mssql/tsql"
	"github.com/hartonomous/hartvault/internal/plan"
	"github.com/hartonomous/hartvault/internal/repo"
	"github.com/hartonomous/hartvault/internal/storage"
)

const testDSN = "sqlserver://hartvault:p%40ss@sqlhost:1433?database=master"

// testEnv is one source backed up by the engine against the fake server, into an
// encrypted file:// repository whose small volumes split every backup.
type testEnv struct {
	t       *testing.T
	ctx     context.Context
	clock   *clock
	fake    *fakeServer
	repo    *repo.Repo
	src     plan.Source
	env     map[string]string
	logs    *bytes.Buffer
	staging string
	tail    bool
}

func newTestEnv(t *testing.T, mutate func(*plan.Source)) *testEnv {
	return newTestEnvAt(t, "", mutate)
}

// newTestEnvAt makes the repository at url ("" for a new local one).
func newTestEnvAt(t *testing.T, url string, mutate func(*plan.Source), repoOpts ...func(*repo.Options)) *testEnv {
	t.Helper()
	c := &clock{t: time.Date(2025, 11, 9, 22, 0, 0, 0, time.UTC)}
	te := &testEnv{t: t, ctx: context.Background(), clock: c, fake: newFakeServer(t, c), env: map[string]string{"HV_DSN": testDSN}, logs: &bytes.Buffer{}}
	te.staging = t.TempDir()
	te.src = plan.Source{Name: "hartonomous-sql", Kind: plan.KindMSSQL, DSNEnv: "HV_DSN", Databases: []string{"Hartonomous"},
		Mode: plan.MSSQLModeStream, StagingDir: te.staging, LocalStagingDir: te.staging,
		MSSQLOptions: plan.MSSQLOptions{Compression: true, Checksum: true, Verify: true, Stats: 25}}
	if mutate != nil {
		mutate(&te.src)
	}
	if url == "" {
		url = "file://" + filepath.ToSlash(filepath.Join(t.TempDir(), "repo"))
	}
	// Encrypted (to an X25519 recipient: a passphrase's KDF would cost seconds under
	// -race) where a test needs it.
	keys := repo.Keys{None: true}
	if strings.Contains(t.Name(), "PointInTime") || strings.Contains(t.Name(), "Key") {
		id, err := age.GenerateX25519Identity()
		if err != nil {
			t.Fatal(err)
		}
		keys = repo.Keys{Recipients: []string{id.Recipient().String()}, Identities: func() ([]age.Identity, error) { return []age.Identity{id}, nil }}
	}
	opts := repo.Options{URL: url, Keys: keys,
		VolumeSize: 128 << 10, Workers: 2, Now: c.Now}
	for _, fn := range repoOpts {
		fn(&opts)
	}
	te.openRepo(opts)
	return te
}

func (te *testEnv) openRepo(opts repo.Options) {
	te.t.Helper()
	if _, err := repo.Init(te.ctx, opts); err != nil {
		te.t.Fatal(err)
	}
	r, err := repo.Open(te.ctx, opts)
	if err != nil {
		te.t.Fatal(err)
	}
	te.t.Cleanup(func() { r.Close() })
	te.repo = r
}

func (te *testEnv) engine() *Engine {
	return New(te.src, Options{Connect: te.fake.connector(testDSN), Getenv: func(k string) string { return te.env[k] }, Now: te.clock.Now, TailLog: te.tail})
}

func (te *testEnv) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(te.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type countProgress struct{ total, done atomic.Int64 }

func (p *countProgress) SetTotal(n int64) { p.total.Store(n) }
func (p *countProgress) Add(n int64)      { p.done.Add(n) }

func (te *testEnv) backup(typ string) (*repo.Manifest, error) {
	te.t.Helper()
	te.clock.advance(time.Second)
	res, err := engine.RunBackup(te.ctx, te.engine(), engine.BackupRequest{Repo: te.repo, Type: typ, Progress: &countProgress{}, Log: te.logger()})
	if err != nil {
		return nil, err
	}
	return res.Manifest, nil
}

func (te *testEnv) mustBackup(typ string) (*repo.Manifest, *Info) {
	te.t.Helper()
	m, err := te.backup(typ)
	if err != nil {
		te.t.Fatalf("backup --type %s: %v", typ, err)
	}
	info, err := ReadInfo(m)
	if err != nil {
		te.t.Fatal(err)
	}
	return m, info
}

func (te *testEnv) restore(req engine.RestoreRequest) (*engine.RestorePlan, error) {
	te.t.Helper()
	req.Repo, req.Log = te.repo, te.logger()
	eng := te.engine()
	p, err := eng.PlanRestore(te.ctx, req)
	if err != nil {
		return nil, err
	}
	return p, eng.Restore(te.ctx, req, p)
}

func (te *testEnv) plan(req engine.RestoreRequest) (*engine.RestorePlan, error) {
	req.Repo, req.Log = te.repo, te.logger()
	return te.engine().PlanRestore(te.ctx, req)
}

func tsqlFile(logical, physical string) tsql.DatabaseFile {
	return tsql.DatabaseFile{LogicalName: logical, PhysicalName: physical, Type: "D", FileID: 3}
}

func stagingEmpty(t *testing.T, dir string) {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range des {
		t.Errorf("staging directory keeps %s", de.Name())
	}
}

func hasStatement(stmts []string, prefix string) int {
	n := 0
	for _, s := range stmts {
		if strings.HasPrefix(s, prefix) {
			n++
		}
	}
	return n
}

// A week of production in stream mode: full, hourly logs, a diff, more logs; then a
// restore to a time inside a log under a new name, through staging files, with the
// row count the database had at that time.
func TestStreamBackupsAndPointInTimeRestore(t *testing.T) {
	t.Parallel()
	te := newTestEnv(t, nil)
	te.fake.addDB("Hartonomous", "FULL")

	full, fi := te.mustBackup("full")
	if full.Type != repo.TypeFull || len(fi.Databases) != 1 {
		t.Fatalf("full: %+v", fi)
	}
	db := fi.Databases[0]
	if db.Type != "full" || !db.Verified || db.Mode != "stream" || len(db.Files) != 2 || db.BackupSet.FirstLSN.IsZero() || db.BackupSet.CheckpointLSN.IsZero() {
		t.Errorf("full: %+v", db)
	}
	if !strings.HasPrefix(db.Statement, "BACKUP DATABASE [Hartonomous] TO DISK = N'"+filepath.Join(te.staging, "hartvault-"+full.ID+"-Hartonomous.full.bak")+"' WITH FORMAT, COMPRESSION, CHECKSUM,") {
		t.Errorf("statement %s", db.Statement)
	}
	if got := db.BackupSet.Finish.Format("-07:00"); got != "+01:00" {
		t.Errorf("finish time zone %s", got)
	}
	// The .bak went through hartvault's pipeline: split into 128 KiB volumes, encrypted.
	if len(full.Objects) < 3 || !full.Objects[0].Encrypted || full.Files[0].Path != "Hartonomous/Hartonomous.full.bak" {
		t.Errorf("objects %d, files %+v", len(full.Objects), full.Files)
	}
	stagingEmpty(t, te.staging)

	var logs []*repo.Manifest
	for i := 0; i < 3; i++ {
		te.fake.work(time.Hour, 40)
		m, _ := te.mustBackup("log")
		logs = append(logs, m)
	}
	te.fake.work(time.Hour, 40)
	diff, di := te.mustBackup("diff")
	if diff.Type != repo.TypeDiff || diff.Parent != full.ID || di.Databases[0].BackupSet.DatabaseBackupLSN != fi.Databases[0].BackupSet.CheckpointLSN {
		t.Errorf("diff %s parent %s: %+v", diff.Type, diff.Parent, di.Databases[0].BackupSet)
	}
	for i := 0; i < 3; i++ {
		te.fake.work(time.Hour, 40)
		m, _ := te.mustBackup("log")
		logs = append(logs, m)
	}
	stmts := te.fake.statements()
	if n := hasStatement(stmts, "RESTORE VERIFYONLY"); n != 8 {
		t.Errorf("%d VERIFYONLY, want one per backup", n)
	}

	// Inside the fifth log: after the diff, one more log, then STOPAT in the sixth.
	l5, _ := ReadInfo(logs[4])
	target := l5.Databases[0].BackupSet.Finish.Add(20 * time.Minute)
	wantRows := te.fake.rowsAt("Hartonomous", target)
	p, err := te.restore(engine.RestoreRequest{Database: "Hartonomous", As: "Hartonomous_Restored", To: engine.Target{Time: target}})
	if err != nil {
		t.Fatal(err)
	}
	if got := []string{p.Backups[0].ID, p.Backups[1].ID, p.Backups[2].ID, p.Backups[3].ID}; got[0] != full.ID || got[1] != diff.ID || got[2] != logs[3].ID || got[3] != logs[4].ID || len(p.Backups) != 5 {
		t.Errorf("backups %v", got)
	}
	if !p.To.Equal(target) {
		t.Errorf("To %v", p.To)
	}
	for _, s := range p.Steps {
		t.Log(s)
	}
	var sqls []string
	for _, s := range p.Steps {
		if !strings.HasPrefix(s, "--") {
			sqls = append(sqls, s)
		}
	}
	if len(sqls) != 6 || !strings.HasPrefix(sqls[0], "RESTORE DATABASE [Hartonomous_Restored] FROM DISK = N'") ||
		!strings.Contains(sqls[0], "MOVE N'Hartonomous' TO N'/var/opt/mssql/data/Hartonomous_Restored.mdf', MOVE N'Hartonomous_log' TO N'/var/opt/mssql/data/Hartonomous_Restored_log.ldf', CHECKSUM, NORECOVERY") ||
		sqls[5] != "RESTORE DATABASE [Hartonomous_Restored] WITH RECOVERY;" {
		t.Errorf("statements:\n%s", strings.Join(sqls, "\n"))
	}
	stop := "STOPAT = N'" + target.In(time.FixedZone("", 3600)).Format("2006-01-02T15:04:05.000") + "'"
	for _, s := range sqls[2:5] {
		if !strings.HasPrefix(s, "RESTORE LOG [Hartonomous_Restored]") || !strings.Contains(s, stop) {
			t.Errorf("log restore without the same STOPAT: %s", s)
		}
	}
	restored := te.fake.db("Hartonomous_Restored")
	if restored == nil || restored.state != "ONLINE" || restored.rows != wantRows {
		t.Fatalf("restored database: %+v, want %d rows", restored, wantRows)
	}
	if orig := te.fake.db("Hartonomous"); orig.rows == wantRows || orig.state != "ONLINE" {
		t.Errorf("the original database was touched: %+v", orig)
	}
	// The statements shown are the statements run.
	ran := te.fake.statements()[len(stmts):]
	if strings.Join(ran, "\n") != strings.Join(sqls, "\n") {
		t.Errorf("ran:\n%s\nplanned:\n%s", strings.Join(ran, "\n"), strings.Join(sqls, "\n"))
	}
	stagingEmpty(t, te.staging)
}

func TestLatestAndByBackupID(t *testing.T) {
	t.Parallel()
	te := newTestEnv(t, nil)
	te.fake.addDB("Hartonomous", "FULL")
	te.mustBackup("full")
	te.fake.work(time.Hour, 40)
	log1, _ := te.mustBackup("log")
	rowsAtLog1 := te.fake.db("Hartonomous").rows
	te.fake.work(time.Hour, 40)
	te.mustBackup("log")
	latestRows := te.fake.db("Hartonomous").rows

	if _, err := te.restore(engine.RestoreRequest{As: "Latest", To: engine.Target{Latest: true}}); err != nil {
		t.Fatal(err)
	}
	if got := te.fake.db("Latest").rows; got != latestRows {
		t.Errorf("latest: %d rows, want %d", got, latestRows)
	}
	p, err := te.restore(engine.RestoreRequest{As: "ByID", BackupID: log1.ID})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range p.Steps {
		if strings.Contains(s, "STOPAT") {
			t.Errorf("restore to a backup's end uses STOPAT: %s", s)
		}
	}
	if got := te.fake.db("ByID").rows; got != rowsAtLog1 {
		t.Errorf("by id: %d rows, want %d", got, rowsAtLog1)
	}
}

func TestRestoreRefusesAnExistingDatabaseWithoutForce(t *testing.T) {
	t.Parallel()
	te := newTestEnv(t, nil)
	te.fake.addDB("Hartonomous", "FULL")
	te.mustBackup("full")
	_, err := te.plan(engine.RestoreRequest{To: engine.Target{Latest: true}})
	if err == nil || !strings.Contains(err.Error(), "database Hartonomous exists on FAKESQL (ONLINE): restoring would replace it; give --force") {
		t.Fatalf("err %v", err)
	}
	before := len(te.fake.statements())
	te.fake.work(time.Hour, 40)
	p, err := te.restore(engine.RestoreRequest{To: engine.Target{Latest: true}, Force: true})
	if err != nil {
		t.Fatal(err)
	}
	ran := te.fake.statements()[before:]
	if ran[0] != "ALTER DATABASE [Hartonomous] SET SINGLE_USER WITH ROLLBACK IMMEDIATE;" || !strings.Contains(ran[1], ", REPLACE, CHECKSUM, NORECOVERY") {
		t.Errorf("ran %q", ran)
	}
	if !strings.Contains(strings.Join(p.Steps, "\n"), "-- database [Hartonomous] exists on FAKESQL (ONLINE, FULL recovery): it will be replaced (--force)") {
		t.Errorf("steps %q", p.Steps)
	}
}

// A log backup with no full before it becomes a full, as Ola Hallengren's
// ChangeBackupType does; the warning says why.
func TestLogWithoutAFullBecomesAFull(t *testing.T) {
	t.Parallel()
	te := newTestEnv(t, nil)
	te.fake.addDB("Hartonomous", "FULL")
	m, info := te.mustBackup("log")
	d := info.Databases[0]
	if m.Type != repo.TypeFull || d.Type != "full" || d.Requested != "log" || !strings.Contains(d.Reason, "no full backup has started a log chain yet") {
		t.Errorf("manifest %s, database %+v", m.Type, d)
	}
	if w := Warnings(m); len(w) != 1 || !strings.Contains(w[0], "Hartonomous: log backup requested, full backup taken") {
		t.Errorf("warnings %q", w)
	}
	// The next log continues the chain.
	te.fake.work(time.Hour, 10)
	m, info = te.mustBackup("log")
	if m.Type != repo.TypeLog || info.Databases[0].Requested != "" || len(Warnings(m)) != 0 {
		t.Errorf("second log: %s %+v %q", m.Type, info.Databases[0], Warnings(m))
	}
	// A diff needs a full: there is one now.
	m, _ = te.mustBackup("diff")
	if m.Type != repo.TypeDiff {
		t.Errorf("diff: %s", m.Type)
	}
}

func TestSimpleRecovery(t *testing.T) {
	t.Parallel()
	te := newTestEnv(t, nil)
	te.fake.addDB("Hartonomous", "SIMPLE")
	te.mustBackup("full")
	_, err := te.backup("log")
	if err == nil || !strings.Contains(err.Error(), "database Hartonomous uses the SIMPLE recovery model: log backups need FULL (set set_full_recovery: true in the plan, or run ALTER DATABASE [Hartonomous] SET RECOVERY FULL;)") {
		t.Fatalf("err %v", err)
	}
	if ms, _ := te.repo.Backups(te.ctx, te.src.Name); len(ms) != 1 {
		t.Errorf("%d backups after a refused one", len(ms))
	}
	stagingEmpty(t, te.staging)

	te.src.SetFullRecovery = true
	m, info := te.mustBackup("log")
	if m.Type != repo.TypeFull || !strings.Contains(info.Databases[0].Reason, "switched from SIMPLE to FULL") || te.fake.db("Hartonomous").model != "FULL" {
		t.Errorf("%s %+v", m.Type, info.Databases[0])
	}
	if hasStatement(te.fake.statements(), "ALTER DATABASE [Hartonomous] SET RECOVERY FULL;") != 1 {
		t.Error("recovery model not set")
	}
	if w := strings.Join(info.Warnings, "\n"); !strings.Contains(w, "Hartonomous used the SIMPLE recovery model: switched to FULL") {
		t.Errorf("warnings %s", w)
	}
	te.fake.work(time.Hour, 10)
	if m, _ := te.mustBackup("log"); m.Type != repo.TypeLog {
		t.Errorf("then log: %s", m.Type)
	}
}

// A full backup by another tool resets the differential base: the diff becomes a full,
// and the warning names the other backup.
func TestForeignFullResetsTheDiffBase(t *testing.T) {
	t.Parallel()
	te := newTestEnv(t, nil)
	te.fake.addDB("Hartonomous", "FULL")
	te.mustBackup("full")
	te.fake.work(time.Hour, 10)
	other := te.fake.foreign(t, "Hartonomous", "full")
	m, info := te.mustBackup("diff")
	d := info.Databases[0]
	if m.Type != repo.TypeFull || d.Requested != "diff" || !strings.Contains(d.Reason, "the differential base was reset by a full backup taken outside hartvault (msdb: full finished ") ||
		!strings.Contains(d.Reason, other.Devices[0]) {
		t.Errorf("%s %+v", m.Type, d)
	}
	// Now the base is ours again.
	if m, _ := te.mustBackup("diff"); m.Type != repo.TypeDiff {
		t.Errorf("next diff: %s", m.Type)
	}
	// Another tool's full, then one of our log backups: the reset is still found and named.
	te.fake.work(time.Hour, 10)
	other = te.fake.foreign(t, "Hartonomous", "full")
	te.mustBackup("log")
	m, info = te.mustBackup("diff")
	if d := info.Databases[0]; m.Type != repo.TypeFull || !strings.Contains(d.Reason, other.Devices[0]) {
		t.Errorf("%s %+v", m.Type, d)
	}
}

// A log backup by another tool takes log this repository does not hold: a log backup
// now could not be restored, so a full is taken.
func TestForeignLogBreaksTheChain(t *testing.T) {
	t.Parallel()
	te := newTestEnv(t, nil)
	te.fake.addDB("Hartonomous", "FULL")
	te.mustBackup("full")
	te.fake.work(time.Hour, 10)
	te.mustBackup("log")
	te.fake.work(time.Hour, 10)
	other := te.fake.foreign(t, "Hartonomous", "log")
	m, info := te.mustBackup("log")
	d := info.Databases[0]
	if m.Type != repo.TypeFull || !strings.Contains(d.Reason, "which no backup in this repository reaches (msdb: log finished") || !strings.Contains(d.Reason, other.Devices[0]) {
		t.Errorf("%s %+v", m.Type, d)
	}
	// A foreign backup seen on a full run is reported too.
	te.fake.work(time.Hour, 10)
	other = te.fake.foreign(t, "Hartonomous", "log")
	_, info = te.mustBackup("full")
	if w := strings.Join(info.Warnings, "\n"); !strings.Contains(w, "msdb lists backups taken outside hartvault since its last backup here (msdb: log finished") || !strings.Contains(w, other.Devices[0]) {
		t.Errorf("warnings %s", w)
	}
}

func TestBackupFailures(t *testing.T) {
	t.Parallel()
	te := newTestEnv(t, nil)
	te.fake.addDB("Hartonomous", "FULL")

	te.fake.failWhen("RESTORE VERIFYONLY", errors.New("mssql: The media family on device is incorrectly formed. (3241)"))
	_, err := te.backup("full")
	if err == nil || !strings.Contains(err.Error(), "back up Hartonomous: RESTORE VERIFYONLY failed: mssql: The media family on device is incorrectly formed. (3241)") {
		t.Fatalf("verify: %v", err)
	}
	delete(te.fake.fail, "RESTORE VERIFYONLY")
	te.fake.failWhen("BACKUP DATABASE", errors.New("mssql: BACKUP DATABASE is terminating abnormally. (3013)"))
	if _, err := te.backup("full"); err == nil || !strings.Contains(err.Error(), "(3013)") {
		t.Fatalf("backup: %v", err)
	}
	delete(te.fake.fail, "BACKUP DATABASE")
	if ms, _ := te.repo.Backups(te.ctx, te.src.Name); len(ms) != 0 {
		t.Errorf("%d backups committed", len(ms))
	}
	stagingEmpty(t, te.staging)
	if err := te.repo.Store().List(te.ctx, "data/", func(o storage.ObjectInfo) error {
		t.Errorf("left over: %s", o.Key)
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	// Preconditions are checked for every database before any backup.
	te.src.Databases = []string{"Hartonomous", "Missing"}
	before := len(te.fake.statements())
	if _, err := te.backup("full"); err == nil || !strings.Contains(err.Error(), "database Missing does not exist on the server") {
		t.Errorf("missing database: %v", err)
	}
	if hasStatement(te.fake.statements()[before:], "BACKUP") != 0 {
		t.Error("a backup ran although a precondition failed")
	}
	te.src.Databases = []string{"Hartonomous"}
	te.fake.db("Hartonomous").state = "RESTORING"
	if _, err := te.backup("full"); err == nil || !strings.Contains(err.Error(), "database Hartonomous is RESTORING: only an ONLINE database can be backed up") {
		t.Errorf("restoring: %v", err)
	}
}

func TestDSNComesFromTheEnvironment(t *testing.T) {
	t.Parallel()
	te := newTestEnv(t, nil)
	te.fake.addDB("Hartonomous", "FULL")
	delete(te.env, "HV_DSN")
	_, err := te.backup("full")
	if err == nil || !strings.Contains(err.Error(), "environment variable HV_DSN (dsn_env) is not set") {
		t.Fatalf("err %v", err)
	}
	te.env["HV_DSN"] = "sqlserver://wrong"
	if _, err = te.backup("full"); err == nil || strings.Contains(err.Error(), "wrong") {
		t.Errorf("a bad DSN: %v", err)
	}
	te.env["HV_DSN"] = testDSN
	te.mustBackup("full")
	if strings.Contains(te.logs.String(), "p%40ss") || strings.Contains(te.logs.String(), "sqlhost") {
		t.Error("the DSN reached the log")
	}
}

func TestOptionsInStatements(t *testing.T) {
	t.Parallel()
	te := newTestEnv(t, func(s *plan.Source) {
		s.MSSQLOptions = plan.MSSQLOptions{Compression: false, Checksum: false, Verify: false, CopyOnly: true, EncryptionCertificate: "Backup]Cert", Stats: 50}
	})
	te.fake.addDB("Hartonomous", "FULL")
	_, info := te.mustBackup("full")
	s := info.Databases[0].Statement
	if !strings.Contains(s, "WITH FORMAT, COPY_ONLY, NO_COMPRESSION, ENCRYPTION (ALGORITHM = AES_256, SERVER CERTIFICATE = [Backup]]Cert]), NAME = N'hartvault ") || !strings.HasSuffix(s, ", STATS = 50;") || info.Databases[0].Verified {
		t.Errorf("statement %s", s)
	}
	if hasStatement(te.fake.statements(), "RESTORE VERIFYONLY") != 0 {
		t.Error("verify: false still verified")
	}
	if !info.Databases[0].BackupSet.CopyOnly {
		t.Error("msdb row not copy-only")
	}
	if _, err := te.backup("log"); err == nil || !strings.Contains(err.Error(), "copy_only: true takes copy-only full backups only") {
		t.Errorf("log with copy_only: %v", err)
	}
	// The copy-only full restores on its own.
	if _, err := te.restore(engine.RestoreRequest{As: "Copy", To: engine.Target{Latest: true}}); err != nil {
		t.Errorf("restore of a copy-only full: %v", err)
	}
	if te.fake.db("Copy") == nil {
		t.Error("not restored")
	}
}

func TestExpressCannotCompress(t *testing.T) {
	t.Parallel()
	te := newTestEnv(t, nil)
	te.fake.edition = 4
	te.fake.addDB("Hartonomous", "FULL")
	m, info := te.mustBackup("full")
	if !strings.Contains(info.Databases[0].Statement, "NO_COMPRESSION") || !strings.Contains(strings.Join(Warnings(m), " "), "SQL Server Express, which cannot compress backups") {
		t.Errorf("%s %q", info.Databases[0].Statement, Warnings(m))
	}
}

func TestProgressFromMessage3211(t *testing.T) {
	t.Parallel()
	te := newTestEnv(t, nil)
	te.fake.addDB("Hartonomous", "FULL")
	p := &countProgress{}
	_, err := engine.RunBackup(te.ctx, te.engine(), engine.BackupRequest{Repo: te.repo, Type: "full", Progress: p})
	if err != nil {
		t.Fatal(err)
	}
	if p.total.Load() == 0 || p.done.Load() != p.total.Load() {
		t.Errorf("progress %d of %d", p.done.Load(), p.total.Load())
	}
	if got := te.fake.stats; len(got) != 4 || got[3] != 100 {
		t.Errorf("STATS = 25 gave %v", got)
	}
}

func TestSeveralDatabases(t *testing.T) {
	t.Parallel()
	te := newTestEnv(t, func(s *plan.Source) { s.Databases = []string{"Hartonomous", "HartonomousArchive"} })
	te.fake.addDB("Hartonomous", "FULL")
	te.fake.addDB("HartonomousArchive", "SIMPLE")
	m, info := te.mustBackup("full")
	if len(info.Databases) != 2 || len(m.Files) != 2 {
		t.Fatalf("%+v", info.Databases)
	}
	te.fake.work(time.Hour, 10)
	if _, err := te.backup("log"); err == nil || !strings.Contains(err.Error(), "HartonomousArchive uses the SIMPLE recovery model") {
		t.Errorf("log: %v", err)
	}
	if _, err := te.plan(engine.RestoreRequest{As: "x"}); err == nil || !strings.Contains(err.Error(), "give --database: the source has databases Hartonomous, HartonomousArchive") {
		t.Errorf("no --database: %v", err)
	}
	if _, err := te.plan(engine.RestoreRequest{Database: "Other"}); err == nil || !strings.Contains(err.Error(), "database Other is not part of this source") {
		t.Errorf("unknown --database: %v", err)
	}
	if _, err := te.restore(engine.RestoreRequest{Database: "hartonomousarchive", As: "Archive2"}); err != nil {
		t.Errorf("restore the archive: %v", err)
	}
}

// A log backup missing from the repository: the plan names the gap.
func TestRestoreAcrossAMissingLog(t *testing.T) {
	t.Parallel()
	te := newTestEnv(t, nil)
	te.fake.addDB("Hartonomous", "FULL")
	te.mustBackup("full")
	var logs []*repo.Manifest
	for i := 0; i < 3; i++ {
		te.fake.work(time.Hour, 10)
		m, _ := te.mustBackup("log")
		logs = append(logs, m)
	}
	// Remove the middle log's manifest, as if it were deleted.
	if err := te.repo.Store().Delete(te.ctx, "backups/"+te.src.Name+"/"+logs[1].ID+".manifest"); err != nil {
		t.Fatal(err)
	}
	_, err := te.plan(engine.RestoreRequest{As: "x", To: engine.Target{Latest: true}})
	if !errors.Is(err, chain.ErrGap) || !strings.Contains(err.Error(), "the log chain of Hartonomous is broken after "+logs[0].ID) || !strings.Contains(err.Error(), "the next log backup, "+logs[2].ID) {
		t.Errorf("err %v", err)
	}
}

func TestTailLog(t *testing.T) {
	t.Parallel()
	te := newTestEnv(t, nil)
	te.fake.addDB("Hartonomous", "FULL")
	te.mustBackup("full")
	te.fake.work(time.Hour, 40)
	te.mustBackup("log")
	te.fake.work(30*time.Minute, 40) // transactions after the last log backup
	wantRows := te.fake.db("Hartonomous").rows
	te.tail = true

	if _, err := te.plan(engine.RestoreRequest{As: "Other", Force: true}); err == nil || !strings.Contains(err.Error(), "--tail-log backs up the database being replaced") {
		t.Errorf("tail with --as: %v", err)
	}
	p, err := te.plan(engine.RestoreRequest{Force: true, To: engine.Target{Latest: true}})
	if err != nil {
		t.Fatal(err)
	}
	steps := strings.Join(p.Steps, "\n")
	for _, want := range []string{
		"ALTER DATABASE [Hartonomous] SET SINGLE_USER WITH ROLLBACK IMMEDIATE;",
		"BACKUP LOG [Hartonomous] TO DISK = N'" + filepath.Join(te.staging, "hartvault-"+tailID+"-Hartonomous.log.trn") + "' WITH FORMAT, COMPRESSION, CHECKSUM, NORECOVERY,",
		"-- store the tail-log backup in the repository as log backup " + tailID,
		"RESTORE LOG [Hartonomous] FROM DISK = N'" + te.staging,
		"RESTORE DATABASE [Hartonomous] WITH RECOVERY;",
	} {
		if !strings.Contains(steps, want) {
			t.Errorf("steps lack %q:\n%s", want, steps)
		}
	}
	if strings.Contains(steps, "REPLACE") {
		t.Errorf("after a tail-log backup no REPLACE is needed:\n%s", steps)
	}
	// A time after the last log backup: the tail is restored with STOPAT.
	at := te.clock.Now().Add(-10 * time.Minute)
	p, err = te.plan(engine.RestoreRequest{Force: true, To: engine.Target{Time: at}})
	if err != nil {
		t.Fatal(err)
	}
	tailRestore := p.Steps[len(p.Steps)-2]
	if !strings.HasPrefix(tailRestore, "RESTORE LOG [Hartonomous]") || !strings.Contains(tailRestore, "STOPAT = N'"+at.In(time.FixedZone("", 3600)).Format("2006-01-02T15:04:05.000")+"'") || !p.To.Equal(at) {
		t.Errorf("tail restore %s, to %v", tailRestore, p.To)
	}
	// A time inside the log backups: the tail is saved, not restored.
	p, err = te.plan(engine.RestoreRequest{Force: true, To: engine.Target{Time: te.clock.Now().Add(-70 * time.Minute)}})
	if err != nil {
		t.Fatal(err)
	}
	if steps := strings.Join(p.Steps, "\n"); !strings.Contains(steps, "the tail-log backup is taken and stored, not restored") || !strings.Contains(steps, "BACKUP LOG") ||
		strings.Count(steps, "RESTORE LOG") != 1 {
		t.Errorf("steps:\n%s", steps)
	}
	if _, err := te.restore(engine.RestoreRequest{Force: true, To: engine.Target{Latest: true}}); err != nil {
		t.Fatal(err)
	}
	if got := te.fake.db("Hartonomous"); got.rows != wantRows || got.state != "ONLINE" {
		t.Errorf("restored %d rows (%s), want %d: the tail must be applied", got.rows, got.state, wantRows)
	}
	ms, _ := te.repo.Backups(te.ctx, te.src.Name)
	last, _ := ReadInfo(ms[len(ms)-1])
	if !last.Databases[0].TailLog || ms[len(ms)-1].Type != repo.TypeLog {
		t.Errorf("the tail-log backup is not in the repository: %+v", last.Databases[0])
	}
	stagingEmpty(t, te.staging)
}

// Windows SQL Server, hartvault elsewhere: the staging directory has two names.
func TestStagingDirectoryWithTwoNames(t *testing.T) {
	t.Parallel()
	local := t.TempDir()
	te := newTestEnv(t, func(s *plan.Source) { s.StagingDir = `D:\hartvault\staging`; s.LocalStagingDir = local })
	te.staging = local
	te.fake.toLocal = func(p string) string {
		rest, ok := strings.CutPrefix(p, `D:\hartvault\staging\`)
		if !ok {
			t.Errorf("server path %s outside the staging directory", p)
		}
		return filepath.Join(local, rest)
	}
	te.fake.addDB("Hartonomous", "FULL")
	_, info := te.mustBackup("full")
	if !strings.Contains(info.Databases[0].Statement, `TO DISK = N'D:\hartvault\staging\hartvault-`) {
		t.Errorf("statement %s", info.Databases[0].Statement)
	}
	if _, err := te.restore(engine.RestoreRequest{As: "Copy", To: engine.Target{Latest: true}}); err != nil {
		t.Fatal(err)
	}
	stagingEmpty(t, local)
}

func TestRestoreNeedsAKeyBeforeTouchingTheServer(t *testing.T) {
	t.Parallel()
	te := newTestEnv(t, nil)
	te.fake.addDB("Hartonomous", "FULL")
	te.mustBackup("full")
	// The backup host holds only the public key: planning works, restoring does not.
	opts := te.repo.Options()
	opts.Keys.Identities = nil
	r, err := repo.Open(te.ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	before := len(te.fake.statements())
	eng := te.engine()
	req := engine.RestoreRequest{Repo: r, As: "x", To: engine.Target{Latest: true}}
	p, err := eng.PlanRestore(te.ctx, req)
	if err == nil {
		err = eng.Restore(te.ctx, req, p)
	}
	if err == nil || !strings.Contains(err.Error(), "no decryption key") {
		t.Errorf("err %v", err)
	}
	if n := len(te.fake.statements()) - before; n != 0 {
		t.Errorf("%d statements ran", n)
	}
}

// A file added between the full and the differential is moved by the differential's
// restore; the others were placed by the full.
func TestFileAddedBeforeTheDiff(t *testing.T) {
	t.Parallel()
	te := newTestEnv(t, nil)
	d := te.fake.addDB("Hartonomous", "FULL")
	te.mustBackup("full")
	te.fake.mu.Lock()
	d.files = append(d.files, tsqlFile("Hartonomous_Vectors", "/var/opt/mssql/data/Hartonomous_Vectors.ndf"))
	te.fake.mu.Unlock()
	te.fake.work(time.Hour, 10)
	te.mustBackup("diff")
	p, err := te.restore(engine.RestoreRequest{As: "Copy", To: engine.Target{Latest: true}})
	if err != nil {
		t.Fatal(err)
	}
	var diff string
	for _, s := range p.Steps {
		if strings.Contains(s, "hartvault-restore-") && strings.Contains(s, ".diff.bak") && !strings.HasPrefix(s, "--") {
			diff = s
		}
	}
	if !strings.Contains(diff, "WITH FILE = 1, MOVE N'Hartonomous_Vectors' TO N'/var/opt/mssql/data/Copy_Vectors.ndf', CHECKSUM") {
		t.Errorf("diff restore: %s", diff)
	}
}

// The tag check is RunBackup's, so it holds for SQL Server backups too.
func TestTagNamesOneBackup(t *testing.T) {
	t.Parallel()
	te := newTestEnv(t, nil)
	te.fake.addDB("Hartonomous", "FULL")
	run := func() error {
		_, err := engine.RunBackup(te.ctx, te.engine(), engine.BackupRequest{Repo: te.repo, Type: "full", Tag: "before-upgrade", Log: te.logger()})
		return err
	}
	if err := run(); err != nil {
		t.Fatal(err)
	}
	before := len(te.fake.statements())
	if err := run(); err == nil || !strings.Contains(err.Error(), `tag "before-upgrade" is already used by a backup of hartonomous-sql`) {
		t.Fatalf("second backup with the same tag: %v", err)
	}
	if after := te.fake.statements(); len(after) != before {
		t.Errorf("the refused backup ran statements: %v", after[before:])
	}
}
