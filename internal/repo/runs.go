package repo

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/hartonomous/hartvault/internal/storage"
)

// The run log: one small record per backup attempt, whatever its outcome, so that
// status and alerts know of failures (which leave no manifest), durations and
// attempts in progress.
//
//	runs/<source>/<started>-<type>-<rand>.json
//	runs/<source>/checked-<type>.json          the newest "unchanged" attempt
//
// A record is written with result "running" when an attempt starts (once it holds
// the source's lock) and rewritten with the outcome when it ends. An attempt that
// found nothing changed (a file set checked every minute) replaces the one
// checked-<type> record instead, so frequent checks do not pile up records. It is encoded
// like a manifest (encrypted in passphrase mode). Error texts are single lines with
// anything that looks like a credential removed.

// Run results.
const (
	RunRunning   = "running"
	RunOK        = "ok"
	RunFailed    = "failed"
	RunUnchanged = "unchanged" // nothing changed since the last backup: no new backup needed
	// RunAbandoned is an attempt cancelled cleanly (a signal): nothing was committed.
	RunAbandoned = "abandoned"
	// RunInterrupted is read back for a "running" record whose process is gone (it
	// died, or was killed) without writing its outcome.
	RunInterrupted = "interrupted"
)

// RunLogKeep is how long run records are kept: older ones are removed after each
// successful backup of the source.
const RunLogKeep = 30 * 24 * time.Hour

// Run is one backup attempt.
type Run struct {
	Source   string    `json:"source"`
	Type     string    `json:"type"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished,omitzero"`
	Result   string    `json:"result"`
	// Error is the failure, one line, without secrets.
	Error string `json:"error,omitempty"`
	// Backup is the committed backup's id (result ok).
	Backup      string `json:"backup,omitempty"`
	Bytes       int64  `json:"bytes,omitempty"`
	StoredBytes int64  `json:"stored_bytes,omitempty"`
	Host        string `json:"host"`
	PID         int    `json:"pid"`
	// LockOwner ties a running attempt to the source lock it holds: a "running"
	// record whose lock is gone belongs to a process that died.
	LockOwner string       `json:"lock_owner,omitempty"`
	Replicas  []RunReplica `json:"replicas,omitempty"`

	// Key is where the record is stored.
	Key string `json:"-"`
}

// RunReplica is what an attempt did to one replica.
type RunReplica struct {
	URL    string `json:"url"`
	Copied int    `json:"copied"`
	Error  string `json:"error,omitempty"`
}

// Duration is how long the attempt took (zero while it runs).
func (r Run) Duration() time.Duration {
	if r.Finished.IsZero() {
		return 0
	}
	return r.Finished.Sub(r.Started)
}

const runStampLayout = "20060102T150405.000Z"

func runsPrefix(source string) string { return "runs/" + source + "/" }

var runNameRE = regexp.MustCompile(`^(\d{8}T\d{6}\.\d{3}Z)-([a-z]+)-[0-9a-f]+\.json$`)

func checkedKey(source, typ string) string { return runsPrefix(source) + "checked-" + typ + ".json" }

func isCheckedKey(source, key string) bool {
	name, ok := strings.CutPrefix(key, runsPrefix(source)+"checked-")
	return ok && strings.HasSuffix(name, ".json") && !strings.Contains(name, "/")
}

// parseRunKey returns the start time a run key carries.
func parseRunKey(source, key string) (time.Time, bool) {
	name, ok := strings.CutPrefix(key, runsPrefix(source))
	if !ok {
		return time.Time{}, false
	}
	m := runNameRE.FindStringSubmatch(name)
	if m == nil {
		return time.Time{}, false
	}
	t, err := time.Parse(runStampLayout, m[1])
	if err != nil {
		return time.Time{}, false
	}
	return t, true
}

// RecordRun stores run (under a new key when run.Key is empty, which it then sets).
func (r *Repo) RecordRun(ctx context.Context, run *Run) error {
	if run.Source == "" || run.Type == "" || run.Started.IsZero() {
		return fmt.Errorf("record run: source, type and start time are required")
	}
	if run.Key == "" {
		run.Key = runsPrefix(run.Source) + run.Started.UTC().Format(runStampLayout) + "-" + run.Type + "-" + randomHex(3) + ".json"
	}
	if run.Host == "" {
		run.Host = r.host
	}
	data, err := r.encodeMeta(run)
	if err != nil {
		return fmt.Errorf("encode run record %s: %w", run.Key, err)
	}
	if err := r.store.Put(ctx, run.Key, data, storage.PutOptions{}); err != nil {
		return fmt.Errorf("write run record %s: %w", run.Key, err)
	}
	return nil
}

