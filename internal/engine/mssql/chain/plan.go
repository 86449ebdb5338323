package chain

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Errors a plan can fail with; match them with errors.Is.
var (
	// ErrNoFull: no full backup can start the restore.
	ErrNoFull = errors.New("no full backup to start from")
	// ErrGap: the log chain is broken before the target.
	ErrGap = errors.New("the log chain is broken")
	// ErrNotFound: the backup named by Target.Ref is not in the history.
	ErrNotFound = errors.New("no such backup")
	// ErrBadRecord: a record is incomplete or inconsistent.
	ErrBadRecord = errors.New("bad backup record")
)

// Target is the point to restore to: the latest point the history reaches, an instant,
// or the end of one backup (by Ref).
type Target struct {
	Latest bool
	Time   time.Time
	Ref    string
}

// Plan says which backups a restore applies, in order, and where it stops.
type Plan struct {
	Database string
	Full     *Record
	Diff     *Record // nil when no differential applies
	Logs     []*Record
	// StopAt is the instant every RESTORE LOG stops at (STOPAT); zero restores each log
	// to its end.
	StopAt time.Time
	// To is the point the database is at after the restore: StopAt, or the end of the
	// last backup applied.
	To time.Time
	// Earliest and Latest bound the points the history can restore to.
	Earliest, Latest time.Time
	// Notes explain choices a user would want to know about (a copy-only base, a target
	// past the newest log backup).
	Notes []string
}

// Records returns the backups in the order they are restored.
func (p *Plan) Records() []*Record {
	out := []*Record{p.Full}
	if p.Diff != nil {
		out = append(out, p.Diff)
	}
	return append(out, p.Logs...)
}

// StopAtServerTime is StopAt as the server's local wall-clock time, which is what
// STOPAT takes: in the zone offset the covering log backup recorded. ok is false when
// there is no STOPAT.
func (p *Plan) StopAtServerTime() (t time.Time, ok bool) {
	if p.StopAt.IsZero() || len(p.Logs) == 0 {
		return time.Time{}, false
	}
	return p.StopAt.In(p.Logs[len(p.Logs)-1].Finish.Location()), true
}

// GapError names a break in the log chain: after After, no log backup starts at its
// last LSN; Next is the first backup beyond the break (nil when unknown).
type GapError struct {
	Database string
	After    *Record
	Next     *Record
	Target   string
}

func (e *GapError) Error() string {
	msg := fmt.Sprintf("the log chain of %s is broken after %s: no log backup starts at LSN %s", e.Database, e.After.describe(), e.After.LastLSN.Describe())
	if e.Next != nil {
		msg += fmt.Sprintf("; the next log backup, %s, starts at LSN %s", e.Next.describe(), e.Next.FirstLSN.Describe())
	}
	msg += fmt.Sprintf(": log backups covering LSN %s", e.After.LastLSN)
	if e.Next != nil {
		msg += ".." + e.Next.FirstLSN.String()
	}
	msg += " are missing (taken by another tool, or deleted); " + e.Target
	return msg
}

func (e *GapError) Unwrap() error { return ErrGap }

// PlanRestore plans the restore of one database's history to target, with the rules
// dbatools applies: the latest non-copy-only full that finished at or before the
// target; the latest differential whose database_backup_lsn is that full's
// checkpoint_lsn; then log backups from the one with first_lsn <= base.last_lsn <
// last_lsn, each next one starting at the previous one's last_lsn, on the same
// recovery fork and database_guid, up to and including the first that ends at or after
// the target. Logs are ordered by LSN, never by date.
func PlanRestore(records []Record, target Target) (*Plan, error) {
	h, err := newHistory(records)
	if err != nil {
		return nil, err
	}
	var p *Plan
	if target.Ref != "" {
		p, err = h.planRef(target.Ref)
	} else {
		p, err = h.plan(target.Time, target.Latest, nil)
	}
	if err != nil {
		return nil, err
	}
	p.Earliest = h.earliest()
	if latest, err := h.plan(time.Time{}, true, nil); err == nil {
		p.Latest = latest.To
	}
	return p, nil
}

type history struct {
	db   string
	recs []*Record
}

