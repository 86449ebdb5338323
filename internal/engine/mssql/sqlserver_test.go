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
