package mssql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/golang-sql/sqlexp"
	"github.com/microsoft/go-mssqldb/azuread"

	"github.com/hartonomous/hartvault/internal/engine/mssql/chain"
	"github.com/hartonomous/hartvault/internal/engine/mssql/clr"
	"github.com/hartonomous/hartvault/internal/engine/mssql/tsql"
)

// This file is the only one that talks to a real SQL Server; no server runs where
// hartvault is tested, so it is exercised only by the integration test
// (HARTVAULT_TEST_MSSQL). Everything it returns is checked by the engine's tests
// through a fake Server.

// Connect opens a session on the instance named by dsn, a go-mssqldb DSN
// (sqlserver://..., ADO or ODBC form). Entra ID forms (fedauth=ActiveDirectoryDefault,
// ActiveDirectoryManagedIdentity, ...) are accepted. The session uses master, which
// RESTORE needs. Errors never repeat the DSN.
func Connect(ctx context.Context, dsn string) (Server, error) {
	connector, err := azuread.NewConnector(dsn)
	if err != nil {
		return nil, fmt.Errorf("SQL Server DSN: %s", redactDSNError(err))
	}
	db := sql.OpenDB(connector)
	db.SetMaxOpenConns(1)
	conn, err := db.Conn(ctx)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("connect to SQL Server: %s", redactDSNError(err))
	}
	s := &sqlServer{db: db, conn: conn}
	if _, err := conn.ExecContext(ctx, "USE [master];"); err != nil {
		s.Close()
		return nil, fmt.Errorf("connect to SQL Server: use master: %w", err)
	}
	return s, nil
}

var passwordRE = regexp.MustCompile(`(?i)(password|pwd)=[^;&]*`)

// redactDSNError keeps the driver's message but drops anything that looks like a
// password, in case a parser error quotes the DSN.
func redactDSNError(err error) string {
	return passwordRE.ReplaceAllString(err.Error(), "$1=<redacted>")
}

type sqlServer struct {
	db   *sql.DB
	conn *sql.Conn
	// guidOrder is how the session returns uniqueidentifier bytes: 0 not known yet, 1
	// SQL Server's order, 2 RFC 4122 order.
	guidOrder int
}

func (s *sqlServer) Close() error {
	err := s.conn.Close()
	if cerr := s.db.Close(); err == nil {
		err = cerr
	}
	return err
}

func (s *sqlServer) Info(ctx context.Context) (ServerInfo, error) {
	var i ServerInfo
	var offset int
	var data, logp sql.NullString
	err := s.conn.QueryRowContext(ctx, `SELECT CAST(SERVERPROPERTY('ServerName') AS nvarchar(256)),
  CAST(SERVERPROPERTY('ProductVersion') AS nvarchar(128)), CAST(SERVERPROPERTY('Edition') AS nvarchar(128)),
  CAST(SERVERPROPERTY('EngineEdition') AS int), DATEDIFF(minute, SYSUTCDATETIME(), SYSDATETIME()),
  CAST(SERVERPROPERTY('InstanceDefaultDataPath') AS nvarchar(4000)), CAST(SERVERPROPERTY('InstanceDefaultLogPath') AS nvarchar(4000))`).
		Scan(&i.Name, &i.Version, &i.Edition, &i.EngineEdition, &offset, &data, &logp)
	if err != nil {
		return i, fmt.Errorf("read server properties: %w", err)
	}
	i.UTCOffset = time.Duration(offset) * time.Minute
	i.DefaultDataPath, i.DefaultLogPath = data.String, logp.String
	return i, nil
}

