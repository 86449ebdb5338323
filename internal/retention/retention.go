// Package retention decides which backups of a source to keep and deletes the
// others, chain-aware:
//
//   - Each type (full, diff, log manifests as SQL Server has) has its rule: an age
//     ("4w": those that finished less than 4 weeks ago), a count ("4 backups": the
//     newest four of that type) or forever. An empty rule is forever.
//   - An age is also a promise: every instant of the last 4 weeks stays restorable.
//     The start of that window needs the newest full consistent at or before it (not
//     just the fulls younger than 4 weeks), so that full is kept too; for the diff
//     and log rules also the newest diff on it (the base a restore to the window's
//     start uses) and, for log manifests, every log from that base on. A forever
//     rule's window has no start: the first full of each line stays.
//   - Engines with a continuous log (Reacher: PostgreSQL) say how far a restore
//     from each backup reaches; where the kept backups stop reaching inside the
//     window (a restore started a new timeline behind them, a gap in the archive),
//     the backup that reaches furthest from there is kept too.
//   - A backup another kept backup needs is kept: a diff's full (its parent, or any
//     backup its extents or engine section name), a kept log manifest's base and the
//     logs between.
//   - The newest full of each line of history is never deleted. A line is what the
//     engine says (PostgreSQL: a cluster, by system identifier), through Lineager.
//
// Backups are ordered by finish time, never by name or id. Plan is the pure
// decision; Apply carries it out under the source's lock: each deleted backup's
// manifest first, then its data (a crash leaves invisible data that
// repo.CleanLeftovers removes, never a manifest whose data is gone), newest first
// (a diff goes before its full), then the continuous log an engine keeps outside
// manifests (engine.LogPruner: PostgreSQL's WAL, kept from the start of the oldest
// kept backup of each cluster on).
package retention

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hartonomous/hartvault/internal/plan"
	"github.com/hartonomous/hartvault/internal/repo"
)

// Lineager is implemented by engines whose backups under one source name can belong
// to separate lines of history that never share a chain (PostgreSQL: one line per
// cluster, by system identifier). Lineage returns a name for the line, used in
// messages ("cluster 7301234567890123456").
type Lineager interface {
	Lineage(m *repo.Manifest) (string, error)
}

// Policy is a source's retention.
type Policy struct {
	Full, Diff, Log plan.Keep
	// Lineage names the line of history a backup belongs to; nil puts every backup
	// on one line. A backup whose line cannot be told is kept.
	Lineage func(m *repo.Manifest) (string, error)
	// Spans tells, by backup id, the stretch of time a restore starting from the
	// backup can reach: from the instant it is consistent to the last its log
	// carries it to (Reacher). A backup without a span reaches from its finish on
	// to now; a zero end means the same.
	Spans map[string][2]time.Time
	// Pinned are backups that must stay whatever the rules say, by id, with the
	// reason (a retention lock of an immutable repository not yet expired).
	Pinned map[string]string
}

// Reacher is implemented by engines with a continuous log (PostgreSQL): Reach
// returns, by backup id, the stretch of time a restore starting from each backup can
// reach — from the instant it is consistent to the last its log carries it to — so
// that retention sees a backup left behind by a timeline switch or a gap in the log.
type Reacher interface {
	Reach(ctx context.Context, r *repo.Repo, backups []*repo.Manifest) (map[string][2]time.Time, error)
}

// PolicyFor reads a plan's retention rules.
func PolicyFor(r plan.Retention) (Policy, error) {
	var p Policy
	var err error
	if p.Full, err = r.Full.Parse(); err != nil {
		return Policy{}, fmt.Errorf("retention.full: %w", err)
	}
	if p.Diff, err = r.Diff.Parse(); err != nil {
		return Policy{}, fmt.Errorf("retention.diff: %w", err)
	}
	if p.Log, err = r.Log.Parse(); err != nil {
		return Policy{}, fmt.Errorf("retention.log: %w", err)
	}
	return p, nil
}

// String is the policy as a plan would write it: "full 4w, diff 7d, log 7d".
func (p Policy) String() string {
	return fmt.Sprintf("full %s, diff %s, log %s", KeepString(p.Full), KeepString(p.Diff), KeepString(p.Log))
}

