package chain

import (
	"fmt"
	"strings"
)

// Severity of a Problem.
const (
	SeverityError   = "error"   // some points in time cannot be restored
	SeverityWarning = "warning" // worth knowing; restores still work
)

// Problem kinds.
const (
	ProblemGap        = "gap"         // log backups are missing between two backups
	ProblemFork       = "fork"        // the database was restored: a new recovery fork begins
	ProblemOrphanDiff = "orphan-diff" // a differential's base full is not in the history
	ProblemDamaged    = "damaged"     // msdb marks the backup damaged
	ProblemRecreated  = "recreated"   // the database_guid changed: a new database of the same name
	ProblemBadRecord  = "bad-record"  // the record cannot be planned with
)

// Problem is one finding of Validate.
type Problem struct {
	Severity string
	Kind     string
	Database string
	Msg      string
	// Records are the backups concerned, in LSN order.
	Records []*Record
}

func (p Problem) String() string { return fmt.Sprintf("%s: %s: %s", p.Severity, p.Database, p.Msg) }

// Validate checks one database's history: every log backup must follow a log backup
// or a full or differential backup of the same recovery fork (a gap is named by the
// backups on either side and the missing LSN range); new recovery forks, differentials
// without their full, damaged backups and recreated databases are reported.
func Validate(records []Record) []Problem {
	var probs []Problem
	var recs []*Record
	for i := range records {
		r := &records[i]
		if err := r.Check(); err != nil {
			probs = append(probs, Problem{Severity: SeverityError, Kind: ProblemBadRecord, Database: r.Database, Msg: err.Error(), Records: []*Record{r}})
			continue
		}
		recs = append(recs, r)
	}
	SortByLSN(recs)
	if len(recs) == 0 {
		return probs
	}
	db := recs[0].Database

	for _, r := range recs {
		if r.Damaged {
			probs = append(probs, Problem{Severity: SeverityError, Kind: ProblemDamaged, Database: db,
				Msg: fmt.Sprintf("%s is marked damaged in msdb (is_damaged = 1)", r.describe()), Records: []*Record{r}})
		}
	}

	// Database incarnations, in the order they appear.
	var guids []string
	byGUID := map[string][]*Record{}
	for _, r := range recs {
		k := strings.ToLower(r.DatabaseGUID)
		if _, ok := byGUID[k]; !ok {
			guids = append(guids, k)
			if len(guids) > 1 {
				probs = append(probs, Problem{Severity: SeverityWarning, Kind: ProblemRecreated, Database: db,
					Msg:     fmt.Sprintf("database_guid changes to %s with %s: the database was dropped and created again; older backups belong to the previous database", r.DatabaseGUID, r.describe()),
					Records: []*Record{r}})
			}
		}
		byGUID[k] = append(byGUID[k], r)
	}
	for _, g := range guids {
		probs = append(probs, validateIncarnation(db, byGUID[g])...)
	}
	return probs
}

func validateIncarnation(db string, recs []*Record) []Problem {
	var probs []Problem
	var logs, bases []*Record
	for _, r := range recs {
		switch {
		case r.Type == Log && !r.CopyOnly:
			logs = append(logs, r)
		case r.Type == Full || r.Type == Diff:
			bases = append(bases, r)
		}
	}

	// Forks: each fork other than the first is reported once, where it begins.
	seenFork := map[string]bool{}
	for _, r := range recs {
		for _, f := range []string{r.FirstForkGUID, r.LastForkGUID} {
			k := strings.ToLower(f)
			if f == "" || seenFork[k] {
				continue
			}
			seenFork[k] = true
			if len(seenFork) == 1 {
				continue
			}
			where := fmt.Sprintf("first seen in %s", r.describe())
			if !r.ForkPointLSN.IsZero() && sameGUID(r.LastForkGUID, f) {
				where = fmt.Sprintf("at fork point LSN %s, in %s", r.ForkPointLSN.Describe(), r.describe())
			}
			probs = append(probs, Problem{Severity: SeverityWarning, Kind: ProblemFork, Database: db,
				Msg:     fmt.Sprintf("recovery fork %s begins (the database was restored to an earlier point) %s; restores to later times follow this fork", f, where),
				Records: []*Record{r}})
		}
	}

	// Differentials need their full.
	for _, d := range bases {
		if d.Type != Diff {
			continue
		}
		found := false
		for _, f := range bases {
			if f.Type == Full && !f.CopyOnly && f.CheckpointLSN.Cmp(d.DatabaseBackupLSN) == 0 {
				found = true
				break
			}
		}
		if !found {
			probs = append(probs, Problem{Severity: SeverityWarning, Kind: ProblemOrphanDiff, Database: db,
				Msg:     fmt.Sprintf("%s is based on the full backup with checkpoint LSN %s, which is not in the history (taken by another tool?): it cannot be restored", d.describe(), d.DatabaseBackupLSN.Describe()),
				Records: []*Record{d}})
		}
	}

	// Every log backup must continue a log backup, or start right after a full or diff.
	for _, l := range logs {
		if followsSomething(l, logs, bases) {
			continue
		}
		prev := previousOnFork(l, recs)
		if prev == nil {
			probs = append(probs, Problem{Severity: SeverityError, Kind: ProblemGap, Database: db,
				Msg: fmt.Sprintf("log backup %s follows no backup in the history: no full, differential or log backup ends at LSN %s (the chain starts with a backup that is missing)",
					l.describe(), l.FirstLSN.Describe()),
				Records: []*Record{l}})
			continue
		}
		probs = append(probs, Problem{Severity: SeverityError, Kind: ProblemGap, Database: db,
			Msg: fmt.Sprintf("gap in the log chain: after %s the next log backup, %s, starts at LSN %s; log backups covering LSN %s..%s are missing, so no point between %s and %s can be restored",
				prev.describe(), l.describe(), l.FirstLSN.Describe(), prev.LastLSN, l.FirstLSN, FormatTime(prev.Finish), FormatTime(l.Finish)),
			Records: []*Record{prev, l}})
	}
	return probs
}

func followsSomething(l *Record, logs, bases []*Record) bool {
	for _, p := range logs {
		if p != l && p.LastLSN.Cmp(l.FirstLSN) == 0 && sameGUID(p.LastForkGUID, l.FirstForkGUID) {
			return true
		}
	}
	for _, b := range bases {
		if l.FirstLSN.Cmp(b.LastLSN) <= 0 && b.LastLSN.Cmp(l.LastLSN) < 0 && l.onFork(b.LastForkGUID) {
			return true
		}
	}
	return false
}

// previousOnFork returns the backup of l's starting fork that ends last before l starts.
func previousOnFork(l *Record, recs []*Record) *Record {
	var prev *Record
	for _, r := range recs {
		if r == l || !sameGUID(r.LastForkGUID, l.FirstForkGUID) || r.LastLSN.Cmp(l.FirstLSN) >= 0 {
			continue
		}
		if r.Type == Log && r.CopyOnly {
			continue
		}
		if prev == nil || r.LastLSN.Cmp(prev.LastLSN) > 0 {
			prev = r
		}
	}
	return prev
}