func (s *sqlServer) Database(ctx context.Context, name string) (DatabaseInfo, error) {
	d := DatabaseInfo{Name: name}
	var guid, lastLog, diffGUID, diffLSN sql.NullString
	var dataBytes, logBytes sql.NullInt64
	err := s.conn.QueryRowContext(ctx, `SELECT d.state_desc, d.recovery_model_desc, d.is_read_only, d.user_access_desc,
  CONVERT(char(36), rs.database_guid), CONVERT(varchar(40), rs.last_log_backup_lsn),
  CONVERT(char(36), pf.differential_base_guid), CONVERT(varchar(40), pf.differential_base_lsn),
  (SELECT SUM(CAST(f.size AS bigint)) * 8192 FROM sys.master_files f WHERE f.database_id = d.database_id AND f.type <> 1),
  (SELECT SUM(CAST(f.size AS bigint)) * 8192 FROM sys.master_files f WHERE f.database_id = d.database_id AND f.type = 1)
FROM sys.databases d
LEFT JOIN sys.database_recovery_status rs ON rs.database_id = d.database_id
LEFT JOIN sys.master_files pf ON pf.database_id = d.database_id AND pf.file_id = 1
WHERE d.name = @p1`, name).Scan(&d.State, &d.RecoveryModel, &d.ReadOnly, &d.UserAccess, &guid, &lastLog, &diffGUID, &diffLSN, &dataBytes, &logBytes)
	if errors.Is(err, sql.ErrNoRows) {
		return d, nil
	}
	if err != nil {
		return d, fmt.Errorf("read the state of database %s: %w", name, err)
	}
	d.Exists = true
	d.DatabaseGUID, d.DiffBaseGUID = strings.TrimSpace(guid.String), strings.TrimSpace(diffGUID.String)
	d.DataBytes, d.LogBytes = dataBytes.Int64, logBytes.Int64
	if d.LastLogBackupLSN, err = chain.ParseLSN(lastLog.String); err != nil {
		return d, fmt.Errorf("database %s: last_log_backup_lsn: %w", name, err)
	}
	if d.DiffBaseLSN, err = chain.ParseLSN(diffLSN.String); err != nil {
		return d, fmt.Errorf("database %s: differential_base_lsn: %w", name, err)
	}
	return d, nil
}

// historyQuery reads msdb.dbo.backupset with its media families, one row per family
// (stripe). Its columns are numbered by the h* constants. LSNs are converted to
// strings on the server (they are numeric(25,0)); times are the server's local time
// (style 126), with backupset.time_zone to place them.
const historyQuery = `SELECT bs.backup_set_id, CONVERT(char(36), bs.backup_set_uuid), bs.database_name, bs.type,
  CONVERT(varchar(40), bs.first_lsn), CONVERT(varchar(40), bs.last_lsn), CONVERT(varchar(40), bs.checkpoint_lsn),
  CONVERT(varchar(40), bs.database_backup_lsn), CONVERT(varchar(40), bs.differential_base_lsn),
  CONVERT(char(36), bs.differential_base_guid), CONVERT(varchar(40), bs.fork_point_lsn),
  CONVERT(char(36), bs.first_recovery_fork_guid), CONVERT(char(36), bs.last_recovery_fork_guid),
  CONVERT(char(36), bs.database_guid), CONVERT(char(36), bs.family_guid), bs.is_copy_only,
  CONVERT(varchar(23), bs.backup_start_date, 126), CONVERT(varchar(23), bs.backup_finish_date, 126), bs.time_zone,
  CAST(bs.backup_size AS bigint), CAST(ISNULL(bs.compressed_backup_size, bs.backup_size) AS bigint),
  bs.recovery_model, bs.server_name, bs.has_backup_checksums, bs.is_damaged, bs.key_algorithm,
  mf.physical_device_name, mf.device_type, bs.description
FROM msdb.dbo.backupset bs
JOIN msdb.dbo.backupmediafamily mf ON mf.media_set_id = bs.media_set_id AND ISNULL(mf.mirror, 0) = 0
WHERE bs.database_name = @p1 AND bs.type IN ('D', 'I', 'L') AND bs.backup_set_id > @p2
  AND (@p3 = N'' OR bs.media_set_id IN (SELECT m2.media_set_id FROM msdb.dbo.backupmediafamily m2 WHERE m2.physical_device_name = @p3))
  AND (bs.backup_finish_date >= DATEADD(minute, DATEDIFF(minute, SYSUTCDATETIME(), SYSDATETIME()), CONVERT(datetime2(0), @p4, 126))
    OR (@p5 = 1 AND bs.backup_set_id IN (SELECT MAX(b2.backup_set_id) FROM msdb.dbo.backupset b2
      WHERE b2.database_name = @p1 AND b2.type IN ('D', 'I', 'L') GROUP BY b2.type)))
ORDER BY bs.backup_set_id, mf.family_sequence_number`

// The columns of historyQuery.
const (
	hSetID = iota
	hSetGUID
	hDatabase
	hType
	hFirstLSN
	hLastLSN
	hCheckpointLSN
	hDatabaseBackupLSN
	hDiffBaseLSN
	hDiffBaseGUID
	hForkPointLSN
	hFirstForkGUID
	hLastForkGUID
	hDatabaseGUID
	hFamilyGUID
	hCopyOnly
	hStart
	hFinish
	hTimeZone
	hSize
	hCompressedSize
	hRecoveryModel
	hServer
	hChecksums
	hDamaged
	hKeyAlgorithm
	hDevice
	hDeviceType
	hDescription
	hColumns
)

