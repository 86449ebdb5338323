package retention

import (
	"fmt"
	"math/rand"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hartonomous/hartvault/internal/plan"
	"github.com/hartonomous/hartvault/internal/repo"
)

// TestRetentionProperties runs Plan over hundreds of generated histories (weekly
// fulls, daily diffs, some with hourly log manifests; failed backups, days without
// any, several clusters one after the other; ids that do not sort by time) with
// random policies and times, and checks what must hold whatever the history:
//
//   - every instant of the window that could be restored before pruning still can:
//     with a continuous log (PostgreSQL's WAL, kept from the oldest kept backup on)
//     that takes a kept full consistent before it; with log manifests, inside the
//     log rule's window, the very chain a restore picks (the newest kept full before
//     the instant, the newest kept diff on it) and every log from it to the instant;
//   - every rule's backups are kept, every kept backup's full is kept, the newest
//     full of each cluster is kept;
//   - nothing is kept without a reason the rules give: a diff older than every
//     window whose full is gone, a full no window or backup needs, a log no kept
//     chain uses are deleted.
func TestRetentionProperties(t *testing.T) {
	histories := 600
	if testing.Short() {
		histories = 150
	}
	for seed := int64(1); seed <= int64(histories); seed++ {
		rng := rand.New(rand.NewSource(seed))
		o := genOptions{days: 10 + rng.Intn(70), lines: 1, logs: rng.Intn(3) == 0,
			failures: rng.Float64() * 0.3, downs: rng.Float64() * 0.08}
		if rng.Intn(3) == 0 {
			o.deadEnds = rng.Float64() * 0.4
		}
		if rng.Intn(3) == 0 {
			o.lines = 2 + rng.Intn(2)
		}
		h := generate(rng, o)
		pol := Policy{
			Full:    randomKeep(rng, 5, 7*24*time.Hour, 6),
			Diff:    randomKeep(rng, 10, 24*time.Hour, 14),
			Log:     randomKeep(rng, 100, 24*time.Hour, 14),
			Lineage: h.policyLineage(),
			Spans:   h.spans,
		}
		now := h.end.Add(time.Duration(rng.Intn(4*24*60)) * time.Minute)
		d := Plan(h.backups, pol, now)
		if err := checkDecision(h, pol, now, d); err != nil {
			t.Fatalf("seed %d (%d days, %d backups, %d clusters, logs %v), policy %s, now %s: %v\n%s",
				seed, o.days, len(h.backups), len(h.lines), o.logs, pol, now.Format(time.RFC3339), err, describe(d))
		}
	}
}

func describe(d Decision) string {
	var b strings.Builder
	for _, v := range d.Backups {
		if v.Backup.Type == repo.TypeLog && !v.Keep {
			continue
		}
		fmt.Fprintf(&b, "  %-5v %-4s %-10s %s  %s\n", v.Keep, v.Backup.Type, v.Lineage, v.Backup.Finished.Format("01-02 15:04 Mon"), v.Reason)
	}
	return b.String()
}

// set is a set of backups as a restore sees them, indexed per line.
type set struct {
	h     *history
	in    map[string]bool
	lines map[string]*lineIndex
}

type lineIndex struct {
	fulls, diffs []*repo.Manifest // in the set, oldest first
	logs         []*repo.Manifest // all of the line's logs, in the set or not
	// run[i] is the last index j >= i such that logs[i..j] are all in the set (i-1
	// when logs[i] is not).
	run []int
}

func newSet(h *history, in map[string]bool) set {
	s := set{h: h, in: in, lines: map[string]*lineIndex{}}
	for _, ln := range h.lines {
		s.lines[ln.name] = &lineIndex{}
	}
	sorted := slices.Clone(h.backups)
	repo.SortManifests(sorted)
	for _, m := range sorted {
		li := s.lines[h.lineage[m.ID]]
		switch {
		case m.Type == repo.TypeLog:
			li.logs = append(li.logs, m)
		case !in[m.ID]:
		case m.Type == repo.TypeFull:
			li.fulls = append(li.fulls, m)
		case m.Type == repo.TypeDiff:
			li.diffs = append(li.diffs, m)
		}
	}
	for _, li := range s.lines {
		li.run = make([]int, len(li.logs))
		for i := len(li.logs) - 1; i >= 0; i-- {
			switch {
			case !in[li.logs[i].ID]:
				li.run[i] = i - 1
			case i+1 < len(li.logs) && in[li.logs[i+1].ID]:
				li.run[i] = li.run[i+1]
			default:
				li.run[i] = i
			}
		}
	}
	return s
}

