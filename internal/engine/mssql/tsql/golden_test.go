package tsql

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files under ../testdata/golden")

// golden compares got with testdata/golden/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("..", "testdata", "golden", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if string(want) != got {
		wl, gl := strings.Split(string(want), "\n"), strings.Split(got, "\n")
		for i := 0; i < len(wl) || i < len(gl); i++ {
			var w, g string
			if i < len(wl) {
				w = wl[i]
			}
			if i < len(gl) {
				g = gl[i]
			}
			if w != g {
				t.Fatalf("%s differs at line %d:\n got  %s\n want %s\n(run go test -update if the change is intended)", path, i+1, g, w)
			}
		}
	}
}

const container = "https://hartvault.blob.core.windows.net/backups"

func urls(n int) Devices {
	var out []string
	for _, f := range BackupFileNames("Hartonomous", TypeFull, n) {
		out = append(out, container+"/data/hartonomous-sql/20251112T000000Z-full-ab12/"+f)
	}
	return ToURL(out...)
}

// Every option combination of BACKUP, for each type and medium.
func TestGoldenBackup(t *testing.T) {
	var b strings.Builder
	media := []struct {
		name string
		dev  Devices
		lay  Layout
	}{
		{"url, 1 stripe", urls(1), mustURLLayout(t, 10<<30)},
		{"url, 3 stripes", urls(3), mustURLLayout(t, 400<<30)},
		{"disk", ToDisk(`D:\hartvault\staging\Hartonomous.full.bak`), DiskLayout()},
	}
	for _, typ := range []string{TypeFull, TypeDiff, TypeLog} {
		for _, m := range media {
			for mask := 0; mask < 16; mask++ {
				compression, checksum, copyOnly, encrypt := mask&1 != 0, mask&2 != 0, mask&4 != 0, mask&8 != 0
				if typ == TypeDiff && copyOnly {
					continue // refused, tested below
				}
				bk := Backup{Database: "Hartonomous", Type: typ, To: m.dev, Compression: compression, Checksum: checksum, CopyOnly: copyOnly,
					MaxTransferSize: m.lay.MaxTransferSize, BlockSize: m.lay.BlockSize, Name: "hartvault 20251112T000000Z-" + typ + "-ab12", Stats: 10}
				if encrypt {
					bk.EncryptionCertificate = "HartvaultBackupCert"
				}
				s, err := BackupStatement(bk)
				if err != nil {
					t.Fatal(err)
				}
				fmt.Fprintf(&b, "-- %s, %s: compression=%t checksum=%t copy_only=%t encryption=%t\n%s\n", typ, m.name, compression, checksum, copyOnly, encrypt, s)
			}
		}
	}
	tail, err := BackupStatement(Backup{Database: "Hartonomous", Type: TypeLog, To: ToDisk("/var/opt/mssql/backup/Hartonomous.tail.trn"), Compression: true, Checksum: true, NoRecovery: true, Stats: 10})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(&b, "-- tail-log backup before a restore over the database\n%s\n", tail)
	golden(t, "backup.sql", b.String())
}