// sinceParam is HistoryQuery.Since as historyQuery's @p4 (UTC, ISO 8601).
func sinceParam(t time.Time) string {
	if t.IsZero() {
		return "1900-01-01T00:00:00"
	}
	return t.UTC().Format("2006-01-02T15:04:05")
}

func (s *sqlServer) History(ctx context.Context, q HistoryQuery) ([]chain.Record, error) {
	newest := 0
	if q.NewestOfType {
		newest = 1
	}
	rows, err := s.conn.QueryContext(ctx, historyQuery, q.Database, q.AfterSetID, q.Device, sinceParam(q.Since), newest)
	if err != nil {
		return nil, fmt.Errorf("read msdb backup history of %s: %w", q.Database, err)
	}
	defer rows.Close()
	var raw [][]any
	for rows.Next() {
		vals := make([]any, hColumns)
		ptrs := make([]any, hColumns)
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, fmt.Errorf("read msdb backup history of %s: %w", q.Database, err)
		}
		raw = append(raw, vals)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read msdb backup history of %s: %w", q.Database, err)
	}
	return parseHistory(raw)
}

// parseHistory turns rows of historyQuery, as go-mssqldb returns them (ints as int64,
// strings, bits as bool, NULL as nil), into records: one per backup set, with the
// devices of its families in order.
func parseHistory(rows [][]any) ([]chain.Record, error) {
	var out []chain.Record
	for _, v := range rows {
		if len(v) != hColumns {
			return nil, fmt.Errorf("msdb backup history: %d columns, want %d", len(v), hColumns)
		}
		id := asInt(v[hSetID])
		device := asString(v[hDevice])
		if n := len(out); n > 0 && out[n-1].BackupSetID == id {
			out[n-1].Devices = append(out[n-1].Devices, device)
			continue
		}
		r := chain.Record{BackupSetID: id, BackupSetGUID: strings.TrimSpace(asString(v[hSetGUID])), Database: asString(v[hDatabase]),
			CopyOnly: asBool(v[hCopyOnly]), Size: asInt(v[hSize]), CompressedSize: asInt(v[hCompressedSize]),
			DifferentialBaseGUID: strings.TrimSpace(asString(v[hDiffBaseGUID])), FirstForkGUID: strings.TrimSpace(asString(v[hFirstForkGUID])),
			LastForkGUID: strings.TrimSpace(asString(v[hLastForkGUID])), DatabaseGUID: strings.TrimSpace(asString(v[hDatabaseGUID])),
			FamilyGUID: strings.TrimSpace(asString(v[hFamilyGUID])), RecoveryModel: asString(v[hRecoveryModel]), ServerName: asString(v[hServer]),
			Checksums: asBool(v[hChecksums]), Damaged: asBool(v[hDamaged]), KeyAlgorithm: asString(v[hKeyAlgorithm]),
			Devices: []string{device}, DeviceType: int(asInt(v[hDeviceType])), Description: asString(v[hDescription])}
		var err error
		if r.Type, err = chain.TypeFromMSDB(asString(v[hType])); err != nil {
			return nil, err
		}
		for _, p := range []struct {
			dst *chain.LSN
			col int
		}{{&r.FirstLSN, hFirstLSN}, {&r.LastLSN, hLastLSN}, {&r.CheckpointLSN, hCheckpointLSN}, {&r.DatabaseBackupLSN, hDatabaseBackupLSN},
			{&r.DifferentialBaseLSN, hDiffBaseLSN}, {&r.ForkPointLSN, hForkPointLSN}} {
			if *p.dst, err = asLSN(v[p.col]); err != nil {
				return nil, fmt.Errorf("msdb backup set %d: %w", id, err)
			}
		}
		loc := zoneOf(sql.NullInt64{Int64: asInt(v[hTimeZone]), Valid: v[hTimeZone] != nil})
		if r.Start, err = parseServerTime(asString(v[hStart]), loc); err != nil {
			return nil, fmt.Errorf("msdb backup set %d: %w", id, err)
		}
		if r.Finish, err = parseServerTime(asString(v[hFinish]), loc); err != nil {
			return nil, fmt.Errorf("msdb backup set %d: %w", id, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// zoneOf turns msdb's time_zone (quarter hours from UTC; 127 unknown) into a zone.
func zoneOf(z sql.NullInt64) *time.Location {
	if !z.Valid || z.Int64 == 127 || z.Int64 < -48 || z.Int64 > 56 {
		return time.UTC
	}
	return time.FixedZone("", int(z.Int64)*15*60)
}

// parseServerTime reads CONVERT(varchar(23), datetime, 126) in the server's zone.
func parseServerTime(s string, loc *time.Location) (time.Time, error) {
	for _, layout := range []string{"2006-01-02T15:04:05.999", "2006-01-02T15:04:05"} {
		if t, err := time.ParseInLocation(layout, strings.TrimSpace(s), loc); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("cannot read server time %q", s)
}

func (s *sqlServer) FileList(ctx context.Context, from tsql.Devices) ([]tsql.DatabaseFile, error) {
	stmt, err := tsql.FileListOnly(from)
	if err != nil {
		return nil, err
	}
	cols, rows, err := s.queryAll(ctx, "RESTORE FILELISTONLY", stmt)
	if err != nil {
		return nil, err
	}
	out := make([]tsql.DatabaseFile, 0, len(rows))
	for _, vals := range rows {
		var f tsql.DatabaseFile
		for i, c := range cols {
			switch strings.ToLower(c) {
			case "logicalname":
				f.LogicalName = asString(vals[i])
			case "physicalname":
				f.PhysicalName = asString(vals[i])
			case "type":
				f.Type = asString(vals[i])
			case "fileid":
				f.FileID = asInt(vals[i])
			case "size":
				f.Size = asInt(vals[i])
			}
		}
		out = append(out, f)
	}
	return out, nil
}

func (s *sqlServer) HeaderOnly(ctx context.Context, from tsql.Devices) ([]BackupHeader, error) {
	stmt, err := tsql.HeaderOnly(from)
	if err != nil {
		return nil, err
	}
	bigEndian, err := s.guidsBigEndian(ctx)
	if err != nil {
		return nil, err
	}
	cols, rows, err := s.queryAll(ctx, "RESTORE HEADERONLY", stmt)
	if err != nil {
		return nil, err
	}
	return parseHeaderOnly(cols, rows, bigEndian)
}

// queryAll runs a statement whose columns vary between server versions (the RESTORE
// ...ONLY forms) and returns its column names and every row as go-mssqldb scans it.
func (s *sqlServer) queryAll(ctx context.Context, what, stmt string) ([]string, [][]any, error) {
	rows, err := s.conn.QueryContext(ctx, stmt)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", what, err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", what, err)
	}
	var out [][]any
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", what, err)
		}
		out = append(out, vals)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", what, err)
	}
	return cols, out, nil
}

// guidsBigEndian finds how the session returns uniqueidentifier columns, which
// HEADERONLY cannot convert on the server: in SQL Server's byte order (the default),
// or in RFC 4122 order when the DSN asks go-mssqldb for GUID conversion.
func (s *sqlServer) guidsBigEndian(ctx context.Context) (bool, error) {
	if s.guidOrder != 0 {
		return s.guidOrder == 2, nil
	}
	var b []byte
	if err := s.conn.QueryRowContext(ctx, "SELECT CONVERT(uniqueidentifier, '00112233-4455-6677-8899-AABBCCDDEEFF')").Scan(&b); err != nil {
		return false, fmt.Errorf("read a uniqueidentifier: %w", err)
	}
	switch {
	case len(b) == 16 && b[0] == 0x33:
		s.guidOrder = 1
	case len(b) == 16 && b[0] == 0x00:
		s.guidOrder = 2
	default:
		return false, fmt.Errorf("uniqueidentifier returned as %x", b)
	}
	return s.guidOrder == 2, nil
}

// parseHeaderOnly turns the rows of RESTORE HEADERONLY, as go-mssqldb returns them,
// into headers. Columns are found by name (they vary between versions); LSNs and
// BackupSize are numeric(25,0) and numeric(20,0), which arrive as decimal text
// ([]byte); GUIDs are 16 bytes in SQL Server's order (bigEndian false) or RFC 4122
// order; datetimes are the server's wall clock.
func parseHeaderOnly(cols []string, rows [][]any, bigEndian bool) ([]BackupHeader, error) {
	idx := map[string]int{}
	for i, c := range cols {
		idx[strings.ToLower(c)] = i
	}
	for _, need := range []string{"backuptype", "position", "databasename", "firstlsn", "lastlsn", "checkpointlsn", "databasebackuplsn",
		"backupstartdate", "backupfinishdate", "bindingid", "recoveryforkid", "backupsetguid"} {
		if _, ok := idx[need]; !ok {
			return nil, fmt.Errorf("RESTORE HEADERONLY: no column %s", need)
		}
	}
	var out []BackupHeader
	for n, v := range rows {
		get := func(name string) any {
			if i, ok := idx[name]; ok && i < len(v) {
				return v[i]
			}
			return nil
		}
		guid := func(name string) (string, error) { return guidString(get(name), bigEndian) }
		h := BackupHeader{Position: int(asInt(get("position")))}
		r := &h.Record
		r.Database, r.ServerName, r.Description = asString(get("databasename")), asString(get("servername")), asString(get("backupdescription"))
		r.RecoveryModel, r.KeyAlgorithm = asString(get("recoverymodel")), asString(get("keyalgorithm"))
		r.CopyOnly, r.Checksums, r.Damaged = asBool(get("iscopyonly")), asBool(get("hasbackupchecksums")), asBool(get("isdamaged"))
		r.Size, r.CompressedSize = asInt(get("backupsize")), asInt(get("compressedbackupsize"))
		if r.CompressedSize == 0 {
			r.CompressedSize = r.Size
		}
		r.DeviceType = int(asInt(get("devicetype")))
		switch bt := asInt(get("backuptype")); bt {
		case 1:
			r.Type = chain.Full
		case 5:
			r.Type = chain.Diff
		case 2:
			r.Type = chain.Log
		default:
			what := map[int64]string{4: "a file or filegroup backup", 6: "a file differential backup", 7: "a partial backup", 8: "a partial differential backup"}[bt]
			if what == "" {
				what = fmt.Sprintf("backup type %d", bt)
			}
			h.Skip = what + ", which a database restore chain does not use"
		}
		if asString(get("backupname")) == "*** Password Protected ***" || get("backupsetguid") == nil && get("firstlsn") == nil {
			h.Skip = "a password-protected backup set (RESTORE HEADERONLY shows nothing of it)"
		}
		if h.Skip != "" {
			out = append(out, h)
			continue
		}
		var err error
		for _, p := range []struct {
			dst *string
			col string
		}{{&r.BackupSetGUID, "backupsetguid"}, {&r.DatabaseGUID, "bindingid"}, {&r.LastForkGUID, "recoveryforkid"}, {&r.FirstForkGUID, "firstrecoveryforkid"},
			{&r.FamilyGUID, "familyguid"}, {&r.DifferentialBaseGUID, "differentialbaseguid"}} {
			if *p.dst, err = guid(p.col); err != nil {
				return nil, fmt.Errorf("RESTORE HEADERONLY row %d: %s: %w", n+1, p.col, err)
			}
		}
		if r.FirstForkGUID == "" {
			r.FirstForkGUID = r.LastForkGUID // data backups: FirstRecoveryForkID equals RecoveryForkID
		}
		for _, p := range []struct {
			dst *chain.LSN
			col string
		}{{&r.FirstLSN, "firstlsn"}, {&r.LastLSN, "lastlsn"}, {&r.CheckpointLSN, "checkpointlsn"}, {&r.DatabaseBackupLSN, "databasebackuplsn"},
			{&r.DifferentialBaseLSN, "differentialbaselsn"}, {&r.ForkPointLSN, "forkpointlsn"}} {
			if *p.dst, err = asLSN(get(p.col)); err != nil {
				return nil, fmt.Errorf("RESTORE HEADERONLY row %d: %s: %w", n+1, p.col, err)
			}
		}
		if r.Start, err = asWallTime(get("backupstartdate")); err != nil {
			return nil, fmt.Errorf("RESTORE HEADERONLY row %d: BackupStartDate: %w", n+1, err)
		}
		if r.Finish, err = asWallTime(get("backupfinishdate")); err != nil {
			return nil, fmt.Errorf("RESTORE HEADERONLY row %d: BackupFinishDate: %w", n+1, err)
		}
		out = append(out, h)
	}
	return out, nil
}

// guidString formats a uniqueidentifier as CONVERT(char(36), ...) does.
func guidString(v any, bigEndian bool) (string, error) {
	switch x := v.(type) {
	case nil:
		return "", nil
	case string:
		return strings.ToUpper(strings.TrimSpace(x)), nil
	case []byte:
		if len(x) != 16 {
			return "", fmt.Errorf("a uniqueidentifier of %d bytes", len(x))
		}
		b := append([]byte(nil), x...)
		if !bigEndian {
			b[0], b[1], b[2], b[3] = b[3], b[2], b[1], b[0]
			b[4], b[5] = b[5], b[4]
			b[6], b[7] = b[7], b[6]
		}
		return fmt.Sprintf("%X-%X-%X-%X-%X", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]), nil
	}
	return "", fmt.Errorf("a uniqueidentifier of type %T", v)
}