// of returns the line's backups of a type in the set, oldest first.
func (s set) of(l, typ string) []*repo.Manifest {
	li := s.lines[l]
	switch typ {
	case repo.TypeFull:
		return li.fulls
	case repo.TypeDiff:
		return li.diffs
	}
	var out []*repo.Manifest
	for _, m := range li.logs {
		if s.in[m.ID] {
			out = append(out, m)
		}
	}
	return out
}

// firstAfter is the index of the first backup in ms finished after t (strictly when
// strict, else at or after).
func firstAfter(ms []*repo.Manifest, t time.Time, strict bool) int {
	i, _ := slices.BinarySearchFunc(ms, t, func(m *repo.Manifest, t time.Time) int {
		if m.Finished.Before(t) || (strict && m.Finished.Equal(t)) {
			return -1
		}
		return 1
	})
	return i
}

// covers reports whether some chain of line l in the set (a full, or a diff whose
// full is in the set) restores t: consistent by then, and reaching it.
func (s set) covers(l string, t time.Time) bool {
	li := s.lines[l]
	for _, ms := range [][]*repo.Manifest{li.fulls, li.diffs} {
		for _, m := range ms {
			if m.Finished.After(t) {
				break
			}
			if m.Type == repo.TypeDiff && !s.in[m.Parent] {
				continue
			}
			if sp, ok := s.h.spans[m.ID]; ok && t.After(sp[1]) {
				continue
			}
			return true
		}
	}
	return false
}

// newestFull is the newest full of line l finished at or before t.
func (s set) newestFull(l string, t time.Time) *repo.Manifest {
	fs := s.lines[l].fulls
	if i := firstAfter(fs, t, true); i > 0 {
		return fs[i-1]
	}
	return nil
}

// pointInTime reports whether line l can be restored to t with log manifests: the
// chain a restore picks, then every log from it up to one ending at or after t.
func (s set) pointInTime(l string, t time.Time) bool {
	full := s.newestFull(l, t)
	if full == nil {
		return false
	}
	base := latestDiff(s, l, full, t)
	if base == nil {
		base = full
	}
	if base.Finished.Equal(t) {
		return true
	}
	// Logs are continuous: each covers from the previous one's end to its own.
	li := s.lines[l]
	first := firstAfter(li.logs, base.Finished, true)
	last := firstAfter(li.logs, t, false)
	if last >= len(li.logs) {
		return false // past the last log
	}
	return li.run[first] >= last
}