func newHistory(records []Record) (*history, error) {
	h := &history{}
	seen := map[string]bool{}
	for i := range records {
		r := &records[i]
		if err := r.Check(); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadRecord, err)
		}
		if h.db == "" {
			h.db = r.Database
		} else if !strings.EqualFold(h.db, r.Database) {
			return nil, fmt.Errorf("%w: the history mixes databases %s and %s", ErrBadRecord, h.db, r.Database)
		}
		// The same backup set recorded twice (a mirrored media set, a re-import) is one backup.
		key := strings.ToLower(fmt.Sprintf("%s|%s|%s|%s|%s|%s|%t", r.Type, r.FirstLSN, r.LastLSN, r.FirstForkGUID, r.LastForkGUID, r.DatabaseGUID, r.CopyOnly))
		if seen[key] {
			continue
		}
		seen[key] = true
		h.recs = append(h.recs, r)
	}
	if len(h.recs) == 0 {
		return nil, fmt.Errorf("%w: the history holds no backups", ErrNoFull)
	}
	SortByLSN(h.recs)
	return h, nil
}

func (h *history) filter(keep func(*Record) bool) []*Record {
	var out []*Record
	for _, r := range h.recs {
		if keep(r) {
			out = append(out, r)
		}
	}
	return out
}

// latest picks the most recent record: the latest to finish, unless another one on the
// same recovery fork has a higher LSN (the server clock went back): LSNs win.
func latest(rs []*Record) *Record {
	var best *Record
	for _, r := range rs {
		if best == nil || r.Finish.After(best.Finish) {
			best = r
		}
	}
	for _, r := range rs {
		if sameGUID(r.LastForkGUID, best.LastForkGUID) && sameGUID(r.DatabaseGUID, best.DatabaseGUID) && r.LastLSN.Cmp(best.LastLSN) > 0 {
			best = r
		}
	}
	return best
}

func (h *history) fulls(copyOnly bool) []*Record {
	return h.filter(func(r *Record) bool { return r.Type == Full && r.CopyOnly == copyOnly })
}

func (h *history) earliest() time.Time {
	fulls := h.fulls(false)
	if len(fulls) == 0 {
		fulls = h.fulls(true)
	}
	var t time.Time
	for _, r := range fulls {
		if t.IsZero() || r.Finish.Before(t) {
			t = r.Finish
		}
	}
	return t
}

func notAfter(t time.Time, latest bool) func(*Record) bool {
	return func(r *Record) bool { return latest || !r.Finish.After(t) }
}

// chooseFull picks the base full for a target.
func (h *history) chooseFull(t time.Time, isLatest bool) (*Record, string, error) {
	ok := notAfter(t, isLatest)
	var cands []*Record
	for _, r := range h.fulls(false) {
		if ok(r) {
			cands = append(cands, r)
		}
	}
	if len(cands) > 0 {
		return latest(cands), "", nil
	}
	for _, r := range h.fulls(true) {
		if ok(r) {
			cands = append(cands, r)
		}
	}
	if len(cands) > 0 {
		f := latest(cands)
		return f, fmt.Sprintf("no full backup outside copy-only ones finished by then: starting from copy-only full %s", f.Name()), nil
	}
	all := append(h.fulls(false), h.fulls(true)...)
	if len(all) == 0 {
		return nil, "", fmt.Errorf("%w: the history of %s holds no full backup", ErrNoFull, h.db)
	}
	first := all[0]
	for _, r := range all {
		if r.Finish.Before(first.Finish) {
			first = r
		}
	}
	return nil, "", fmt.Errorf("%w: no full backup of %s finished at or before %s; the first one, %s, finished at %s",
		ErrNoFull, h.db, FormatTime(t), first.Name(), FormatTime(first.Finish))
}

// chooseDiff picks the latest differential based on full.
func (h *history) chooseDiff(full *Record, t time.Time, isLatest bool) *Record {
	ok := notAfter(t, isLatest)
	cands := h.filter(func(r *Record) bool {
		return r.Type == Diff && ok(r) && r.DatabaseBackupLSN.Cmp(full.CheckpointLSN) == 0 &&
			sameGUID(r.DatabaseGUID, full.DatabaseGUID) && r.LastLSN.Cmp(full.LastLSN) > 0
	})
	if len(cands) == 0 {
		return nil
	}
	return latest(cands)
}

// logsFor returns the log backups that can follow base: not copy-only (outside the
// chain), same database incarnation.
func (h *history) logsFor(base *Record) []*Record {
	return h.filter(func(r *Record) bool {
		return r.Type == Log && !r.CopyOnly && sameGUID(r.DatabaseGUID, base.DatabaseGUID)
	})
}