func mustURLLayout(t *testing.T, size int64) Layout {
	l, err := URLLayout(size)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestBackupRefusals(t *testing.T) {
	for name, b := range map[string]Backup{
		"no database":        {Type: TypeFull, To: urls(1)},
		"copy-only diff":     {Database: "d", Type: TypeDiff, To: urls(1), CopyOnly: true},
		"bad type":           {Database: "d", Type: "file", To: urls(1)},
		"no device":          {Database: "d", Type: TypeFull, To: ToURL()},
		"sas in url":         {Database: "d", Type: TypeFull, To: ToURL(container + "/x.bak?sv=1&sig=2")},
		"norecovery on full": {Database: "d", Type: TypeFull, To: urls(1), NoRecovery: true},
		"65 stripes":         {Database: "d", Type: TypeFull, To: ToURL(make([]string, 65)...)},
		"empty path":         {Database: "d", Type: TypeFull, To: ToDisk("")},
		"bad medium":         {Database: "d", Type: TypeFull, To: Devices{Medium: "TAPE", Paths: []string{"x"}}},
	} {
		if s, err := BackupStatement(b); err == nil {
			t.Errorf("%s: got %s", name, s)
		} else if strings.Contains(err.Error(), "sig=2") {
			t.Errorf("%s: error repeats the SAS: %v", name, err)
		}
	}
}

func TestURLLayout(t *testing.T) {
	per := int64(float64(MaxBlobBytes) * StripeFill)
	for _, c := range []struct {
		size int64
		want int
	}{{0, 1}, {1, 1}, {per, 1}, {per + 1, 2}, {400 << 30, 3}, {64 * per, 64}} {
		l, err := URLLayout(c.size)
		if err != nil || l.Stripes != c.want || l.MaxTransferSize != 4194304 || l.BlockSize != 65536 {
			t.Errorf("URLLayout(%d) = %+v, %v; want %d stripes", c.size, l, err, c.want)
		}
		// No stripe may pass the block blob limit.
		if err == nil && c.size/int64(l.Stripes) > MaxBlobBytes {
			t.Errorf("URLLayout(%d): %d bytes a stripe", c.size, c.size/int64(l.Stripes))
		}
	}
	if _, err := URLLayout(64*per + 1); err == nil || !strings.Contains(err.Error(), "use mode: stream") {
		t.Errorf("too big: %v", err)
	}
}

// A point-in-time restore under a new name, with its VERIFYONLY, FILELISTONLY and
// HEADERONLY, as the engine runs it.
func TestGoldenRestore(t *testing.T) {
	var b strings.Builder
	emit := func(comment, s string, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "-- %s\n%s\n", comment, s)
	}
	full := urls(3)
	diff := ToURL(container + "/data/hartonomous-sql/20251112T000000Z-diff-cd34/Hartonomous.diff.bak")
	logs := []Devices{
		ToURL(container + "/data/hartonomous-sql/20251112T001500Z-log-ef56/Hartonomous.log.trn"),
		ToURL(container + "/data/hartonomous-sql/20251112T011500Z-log-0a1b/Hartonomous.log.trn"),
	}
	files := []DatabaseFile{
		{LogicalName: "Hartonomous", PhysicalName: `D:\SQLData\Hartonomous.mdf`, Type: "D", FileID: 1},
		{LogicalName: "Hartonomous_Vectors", PhysicalName: `D:\SQLData\Hartonomous_Vectors.ndf`, Type: "D", FileID: 3},
		{LogicalName: "Hartonomous_log", PhysicalName: `L:\SQLLogs\Hartonomous_log.ldf`, Type: "L", FileID: 2},
	}
	s, err := VerifyOnly(full, true, 10)
	emit("verify a striped backup with checksums", s, err)
	s, err = VerifyOnly(ToDisk("/var/opt/mssql/backup/x.bak"), false, 0)
	emit("verify a backup taken without CHECKSUM", s, err)
	s, err = FileListOnly(full)
	emit("files of the full backup (for MOVE)", s, err)
	s, err = HeaderOnly(full)
	emit("backup set header when msdb has no history", s, err)

	stop := time.Date(2025, 11, 12, 14, 40, 0, 0, time.FixedZone("", 3600))
	moves := MovesFor(files, "Hartonomous", "Hartonomous_Restored", "", "")
	s, err = RestoreStatement(Restore{Database: "Hartonomous_Restored", From: full, Moves: moves, Checksum: true, Stats: 10})
	emit("point in time under a new name: full", s, err)
	s, err = RestoreStatement(Restore{Database: "Hartonomous_Restored", From: diff, Moves: moves, Checksum: true, Stats: 10})
	emit("differential", s, err)
	for i, l := range logs {
		s, err = RestoreStatement(Restore{Database: "Hartonomous_Restored", Log: true, From: l, Checksum: true, StopAt: stop, Stats: 10})
		emit(fmt.Sprintf("log %d with the same STOPAT", i+1), s, err)
	}
	emit("recovery", Recover("Hartonomous_Restored"), nil)

	emit("over the live database: exclusive access", SingleUser("Hartonomous"), nil)
	s, err = RestoreStatement(Restore{Database: "Hartonomous", From: ToDisk(`D:\hartvault\staging\r1\Hartonomous.full.bak`), Replace: true, Stats: 5})
	emit("full over the existing database, backup without checksums", s, err)
	s, err = RestoreStatement(Restore{Database: "Hartonomous", Log: true, From: ToDisk(`D:\hartvault\staging\r1\Hartonomous.log.trn`), Recovery: true})
	emit("last log to its end, with recovery", s, err)
	emit("give the database back after a failed step", MultiUser("Hartonomous"), nil)
	appended := ToDisk(`E:\Backup\Hartonomous_log.trn`)
	appended.Position = 3
	s, err = HeaderOnly(appended)
	emit("headers of a file another tool appended backups to: every backup set, whatever the position", s, err)
	s, err = FileListOnly(appended)
	emit("files of its third backup set", s, err)
	s, err = RestoreStatement(Restore{Database: "Hartonomous", Log: true, From: appended, Checksum: true, StopAt: stop, Stats: 10})
	emit("its third backup set, a log", s, err)
	emit("log backups need FULL recovery", SetRecoveryFull("Hartonomous"), nil)
	golden(t, "restore.sql", b.String())

	if _, err := RestoreStatement(Restore{Database: "d", From: full, StopAt: stop}); err == nil {
		t.Error("STOPAT on RESTORE DATABASE was accepted")
	}
	if _, err := RestoreStatement(Restore{Database: "d", From: full, Moves: []Move{{LogicalName: "x"}}}); err == nil {
		t.Error("MOVE without a path was accepted")
	}
	if _, err := RestoreStatement(Restore{From: full}); err == nil {
		t.Error("restore without a database was accepted")
	}
	if _, err := FileListOnly(Devices{Medium: Disk, Paths: []string{"x"}, Position: -1}); err == nil {
		t.Error("a negative position was accepted")
	}
}

