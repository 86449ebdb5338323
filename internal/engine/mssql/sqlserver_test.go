package mssql

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-sql/sqlexp"
	mssqldb "github.com/microsoft/go-mssqldb"

	"github.com/hartonomous/hartvault/internal/engine/mssql/chain"
)

// The parts of the go-mssqldb session that run without a server.

func TestProgressNotices(t *testing.T) {
	var got []int
	progress := func(p int) { got = append(got, p) }
	for _, m := range []sqlexp.MsgNotice{
		{Message: mssqldb.Error{Number: 3211, Message: "10 percent processed."}},
		{Message: mssqldb.Error{Number: 3211, Message: "20 Prozent verarbeitet."}},           // German server
		{Message: mssqldb.Error{Number: 3211, Message: "処理済み 30 パーセント。"}},                    // Japanese
		{Message: mssqldb.Error{Number: 4035, Message: "Processed 1234 pages for database"}}, // not progress
		{Message: mssqldb.Error{Number: 3014, Message: "BACKUP DATABASE successfully processed 100 pages"}},
	} {
		notice(m, progress)
		notice(m, nil)
	}
	if !slices.Equal(got, []int{10, 20, 30}) {
		t.Errorf("progress %v", got)
	}
}

func TestServerTimes(t *testing.T) {
	for _, c := range []struct {
		zone   sql.NullInt64
		in     string
		offset string
	}{
		{sql.NullInt64{Int64: 4, Valid: true}, "2025-11-12T14:40:00.123", "+01:00"},
		{sql.NullInt64{Int64: -20, Valid: true}, "2025-11-12T14:40:00", "-05:00"},
		{sql.NullInt64{Int64: 22, Valid: true}, "2025-11-12T14:40:00.5", "+05:30"},
		{sql.NullInt64{Int64: 127, Valid: true}, "2025-11-12T14:40:00", "+00:00"}, // unknown
		{sql.NullInt64{}, "2025-11-12T14:40:00", "+00:00"},
	} {
		got, err := parseServerTime(c.in, zoneOf(c.zone))
		if err != nil || got.Format("-07:00") != c.offset || got.Hour() != 14 || got.Minute() != 40 {
			t.Errorf("%s in zone %v: %v %v", c.in, c.zone, got, err)
		}
	}
	if _, err := parseServerTime("14:40 12/11/2025", time.UTC); err == nil {
		t.Error("a bad time was read")
	}
	if asString([]byte("x")) != "x" || asString(nil) != "" || asString(int64(3)) != "3" || asInt([]byte("42")) != 42 || asInt(int32(7)) != 7 || asInt("9") != 9 || asInt(1.5) != 0 {
		t.Error("scan helpers")
	}
}

func TestConnectErrorsKeepTheDSNSecret(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, dsn := range []string{
		"sqlserver://sa:hunter2@127.0.0.1:1?database=master&dial+timeout=1&connection+timeout=2",
		"server=127.0.0.1;port=1;user id=sa;password=hunter2;dial timeout=1;connection timeout=2",
		"sqlserver://sa:hunter2@127.0.0.1:1?fedauth=NotAWorkflow",
	} {
		_, err := Connect(ctx, dsn)
		if err == nil {
			t.Fatalf("connected to nothing with %q", dsn)
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("error repeats the password: %v", err)
		}
	}
	if got := redactDSNError(errorString("bad dsn Password=hunter2;x")); strings.Contains(got, "hunter2") {
		t.Errorf("redact: %s", got)
	}
}

func TestServerErrorsKeepTheCause(t *testing.T) {
	err := error(serverErrors{
		mssqldb.Error{Number: 3201, Message: "Cannot open backup device 'https://a/b.bak'. Operating system error 86(The specified network password is not correct.)."},
		mssqldb.Error{Number: 3013, Message: "BACKUP DATABASE is terminating abnormally."},
	})
	if got := err.Error(); got != "mssql: Cannot open backup device 'https://a/b.bak'. Operating system error 86(The specified network password is not correct.). (3201); mssql: BACKUP DATABASE is terminating abnormally. (3013)" {
		t.Errorf("message %q", got)
	}
	var me mssqldb.Error
	if !errors.As(err, &me) || me.Number != 3201 {
		t.Errorf("errors.As: %+v", me)
	}
}

