// Package status works out, from the plan, the repository's catalog, the run log and
// the engines, where each source stands: for each backup type the last success, its
// age, 7-day averages of duration and size, counts, the attempt in progress; the
// restorable window; replica state; and the alerts that fire (stale, failed, slow).
//
// eval.go holds the pure evaluation (no I/O, time passed in); compute.go gathers
// the inputs from a repository.
package status

import (
	"fmt"
	"sort"
	"time"

	"github.com/hartonomous/hartvault/internal/repo"
)

// Alert kinds.
const (
	// Stale: the newest backup of a type is older than the plan's alerts threshold.
	Stale = "stale"
	// Failed: the last attempt of a type failed; cleared by the next success.
	Failed = "failed"
	// Slow: a backup runs (or the last one ran) longer than max_duration, by default
	// three times the 7-day average duration of its type; cleared by the next
	// success within it.
	Slow = "slow"
)

// DefaultSlowFactor makes the default max_duration: this many times the 7-day average.
const DefaultSlowFactor = 3

// Window is how far back averages and failure counts look.
const Window = 7 * 24 * time.Hour

// Alert is one firing alert.
type Alert struct {
	Source  string    `json:"source"`
	Type    string    `json:"type"`
	Kind    string    `json:"kind"`
	Message string    `json:"message"`
	Since   time.Time `json:"since,omitzero"`
}

// Key identifies an alert across evaluations (raised/cleared).
func (a Alert) Key() string { return a.Source + "/" + a.Type + "/" + a.Kind }

// BackupRef is a committed backup as status shows it.
type BackupRef struct {
	ID          string    `json:"id"`
	Type        string    `json:"type"`
	Parent      string    `json:"parent,omitempty"`
	Started     time.Time `json:"started"`
	Finished    time.Time `json:"finished"`
	Bytes       int64     `json:"bytes"`
	StoredBytes int64     `json:"stored_bytes"`
}

// Duration is how long the backup took.
func (b BackupRef) Duration() time.Duration { return b.Finished.Sub(b.Started) }

// RunRef is an attempt as status shows it.
type RunRef struct {
	Type     string    `json:"type"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished,omitzero"`
	Result   string    `json:"result"`
	Error    string    `json:"error,omitempty"`
	Backup   string    `json:"backup,omitempty"`
	Host     string    `json:"host,omitempty"`
}

// Averages are figures over the successful backups of the last 7 days.
type Averages struct {
	Count           int     `json:"count"`
	DurationSeconds float64 `json:"duration_seconds"`
	Bytes           int64   `json:"bytes"`
	StoredBytes     int64   `json:"stored_bytes"`
}

// TypeStatus is where one backup type of a source stands.
type TypeStatus struct {
	Type     string `json:"type"`
	Schedule string `json:"schedule,omitempty"`
	// LastSuccess is when the newest backup of this type finished, or was last
	// found current by a check that saw nothing changed (for a continuous log: the
	// newest restorable instant); zero when there is none.
	LastSuccess time.Time  `json:"last_success,omitzero"`
	Last        *BackupRef `json:"last_backup,omitempty"`
	// AgeSeconds is now minus LastSuccess (absent when there is none).
	AgeSeconds  *float64 `json:"age_seconds,omitempty"`
	Last7d      Averages `json:"last_7d"`
	Count       int      `json:"count"` // committed backups of this type in the repository
	LastAttempt *RunRef  `json:"last_attempt,omitempty"`
	Running     *RunRef  `json:"running,omitempty"`
	Failures7d  int      `json:"failures_7d"`
	// StaleAfterSeconds is the plan's alerts threshold (absent: none).
	StaleAfterSeconds float64 `json:"stale_after_seconds,omitempty"`
	// MaxDurationSeconds is the slow threshold in force: the plan's max_duration,
	// else three times the 7-day average (absent when neither is known).
	MaxDurationSeconds float64 `json:"max_duration_seconds,omitempty"`
	Alerts             []Alert `json:"alerts"`
}

// Span is an interval of time.
type Span struct {
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
}

// RestoreWindow is what the repository can bring a source back to.
type RestoreWindow struct {
	Earliest time.Time `json:"earliest,omitzero"`
	Latest   time.Time `json:"latest,omitzero"`
	// Continuous: every instant between Earliest and Latest can be restored
	// (PostgreSQL with its WAL); otherwise only the backups' points can.
	Continuous bool `json:"continuous"`
	Points     int  `json:"points"`
}

// PointsWindow is the window of a source restorable only to its backups' ends.
func PointsWindow(backups []BackupRef) RestoreWindow {
	w := RestoreWindow{Points: len(backups)}
	for _, b := range backups {
		if w.Earliest.IsZero() || b.Finished.Before(w.Earliest) {
			w.Earliest = b.Finished
		}
		if b.Finished.After(w.Latest) {
			w.Latest = b.Finished
		}
	}
	return w
}

