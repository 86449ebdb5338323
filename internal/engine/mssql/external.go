package mssql

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/hartonomous/hartvault/internal/engine/mssql/chain"
	"github.com/hartonomous/hartvault/internal/repo"
	"github.com/hartonomous/hartvault/internal/status"
)

// Backups taken outside hartvault: msdb lists every backup of the server, hartvault's
// and other tools' (Ola Hallengren's jobs, maintenance plans, a DBA's BACKUP LOG, a
// snapshot agent). status --import-msdb counts them (ExternalBackups), and a restore
// whose chain the repository cannot complete reads them from their files
// (fallback.go).

// ownSet recognises the backups a repository holds among msdb's rows and backup
// headers: by backup set GUID, or by type, LSN range and database GUID.
type ownSet map[string]bool

func ownKeys(es []entry) ownSet {
	o := ownSet{}
	for _, en := range es {
		if en.ext == nil {
			for _, k := range recordKeys(en.db.BackupSet) {
				o[k] = true
			}
		}
	}
	return o
}

func recordKeys(r chain.Record) []string {
	var ks []string
	if g := strings.TrimSpace(r.BackupSetGUID); g != "" {
		ks = append(ks, "guid:"+strings.ToLower(g))
	}
	if !r.LastLSN.IsZero() {
		ks = append(ks, strings.ToLower(fmt.Sprintf("lsn:%s|%s|%s|%s|%t", r.Type, r.FirstLSN, r.LastLSN, r.DatabaseGUID, r.CopyOnly)))
	}
	return ks
}

func (o ownSet) has(r chain.Record) bool {
	for _, k := range recordKeys(r) {
		if o[k] {
			return true
		}
	}
	return false
}

// ownAttempt reports a backup set this source's backups wrote that no manifest holds
// (a run that failed after BACKUP: its files were removed), by the description
// hartvault gives every backup.
func (e *Engine) ownAttempt(r chain.Record) bool {
	return strings.HasPrefix(r.Description, "hartvault backup ") && strings.HasSuffix(r.Description, " of source "+e.src.Name)
}

var _ status.ExternalLister = (*Engine)(nil)

// ExternalBackups implements status.ExternalLister: the full, differential and log
// backups msdb lists for the source's databases that finished at or after since (and
// the newest of each type, however old), leaving out those the manifests known hold
// (matched by backup set GUID, or type, LSNs and database GUID) and this source's own
// attempts that were never committed.
func (e *Engine) ExternalBackups(ctx context.Context, known []*repo.Manifest, since time.Time) ([]status.ExternalBackup, error) {
	cat, err := catalogOf(known)
	if err != nil {
		return nil, err
	}
	srv, err := e.connect(ctx)
	if err != nil {
		return nil, err
	}
	defer srv.Close()
	var out []status.ExternalBackup
	for _, db := range e.knownDatabases(cat) {
		rows, err := srv.History(ctx, HistoryQuery{Database: db, Since: since, NewestOfType: true})
		if err != nil {
			return nil, e.errorf("%w", err)
		}
		newest := map[chain.Type]int64{}
		for _, r := range rows {
			newest[r.Type] = max(newest[r.Type], r.BackupSetID)
		}
		own := ownKeys(cat.entries(db))
		for _, r := range rows {
			if own.has(r) || e.ownAttempt(r) || r.Finish.Before(since) && r.BackupSetID != newest[r.Type] {
				continue
			}
			out = append(out, status.ExternalBackup{ID: fmt.Sprintf("msdb:%s:%d", r.ServerName, r.BackupSetID), Database: r.Database,
				Type: string(r.Type), Started: r.Start, Finished: r.Finish, Bytes: r.Size, StoredBytes: r.CompressedSize,
				CopyOnly: r.CopyOnly, Devices: r.Devices, Server: r.ServerName})
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Finished.Before(out[j].Finished) })
	return out, nil
}