// RESTORE HEADERONLY of a file another tool appended a full, a file backup and a log
// to, as go-mssqldb returns the rows: numerics as decimal text, uniqueidentifiers in
// SQL Server's byte order, datetimes as the server's wall clock.
func TestParseHeaderOnly(t *testing.T) {
	cols := []string{"BackupName", "BackupDescription", "BackupType", "Position", "DeviceType", "ServerName", "DatabaseName",
		"FirstLSN", "LastLSN", "CheckpointLSN", "DatabaseBackupLSN", "BackupStartDate", "BackupFinishDate", "BackupSize",
		"CompressedBackupSize", "BindingID", "RecoveryForkID", "FirstRecoveryForkID", "FamilyGUID", "DifferentialBaseLSN",
		"DifferentialBaseGUID", "BackupSetGUID", "IsCopyOnly", "HasBackupChecksums", "IsDamaged", "RecoveryModel", "ForkPointLSN", "KeyAlgorithm"}
	// 6F9619FF-8B86-D011-B42D-00C04FC964FF as SQL Server sends it.
	g := func(last byte) []byte {
		return []byte{0xFF, 0x19, 0x96, 0x6F, 0x86, 0x8B, 0x11, 0xD0, 0xB4, 0x2D, 0x00, 0xC0, 0x4F, 0xC9, 0x64, last}
	}
	start := time.Date(2025, 11, 16, 1, 0, 3, 0, time.UTC)
	full := []any{"Hartonomous-Full", "Ola Hallengren", int64(1), int64(1), int64(2), "SQLPROD01", "Hartonomous",
		[]byte("41000000012000037"), []byte("41000000014400001"), []byte("41000000012000037"), []byte("0"), start, start.Add(4 * time.Minute),
		[]byte("1073741824"), []byte("268435456"), g(0x01), g(0x02), nil, g(0x01), nil, nil, g(0xF1), false, true, false, "FULL", nil, nil}
	file := []any{"", "", int64(4), int64(2), int64(2), "SQLPROD01", "Hartonomous", []byte("41000000014400001"), []byte("41000000014400009"),
		[]byte("41000000014400001"), []byte("41000000012000037"), start.Add(time.Hour), start.Add(time.Hour), []byte("1024"), []byte("1024"),
		g(0x01), g(0x02), nil, g(0x01), nil, nil, g(0xF2), false, false, false, "FULL", nil, nil}
	log := []any{"", "", int64(2), int64(3), int64(2), "SQLPROD01", "Hartonomous", []byte("41000000012000037"), []byte("41000000015200001.0"),
		[]byte("41000000012000037"), []byte("41000000012000037"), start.Add(2 * time.Hour), start.Add(2*time.Hour + time.Second), []byte("7340032"), nil,
		g(0x01), g(0x02), g(0x02), g(0x01), nil, nil, g(0xF3), false, true, false, "FULL", nil, nil}
	hs, err := parseHeaderOnly(cols, [][]any{full, file, log}, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(hs) != 3 {
		t.Fatalf("%d headers", len(hs))
	}
	f := hs[0].Record
	if hs[0].Position != 1 || hs[0].Skip != "" || f.Type != chain.Full || f.BackupSetGUID != "6F9619FF-8B86-D011-B42D-00C04FC964F1" ||
		f.DatabaseGUID != "6F9619FF-8B86-D011-B42D-00C04FC96401" || f.FirstForkGUID != f.LastForkGUID || f.FirstLSN.String() != "41000000012000037" ||
		f.CheckpointLSN.String() != "41000000012000037" || !f.Checksums || f.Size != 1<<30 || f.CompressedSize != 256<<20 || f.ServerName != "SQLPROD01" ||
		!f.Finish.Equal(time.Date(2025, 11, 16, 1, 4, 3, 0, time.UTC)) {
		t.Errorf("full %+v", hs[0])
	}
	if hs[1].Position != 2 || !strings.Contains(hs[1].Skip, "a file or filegroup backup") {
		t.Errorf("file backup %+v", hs[1])
	}
	l := hs[2].Record
	if hs[2].Position != 3 || l.Type != chain.Log || l.LastLSN.String() != "41000000015200001" || l.CompressedSize != l.Size || l.DatabaseBackupLSN.Cmp(f.CheckpointLSN) != 0 {
		t.Errorf("log %+v", hs[2])
	}
	// Placed in the server's zone, the wall clock stays.
	hs[0].InZone(time.FixedZone("", -5*3600))
	if got := hs[0].Record.Finish.Format("2006-01-02 15:04:05 -07:00"); got != "2025-11-16 01:04:03 -05:00" {
		t.Errorf("in zone: %s", got)
	}
	// RFC 4122 order (a DSN that converts GUIDs) reads the same GUID.
	be := append([]any(nil), full...)
	be[21] = []byte{0x6F, 0x96, 0x19, 0xFF, 0x8B, 0x86, 0xD0, 0x11, 0xB4, 0x2D, 0x00, 0xC0, 0x4F, 0xC9, 0x64, 0xF1}
	if hs, err := parseHeaderOnly(cols, [][]any{be}, true); err != nil || hs[0].Record.BackupSetGUID != "6F9619FF-8B86-D011-B42D-00C04FC964F1" {
		t.Errorf("big-endian GUID: %v %+v", err, hs)
	}
	// A column missing (another version, a wrong statement) is named.
	if _, err := parseHeaderOnly(cols[:5], [][]any{full[:5]}, false); err == nil || !strings.Contains(err.Error(), "no column databasename") {
		t.Errorf("missing column: %v", err)
	}
	// A damaged LSN is named with its row.
	bad := append([]any(nil), log...)
	bad[8] = []byte("41x")
	if _, err := parseHeaderOnly(cols, [][]any{full, bad}, false); err == nil || !strings.Contains(err.Error(), "row 2: lastlsn") {
		t.Errorf("bad LSN: %v", err)
	}
}