// Summarize works out a type's figures from the source's committed backups of
// that type and its attempts (both oldest first), at now.
func Summarize(typ string, backups []BackupRef, runs []repo.Run, now time.Time) TypeStatus {
	ts := TypeStatus{Type: typ, Alerts: []Alert{}}
	var sumDur time.Duration
	for i := range backups {
		b := backups[i]
		if b.Type != typ {
			continue
		}
		ts.Count++
		if ts.Last == nil || !b.Finished.Before(ts.Last.Finished) {
			ts.Last = &backups[i]
		}
		if now.Sub(b.Finished) <= Window {
			ts.Last7d.Count++
			sumDur += b.Duration()
			ts.Last7d.Bytes += b.Bytes
			ts.Last7d.StoredBytes += b.StoredBytes
		}
	}
	if n := ts.Last7d.Count; n > 0 {
		ts.Last7d.DurationSeconds = (sumDur / time.Duration(n)).Seconds()
		ts.Last7d.Bytes /= int64(n)
		ts.Last7d.StoredBytes /= int64(n)
	}
	if ts.Last != nil {
		ts.LastSuccess = ts.Last.Finished
		age := now.Sub(ts.LastSuccess).Seconds()
		ts.AgeSeconds = &age
	}
	for _, r := range runs {
		if r.Type != typ {
			continue
		}
		ref := runRef(r)
		switch r.Result {
		case repo.RunRunning:
			ts.Running = &ref
		case repo.RunAbandoned:
			// cancelled cleanly: neither a success nor a failure
		default:
			ts.LastAttempt = &ref
		}
		if isFailure(r.Result) && now.Sub(r.Started) <= Window {
			ts.Failures7d++
		}
		// A check that found nothing changed confirms the newest backup is current
		// (a file set that does not change does not go stale).
		if r.Result == repo.RunUnchanged && ts.Last != nil && r.Finished.After(ts.LastSuccess) {
			ts.SetLastSuccess(r.Finished, now)
		}
	}
	return ts
}

// SetLastSuccess makes t the type's last success (a continuous log's newest
// restorable instant), with its age at now.
func (ts *TypeStatus) SetLastSuccess(t, now time.Time) {
	ts.LastSuccess = t
	ts.AgeSeconds = nil
	if !t.IsZero() {
		age := now.Sub(t).Seconds()
		ts.AgeSeconds = &age
	}
}

func runRef(r repo.Run) RunRef {
	return RunRef{Type: r.Type, Started: r.Started, Finished: r.Finished, Result: r.Result, Error: r.Error, Backup: r.Backup, Host: r.Host}
}

func isFailure(result string) bool { return result == repo.RunFailed || result == repo.RunInterrupted }
func isSuccess(result string) bool { return result == repo.RunOK || result == repo.RunUnchanged }

// EvalStale fires when the newest success of a type (lastSuccess, zero if none) is
// older than threshold at now. A threshold of zero never fires. firstSeen, when
// there never was a success, is how long the source has been known (its first
// attempt), for the alert's since.
func EvalStale(source, typ string, lastSuccess time.Time, threshold time.Duration, firstSeen, now time.Time) *Alert {
	if threshold <= 0 {
		return nil
	}
	if lastSuccess.IsZero() {
		return &Alert{Source: source, Type: typ, Kind: Stale, Since: firstSeen,
			Message: fmt.Sprintf("%s has no %s backup yet (alert threshold %s)", source, typ, fmtDur(threshold))}
	}
	age := now.Sub(lastSuccess)
	if age <= threshold {
		return nil
	}
	return &Alert{Source: source, Type: typ, Kind: Stale, Since: lastSuccess.Add(threshold),
		Message: fmt.Sprintf("the newest %s backup of %s is %s old (threshold %s), from %s", typ, source, fmtDur(age),
			fmtDur(threshold), lastSuccess.UTC().Format(time.RFC3339))}
}

// EvalFailed fires when the last completed attempt of a type (runs oldest first,
// of that type) failed and no backup of that type finished after it (lastBackup:
// the newest committed one's start, which clears the alert even when its attempt
// left no record). Since is the first failure after the last success.
func EvalFailed(source, typ string, runs []repo.Run, lastBackup time.Time) *Alert {
	var streak []repo.Run // failures since the last success, newest first
	for i := len(runs) - 1; i >= 0; i-- {
		r := runs[i]
		if r.Type != typ {
			continue
		}
		if isSuccess(r.Result) {
			break
		}
		if isFailure(r.Result) {
			streak = append(streak, r)
		}
	}
	if len(streak) == 0 {
		return nil
	}
	last, first := streak[0], streak[len(streak)-1]
	if !lastBackup.IsZero() && !lastBackup.Before(last.Started) {
		return nil
	}
	since := first.Finished
	if since.IsZero() {
		since = first.Started
	}
	what := "failed"
	if last.Result == repo.RunInterrupted {
		what = "was interrupted"
	}
	msg := fmt.Sprintf("the last %s backup of %s %s (started %s", typ, source, what, last.Started.UTC().Format(time.RFC3339))
	if len(streak) > 1 {
		msg += fmt.Sprintf("; %d failed attempts since the last success", len(streak))
	}
	msg += ")"
	if last.Error != "" {
		msg += ": " + last.Error
	}
	return &Alert{Source: source, Type: typ, Kind: Failed, Since: since, Message: msg}
}