// asLSN reads a numeric(25,0) LSN: decimal text ([]byte from go-mssqldb, or a string
// when converted on the server); NULL is the absent LSN.
func asLSN(v any) (chain.LSN, error) {
	s := strings.TrimSpace(asString(v))
	if i := strings.IndexByte(s, '.'); i >= 0 && strings.Trim(s[i+1:], "0") == "" {
		s = s[:i] // "123.0": a scale the server did not need
	}
	return chain.ParseLSN(s)
}

// asWallTime reads a datetime column as its wall clock, in time.UTC.
func asWallTime(v any) (time.Time, error) {
	switch x := v.(type) {
	case time.Time:
		return wallIn(x, time.UTC), nil
	case string:
		return parseServerTime(x, time.UTC)
	case []byte:
		return parseServerTime(string(x), time.UTC)
	case nil:
		return time.Time{}, errors.New("NULL")
	}
	return time.Time{}, fmt.Errorf("a time of type %T", v)
}

func asBool(v any) bool {
	switch x := v.(type) {
	case bool:
		return x
	case int64:
		return x != 0
	case []byte:
		return string(x) == "1" || strings.EqualFold(string(x), "true")
	case string:
		return x == "1" || strings.EqualFold(x, "true")
	}
	return false
}

func asString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case []byte:
		return string(x)
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}

