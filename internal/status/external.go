package status

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/hartonomous/hartvault/internal/plan"
	"github.com/hartonomous/hartvault/internal/repo"
)

// Backups taken outside hartvault (status --import-msdb): a source whose server keeps
// its own record of backups, other tools' included (SQL Server's msdb), can have them
// counted in its per-type figures. They are marked: their BackupRef ids start with
// ExternalPrefix and their JSON carries "external": true, and SourceStatus.External
// counts them per type.

// ExternalPrefix starts the id of a backup taken outside hartvault in a report
// ("external:msdb:SQLPROD01:4711").
const ExternalPrefix = "external:"

// ExternalSpan is how far back external backups are read (the newest of each type is
// read however old it is).
const ExternalSpan = TimelineSpan

// ExternalTimeout bounds the reading of one source's external backups: a server that
// does not answer costs one line in the source's Errors, not the whole status.
var ExternalTimeout = time.Minute

// ExternalBackup is a backup of a source taken outside hartvault, as the source's
// server recorded it.
type ExternalBackup struct {
	// ID names it among the source's external backups (SQL Server: "msdb:SERVER:backup_set_id").
	ID       string    `json:"id"`
	Database string    `json:"database,omitempty"`
	Type     string    `json:"type"` // full, diff or log
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	// Bytes is the size of the backup; StoredBytes what it takes where it was written
	// (SQL Server: backup_size and compressed_backup_size).
	Bytes       int64 `json:"bytes"`
	StoredBytes int64 `json:"stored_bytes"`
	CopyOnly    bool  `json:"copy_only,omitempty"`
	// Devices are where it was written (files, URLs, a virtual device's name).
	Devices []string `json:"devices,omitempty"`
	Server  string   `json:"server,omitempty"`
}

// ExternalLister is implemented by engines whose source records backups taken by
// other tools. ExternalBackups returns those that finished at or after since (and the
// newest of each type), leaving out the backups known holds: the source's manifests
// in the repository.
type ExternalLister interface {
	ExternalBackups(ctx context.Context, known []*repo.Manifest, since time.Time) ([]ExternalBackup, error)
}

// ExternalStatus is what a source's server recorded of backups taken outside
// hartvault, as merged into the source's figures.
type ExternalStatus struct {
	// Since is how far back they were read (the newest of each type may be older).
	Since time.Time            `json:"since"`
	Types []ExternalTypeStatus `json:"types"`
	// Backups are all of them, oldest first.
	Backups []ExternalBackup `json:"backups"`
}

// ExternalTypeStatus counts the external backups of one type merged into its figures.
type ExternalTypeStatus struct {
	Type     string `json:"type"`
	Count    int    `json:"count"`
	Count7d  int    `json:"count_7d"`
	CopyOnly int    `json:"copy_only"`
	// Last is the newest of them.
	Last *BackupRef `json:"last_backup,omitempty"`
}

// IsExternal reports whether b was taken outside hartvault.
func (b BackupRef) IsExternal() bool { return strings.HasPrefix(b.ID, ExternalPrefix) }

// MarshalJSON adds "external": true to a backup taken outside hartvault; others are
// written exactly as their fields say.
func (b BackupRef) MarshalJSON() ([]byte, error) {
	type fields BackupRef // without this method
	return json.Marshal(struct {
		fields
		External bool `json:"external,omitempty"`
	}{fields(b), b.IsExternal()})
}

// ExternalRef is an external backup as the figures count it.
func ExternalRef(e ExternalBackup) BackupRef {
	return BackupRef{ID: ExternalPrefix + e.ID, Type: e.Type, Started: e.Started, Finished: e.Finished, Bytes: e.Bytes, StoredBytes: e.StoredBytes}
}

// MergeExternal adds external backups to a source's committed ones (both as they
// come): the result, ordered by finish time, is what the per-type figures are worked
// out from; the ExternalStatus counts the external ones per type at now.
func MergeExternal(refs []BackupRef, ext []ExternalBackup, since, now time.Time) ([]BackupRef, *ExternalStatus) {
	all := make([]BackupRef, 0, len(refs)+len(ext))
	all = append(all, refs...)
	es := &ExternalStatus{Since: since.UTC(), Types: []ExternalTypeStatus{}, Backups: []ExternalBackup{}}
	sorted := append([]ExternalBackup(nil), ext...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Finished.Before(sorted[j].Finished) })
	byType := map[string]*ExternalTypeStatus{}
	for _, e := range sorted {
		ref := ExternalRef(e)
		all = append(all, ref)
		es.Backups = append(es.Backups, e)
		ts := byType[e.Type]
		if ts == nil {
			ts = &ExternalTypeStatus{Type: e.Type}
			byType[e.Type] = ts
		}
		ts.Count++
		if now.Sub(e.Finished) <= Window {
			ts.Count7d++
		}
		if e.CopyOnly {
			ts.CopyOnly++
		}
		if ts.Last == nil || !e.Finished.Before(ts.Last.Finished) {
			ts.Last = &ref
		}
	}
	for _, typ := range typeOrder {
		if ts := byType[typ]; ts != nil {
			es.Types = append(es.Types, *ts)
			delete(byType, typ)
		}
	}
	for _, typ := range sortedKeys(byType) {
		es.Types = append(es.Types, *byType[typ])
	}
	// Ours stay before external ones that finished at the same instant.
	sort.SliceStable(all, func(i, j int) bool { return all[i].Finished.Before(all[j].Finished) })
	return all, es
}

func sortedKeys(m map[string]*ExternalTypeStatus) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// importExternal reads the external backups of a source whose engine records them
// and merges them into refs (the source's committed backups, read with readErr).
// What fails is one line in s.Errors; refs are then returned as they are.
func importExternal(ctx context.Context, o Options, src plan.Source, s *SourceStatus, manifests []*repo.Manifest, refs []BackupRef, readErr error) []BackupRef {
	fail := func(err error) []BackupRef {
		msg := repo.ScrubError(err.Error())
		msg = strings.Join(strings.Fields(strings.ReplaceAll(msg, "\n", "; ")), " ")
		s.Errors = append(s.Errors, "import msdb: "+msg)
		return refs
	}
	if o.Engine == nil {
		return refs
	}
	eng, err := o.Engine(src)
	if err != nil {
		return fail(err)
	}
	lister, ok := eng.(ExternalLister)
	if !ok {
		return refs // this kind of source has no record of other tools' backups
	}
	if readErr != nil {
		return fail(errors.New("skipped: the repository's backups of the source could not be read, so hartvault's own could not be told from others"))
	}
	since := o.Now.Add(-ExternalSpan)
	ctx, cancel := context.WithTimeout(ctx, ExternalTimeout)
	defer cancel()
	ext, err := lister.ExternalBackups(ctx, manifests, since)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
			err = fmt.Errorf("no answer within %s", ExternalTimeout)
		}
		return fail(err)
	}
	all, es := MergeExternal(refs, ext, since, o.Now)
	s.External = es
	return all
}
