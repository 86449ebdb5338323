package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/hartonomous/hartvault/internal/repo"
)

// StreamOptions tune WALStream.
type StreamOptions struct {
	// Slot is the physical replication slot (default hartvault_<source>).
	Slot string
	// FlushEvery is how often WAL received so far is stored as a partial segment:
	// the recovery point objective of streaming (default 1 s).
	FlushEvery time.Duration
	Log        *slog.Logger
}

// WALStream receives WAL over a physical replication slot and stores it in the
// repository: every segment once complete, and the segment being written as a
// partial copy every FlushEvery, so a commit is restorable seconds after it
// happens instead of when its 16 MB segment fills. The slot is advanced only past
// segments stored complete, so the server keeps what the repository lacks. It runs,
// reconnecting after errors, until ctx is done.
//
// pglogrepl rather than pg_receivewal: in-process, the slot's flush position can
// follow what is durably in the repository (pg_receivewal acknowledges its local
// disk), and no second binary or local spool is needed.
func (e *Engine) WALStream(ctx context.Context, r *repo.Repo, o StreamOptions) error {
	if o.Slot == "" {
		o.Slot = "hartvault_" + slotSafe(e.src.Name)
	}
	if o.FlushEvery <= 0 {
		o.FlushEvery = time.Second
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	backoff := time.Second
	for {
		err := e.streamOnce(ctx, r, o)
		if ctx.Err() != nil {
			return nil
		}
		var fatal *fatalStreamError
		if errors.As(err, &fatal) {
			return fatal.err
		}
		o.Log.Warn("wal-stream: reconnecting", "source", e.src.Name, "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 30*time.Second)
	}
}

type fatalStreamError struct{ err error }

func (f *fatalStreamError) Error() string { return f.err.Error() }

func slotSafe(s string) string {
	var b strings.Builder
	for _, c := range strings.ToLower(s) {
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' {
			b.WriteRune(c)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

func (e *Engine) streamOnce(ctx context.Context, r *repo.Repo, o StreamOptions) error {
	cfg, err := pgconn.ParseConfig(e.src.Conninfo)
	if err != nil {
		return &fatalStreamError{fmt.Errorf("source %s: conninfo: %s", e.src.Name, scrubConnErr(err))}
	}
	cfg.RuntimeParams["replication"] = "true"
	cfg.RuntimeParams["application_name"] = "hartvault wal-stream"
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("connect for replication to %s: %s", where(*cfg), scrubConnErr(err))
	}
	defer conn.Close(context.WithoutCancel(ctx))
	sys, err := pglogrepl.IdentifySystem(ctx, conn)
	if err != nil {
		return fmt.Errorf("identify system: %w", err)
	}
	sysid, err := strconv.ParseUint(sys.SystemID, 10, 64)
	if err != nil {
		return fmt.Errorf("system identifier %q: %w", sys.SystemID, err)
	}
	segSize, err := showSegSize(ctx, conn)
	if err != nil {
		return err
	}
	a := &archive{r: r, source: e.src.Name, sysid: sysid, segSize: segSize}
	if sys.Timeline > 1 {
		h, err := pglogrepl.TimelineHistory(ctx, conn, sys.Timeline)
		if err != nil {
			return fmt.Errorf("timeline history %d: %w", sys.Timeline, err)
		}
		if _, err := a.push(ctx, h.FileName, h.Content); err != nil {
			return err
		}
	}
	restart, err := ensureSlot(ctx, conn, o.Slot)
	if err != nil {
		return err
	}
	if restart == 0 {
		restart = LSN(sys.XLogPos)
	}
	segStart := LSN(uint64(restart) / uint64(segSize) * uint64(segSize))
	tli := uint32(sys.Timeline)
	if err := pglogrepl.StartReplication(ctx, conn, o.Slot, pglogrepl.LSN(segStart),
		pglogrepl.StartReplicationOptions{Timeline: sys.Timeline, Mode: pglogrepl.PhysicalReplication}); err != nil {
		return fmt.Errorf("start replication from %s on timeline %d: %w", segStart, tli, err)
	}
	o.Log.Info("wal-stream: streaming", "source", e.src.Name, "slot", o.Slot, "from", segStart.String(), "timeline", tli)

	buf := make([]byte, segSize)
	filled := 0
	dirty := false
	flushed := segStart // the slot may move up to here: everything before is stored complete
	status := func(written LSN) error {
		return pglogrepl.SendStandbyStatusUpdate(ctx, conn, pglogrepl.StandbyStatusUpdate{
			WALWritePosition: pglogrepl.LSN(written), WALFlushPosition: pglogrepl.LSN(flushed), WALApplyPosition: pglogrepl.LSN(flushed)})
	}
	storePartial := func() error {
		if !dirty || filled == 0 {
			return nil
		}
		name := SegName(tli, uint64(segStart)/uint64(segSize), segSize)
		if err := a.pushPartial(context.WithoutCancel(ctx), name, buf[:filled]); err != nil {
			return fmt.Errorf("store partial segment %s: %w", name, err)
		}
		dirty = false
		return nil
	}
	defer storePartial() // on shutdown, keep what arrived
	next := time.Now().Add(o.FlushEvery)
	for {
		rctx, cancel := context.WithDeadline(ctx, next)
		msg, err := conn.ReceiveMessage(rctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if !pgconn.Timeout(err) {
				return fmt.Errorf("receive WAL: %w", err)
			}
		}
		if time.Now().After(next) {
			if err := storePartial(); err != nil {
				return err
			}
			if err := status(segStart + LSN(filled)); err != nil {
				return err
			}
			next = time.Now().Add(o.FlushEvery)
		}
		if msg == nil {
			continue
		}
		switch m := msg.(type) {
		case *pgproto3.CopyData:
			switch m.Data[0] {
			case pglogrepl.PrimaryKeepaliveMessageByteID:
				pkm, err := pglogrepl.ParsePrimaryKeepaliveMessage(m.Data[1:])
				if err != nil {
					return err
				}
				if pkm.ReplyRequested {
					if err := status(segStart + LSN(filled)); err != nil {
						return err
					}
				}
			case pglogrepl.XLogDataByteID:
				x, err := pglogrepl.ParseXLogData(m.Data[1:])
				if err != nil {
					return err
				}
				data, pos := x.WALData, LSN(x.WALStart)
				for len(data) > 0 {
					if pos < segStart || pos >= segStart+LSN(segSize) {
						return fmt.Errorf("WAL at %s arrived while expecting segment from %s", pos, segStart)
					}
					off := int(pos - segStart)
					n := copy(buf[off:], data)
					filled = max(filled, off+n)
					data, pos, dirty = data[n:], pos+LSN(n), true
					if filled == int(segSize) {
						name := SegName(tli, uint64(segStart)/uint64(segSize), segSize)
						if err := e.storeStreamed(ctx, a, name, buf); err != nil {
							return err
						}
						segStart += LSN(segSize)
						flushed = segStart
						filled, dirty = 0, false
						clear(buf)
						if err := status(segStart); err != nil {
							return err
						}
						o.Log.Debug("wal-stream: stored segment", "segment", name)
					}
				}
			}
		case *pgproto3.CopyDone:
			return errors.New("the server ended the timeline (promotion): reconnecting to follow the new one")
		case *pgproto3.ErrorResponse:
			return pgconn.ErrorResponseToPgError(m)
		}
	}
}

// storeStreamed stores a complete segment and drops its partial copies. If
// archive_command already stored the segment with other bytes past the switch
// point, its copy is kept: both are valid WAL.
func (e *Engine) storeStreamed(ctx context.Context, a *archive, name string, data []byte) error {
	ctx = context.WithoutCancel(ctx) // a segment half stored helps no one
	if _, err := a.push(ctx, name, data); err != nil && !strings.Contains(err.Error(), "already archived with different content") {
		return fmt.Errorf("store segment %s: %w", name, err)
	}
	return a.dropPartials(ctx, name, "")
}

func showSegSize(ctx context.Context, conn *pgconn.PgConn) (int64, error) {
	res, err := conn.Exec(ctx, "SHOW wal_segment_size").ReadAll()
	if err != nil {
		return 0, fmt.Errorf("show wal_segment_size: %w", err)
	}
	if len(res) != 1 || len(res[0].Rows) != 1 {
		return 0, errors.New("show wal_segment_size: unexpected result")
	}
	return parseSize(string(res[0].Rows[0][0]))
}

// ensureSlot creates the physical slot (reserving WAL at once) if it does not
// exist, and returns its restart LSN (0 when it has none yet).
func ensureSlot(ctx context.Context, conn *pgconn.PgConn, slot string) (LSN, error) {
	_, err := conn.Exec(ctx, fmt.Sprintf("CREATE_REPLICATION_SLOT %s PHYSICAL RESERVE_WAL", slot)).ReadAll()
	var pe *pgconn.PgError
	if err != nil && !(errors.As(err, &pe) && pe.Code == "42710") { // duplicate_object
		return 0, fmt.Errorf("create replication slot %s: %w", slot, err)
	}
	res, err := conn.Exec(ctx, fmt.Sprintf("READ_REPLICATION_SLOT %s", slot)).ReadAll()
	if err != nil {
		// READ_REPLICATION_SLOT is PostgreSQL 15+: earlier servers stream from now.
		return 0, nil
	}
	if len(res) == 1 && len(res[0].Rows) == 1 && len(res[0].Rows[0]) >= 2 && res[0].Rows[0][1] != nil {
		return ParseLSN(string(res[0].Rows[0][1]))
	}
	return 0, nil
}