// chains returns every log chain from base, in LSN order, each extended until stop
// says so or no log follows. Chains branch only where the history holds recovery forks.
func chains(base *Record, logs []*Record, stop func(*Record) bool) [][]*Record {
	var out [][]*Record
	var walk func(chain []*Record, lsn LSN, fork string, first bool)
	walk = func(chain []*Record, lsn LSN, fork string, first bool) {
		var next []*Record
		for _, l := range logs {
			if first {
				if l.FirstLSN.Cmp(lsn) <= 0 && lsn.Cmp(l.LastLSN) < 0 && l.onFork(fork) {
					next = append(next, l)
				}
			} else if l.FirstLSN.Cmp(lsn) == 0 && l.LastLSN.Cmp(lsn) > 0 && sameGUID(l.FirstForkGUID, fork) {
				next = append(next, l)
			}
		}
		if len(next) == 0 {
			out = append(out, chain)
			return
		}
		for _, l := range next {
			c := append(append([]*Record(nil), chain...), l)
			if stop(l) {
				out = append(out, c)
				continue
			}
			walk(c, l.LastLSN, l.LastForkGUID, false)
		}
	}
	walk(nil, base.LastLSN, base.LastForkGUID, true)
	return out
}

func crossings(chain []*Record) int {
	n := 0
	for _, l := range chain {
		if !sameGUID(l.FirstForkGUID, l.LastForkGUID) {
			n++
		}
	}
	return n
}

func end(base *Record, chain []*Record) *Record {
	if len(chain) == 0 {
		return base
	}
	return chain[len(chain)-1]
}

// plan plans to instant t (or the latest point). When ref is set the chain must end
// with that log backup.
func (h *history) plan(t time.Time, isLatest bool, ref *Record) (*Plan, error) {
	full, note, err := h.chooseFull(t, isLatest)
	if err != nil {
		return nil, err
	}
	p := &Plan{Database: h.db, Full: full}
	if note != "" {
		p.Notes = append(p.Notes, note)
	}
	base := full
	if !full.CopyOnly {
		if d := h.chooseDiff(full, t, isLatest); d != nil {
			p.Diff, base = d, d
		}
	}
	if !isLatest && ref == nil && !t.After(base.Finish) {
		p.To = base.Finish // the target is the end of the base itself
		return p, nil
	}
	logs := h.logsFor(base)
	stop := func(l *Record) bool {
		switch {
		case ref != nil:
			return l == ref
		case isLatest:
			return false
		}
		return !l.Finish.Before(t)
	}
	all := chains(base, logs, stop)
	reached := func(c []*Record) bool { return len(c) > 0 && stop(c[len(c)-1]) }

	var chosen []*Record
	var covered bool
	for _, c := range all {
		if !isLatest && reached(c) {
			if !covered || betterCover(c, chosen) {
				chosen, covered = c, true
			}
		}
	}
	if !covered {
		for _, c := range all {
			if chosen == nil || laterEnd(end(base, c), end(base, chosen)) {
				chosen = c
			}
		}
		if ref != nil {
			return nil, h.gapError(base, chosen, logs, all, fmt.Sprintf("%s cannot be reached from %s", ref.Name(), base.Name()))
		}
		if gap := h.gapError(base, chosen, logs, all, "the latest point reachable is "+FormatTime(end(base, chosen).Finish)); gap != nil {
			return nil, gap
		}
	}
	p.Logs = chosen
	last := end(base, chosen)
	switch {
	case covered && ref == nil:
		p.StopAt, p.To = t, t
		if n := forkNote(base, chosen, all, t); n != "" {
			p.Notes = append(p.Notes, n)
		}
	case covered:
		p.To = ref.Finish
	default:
		p.To = last.Finish
		if !isLatest {
			if len(chosen) == 0 {
				p.Notes = append(p.Notes, fmt.Sprintf("no log backup follows %s: restoring to its end at %s, before the target %s", last.Name(), FormatTime(last.Finish), FormatTime(t)))
			} else {
				p.Notes = append(p.Notes, fmt.Sprintf("the newest log backup, %s, ends at %s, before the target %s: restoring to its end", last.Name(), FormatTime(last.Finish), FormatTime(t)))
			}
		}
	}
	return p, nil
}