// KeepString writes a rule back: "4w", "2 backups", "forever".
func KeepString(k plan.Keep) string {
	switch {
	case k.Count > 0:
		if k.Count == 1 {
			return "1 backup"
		}
		return fmt.Sprintf("%d backups", k.Count)
	case k.Age > 0:
		return Duration(k.Age)
	}
	return "forever"
}

// Duration writes a span the way plan files do: 4w, 7d, 26h, 90m, else Go's form.
func Duration(d time.Duration) string {
	const day = 24 * time.Hour
	switch {
	case d%(7*day) == 0 && d >= 14*day:
		return fmt.Sprintf("%dw", d/(7*day))
	case d%day == 0:
		return fmt.Sprintf("%dd", d/day)
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	}
	return d.String()
}

// maxAge is the longest age among the rules: the window every instant of which stays
// restorable. Zero when no rule has an age.
func (p Policy) maxAge() time.Duration {
	return max(p.Full.Age, p.Diff.Age, p.Log.Age)
}

// Verdict is what happens to one backup, and why.
type Verdict struct {
	Backup *repo.Manifest
	// Lineage is the backup's line of history ("" when the engine has one line).
	Lineage string
	Keep    bool
	Reason  string
}

// Decision is a retention decision over a source's backups.
type Decision struct {
	Source string
	Now    time.Time
	Policy Policy
	// Backups holds a verdict for every backup, oldest first (by finish time).
	Backups []Verdict
}

// Kept returns the backups that stay, oldest first.
func (d Decision) Kept() []*repo.Manifest {
	var out []*repo.Manifest
	for _, v := range d.Backups {
		if v.Keep {
			out = append(out, v.Backup)
		}
	}
	return out
}

// Deleted returns the verdicts of the backups that go, oldest first.
func (d Decision) Deleted() []Verdict {
	var out []Verdict
	for _, v := range d.Backups {
		if !v.Keep {
			out = append(out, v)
		}
	}
	return out
}

// Window is the span before Now every instant of which the policy keeps restorable
// (the longest age among the rules); zero when no rule has an age (counts and
// forever keep backups, not a span of time).
func (d Decision) Window() time.Duration { return d.Policy.maxAge() }

// LogSince is the time from which the log rule keeps every log object; zero when the
// log rule has no age.
func (d Decision) LogSince() time.Time {
	if d.Policy.Log.Age > 0 {
		return d.Now.Add(-d.Policy.Log.Age)
	}
	return time.Time{}
}

// Plan decides which backups to keep (see the package documentation). It does not
// look at storage; backups may be in any order and of any source's history.
func Plan(backups []*repo.Manifest, pol Policy, now time.Time) Decision {
	p := newPlanner(backups, pol, now)
	p.run()
	d := Decision{Now: now, Policy: pol, Backups: make([]Verdict, len(p.bs))}
	for i, m := range p.bs {
		d.Backups[i] = Verdict{Backup: m, Lineage: p.lin[i], Keep: p.why[i] != "", Reason: p.why[i]}
		if !d.Backups[i].Keep {
			d.Backups[i].Reason = p.deleteReason(i)
		}
		if d.Source == "" {
			d.Source = m.Source
		}
	}
	return d
}

type planner struct {
	bs  []*repo.Manifest
	pol Policy
	now time.Time
	idx map[string]int
	// lin is each backup's line of history (unique for those whose line is unknown).
	lin   []string
	label []string
	deps  [][]int
	// why is the reason a backup is kept ("" while it is not).
	why []string
	// chainRoot marks log manifests kept for themselves (by a rule), whose chains
	// are kept whole; logs kept only to bridge a chain do not pull in chains of
	// their own (that would walk back through all history).
	chainRoot []bool
	queue     []int
}