func TestMovesFor(t *testing.T) {
	files := []DatabaseFile{
		{LogicalName: "Hartonomous", PhysicalName: `D:\SQLData\Hartonomous.mdf`, Type: "D"},
		{LogicalName: "Hartonomous_log", PhysicalName: `L:\SQLLogs\hartonomous_log.ldf`, Type: "L"},
		{LogicalName: "Extra", PhysicalName: `D:\SQLData\extra.ndf`, Type: "D"},
		{LogicalName: "FS", PhysicalName: `D:\SQLData\Hartonomous_fs`, Type: "S"},
		{LogicalName: "lin", PhysicalName: `/var/opt/mssql/data/Hartonomous.mdf`, Type: "D"},
	}
	got := MovesFor(files, "Hartonomous", `Test: "a/b"`, "", "")
	want := []string{`D:\SQLData\Test_ _a_b_.mdf`, `L:\SQLLogs\Test_ _a_b__log.ldf`, `D:\SQLData\Test_ _a_b__extra.ndf`, `D:\SQLData\Test_ _a_b__fs`, `/var/opt/mssql/data/Test_ _a_b_.mdf`}
	for i := range want {
		if got[i].To != want[i] || got[i].LogicalName != files[i].LogicalName {
			t.Errorf("move %d: %+v, want %s", i, got[i], want[i])
		}
	}
	got = MovesFor(files[:2], "Hartonomous", "New", `E:\Data\`, "/logs")
	if got[0].To != `E:\Data\New.mdf` || got[1].To != "/logs/New_log.ldf" {
		t.Errorf("default paths: %+v", got)
	}
	// Two files that would get the same name get distinct ones.
	dup := []DatabaseFile{{LogicalName: "a", PhysicalName: `D:\x\Hartonomous.mdf`, Type: "D"}, {LogicalName: "b", PhysicalName: `E:\y\Hartonomous.mdf`, Type: "D"}}
	got = MovesFor(dup, "Hartonomous", "N", `F:\d`, "")
	if got[0].To != `F:\d\N.mdf` || got[1].To != `F:\d\N_2.mdf` {
		t.Errorf("collision: %+v", got)
	}
}

// Odd names are quoted, never interpreted.
func TestGoldenQuoting(t *testing.T) {
	var b strings.Builder
	for _, name := range []string{"Hart onomous", "we]ird]]", "O'Brien's", "データベース", "[bracketed]", "x]; DROP DATABASE master; --", "tab\there"} {
		s, err := BackupStatement(Backup{Database: name, Type: TypeFull, To: ToDisk(JoinServerPath(`D:\stage`, BackupFileNames(name, TypeFull, 1)[0])), Compression: true, Checksum: true, EncryptionCertificate: "cert]'x", Name: "it's " + name, Stats: 10})
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "-- %q\n%s\n", name, s)
		r, err := RestoreStatement(Restore{Database: name, Log: true, From: ToDisk(`D:\it's\x.trn`), Moves: []Move{{LogicalName: name, To: `D:\it's\` + name + ".mdf"}}, StopAt: time.Date(2025, 1, 2, 3, 4, 5, 6e6, time.UTC)})
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s\n%s\n%s\n%s\n", r, Recover(name), SingleUser(name), SetRecoveryFull(name))
	}
	golden(t, "quoting.sql", b.String())

	for in, want := range map[string]string{"a": "[a]", "a]b": "[a]]b]", "]]": "[]]]]]", "": "[]"} {
		if got := QuoteName(in); got != want {
			t.Errorf("QuoteName(%q) = %s, want %s", in, got, want)
		}
	}
	for in, want := range map[string]string{"a": "N'a'", "it's": "N'it''s'", "''": "N''''''", "ü": "N'ü'"} {
		if got := QuoteString(in); got != want {
			t.Errorf("QuoteString(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestGoldenCredential(t *testing.T) {
	const sas = "sv=2022-11-02&ss=b&srt=co&sp=rwdlac&se=2025-11-13T00:00:00Z&sig=c2VjcmV0IHNpZ25hdHVyZQ%3D%3D"
	var b strings.Builder
	for _, c := range []struct{ url, sas string }{
		{container, sas},
		{container + "/", "?" + sas}, // trailing slash and leading ? dropped
		{"http://127.0.0.1:10000/devstoreaccount1/it's]", "  " + sas + " "}, // odd container name
	} {
		sec, err := SASCredential(c.url, c.sas)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(sec.Display, "sig=") || !strings.Contains(sec.SQL, "sig=") {
			t.Fatalf("display %q / sql carries the secret: %v", sec.Display, strings.Contains(sec.SQL, "sig="))
		}
		fmt.Fprintf(&b, "-- %s (shown)\n%s\n-- sent\n%s\n", c.url, sec.Display, sec.SQL)
	}
	golden(t, "credential.sql", b.String())

	for _, bad := range []string{"", "?", "sv=2022", "hunter2", "sig=x"} {
		if _, err := SASCredential(container, bad); err == nil || (bad != "" && strings.Contains(err.Error(), bad) && bad != "?") {
			t.Errorf("SAS %q: %v", bad, err)
		}
	}
	for _, bad := range []string{"", "container", "https://acct.blob.core.windows.net", "https://u:p@acct/x"} {
		if _, err := CredentialName(bad); err == nil {
			t.Errorf("container URL %q accepted", bad)
		}
	}
	if n, _ := CredentialName(container + "/?x=1"); n != container {
		t.Errorf("CredentialName = %s", n)
	}
}

func TestFileNames(t *testing.T) {
	if got := BackupFileNames("Hartonomous", TypeLog, 1); len(got) != 1 || got[0] != "Hartonomous.log.trn" {
		t.Errorf("%v", got)
	}
	if got := BackupFileNames("Hartonomous", TypeFull, 3); got[0] != "Hartonomous.full.01of03.bak" || got[2] != "Hartonomous.full.03of03.bak" {
		t.Errorf("%v", got)
	}
	seen := map[string]string{}
	for _, n := range []string{"a b", "a_b", "a/b", "データ", "..", "", "a]b", strings.Repeat("x", 100), strings.Repeat("x", 101)} {
		tok := FileToken(n)
		if other, dup := seen[tok]; dup {
			t.Errorf("%q and %q share token %q", n, other, tok)
		}
		seen[tok] = n
		for _, r := range tok {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._-", r)) {
				t.Errorf("token %q of %q has %q", tok, n, r)
			}
		}
	}
	if FileToken("Hartonomous") != "Hartonomous" {
		t.Error("plain names are kept")
	}
	if JoinServerPath(`D:\stage\`, "x") != `D:\stage\x` || JoinServerPath("/var/stage/", "x") != "/var/stage/x" || JoinServerPath(`\\h\s`, "x") != `\\h\s\x` {
		t.Error("JoinServerPath")
	}
}