// betterCover prefers, among chains that reach the target, the one that crosses fewer
// recovery forks (the fork that was live at the target), then the one whose covering
// log finishes first.
func betterCover(c, than []*Record) bool {
	if a, b := crossings(c), crossings(than); a != b {
		return a < b
	}
	return c[len(c)-1].Finish.Before(than[len(than)-1].Finish)
}

func laterEnd(a, b *Record) bool {
	if !a.Finish.Equal(b.Finish) {
		return a.Finish.After(b.Finish)
	}
	return a.LastLSN.Cmp(b.LastLSN) > 0
}

// gapError reports log backups beyond the chosen chain's end that no chain reaches:
// the chain is broken before them. nil when the chain simply ends with the history.
func (h *history) gapError(base *Record, chosen []*Record, logs []*Record, all [][]*Record, consequence string) error {
	inChain := map[*Record]bool{}
	for _, c := range all {
		for _, l := range c {
			inChain[l] = true
		}
	}
	last := end(base, chosen)
	var next *Record
	for _, l := range logs {
		if inChain[l] || l.LastLSN.Cmp(base.LastLSN) <= 0 {
			continue
		}
		if !l.Finish.After(last.Finish) && !(sameGUID(l.FirstForkGUID, last.LastForkGUID) && l.FirstLSN.Cmp(last.LastLSN) > 0) {
			continue
		}
		if next == nil || better(l, next, last) {
			next = l
		}
	}
	if next == nil {
		return nil
	}
	return &GapError{Database: h.db, After: last, Next: next, Target: consequence}
}

// better prefers, as the first backup past a gap after last, one on last's fork, then
// the lowest LSN.
func better(a, b, last *Record) bool {
	sa, sb := sameGUID(a.FirstForkGUID, last.LastForkGUID), sameGUID(b.FirstForkGUID, last.LastForkGUID)
	if sa != sb {
		return sa
	}
	return a.FirstLSN.Cmp(b.FirstLSN) < 0
}

// planRef plans the restore that ends exactly at the end of one backup.
func (h *history) planRef(ref string) (*Plan, error) {
	var rec *Record
	for _, r := range h.recs {
		if r.Ref == ref {
			rec = r
		}
	}
	if rec == nil {
		return nil, fmt.Errorf("%w: %s has no backup %s", ErrNotFound, h.db, ref)
	}
	switch rec.Type {
	case Full:
		return &Plan{Database: h.db, Full: rec, To: rec.Finish}, nil
	case Diff:
		bases := h.filter(func(r *Record) bool {
			return r.Type == Full && !r.CopyOnly && r.CheckpointLSN.Cmp(rec.DatabaseBackupLSN) == 0 && sameGUID(r.DatabaseGUID, rec.DatabaseGUID)
		})
		if len(bases) == 0 {
			return nil, fmt.Errorf("%w: differential %s is based on the full backup with checkpoint LSN %s, which is not in the history (taken by another tool?)",
				ErrNoFull, rec.Name(), rec.DatabaseBackupLSN.Describe())
		}
		return &Plan{Database: h.db, Full: latest(bases), Diff: rec, To: rec.Finish}, nil
	}
	if rec.CopyOnly {
		return nil, fmt.Errorf("%w: %s is a copy-only log backup, outside the log chain: it cannot end a restore", ErrBadRecord, rec.Name())
	}
	return h.plan(rec.Finish, false, rec)
}

// forkNote explains an ambiguous target: the covering log crosses into a new recovery
// fork, and another chain went further on the old fork without reaching the target.
// The restore that started the new fork happened somewhere in between, and msdb does
// not say when.
func forkNote(base *Record, chosen []*Record, all [][]*Record, t time.Time) string {
	cov := chosen[len(chosen)-1]
	if sameGUID(cov.FirstForkGUID, cov.LastForkGUID) {
		return ""
	}
	var old *Record
	for _, c := range all {
		e := end(base, c)
		if len(c) > 0 && sameGUID(e.LastForkGUID, cov.FirstForkGUID) && e.Finish.Before(t) && (old == nil || laterEnd(e, old)) {
			old = e
		}
	}
	if old == nil {
		return ""
	}
	return fmt.Sprintf("the target falls between %s, the last log backup of recovery fork %s (ended %s), and %s, which moves to fork %s: the database was restored in between; this plan follows fork %s (use --to %s for the last point of fork %s)",
		old.Name(), cov.FirstForkGUID, FormatTime(old.Finish), cov.Name(), cov.LastForkGUID, cov.LastForkGUID, FormatTime(old.Finish), cov.FirstForkGUID)
}