// MaxDuration is the slow threshold in force: the plan's max_duration when set,
// else DefaultSlowFactor times avg (zero, no threshold, when avg is zero).
func MaxDuration(planMax, avg time.Duration) time.Duration {
	if planMax > 0 {
		return planMax
	}
	return DefaultSlowFactor * avg
}

// EvalSlow fires when the attempt in progress (running, nil if none) has run longer
// than max at now, or when the newest successful backup (last, nil if none) took
// longer than max; the next success within it clears the latter. prevAvg is the
// 7-day average of the backups before last (the default max for judging it).
func EvalSlow(source, typ string, running *RunRef, last *BackupRef, planMax, avg, prevAvg time.Duration, now time.Time) *Alert {
	if running != nil {
		if max := MaxDuration(planMax, avg); max > 0 && now.Sub(running.Started) > max {
			return &Alert{Source: source, Type: typ, Kind: Slow, Since: running.Started.Add(max),
				Message: fmt.Sprintf("a %s backup of %s has been running for %s, longer than %s", typ, source,
					fmtDur(now.Sub(running.Started)), maxWhy(planMax, max))}
		}
	}
	if last != nil {
		if max := MaxDuration(planMax, prevAvg); max > 0 && last.Duration() > max {
			return &Alert{Source: source, Type: typ, Kind: Slow, Since: last.Started.Add(max),
				Message: fmt.Sprintf("the last %s backup of %s (%s) took %s, longer than %s", typ, source, last.ID,
					fmtDur(last.Duration()), maxWhy(planMax, max))}
		}
	}
	return nil
}

func maxWhy(planMax, max time.Duration) string {
	if planMax > 0 {
		return "max_duration " + fmtDur(max)
	}
	return fmt.Sprintf("%s (%d times its 7-day average)", fmtDur(max), DefaultSlowFactor)
}

// AverageDuration is the mean duration of the backups of typ that finished within
// Window before now, leaving out the one with id skip.
func AverageDuration(typ string, backups []BackupRef, skip string, now time.Time) time.Duration {
	var sum time.Duration
	n := 0
	for _, b := range backups {
		if b.Type != typ || b.ID == skip || now.Sub(b.Finished) > Window {
			continue
		}
		sum += b.Duration()
		n++
	}
	if n == 0 {
		return 0
	}
	return sum / time.Duration(n)
}

// SortAlerts orders alerts by source, type and kind.
func SortAlerts(as []Alert) {
	sort.SliceStable(as, func(i, j int) bool { return as[i].Key() < as[j].Key() })
}

// Diff compares two sets of firing alerts: raised are in cur but not prev,
// cleared in prev but not cur (by Key).
func Diff(prev, cur []Alert) (raised, cleared []Alert) {
	in := func(as []Alert, k string) bool {
		for _, a := range as {
			if a.Key() == k {
				return true
			}
		}
		return false
	}
	for _, a := range cur {
		if !in(prev, a.Key()) {
			raised = append(raised, a)
		}
	}
	for _, a := range prev {
		if !in(cur, a.Key()) {
			cleared = append(cleared, a)
		}
	}
	return raised, cleared
}

// fmtDur formats a duration for people: 8d, 26h, 1h30m, 45s.
func fmtDur(d time.Duration) string {
	if d < 0 {
		d = -d
	}
	switch {
	case d >= 48*time.Hour:
		days := d / (24 * time.Hour)
		h := (d % (24 * time.Hour)) / time.Hour
		if h == 0 {
			return fmt.Sprintf("%dd", days)
		}
		return fmt.Sprintf("%dd%dh", days, h)
	case d >= time.Hour:
		h, m := d/time.Hour, (d%time.Hour)/time.Minute
		if m == 0 {
			return fmt.Sprintf("%dh", h)
		}
		return fmt.Sprintf("%dh%dm", h, m)
	case d >= time.Minute:
		m, s := d/time.Minute, (d%time.Minute)/time.Second
		if s == 0 {
			return fmt.Sprintf("%dm", m)
		}
		return fmt.Sprintf("%dm%ds", m, s)
	case d >= time.Second:
		return fmt.Sprintf("%ds", d/time.Second)
	default:
		return d.Round(time.Millisecond).String()
	}
}

// FormatDuration formats a duration the way status messages do (8d, 26h, 1h30m).
func FormatDuration(d time.Duration) string { return fmtDur(d) }