func asInt(v any) int64 {
	switch x := v.(type) {
	case int64:
		return x
	case int32:
		return int64(x)
	case int16:
		return int64(x)
	case uint8:
		return int64(x)
	case bool:
		if x {
			return 1
		}
		return 0
	case []byte:
		return parseIntText(string(x))
	case string:
		return parseIntText(x)
	}
	return 0
}

// parseIntText reads decimal text, with a zero fraction a numeric(20,0) may carry.
func parseIntText(s string) int64 {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '.'); i >= 0 && strings.Trim(s[i+1:], "0") == "" {
		s = s[:i]
	}
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}

// numberRE finds the percentage in message 3211, whatever the language.
var numberRE = regexp.MustCompile(`\d+`)

// ProgressMessage is the number of "N percent processed" (WITH STATS).
const ProgressMessage = 3211

// notice reports message 3211 ("N percent processed", in the server's language) to
// progress; other informational messages are ignored.
func notice(m sqlexp.MsgNotice, progress func(int)) {
	n, ok := m.Message.(interface{ SQLErrorNumber() int32 })
	if !ok || n.SQLErrorNumber() != ProgressMessage || progress == nil {
		return
	}
	if p, err := strconv.Atoi(numberRE.FindString(m.Message.String())); err == nil {
		progress(p)
	}
}