func newPlanner(backups []*repo.Manifest, pol Policy, now time.Time) *planner {
	bs := slices.Clone(backups)
	repo.SortManifests(bs)
	n := len(bs)
	p := &planner{bs: bs, pol: pol, now: now, idx: make(map[string]int, n), lin: make([]string, n),
		label: make([]string, n), deps: make([][]int, n), why: make([]string, n), chainRoot: make([]bool, n)}
	for i, m := range bs {
		p.idx[m.ID] = i
	}
	for i, m := range bs {
		if pol.Lineage != nil {
			l, err := pol.Lineage(m)
			if err != nil {
				p.lin[i] = "\x00" + m.ID
				p.keep(i, fmt.Sprintf("cannot tell which line of history it belongs to (%v)", err))
				continue
			}
			p.lin[i], p.label[i] = l, l
		}
	}
	for i, m := range bs {
		p.deps[i] = p.needs(i, m)
	}
	for i, m := range bs {
		if why, ok := pol.Pinned[m.ID]; ok {
			p.keep(i, why)
		}
	}
	return p
}

// needs returns the other backups m reads: its parent, the backups its extents
// point into, and any backup its engine section names (SQL Server keeps the CLR
// export of an unchanged database in an earlier backup and names it there).
func (p *planner) needs(self int, m *repo.Manifest) []int {
	seen := map[int]bool{}
	add := func(id string) {
		if j, ok := p.idx[id]; ok && j != self {
			seen[j] = true
		}
	}
	add(m.Parent)
	for _, f := range m.Files {
		for _, x := range f.Extents {
			if x.Backup != "" {
				add(x.Backup)
			}
		}
	}
	if len(m.Engine) > 0 {
		var v any
		if json.Unmarshal(m.Engine, &v) == nil {
			walkStrings(v, add)
		}
	}
	out := make([]int, 0, len(seen))
	for j := range seen {
		out = append(out, j)
	}
	slices.Sort(out)
	return out
}

func walkStrings(v any, fn func(string)) {
	switch x := v.(type) {
	case string:
		fn(x)
	case []any:
		for _, e := range x {
			walkStrings(e, fn)
		}
	case map[string]any:
		for _, e := range x {
			walkStrings(e, fn)
		}
	}
}

// keep marks backup i kept with a reason, unless it already is (the first reason
// given is the one shown).
func (p *planner) keep(i int, reason string) {
	if p.why[i] != "" {
		return
	}
	p.why[i] = reason
	p.queue = append(p.queue, i)
}

func (p *planner) rules() []struct {
	typ  string
	rule plan.Keep
} {
	return []struct {
		typ  string
		rule plan.Keep
	}{{repo.TypeFull, p.pol.Full}, {repo.TypeDiff, p.pol.Diff}, {repo.TypeLog, p.pol.Log}}
}

func (p *planner) run() {
	known := map[string]bool{repo.TypeFull: true, repo.TypeDiff: true, repo.TypeLog: true}
	for i, m := range p.bs {
		if !known[m.Type] {
			p.keep(i, fmt.Sprintf("type %q: no retention rule covers it", m.Type))
		}
	}
	// The rules of each type.
	for _, r := range p.rules() {
		var of []int
		for i, m := range p.bs {
			if m.Type == r.typ {
				of = append(of, i)
			}
		}
		for k, i := range of {
			why := ""
			switch {
			case r.rule.Forever:
				why = r.typ + " rule: kept forever"
			case r.rule.Count > 0 && k >= len(of)-r.rule.Count:
				why = fmt.Sprintf("one of the newest %d %s backups", r.rule.Count, r.typ)
			case r.rule.Age > 0 && p.bs[i].Finished.After(p.now.Add(-r.rule.Age)):
				why = "younger than " + Duration(r.rule.Age)
			}
			if why != "" {
				p.keep(i, why)
				p.chainRoot[i] = r.typ == repo.TypeLog
			}
		}
	}
	// The newest full of each line of history.
	newest := map[string]int{}
	for i, m := range p.bs {
		if m.Type == repo.TypeFull {
			newest[p.lin[i]] = i
		}
	}
	for _, i := range sortedValues(newest) {
		if p.label[i] != "" {
			p.keep(i, "the newest full of "+p.label[i])
		} else {
			p.keep(i, "the newest full")
		}
	}
	p.closure()
	// Every instant of each rule's window (from its start, or from the beginning for
	// forever) that some chain can restore must stay restorable: first the chain
	// each window's start restores from, then, over the longest window, wherever
	// the chains kept so far stop reaching, the chain that reaches furthest.
	for _, r := range p.rules() {
		if !r.rule.Forever && r.rule.Age > 0 {
			for _, l := range p.lines() {
				p.anchor(l, r.typ, r.rule.Age)
			}
		}
	}
	if w, ok := p.window(); ok {
		for _, l := range p.lines() {
			p.sweep(l, w)
		}
	}
	p.closure()
	// Log manifests kept by a rule are the newest of their line (a count or an age
	// keeps a suffix), so the oldest of them needs a base and the logs between it
	// and that base; the later ones follow on from it.
	for _, l := range p.lines() {
		for i, m := range p.bs {
			if p.lin[i] != l || !p.chainRoot[i] {
				continue
			}
			if full, _ := p.chainAt(l, m.Finished); full < 0 {
				continue // no base yet at its end: no use on its own
			}
			if !p.chained(i) {
				p.logChain(i)
			}
			break
		}
	}
	p.closure()
}