func checkDecision(h *history, pol Policy, now time.Time, d Decision) error {
	if len(d.Backups) != len(h.backups) {
		return fmt.Errorf("%d verdicts for %d backups", len(d.Backups), len(h.backups))
	}
	byID := map[string]*repo.Manifest{}
	for _, m := range h.backups {
		byID[m.ID] = m
	}
	kept := map[string]bool{}
	all := map[string]bool{}
	for i, v := range d.Backups {
		if i > 0 && v.Backup.Finished.Before(d.Backups[i-1].Backup.Finished) {
			return fmt.Errorf("verdicts not in finish order at %s", v.Backup.ID)
		}
		if v.Reason == "" {
			return fmt.Errorf("%s has no reason", v.Backup.ID)
		}
		all[v.Backup.ID] = true
		if v.Keep {
			kept[v.Backup.ID] = true
		}
	}
	before, after := newSet(h, all), newSet(h, kept)

	// What kept backups need is kept.
	for id := range kept {
		m := byID[id]
		if m.Parent != "" && !kept[m.Parent] {
			return fmt.Errorf("kept %s %s needs %s, which is deleted", m.Type, id, m.Parent)
		}
		for _, f := range m.Files {
			for _, x := range f.Extents {
				if x.Backup != "" && !kept[x.Backup] {
					return fmt.Errorf("kept %s %s has extents in %s, which is deleted", m.Type, id, x.Backup)
				}
			}
		}
	}
	// The newest full of each line is kept.
	for _, ln := range h.lines {
		if fs := before.of(ln.name, repo.TypeFull); len(fs) > 0 && !kept[fs[len(fs)-1].ID] {
			return fmt.Errorf("the newest full of %s, %s, is deleted", ln.name, fs[len(fs)-1].ID)
		}
	}
	// Every rule keeps what it says.
	rules := map[string]plan.Keep{repo.TypeFull: pol.Full, repo.TypeDiff: pol.Diff, repo.TypeLog: pol.Log}
	byRule := map[string]bool{}
	for typ, k := range rules {
		var of []*repo.Manifest
		for _, m := range h.backups {
			if m.Type == typ {
				of = append(of, m)
			}
		}
		repo.SortManifests(of)
		for i, m := range of {
			if k.Forever || (k.Count > 0 && i >= len(of)-k.Count) || (k.Age > 0 && m.Finished.After(now.Add(-k.Age))) {
				byRule[m.ID] = true
				if !kept[m.ID] {
					return fmt.Errorf("%s %s is kept by the rule %s but deleted", typ, m.ID, KeepString(k))
				}
			}
		}
	}

	// Every instant of the window stays restorable.
	forever := pol.Full.Forever || pol.Diff.Forever || pol.Log.Forever
	window := pol.maxAge()
	logWindow := pol.Log.Age
	for _, ln := range h.lines {
		end := ln.end
		if end.IsZero() {
			end = now
		}
		from := now.Add(-window)
		if forever {
			from = ln.begin
		}
		if window == 0 && !forever {
			continue // counts only: no span of time is promised
		}
		for _, t := range instants(h, ln, from, end) {
			if before.covers(ln.name, t) && !after.covers(ln.name, t) {
				return fmt.Errorf("%s at %s: restorable before pruning, no kept chain restores it after", ln.name, t.Format(time.RFC3339))
			}
		}
		if !h.logs || (logWindow == 0 && !pol.Log.Forever) {
			continue
		}
		from = now.Add(-logWindow)
		if pol.Log.Forever {
			from = ln.begin
		}
		for _, t := range instants(h, ln, from, end) {
			if before.pointInTime(ln.name, t) && !after.pointInTime(ln.name, t) {
				return fmt.Errorf("%s at %s: restorable to the instant with logs before pruning, not after", ln.name, t.Format(time.RFC3339))
			}
		}
	}

	// A log a rule keeps can be used: restoring to its end works as it did before.
	for id := range byRule {
		m := byID[id]
		l := h.lineage[id]
		if m.Type == repo.TypeLog && before.pointInTime(l, m.Finished) && !after.pointInTime(l, m.Finished) {
			return fmt.Errorf("kept log %s cannot be applied: no kept chain leads to it", id)
		}
	}

	// Nothing is kept without a reason the rules give.
	anchors := map[string]bool{}
	reaches := func(m *repo.Manifest, t time.Time) bool {
		sp, ok := h.spans[m.ID]
		return !m.Finished.After(t) && (!ok || !t.After(sp[1]))
	}
	for typ, k := range rules {
		if k.Age <= 0 {
			continue
		}
		cut := now.Add(-k.Age)
		for _, ln := range h.lines {
			// The chain a restore to the window's start starts from: the newest full
			// that reaches it and the newest diff on it that does, else the newest
			// diff that does.
			var f, base *repo.Manifest
			for _, m := range before.of(ln.name, repo.TypeFull) {
				if reaches(m, cut) {
					f, base = m, m
				}
			}
			if f == nil {
				for _, m := range before.of(ln.name, repo.TypeDiff) {
					if reaches(m, cut) {
						base = m
					}
				}
			} else if typ != repo.TypeFull {
				for _, m := range before.of(ln.name, repo.TypeDiff) {
					if m.Parent == f.ID && reaches(m, cut) {
						base = m
					}
				}
			}
			if base == nil {
				// The line began inside the window: its first full starts it.
				if fs := before.of(ln.name, repo.TypeFull); len(fs) > 0 && h.spans == nil {
					base = fs[0]
				} else {
					continue
				}
			}
			anchors[base.ID] = true
			if f != nil {
				anchors[f.ID] = true
			}
			if typ != repo.TypeLog {
				continue
			}
			// The logs from the base of the log window's start on.
			for _, lg := range before.of(ln.name, repo.TypeLog) {
				if lg.Finished.After(base.Started) {
					anchors[lg.ID] = true
				}
			}
		}
	}
	neededBy := map[string]bool{}
	for id := range kept {
		m := byID[id]
		neededBy[m.Parent] = true
		for _, f := range m.Files {
			for _, x := range f.Extents {
				neededBy[x.Backup] = true
			}
		}
	}
	// The backups kept for reasons other than covering the window where the others
	// stop reaching, with what they need.
	base := map[string]bool{}
	for id := range kept {
		if byRule[id] || anchors[id] {
			base[id] = true
		}
	}
	for _, ln := range h.lines {
		if fs := before.of(ln.name, repo.TypeFull); len(fs) > 0 {
			base[fs[len(fs)-1].ID] = true
			if forever {
				base[fs[0].ID] = true
			}
		}
	}
	for id := range base {
		if p := byID[id].Parent; p != "" {
			base[p] = true
		}
	}
	baseSet := newSet(h, base)
	for id := range kept {
		m := byID[id]
		if byRule[id] || anchors[id] || neededBy[id] || coverNeeds(h, now, window, forever, baseSet, after, m) {
			continue
		}
		l := h.lineage[id]
		switch m.Type {
		case repo.TypeFull:
			fs := before.of(l, repo.TypeFull)
			if fs[len(fs)-1] == m || (forever && fs[0] == m) || isLogBase(h, after, m) {
				continue
			}
		case repo.TypeDiff:
			if isLogBase(h, after, m) {
				continue
			}
		case repo.TypeLog:
			// A log bridges a kept base to logs kept by the rule.
			if bridges(h, after, byRule, m) {
				continue
			}
		}
		return fmt.Errorf("%s %s (%s, finished %s) is kept with no reason the rules give (says %q)", m.Type, id, l,
			m.Finished.Format(time.RFC3339), verdict(d, id).Reason)
	}
	return nil
}

