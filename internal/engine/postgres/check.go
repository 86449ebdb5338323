package postgres

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hartonomous/hartvault/internal/engine"
)

// Check runs a health query on a cluster restored and started by Restore (its
// socket is in its data directory); :target is bound to at as a timestamptz.
func (e *Engine) Check(ctx context.Context, req engine.RestoreRequest, query string, at time.Time) (bool, error) {
	cfg, err := pgx.ParseConfig(e.src.Conninfo)
	if err != nil {
		return false, err
	}
	abs, err := filepath.Abs(req.Target)
	if err != nil {
		return false, err
	}
	cfg.Host, cfg.Port, cfg.Fallbacks = abs, uint16(req.Port), nil
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return false, fmt.Errorf("connect to the restored cluster on port %d: %s", req.Port, scrubConnErr(err))
	}
	defer conn.Close(ctx)
	q, args := query, []any{}
	if strings.Contains(q, ":target") {
		q = strings.ReplaceAll(q, ":target", "$1::timestamptz")
		args = append(args, at)
	}
	var ok bool
	if err := conn.QueryRow(ctx, q, args...).Scan(&ok); err != nil {
		return false, fmt.Errorf("check %q: %w", query, err)
	}
	return ok, nil
}

// StopRestored stops a cluster started by Restore.
func (e *Engine) StopRestored(ctx context.Context, req engine.RestoreRequest) error {
	bin, err := e.binDir()
	if err != nil {
		return err
	}
	info, err := ownerOfDir(req.Target)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "pg_ctl"), "-D", req.Target, "-m", "fast", "-w", "stop")
	runAs(cmd, info)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("stop the restored cluster in %s: %v: %s", req.Target, err, strings.TrimSpace(string(out)))
	}
	return nil
}