// closure keeps what kept backups need, until nothing more is needed.
func (p *planner) closure() {
	for len(p.queue) > 0 {
		i := p.queue[0]
		p.queue = p.queue[1:]
		m := p.bs[i]
		for _, j := range p.deps[i] {
			p.keep(j, fmt.Sprintf("kept %s %s needs it", m.Type, m.ID))
		}
	}
}

// chained reports whether kept log i can already be applied: a kept full or diff
// finished before it, with every log between them kept.
func (p *planner) chained(i int) bool {
	m := p.bs[i]
	base := -1
	for j, o := range p.bs {
		if (o.Type == repo.TypeFull || o.Type == repo.TypeDiff) && p.lin[j] == p.lin[i] && p.why[j] != "" && !o.Finished.After(m.Finished) {
			base = j
		}
	}
	if base < 0 {
		return false
	}
	for j, o := range p.bs {
		if o.Type == repo.TypeLog && p.lin[j] == p.lin[i] && o.Finished.After(p.bs[base].Started) && o.Finished.Before(m.Finished) && p.why[j] == "" {
			return false
		}
	}
	return true
}

// logChain keeps what a kept log manifest needs to be applied: the newest chain (a
// full, or a diff on it) that finished before it did, and every log in between.
func (p *planner) logChain(i int) {
	m := p.bs[i]
	full, diff := p.chainAt(p.lin[i], m.Finished)
	base := diff
	if base < 0 {
		base = full
	}
	p.keep(base, fmt.Sprintf("base of the log chain of kept log %s", m.ID))
	for j := range i {
		o := p.bs[j]
		if o.Type == repo.TypeLog && p.lin[j] == p.lin[i] && o.Finished.After(p.bs[base].Started) {
			p.keep(j, fmt.Sprintf("log chain from %s to kept log %s", p.bs[base].ID, m.ID))
		}
	}
}

// chainAt returns the chain a restore of line l to t starts from: the newest full
// finished at or before t and the newest diff on it finished at or before t (-1:
// none).
func (p *planner) chainAt(l string, t time.Time) (full, diff int) {
	full, diff = -1, -1
	for i, m := range p.bs {
		if m.Type == repo.TypeFull && p.lin[i] == l && !m.Finished.After(t) {
			full = i
		}
	}
	if full < 0 {
		return full, diff
	}
	for i, m := range p.bs {
		if m.Type == repo.TypeDiff && p.lin[i] == l && !m.Finished.After(t) && p.basedOn(i, full) {
			diff = i
		}
	}
	return full, diff
}

// far stands for "no end known": a chain without a span reaches on to now.
func far() time.Time { return time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC) }

// spanOf is the stretch a restore starting from backup i can reach.
func (p *planner) spanOf(i int) (from, to time.Time) {
	m := p.bs[i]
	if sp, ok := p.pol.Spans[m.ID]; ok {
		from, to = sp[0], sp[1]
		if from.IsZero() {
			from = m.Finished
		}
		if to.IsZero() {
			to = far()
		}
		return from, to
	}
	return m.Finished, far()
}

