package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// ServerInfo is what a backup records about the cluster.
type ServerInfo struct {
	Version   int    `json:"version"` // server_version_num
	SystemID  uint64 `json:"system_id,string"`
	DataDir   string `json:"data_directory"`
	Checksums bool   `json:"data_checksums"`
	SegSize   int64  `json:"wal_segment_size"`
	BlockSize int    `json:"block_size"`
	Timeline  uint32 `json:"timeline"`
	Archiving string `json:"archive_command,omitempty"`
}

// connect opens a session for backup control. Errors say where, never a password.
func connect(ctx context.Context, conninfo string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(conninfo)
	if err != nil {
		return nil, fmt.Errorf("conninfo: %s", scrubConnErr(err))
	}
	cfg.RuntimeParams["application_name"] = "hartvault"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to PostgreSQL at %s: %s", where(cfg.Config), scrubConnErr(err))
	}
	return conn, nil
}

func where(c pgconn.Config) string {
	return fmt.Sprintf("%s:%d", c.Host, c.Port)
}

// scrubConnErr keeps pgx's cause but drops anything that could echo a password.
func scrubConnErr(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Message
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) && ce.Unwrap() != nil {
		return ce.Unwrap().Error()
	}
	s := err.Error()
	if i := strings.Index(s, "password="); i >= 0 {
		s = s[:i] + "password=REDACTED"
	}
	return s
}

func serverInfo(ctx context.Context, conn *pgx.Conn) (ServerInfo, error) {
	var info ServerInfo
	var version, segSize, bsz, checksums, sysid, archiveMode, archiveCommand string
	err := conn.QueryRow(ctx, `SELECT current_setting('server_version_num'), current_setting('data_directory'),
		current_setting('wal_segment_size'), current_setting('block_size'), current_setting('data_checksums'),
		(SELECT system_identifier::text FROM pg_control_system()),
		(SELECT timeline_id FROM pg_control_checkpoint()),
		current_setting('archive_mode'), current_setting('archive_command')`).
		Scan(&version, &info.DataDir, &segSize, &bsz, &checksums, &sysid, &info.Timeline, &archiveMode, &archiveCommand)
	if err != nil {
		return info, fmt.Errorf("read server settings: %w", err)
	}
	info.Version, _ = strconv.Atoi(version)
	if info.Version < 130000 {
		return info, fmt.Errorf("PostgreSQL %d is not supported: hartvault needs 13 or later", info.Version/10000)
	}
	info.SegSize, err = parseSize(segSize)
	if err != nil {
		return info, fmt.Errorf("wal_segment_size %q: %w", segSize, err)
	}
	info.BlockSize, _ = strconv.Atoi(bsz)
	if info.BlockSize != blockSize {
		return info, fmt.Errorf("block_size %d is not supported (hartvault reads %d-byte pages)", info.BlockSize, blockSize)
	}
	info.Checksums = checksums == "on"
	info.SystemID, err = strconv.ParseUint(sysid, 10, 64)
	if err != nil {
		return info, fmt.Errorf("system identifier %q: %w", sysid, err)
	}
	if archiveMode != "off" {
		info.Archiving = archiveCommand
	}
	return info, nil
}

// parseSize reads PostgreSQL's memory units ("16MB").
func parseSize(s string) (int64, error) {
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		m      int64
	}{{"kB", 1 << 10}, {"MB", 1 << 20}, {"GB", 1 << 30}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.m
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n * mult, err
}

// startBackup begins a non-exclusive backup in this session (pg_backup_start on 15+,
// pg_start_backup(label, fast, false) on 13 and 14) and returns its start LSN.
func startBackup(ctx context.Context, conn *pgx.Conn, version int, label string) (LSN, error) {
	q := "SELECT pg_backup_start($1, true)::text"
	if version < 150000 {
		q = "SELECT pg_start_backup($1, true, false)::text"
	}
	var lsn string
	if err := conn.QueryRow(ctx, q, label).Scan(&lsn); err != nil {
		return 0, fmt.Errorf("start backup: %w", err)
	}
	return ParseLSN(lsn)
}

// stopResult is what ending a backup returns.
type stopResult struct {
	LSN           LSN
	BackupLabel   string
	TablespaceMap string
}

// stopBackup ends the backup without waiting for archiving (hartvault waits for the
// WAL to reach the repository itself, whether it comes by archive_command or by
// wal-stream). The server switches to a new segment either way.
func stopBackup(ctx context.Context, conn *pgx.Conn, version int) (stopResult, error) {
	q := "SELECT lsn::text, labelfile, coalesce(spcmapfile, '') FROM pg_backup_stop(false)"
	if version < 150000 {
		q = "SELECT lsn::text, labelfile, coalesce(spcmapfile, '') FROM pg_stop_backup(false, false)"
	}
	var r stopResult
	var lsn string
	if err := conn.QueryRow(ctx, q).Scan(&lsn, &r.BackupLabel, &r.TablespaceMap); err != nil {
		return r, fmt.Errorf("stop backup: %w", err)
	}
	var err error
	r.LSN, err = ParseLSN(lsn)
	return r, err
}

// tablespace is a user tablespace.
type tablespace struct {
	OID      string `json:"oid"`
	Name     string `json:"name"`
	Location string `json:"location"`
}

func tablespaces(ctx context.Context, conn *pgx.Conn) ([]tablespace, error) {
	rows, err := conn.Query(ctx, `SELECT oid::text, spcname, pg_tablespace_location(oid) FROM pg_tablespace
		WHERE spcname NOT IN ('pg_default', 'pg_global') ORDER BY oid`)
	if err != nil {
		return nil, fmt.Errorf("list tablespaces: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (tablespace, error) {
		var t tablespace
		err := r.Scan(&t.OID, &t.Name, &t.Location)
		return t, err
	})
}