// Runs returns the attempts of source started at or after since, oldest first. A
// record still saying "running" whose process no longer holds the source's lock is
// returned as RunInterrupted.
func (r *Repo) Runs(ctx context.Context, source string, since time.Time) ([]Run, error) {
	var keys []string
	floor := since.UTC().Truncate(time.Millisecond)
	err := r.store.List(ctx, runsPrefix(source), func(o storage.ObjectInfo) error {
		if t, ok := parseRunKey(source, o.Key); ok && !t.Before(floor) || isCheckedKey(source, o.Key) {
			keys = append(keys, o.Key)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list runs of %s in %s: %w", source, r.store, err)
	}
	out := make([]Run, 0, len(keys))
	var holder *LockInfo
	holderRead := false
	for _, key := range keys {
		raw, err := r.store.ReadAll(ctx, key)
		if errors.Is(err, storage.ErrNotFound) {
			continue // removed by a cleanup meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("read run record %s: %w", key, err)
		}
		var run Run
		if err := r.decodeMeta(key, raw, &run); err != nil {
			return nil, err
		}
		run.Key = key
		if run.Started.Before(since) {
			continue // a checked-<type> record older than asked for
		}
		if run.Result == RunRunning {
			if !holderRead {
				holder, err = r.LockHolder(ctx, source)
				if err != nil {
					return nil, err
				}
				holderRead = true
			}
			if holder == nil || holder.Owner != run.LockOwner || r.stale(*holder) {
				run.Result = RunInterrupted
				run.Error = "the attempt stopped without recording its outcome (its process died or was killed)"
			}
		}
		out = append(out, run)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Started.Before(out[j].Started) })
	return out, nil
}

// CleanRuns removes the run records of source started before before, and returns
// how many it removed.
func (r *Repo) CleanRuns(ctx context.Context, source string, before time.Time) (int, error) {
	var old []string
	err := r.store.List(ctx, runsPrefix(source), func(o storage.ObjectInfo) error {
		if t, ok := parseRunKey(source, o.Key); ok && t.Before(before) {
			old = append(old, o.Key)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("list runs of %s in %s: %w", source, r.store, err)
	}
	for i, key := range old {
		if err := r.store.Delete(ctx, key); err != nil && !errors.Is(err, storage.ErrNotFound) {
			return i, fmt.Errorf("remove old run record %s: %w", key, err)
		}
	}
	return len(old), nil
}

// LockHolder returns who holds the lock of source (nil when nobody does).
func (r *Repo) LockHolder(ctx context.Context, source string) (*LockInfo, error) {
	l := &Lock{r: r, source: source, key: lockKey(source)}
	info, err := l.read(ctx)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read lock of %s: %w", source, err)
	}
	return &info, nil
}

// Owner is the lock's owner token (recorded in run records).
func (l *Lock) Owner() string { return l.info.Owner }

// RunRecorder records one attempt: StartRun writes the "running" record, Finish
// its outcome. Failing to write a record is logged, never fatal to the backup.
type RunRecorder struct {
	r   *Repo
	run Run
}

// StartRun records that an attempt at a typ backup of source starts now, under lock.
func (r *Repo) StartRun(ctx context.Context, source, typ string, lock *Lock) *RunRecorder {
	if typ == "" {
		typ = TypeFull
	}
	rec := &RunRecorder{r: r, run: Run{Source: source, Type: typ, Started: r.opts.Now().UTC(), Result: RunRunning,
		Host: r.host, PID: os.Getpid()}}
	if lock != nil {
		rec.run.LockOwner = lock.Owner()
	}
	if err := r.RecordRun(ctx, &rec.run); err != nil {
		r.log.Warn("run log: cannot record the start of a backup", "source", source, "err", err)
	}
	return rec
}

// Outcome is how an attempt ended, for Finish.
type Outcome struct {
	Manifest  *Manifest
	Replicas  []ReplicaReport
	Err       error
	Unchanged bool // Err says no backup was needed
}

// Finish records the attempt's outcome: ok with the committed backup, unchanged,
// abandoned when ctx was cancelled, failed otherwise. After a success it removes
// records older than RunLogKeep. It returns the record as written.
func (rec *RunRecorder) Finish(ctx context.Context, o Outcome) Run {
	r := rec.r
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	run := rec.run
	run.Finished = r.opts.Now().UTC()
	run.LockOwner = ""
	switch {
	case o.Err == nil && o.Manifest != nil:
		run.Result, run.Backup, run.Bytes, run.StoredBytes = RunOK, o.Manifest.ID, o.Manifest.Bytes, o.Manifest.StoredBytes
		run.Type = o.Manifest.Type
	case o.Unchanged:
		run.Result = RunUnchanged
	case o.Err != nil && (errors.Is(o.Err, context.Canceled) || errors.Is(o.Err, context.DeadlineExceeded)):
		run.Result, run.Error = RunAbandoned, ScrubError(o.Err.Error())
	case o.Err != nil:
		run.Result, run.Error = RunFailed, ScrubError(o.Err.Error())
	default:
		run.Result = RunOK
	}
	for _, rep := range o.Replicas {
		rr := RunReplica{URL: rep.URL, Copied: len(rep.Copied)}
		if rep.Err != nil {
			rr.Error = ScrubError(rep.Err.Error())
		}
		run.Replicas = append(run.Replicas, rr)
	}
	if run.Result == RunUnchanged {
		// One record holds the newest unchanged check: the attempt's own goes.
		started := run.Key
		run.Key = checkedKey(run.Source, run.Type)
		if err := r.RecordRun(ctx, &run); err != nil {
			r.log.Warn("run log: cannot record the outcome of a backup", "source", run.Source, "result", run.Result, "err", err)
		} else if started != "" {
			if err := r.store.Delete(ctx, started); err != nil && !errors.Is(err, storage.ErrNotFound) {
				r.log.Warn("run log: cannot remove a record", "key", started, "err", err)
			}
		}
		return run
	}
	if err := r.RecordRun(ctx, &run); err != nil {
		r.log.Warn("run log: cannot record the outcome of a backup", "source", run.Source, "result", run.Result, "err", err)
	}
	if run.Result == RunOK {
		if n, err := r.CleanRuns(ctx, run.Source, run.Finished.Add(-RunLogKeep)); err != nil {
			r.log.Warn("run log: cannot remove old records", "source", run.Source, "err", err)
		} else if n > 0 {
			r.log.Debug("run log: removed old records", "source", run.Source, "count", n)
		}
	}
	return run
}

var secretRE = regexp.MustCompile(`(?i)\b(password|passwd|pwd|secret|token|accountkey|sharedaccesssignature|sig|access_key|secret_key)\s*[=:]\s*("[^"]*"|'[^']*'|[^\s;&,]+)`)

// ScrubError makes an error text fit for the run log and notifications: one line,
// at most 2000 characters, with key=value pairs that look like credentials blanked.
func ScrubError(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	s = secretRE.ReplaceAllString(s, "$1=[redacted]")
	if len(s) > 2000 {
		s = s[:2000] + "…"
	}
	return s
}

// ReplicaBackups returns the ids of the backups of source whose manifests are on
// the replica at url (none when the replica holds no repository yet).
func (r *Repo) ReplicaBackups(ctx context.Context, url, source string) (map[string]bool, error) {
	st, err := r.opts.OpenStore(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("open replica %s: %w", url, err)
	}
	defer st.Close()
	have := map[string]bool{}
	err = st.List(ctx, "backups/"+source+"/", func(o storage.ObjectInfo) error {
		if _, id, ok := parseManifestKey(o.Key); ok {
			have[id] = true
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list backups of %s on replica %s: %w", source, st, err)
	}
	return have, nil
}

// Agent state: small documents a long-running agent keeps in the repository so a
// restart carries on where it was (the alerts it has notified, so one cleared while
// it was down is still reported cleared), one per host:
//
//	agents/<name>.json

func agentStateKey(name string) string { return "agents/" + name + ".json" }

// ReadAgentState decodes the agent state document name into v; found is false when
// there is none.
func (r *Repo) ReadAgentState(ctx context.Context, name string, v any) (found bool, err error) {
	key := agentStateKey(name)
	raw, err := r.store.ReadAll(ctx, key)
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read agent state %s: %w", key, err)
	}
	if err := r.decodeMeta(key, raw, v); err != nil {
		return false, err
	}
	return true, nil
}

// WriteAgentState stores v as the agent state document name.
func (r *Repo) WriteAgentState(ctx context.Context, name string, v any) error {
	key := agentStateKey(name)
	data, err := r.encodeMeta(v)
	if err != nil {
		return fmt.Errorf("encode agent state %s: %w", key, err)
	}
	if err := r.store.Put(ctx, key, data, storage.PutOptions{}); err != nil {
		return fmt.Errorf("write agent state %s: %w", key, err)
	}
	return nil
}