// chain reports whether backup i starts a restore of line l: a full, or a diff
// whose full (everything it needs) is there, kept when kept is set.
func (p *planner) chain(i int, l string, kept bool) bool {
	m := p.bs[i]
	if p.lin[i] != l || (m.Type != repo.TypeFull && m.Type != repo.TypeDiff) {
		return false
	}
	if m.Type == repo.TypeDiff {
		if m.Parent != "" {
			if j, ok := p.idx[m.Parent]; !ok || (kept && p.why[j] == "") {
				return false
			}
		}
		for _, j := range p.deps[i] {
			if kept && p.why[j] == "" {
				return false
			}
		}
	}
	return !kept || p.why[i] != ""
}

// covering returns the chain of line l that restores instant t (see chain), of
// type kind: the newest one when newest is set, else the one reaching furthest (the
// newest on a tie); -1 when none does. When kept is set only kept chains count.
func (p *planner) covering(l, kind string, t time.Time, newest, kept bool) (best int, reach time.Time) {
	best = -1
	for i, m := range p.bs {
		if m.Type != kind || !p.chain(i, l, kept) {
			continue
		}
		if from, to := p.spanOf(i); !from.After(t) && !to.Before(t) && (newest || !to.Before(reach)) {
			best, reach = i, to
		}
	}
	return best, reach
}

// anchor keeps the chain a restore to the start of a rule's window starts from: the
// newest full that restores it (else the newest diff that does) and, for the diff
// and log rules, the newest diff on that full that does; for the log rule also
// every log manifest from there on.
func (p *planner) anchor(l, typ string, age time.Duration) {
	start := p.now.Add(-age)
	best, _ := p.covering(l, repo.TypeFull, start, true, false)
	if best < 0 {
		if best, _ = p.covering(l, repo.TypeDiff, start, true, false); best < 0 {
			return // the line began inside the window (see sweep)
		}
	}
	why := fmt.Sprintf("restores the start of the %s %s window (%s)", Duration(age), typ, stamp(start))
	p.keepChain(best, why)
	base := best
	if typ != repo.TypeFull && p.bs[best].Type == repo.TypeFull {
		for i, m := range p.bs {
			if m.Type == repo.TypeDiff && p.chain(i, l, false) && p.basedOn(i, best) {
				if from, to := p.spanOf(i); !from.After(start) && !to.Before(start) {
					base = i
				}
			}
		}
		p.keepChain(base, why)
	}
	if typ == repo.TypeLog {
		p.keepLogsFrom(l, base, why)
	}
}

// retWindow is the longest window of a policy.
type retWindow struct {
	start    time.Time // zero: from the beginning (a rule keeps forever)
	name     string
	logStart time.Time // where the log rule's window starts (far: none)
}

func (p *planner) window() (retWindow, bool) {
	w := retWindow{logStart: far()}
	switch {
	case p.pol.Log.Forever:
		w.logStart = time.Time{}
	case p.pol.Log.Age > 0:
		w.logStart = p.now.Add(-p.pol.Log.Age)
	}
	found := false
	for _, r := range p.rules() {
		switch {
		case r.rule.Forever:
			return retWindow{name: "the " + r.typ + " rule keeps forever", logStart: w.logStart}, true
		case r.rule.Age > 0 && (!found || p.now.Add(-r.rule.Age).Before(w.start)):
			w.start, w.name, found = p.now.Add(-r.rule.Age), fmt.Sprintf("the %s %s window", Duration(r.rule.Age), r.typ), true
		}
	}
	return w, found
}