func (s *sqlServer) Exec(ctx context.Context, stmt string, progress func(int)) error {
	msgs := &sqlexp.ReturnMessage{}
	rows, err := s.conn.QueryContext(ctx, stmt, msgs)
	if err != nil {
		return err
	}
	defer rows.Close()
	var errs serverErrors
	for active := true; active; {
		switch m := msgs.Message(ctx).(type) {
		case sqlexp.MsgNotice:
			notice(m, progress)
		case sqlexp.MsgError:
			errs = append(errs, m.Error)
		case sqlexp.MsgNext:
			for rows.Next() {
			}
		case sqlexp.MsgNextResultSet:
			active = rows.NextResultSet()
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	if len(errs) > 0 {
		return errs
	}
	return rows.Err()
}

// serverErrors are the errors of one statement, in the order the server sent them:
// the cause first, then BACKUP/RESTORE's own "terminating abnormally" (3013).
type serverErrors []error

func (e serverErrors) Error() string {
	parts := make([]string, len(e))
	for i, err := range e {
		parts[i] = strings.ReplaceAll(err.Error(), "\n", "; ")
	}
	return strings.Join(parts, "; ")
}

func (e serverErrors) Unwrap() []error { return e }

func (s *sqlServer) ExecIn(ctx context.Context, database string, batches []string) error {
	if _, err := s.conn.ExecContext(ctx, tsql.UseDatabase(database)); err != nil {
		return fmt.Errorf("use database %s: %w", database, err)
	}
	defer s.conn.ExecContext(context.WithoutCancel(ctx), "USE [master];")
	for i, b := range batches {
		if _, err := s.conn.ExecContext(ctx, b); err != nil {
			// A failed batch under XACT_ABORT has rolled back; make sure.
			_, _ = s.conn.ExecContext(context.WithoutCancel(ctx), "IF @@TRANCOUNT > 0 ROLLBACK TRANSACTION;")
			return fmt.Errorf("batch %d of %d: %w", i+1, len(batches), err)
		}
	}
	return nil
}

func (s *sqlServer) CLR(ctx context.Context, database string) (clr.Export, error) {
	e := clr.Export{Database: database}
	db := tsql.QuoteName(database)
	fail := func(what string, err error) (clr.Export, error) {
		return e, fmt.Errorf("read CLR %s of %s: %w", what, database, err)
	}
	type asmRow struct {
		id int64
		a  clr.Assembly
	}
	var asms []*asmRow
	byID := map[int64]*asmRow{}
	rows, err := s.conn.QueryContext(ctx, `SELECT a.assembly_id, a.name, ISNULL(p.name, N''), a.permission_set_desc, a.clr_name, a.is_visible
FROM `+db+`.sys.assemblies a LEFT JOIN `+db+`.sys.database_principals p ON p.principal_id = a.principal_id
WHERE a.is_user_defined = 1 ORDER BY a.name`)
	if err != nil {
		return fail("assemblies", err)
	}
	for rows.Next() {
		r := &asmRow{}
		var ps string
		if err := rows.Scan(&r.id, &r.a.Name, &r.a.Owner, &ps, &r.a.CLRName, &r.a.Visible); err != nil {
			rows.Close()
			return fail("assemblies", err)
		}
		if r.a.PermissionSet, err = clr.PermissionSet(ps); err != nil {
			rows.Close()
			return fail("assemblies", err)
		}
		asms = append(asms, r)
		byID[r.id] = r
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fail("assemblies", err)
	}
	if len(asms) == 0 {
		return e, nil
	}
	if err := s.each(ctx, `SELECT assembly_id, file_id, name, content FROM `+db+`.sys.assembly_files ORDER BY assembly_id, file_id`, func(sc func(...any) error) error {
		var id int64
		var f clr.File
		if err := sc(&id, &f.FileID, &f.Name, &f.Content); err != nil {
			return err
		}
		if r := byID[id]; r != nil {
			r.a.Files = append(r.a.Files, f)
		}
		return nil
	}); err != nil {
		return fail("assembly files", err)
	}
	if err := s.each(ctx, `SELECT assembly_id, referenced_assembly_id FROM `+db+`.sys.assembly_references`, func(sc func(...any) error) error {
		var id, ref int64
		if err := sc(&id, &ref); err != nil {
			return err
		}
		if r, t := byID[id], byID[ref]; r != nil && t != nil {
			r.a.References = append(r.a.References, t.a.Name)
		}
		return nil
	}); err != nil {
		return fail("assembly references", err)
	}
	trusted := map[string]bool{}
	_ = s.each(ctx, `IF OBJECT_ID(N'sys.trusted_assemblies') IS NOT NULL EXEC(N'SELECT CONVERT(varchar(130), hash, 2) FROM sys.trusted_assemblies')`, func(sc func(...any) error) error {
		var h string
		if err := sc(&h); err != nil {
			return err
		}
		trusted[strings.ToUpper(h)] = true
		return nil
	})
	for _, r := range asms {
		if len(r.a.Files) > 0 {
			r.a.Trusted = trusted[strings.ToUpper(fmt.Sprintf("%X", clr.SHA512(r.a.Files[0].Content)))]
		}
		e.Assemblies = append(e.Assemblies, r.a)
	}

	type modRow struct {
		id int64
		m  clr.Module
	}
	var mods []*modRow
	modByID := map[int64]*modRow{}
	if err := s.each(ctx, `SELECT o.object_id, s.name, o.name, o.type, a.name, am.assembly_class, ISNULL(am.assembly_method, N''), am.null_on_null_input,
  CASE WHEN am.execute_as_principal_id IS NULL THEN N'' WHEN am.execute_as_principal_id = -2 THEN N'OWNER' ELSE ISNULL(p.name, N'') END
FROM `+db+`.sys.assembly_modules am
JOIN `+db+`.sys.objects o ON o.object_id = am.object_id
JOIN `+db+`.sys.schemas s ON s.schema_id = o.schema_id
JOIN `+db+`.sys.assemblies a ON a.assembly_id = am.assembly_id
LEFT JOIN `+db+`.sys.database_principals p ON p.principal_id = am.execute_as_principal_id
ORDER BY s.name, o.name`, func(sc func(...any) error) error {
		r := &modRow{}
		var typ string
		if err := sc(&r.id, &r.m.Schema, &r.m.Name, &typ, &r.m.Assembly, &r.m.Class, &r.m.Method, &r.m.NullOnNull, &r.m.ExecuteAs); err != nil {
			return err
		}
		r.m.Kind = strings.TrimSpace(typ)
		if r.m.Kind == clr.Trigger {
			e.Skipped = append(e.Skipped, fmt.Sprintf("trigger %s.%s (CLR trigger: recreate it with its table)", r.m.Schema, r.m.Name))
			return nil
		}
		mods = append(mods, r)
		modByID[r.id] = r
		return nil
	}); err != nil {
		return fail("modules", err)
	}
	typeExpr := `t.name, CAST(x.max_length AS int), CAST(x.precision AS int), CAST(x.scale AS int), CASE WHEN t.is_user_defined = 1 THEN ts.name ELSE N'' END`
	if err := s.each(ctx, `SELECT x.object_id, x.parameter_id, x.name, `+typeExpr+`, x.is_output
FROM `+db+`.sys.parameters x JOIN `+db+`.sys.types t ON t.user_type_id = x.user_type_id JOIN `+db+`.sys.schemas ts ON ts.schema_id = t.schema_id
WHERE x.object_id IN (SELECT object_id FROM `+db+`.sys.assembly_modules) ORDER BY x.object_id, x.parameter_id`, func(sc func(...any) error) error {
		var id, pid int64
		var name, tname, tschema string
		var ml, prec, scale int
		var out bool
		if err := sc(&id, &pid, &name, &tname, &ml, &prec, &scale, &tschema, &out); err != nil {
			return err
		}
		r := modByID[id]
		if r == nil {
			return nil
		}
		typ := clr.FormatType(tname, ml, prec, scale, tschema)
		if pid == 0 {
			r.m.Returns = typ
			return nil
		}
		r.m.Params = append(r.m.Params, clr.Param{Name: name, Type: typ, Output: out && r.m.Kind == clr.Procedure})
		return nil
	}); err != nil {
		return fail("parameters", err)
	}
	if err := s.each(ctx, `SELECT x.object_id, x.name, `+typeExpr+`
FROM `+db+`.sys.columns x JOIN `+db+`.sys.types t ON t.user_type_id = x.user_type_id JOIN `+db+`.sys.schemas ts ON ts.schema_id = t.schema_id
WHERE x.object_id IN (SELECT am.object_id FROM `+db+`.sys.assembly_modules am JOIN `+db+`.sys.objects o ON o.object_id = am.object_id WHERE o.type = 'FT')
ORDER BY x.object_id, x.column_id`, func(sc func(...any) error) error {
		var id int64
		var name, tname, tschema string
		var ml, prec, scale int
		if err := sc(&id, &name, &tname, &ml, &prec, &scale, &tschema); err != nil {
			return err
		}
		if r := modByID[id]; r != nil {
			r.m.Table = append(r.m.Table, clr.Column{Name: name, Type: clr.FormatType(tname, ml, prec, scale, tschema)})
		}
		return nil
	}); err != nil {
		return fail("table columns", err)
	}
	for _, r := range mods {
		e.Modules = append(e.Modules, r.m)
	}
	if err := s.each(ctx, `SELECT s.name, t.name, a.name, at.assembly_class
FROM `+db+`.sys.assembly_types at JOIN `+db+`.sys.schemas s ON s.schema_id = at.schema_id JOIN `+db+`.sys.assemblies a ON a.assembly_id = at.assembly_id
JOIN `+db+`.sys.types t ON t.user_type_id = at.user_type_id ORDER BY s.name, t.name`, func(sc func(...any) error) error {
		var t clr.Type
		if err := sc(&t.Schema, &t.Name, &t.Assembly, &t.Class); err != nil {
			return err
		}
		e.Types = append(e.Types, t)
		return nil
	}); err != nil {
		return fail("types", err)
	}
	return e, nil
}

// each runs a query and calls fn for every row with the row's Scan.
func (s *sqlServer) each(ctx context.Context, query string, fn func(scan func(...any) error) error) error {
	rows, err := s.conn.QueryContext(ctx, query)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := fn(rows.Scan); err != nil {
			return err
		}
	}
	return rows.Err()
}