// coverNeeds reports whether m restores some instant of the window that the
// backups kept for other reasons (base) do not.
func coverNeeds(h *history, now time.Time, window time.Duration, forever bool, base, after set, m *repo.Manifest) bool {
	if m.Type == repo.TypeLog {
		return false
	}
	only := newSet(h, map[string]bool{m.ID: true, m.Parent: after.in[m.Parent]})
	l := h.lineage[m.ID]
	for _, ln := range h.lines {
		if ln.name != l {
			continue
		}
		from := now.Add(-window)
		if forever {
			from = ln.begin
		}
		end := ln.end
		if end.IsZero() {
			end = now
		}
		for _, t := range instants(h, ln, from, end) {
			if only.covers(l, t) && !base.covers(l, t) {
				return true
			}
		}
	}
	return false
}

func latestDiff(s set, l string, full *repo.Manifest, t time.Time) *repo.Manifest {
	ds := s.lines[l].diffs
	for i := firstAfter(ds, t, true) - 1; i >= 0 && !ds[i].Finished.Before(full.Finished); i-- {
		if ds[i].Parent == full.ID {
			return ds[i]
		}
	}
	return nil
}

// isLogBase reports whether m is a base a kept log's chain starts from: kept logs
// follow it.
func isLogBase(h *history, after set, m *repo.Manifest) bool {
	for _, lg := range after.of(h.lineage[m.ID], repo.TypeLog) {
		if lg.Finished.After(m.Started) {
			return true
		}
	}
	return false
}

// bridges reports whether log m lies between a kept base and a log the rule keeps.
func bridges(h *history, after set, byRule map[string]bool, m *repo.Manifest) bool {
	l := h.lineage[m.ID]
	base := false
	for _, typ := range []string{repo.TypeFull, repo.TypeDiff} {
		for _, b := range after.of(l, typ) {
			if m.Finished.After(b.Started) {
				base = true
			}
		}
	}
	if !base {
		return false
	}
	for _, lg := range after.of(l, repo.TypeLog) {
		if byRule[lg.ID] && !lg.Finished.Before(m.Finished) {
			return true
		}
	}
	return false
}

func verdict(d Decision, id string) Verdict {
	for _, v := range d.Backups {
		if v.Backup.ID == id {
			return v
		}
	}
	return Verdict{}
}

// instants are the moments worth checking in [from, to] of a line: the window's
// edges, each backup's end and a second either side, and every hour.
func instants(h *history, ln line, from, to time.Time) []time.Time {
	if from.Before(ln.begin) {
		from = ln.begin
	}
	var out []time.Time
	add := func(t time.Time) {
		if !t.Before(from) && !t.After(to) {
			out = append(out, t)
		}
	}
	add(from)
	add(from.Add(time.Second))
	add(to)
	for _, m := range h.backups {
		if h.lineage[m.ID] == ln.name {
			add(m.Finished.Add(-time.Second))
			add(m.Finished)
			add(m.Finished.Add(time.Second))
			if sp, ok := h.spans[m.ID]; ok {
				add(sp[1])
				add(sp[1].Add(time.Nanosecond))
			}
		}
	}
	for t := from.Truncate(time.Hour); t.Before(to); t = t.Add(time.Hour) {
		add(t)
	}
	slices.SortFunc(out, func(a, b time.Time) int { return a.Compare(b) })
	return slices.Compact(out)
}