// sweep walks line l through the window: wherever the kept chains stop reaching an
// instant that some chain restores (a timeline that left them behind, a gap in the
// log, a line that began inside the window), it keeps the chain that reaches
// furthest from there, a full if one does. Without spans from the engine every
// chain reaches on to now, and the anchors are all it takes.
func (p *planner) sweep(l string, w retWindow) {
	pt := w.start
	for !pt.After(p.now) {
		if k, reach := p.covering(l, repo.TypeFull, pt, false, true); k >= 0 {
			if d, dr := p.covering(l, repo.TypeDiff, pt, false, true); d >= 0 && dr.After(reach) {
				reach = dr
			}
			pt = reach.Add(time.Nanosecond)
			continue
		}
		if d, reach := p.covering(l, repo.TypeDiff, pt, false, true); d >= 0 {
			pt = reach.Add(time.Nanosecond)
			continue
		}
		best, reach := p.covering(l, repo.TypeFull, pt, false, false)
		if best < 0 {
			best, reach = p.covering(l, repo.TypeDiff, pt, false, false)
		}
		if best < 0 {
			// No backup restores pt: on to the next instant one does.
			next := far()
			for i := range p.bs {
				if p.chain(i, l, false) {
					if from, _ := p.spanOf(i); from.After(pt) && from.Before(next) {
						next = from
					}
				}
			}
			if next.Equal(far()) {
				return
			}
			pt = next
			continue
		}
		why := fmt.Sprintf("restores %s from %s on, which the backups kept before it do not reach (%s)", p.lineName(l), stamp(pt), w.name)
		if from, _ := p.spanOf(best); p.bs[best].Type == repo.TypeFull && p.firstOf(l, best) && from.Equal(pt) {
			why = fmt.Sprintf("the first full of its line: every instant since is in %s", w.name)
		}
		p.keepChain(best, why)
		if !pt.Before(w.logStart) {
			p.keepLogsFrom(l, best, why)
		}
		pt = reach.Add(time.Nanosecond)
	}
}

// keepChain keeps backup i and what it needs.
func (p *planner) keepChain(i int, why string) {
	p.keep(i, why)
	for _, j := range p.deps[i] {
		p.keep(j, fmt.Sprintf("kept %s %s needs it", p.bs[i].Type, p.bs[i].ID))
	}
}

// keepLogsFrom keeps every log manifest of line l from base's start on.
func (p *planner) keepLogsFrom(l string, base int, why string) {
	for j, m := range p.bs {
		if m.Type == repo.TypeLog && p.lin[j] == l && m.Finished.After(p.bs[base].Started) {
			p.keep(j, fmt.Sprintf("log chain from %s on: %s", p.bs[base].ID, why))
		}
	}
}

// firstOf reports whether full i is line l's oldest.
func (p *planner) firstOf(l string, i int) bool {
	for j, m := range p.bs {
		if m.Type == repo.TypeFull && p.lin[j] == l {
			return j == i
		}
	}
	return false
}

func (p *planner) lineName(l string) string {
	if l == "" || strings.HasPrefix(l, "\x00") {
		return "the source"
	}
	return l
}

// basedOn reports whether diff i is a diff on full f.
func (p *planner) basedOn(i, f int) bool {
	if p.bs[i].Parent != "" {
		return p.bs[i].Parent == p.bs[f].ID
	}
	return slices.Contains(p.deps[i], f)
}

// lines returns the lines of history, in order of their first backup.
func (p *planner) lines() []string {
	var out []string
	seen := map[string]bool{}
	for _, l := range p.lin {
		if !seen[l] {
			seen[l] = true
			out = append(out, l)
		}
	}
	return out
}

func (p *planner) deleteReason(i int) string {
	m := p.bs[i]
	var rule plan.Keep
	switch m.Type {
	case repo.TypeFull:
		rule = p.pol.Full
	case repo.TypeDiff:
		rule = p.pol.Diff
	case repo.TypeLog:
		rule = p.pol.Log
	}
	var parts []string
	switch {
	case rule.Count > 0:
		parts = append(parts, fmt.Sprintf("not one of the newest %d %s backups", rule.Count, m.Type))
	case rule.Age > 0:
		parts = append(parts, "older than "+Duration(rule.Age))
	}
	if m.Type == repo.TypeFull {
		parts = append(parts, "not the newest full")
	}
	parts = append(parts, "and neither a window nor a kept backup needs it")
	return strings.Join(parts, ", ")
}

func sortedValues(m map[string]int) []int {
	out := make([]int, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	slices.Sort(out)
	return out
}
