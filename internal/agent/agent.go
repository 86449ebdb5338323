// Package agent is hartvault's long-running agent: it runs each source's schedule,
// keeps PostgreSQL WAL streaming, retries failures, evaluates status and alerts,
// notifies a webhook, and serves /metrics, /healthz, /api/status and a dashboard.
//
// Scheduling happens in one loop driven by an injectable Clock: it works out the
// next instant something is due, waits for it (or for a backup to finish), and
// hands due jobs to one goroutine per running backup. Each source runs at most one
// backup at a time (the repository lock also keeps agents on two hosts apart); a
// fire that comes while the same backup is already waiting is dropped, so a slow
// source never piles up a burst.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hartonomous/hartvault/internal/plan"
	"github.com/hartonomous/hartvault/internal/status"
)

// Why a job runs.
const (
	ReasonSchedule = "schedule"  // its cron schedule fired
	ReasonCatchUp  = "catch-up"  // at start: a fire was missed while the agent was down
	ReasonOnChange = "on-change" // a file set's periodic check
	ReasonRetry    = "retry"     // the previous attempt failed
	ReasonLocked   = "locked"    // the source was locked (another run, maybe another agent)
)

// Outcomes of a job.
const (
	OutcomeOK        = "ok"
	OutcomeUnchanged = "unchanged" // a file set that did not change: no backup needed, not an error
	OutcomeLocked    = "locked"    // another run holds the source's lock: tried again later
	OutcomeFailed    = "failed"
	OutcomeAbandoned = "abandoned" // the agent is stopping: nothing half-written is visible
	OutcomeSkipped   = "skipped"   // after a lock: another agent took this backup meanwhile
)

// Job is one backup the agent runs.
type Job struct {
	Source string
	Type   string // full, diff or log
	Reason string
	// Fire is the scheduled instant the job serves (for on-change checks: when due).
	Fire    time.Time
	Attempt int // failures of this source and type since the last success
}

func (j Job) String() string { return fmt.Sprintf("%s %s (%s)", j.Source, j.Type, j.Reason) }

// Result is how a job ended.
type Result struct {
	Outcome string
	Backup  string // the committed backup's id (ok)
	Err     error
}

// Config is what an agent needs. Plan, Clock and Backup are required.
type Config struct {
	Plan  *plan.Plan
	Clock Clock
	Log   *slog.Logger
	// Backup runs one backup: engine.RunBackup in the real agent (which records the
	// attempt in the run log and syncs replicas).
	Backup func(ctx context.Context, job Job) Result
	// LastBackup says when the newest committed backup of a type started (zero when
	// there is none): missed fires are caught up at start against it.
	LastBackup func(ctx context.Context, source, typ string) (time.Time, error)
	// Stream keeps a source's continuous log going until ctx ends (PostgreSQL
	// WALStream); it is restarted, with backoff, whenever it returns.
	Stream func(ctx context.Context, source string) error
	// Pruner applies retention to a source after each successful backup of it.
	// This is the agent's single retention call site; nil: not wired (backups are
	// then never pruned by the agent).
	Pruner func(ctx context.Context, source string) error
	// Drill runs a restore drill (restore.Drill), when DrillDue says one is due
	// (drills.every since the last); both nil: no drills.
	Drill    func(ctx context.Context) error
	DrillDue func(ctx context.Context, now time.Time) (bool, error)
	// SyncLogs copies the continuous log (WAL archived between backups) to the
	// replicas every SyncLogsEvery (1m), so they lag the primary by about that much,
	// not by a backup interval; nil: only backups sync replicas.
	SyncLogs      func(ctx context.Context) error
	SyncLogsEvery time.Duration
	// Status evaluates status and alerts (status.Compute); nil: no status, alerts or
	// status-based metrics.
	Status func(ctx context.Context) (*status.Report, error)
	// StatusEvery is how often status is evaluated besides after each backup (30s).
	StatusEvery time.Duration
	// LoadAlerts and SaveAlerts keep the set of alerts notified across restarts (in
	// the repository), so a restart neither raises again what was raised nor misses
	// the clearing of what cleared meanwhile. nil: start from none.
	LoadAlerts func(ctx context.Context) ([]status.Alert, error)
	SaveAlerts func(ctx context.Context, alerts []status.Alert) error
	// Webhook receives JSON events (failures, alerts raised and cleared); "" none.
	Webhook string
	// RetryBase and RetryMax bound the exponential backoff after failures (1m, 1h);
	// LockedRetry is the wait after finding a source locked (1m); StreamRestart the
	// first wait before restarting a stopped stream (5s, doubling to 5m).
	RetryBase, RetryMax, LockedRetry, StreamRestart time.Duration
	// OnWait, for tests, is called by the scheduling loop each time before it waits,
	// with the next instant it will wake at and the number of backups running.
	OnWait func(next time.Time, running int)
}

// Agent runs a plan's schedules. Create it with New, then Run it.
type Agent struct {
	cfg        Config
	loc        *time.Location
	log        *slog.Logger
	entries    []*entry
	continuous []string
	metrics    *Metrics
	notifier   *Notifier
	kick       chan struct{}
	started    time.Time

	mu        sync.Mutex
	report    *status.Report
	reportErr error
	reportAt  time.Time
	running   map[string]Job // by source
}

// New checks cfg and prepares an agent.
func New(cfg Config) (*Agent, error) {
	if cfg.Plan == nil || cfg.Clock == nil || cfg.Backup == nil {
		return nil, errors.New("agent: Plan, Clock and Backup are required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.StatusEvery, 30*time.Second)
	def(&cfg.RetryBase, time.Minute)
	def(&cfg.RetryMax, time.Hour)
	def(&cfg.LockedRetry, time.Minute)
	def(&cfg.StreamRestart, 5*time.Second)
	def(&cfg.SyncLogsEvery, time.Minute)
	es, cont, err := entries(cfg.Plan)
	if err != nil {
		return nil, err
	}
	a := &Agent{cfg: cfg, loc: cfg.Plan.Location, log: cfg.Log, entries: es, kick: make(chan struct{}, 1),
		running: map[string]Job{}}
	if a.loc == nil {
		a.loc = time.Local
	}
	if cfg.Stream == nil && len(cont) > 0 {
		a.log.Warn("agent: continuous log is scheduled but this agent cannot stream it", "sources", cont)
		cont = nil
	}
	a.continuous = cont
	a.metrics = newMetrics(a)
	if cfg.Webhook != "" {
		a.notifier = NewNotifier(NotifierConfig{URL: cfg.Webhook, Clock: cfg.Clock, Log: cfg.Log, Failed: a.metrics.notifyFailures})
	}
	return a, nil
}

// Run runs the schedules until ctx ends, then abandons the backups in flight (the
// repository never shows a half-written backup), waits for every goroutine it
// started, delivers pending notifications for a few seconds, and returns nil.
func (a *Agent) Run(ctx context.Context) error {
	a.started = a.cfg.Clock.Now()
	if a.cfg.Pruner == nil {
		a.log.Warn("agent: retention is not wired in this build: backups are not pruned after they run")
	}
	var wg sync.WaitGroup
	notifyCtx, stopNotify := context.WithCancel(context.WithoutCancel(ctx))
	var nwg sync.WaitGroup
	if a.notifier != nil {
		nwg.Add(1)
		go func() { defer nwg.Done(); a.notifier.Run(notifyCtx) }()
	}
	for _, src := range a.continuous {
		wg.Add(1)
		go func() { defer wg.Done(); a.stream(ctx, src) }()
	}
	if a.cfg.Status != nil {
		wg.Add(1)
		go func() { defer wg.Done(); a.statusLoop(ctx) }()
	}
	if a.cfg.Drill != nil && a.cfg.DrillDue != nil {
		wg.Add(1)
		go func() { defer wg.Done(); a.drillLoop(ctx) }()
	}
	if a.cfg.SyncLogs != nil {
		wg.Add(1)
		go func() { defer wg.Done(); a.syncLogsLoop(ctx) }()
	}
	a.log.Info("agent: started", "sources", len(a.cfg.Plan.Sources), "schedules", len(a.entries), "streams", len(a.continuous), "zone", a.loc.String())
	a.schedule(ctx)
	wg.Wait()
	stopNotify()
	nwg.Wait()
	a.log.Info("agent: stopped")
	return nil
}

// completion is a finished job, reported to the scheduling loop.
type completion struct {
	job Job
	res Result
}

// slot is a source's work: the backup running and those waiting (one per type).
type slot struct {
	running *Job
	queue   []Job
}

func (a *Agent) schedule(ctx context.Context) {
	clk := a.cfg.Clock
	now := clk.Now()
	for _, e := range a.entries {
		if e.sched != nil {
			e.next = nextFire(e.sched, now, a.loc)
		} else {
			e.next = now // on-change: check at once
		}
	}
	slots := map[string]*slot{}
	for _, src := range a.cfg.Plan.Sources {
		slots[src.Name] = &slot{}
	}
	done := make(chan completion)
	inflight := 0
	enqueue := func(j Job) {
		s := slots[j.Source]
		for _, q := range s.queue {
			if q.Type == j.Type {
				a.log.Info("agent: already waiting to run: fire dropped", "source", j.Source, "type", j.Type, "reason", j.Reason)
				return
			}
		}
		s.queue = append(s.queue, j)
	}
	dispatch := func() {
		for _, src := range a.cfg.Plan.Sources {
			s := slots[src.Name]
			if s.running != nil || len(s.queue) == 0 {
				continue
			}
			j := s.queue[0]
			s.queue = s.queue[1:]
			s.running = &j
			inflight++
			a.setRunning(j, true)
			go func() { done <- completion{job: j, res: a.execute(ctx, j)} }()
		}
	}
	a.catchUp(ctx, now, enqueue)
	dispatch()
	for {
		next := a.nextDue(now)
		if a.cfg.OnWait != nil {
			a.cfg.OnWait(next, inflight)
		}
		t := clk.NewTimer(next.Sub(clk.Now()))
		select {
		case <-ctx.Done():
			t.Stop()
			// Backups in flight see ctx too: they abandon their work; wait for them.
			for inflight > 0 {
				c := <-done
				inflight--
				a.setRunning(c.job, false)
			}
			return
		case c := <-done:
			t.Stop()
			inflight--
			slots[c.job.Source].running = nil
			a.setRunning(c.job, false)
			a.completed(c, clk.Now())
		case <-t.C():
		}
		now = clk.Now()
		a.fireDue(now, enqueue)
		dispatch()
	}
}

// catchUp queues, at start, one backup of each type whose last scheduled fire is
// newer than the newest backup of that type in the catalog: a run missed while the
// agent was down is taken once, not once per missed fire. A full caught up makes
// a diff catch-up of the same source unnecessary.
func (a *Agent) catchUp(ctx context.Context, now time.Time, enqueue func(Job)) {
	if a.cfg.LastBackup == nil {
		return
	}
	fullQueued := map[string]bool{}
	for _, e := range a.entries {
		if e.sched == nil {
			continue
		}
		prev := prevFire(e.sched, now, a.loc)
		if prev.IsZero() {
			continue
		}
		if e.typ == "diff" && fullQueued[e.source] {
			continue
		}
		last, err := a.cfg.LastBackup(ctx, e.source, e.typ)
		if err != nil {
			a.log.Warn("agent: cannot read the catalog to catch up missed backups", "source", e.source, "type", e.typ, "err", err)
			continue
		}
		if !last.Before(prev) {
			continue
		}
		a.log.Info("agent: catching up a missed backup", "source", e.source, "type", e.typ, "missed", prev, "newest", last)
		enqueue(Job{Source: e.source, Type: e.typ, Reason: ReasonCatchUp, Fire: prev})
		if e.typ == "full" {
			fullQueued[e.source] = true
		}
	}
}

// nextDue is the earliest instant an entry or a retry is due (a day on when none).
func (a *Agent) nextDue(now time.Time) time.Time {
	next := now.Add(24 * time.Hour)
	for _, e := range a.entries {
		if !e.next.IsZero() && e.next.Before(next) {
			next = e.next
		}
		if !e.retryAt.IsZero() && e.retryAt.Before(next) {
			next = e.retryAt
		}
	}
	return next
}

// fireDue queues what is due at now, in plan and type order.
func (a *Agent) fireDue(now time.Time, enqueue func(Job)) {
	for _, e := range a.entries {
		if !e.next.IsZero() && !e.next.After(now) {
			fire := e.next
			reason := ReasonSchedule
			if e.sched != nil {
				e.next = nextFire(e.sched, now, a.loc)
			} else {
				reason = ReasonOnChange
				e.next = time.Time{} // re-armed when the check completes
			}
			e.retryAt = time.Time{} // a regular fire serves as the retry
			enqueue(Job{Source: e.source, Type: e.typ, Reason: reason, Fire: fire, Attempt: e.attempt})
		}
		if !e.retryAt.IsZero() && !e.retryAt.After(now) {
			enqueue(Job{Source: e.source, Type: e.typ, Reason: e.retryReason, Fire: e.retryFire, Attempt: e.attempt})
			e.retryAt = time.Time{}
		}
	}
}

func (a *Agent) entry(source, typ string) *entry {
	for _, e := range a.entries {
		if e.source == source && e.typ == typ {
			return e
		}
	}
	return nil
}

// retryDelay is the backoff after the n-th failure in a row: RetryBase doubling, at
// most RetryMax.
func (a *Agent) retryDelay(n int) time.Duration {
	d := a.cfg.RetryBase
	for i := 1; i < n && d < a.cfg.RetryMax; i++ {
		d *= 2
	}
	return min(d, a.cfg.RetryMax)
}

// completed updates the schedule after a job: success resets the backoff, a lock
// held elsewhere tries again soon, a failure tries again after a growing backoff
// (unless the next regular fire comes first) and is reported.
func (a *Agent) completed(c completion, now time.Time) {
	j, res := c.job, c.res
	e := a.entry(j.Source, j.Type)
	if e == nil { // a catch-up of a type no longer scheduled cannot happen; be safe
		return
	}
	var wait time.Duration
	switch res.Outcome {
	case OutcomeOK, OutcomeUnchanged, OutcomeSkipped:
		e.attempt = 0
		e.retryAt = time.Time{}
	case OutcomeLocked:
		if e.sched != nil {
			e.retryAt, e.retryFire, e.retryReason = now.Add(a.cfg.LockedRetry), j.Fire, ReasonLocked
		}
	case OutcomeFailed:
		e.attempt++
		wait = a.retryDelay(e.attempt)
		retry := now.Add(wait)
		msg := repoError(res.Err)
		if e.sched != nil {
			if retry.Before(e.next) {
				e.retryAt, e.retryFire, e.retryReason = retry, j.Fire, ReasonRetry
			} else {
				retry = e.next
			}
		} else {
			retry = now.Add(max(wait, e.every))
		}
		a.log.Error("agent: backup failed", "source", j.Source, "type", j.Type, "attempt", e.attempt, "retry_at", retry, "err", msg)
		a.notify(Event{Event: EventBackupFailed, Source: j.Source, Type: j.Type, Message: msg, Time: now,
			Attempt: e.attempt, RetryAt: retry})
	}
	if e.sched == nil {
		e.next = now.Add(max(e.every, wait))
	}
}

// execute runs one job (in its own goroutine).
func (a *Agent) execute(ctx context.Context, j Job) Result {
	log := a.log.With("source", j.Source, "type", j.Type, "reason", j.Reason)
	if j.Reason == ReasonLocked && a.cfg.LastBackup != nil {
		if last, err := a.cfg.LastBackup(ctx, j.Source, j.Type); err == nil && !last.Before(j.Fire) {
			log.Info("agent: another run took this backup meanwhile", "started", last)
			return Result{Outcome: OutcomeSkipped}
		}
	}
	if j.Reason != ReasonOnChange {
		log.Info("agent: backup starting", "attempt", j.Attempt+1)
	}
	start := a.cfg.Clock.Now()
	res := a.cfg.Backup(ctx, j)
	if res.Outcome == "" {
		res.Outcome = OutcomeOK
		if res.Err != nil {
			res.Outcome = OutcomeFailed
		}
	}
	if ctx.Err() != nil && res.Outcome == OutcomeFailed {
		res.Outcome = OutcomeAbandoned
	}
	a.metrics.attempt(j, res.Outcome)
	switch res.Outcome {
	case OutcomeOK:
		log.Info("agent: backup done", "backup", res.Backup, "took", a.cfg.Clock.Now().Sub(start))
		if a.cfg.Pruner != nil {
			if err := a.cfg.Pruner(ctx, j.Source); err != nil && ctx.Err() == nil {
				log.Warn("agent: retention failed", "err", err)
				a.notify(Event{Event: EventPruneFailed, Source: j.Source, Type: j.Type, Message: repoError(err), Time: a.cfg.Clock.Now()})
			}
		}
	case OutcomeLocked:
		log.Info("agent: source locked by another run: trying again later", "err", res.Err)
	case OutcomeAbandoned:
		log.Info("agent: backup abandoned: the agent is stopping")
	}
	if res.Outcome != OutcomeUnchanged {
		a.kickStatus()
	}
	return res
}

func (a *Agent) setRunning(j Job, on bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if on {
		a.running[j.Source] = j
	} else {
		delete(a.running, j.Source)
	}
}

// Running lists the backups running now.
func (a *Agent) Running() []Job {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]Job, 0, len(a.running))
	for _, j := range a.running {
		out = append(out, j)
	}
	slices.SortFunc(out, func(x, y Job) int { return strings.Compare(x.Source, y.Source) })
	return out
}

// stream keeps one source's continuous log running, restarting it with backoff.
func (a *Agent) stream(ctx context.Context, source string) {
	clk := a.cfg.Clock
	backoff := a.cfg.StreamRestart
	for {
		started := clk.Now()
		a.log.Info("agent: log streaming starting", "source", source)
		err := a.cfg.Stream(ctx, source)
		if ctx.Err() != nil {
			return
		}
		if clk.Now().Sub(started) > 10*time.Minute {
			backoff = a.cfg.StreamRestart // it ran a good while: start over
		}
		msg := "log streaming stopped"
		if err != nil {
			msg += ": " + repoError(err)
		}
		a.log.Error("agent: "+msg, "source", source, "restart_in", backoff)
		a.metrics.streamRestarts.WithLabelValues(source).Inc()
		a.notify(Event{Event: EventStreamStopped, Source: source, Type: "log", Message: msg, Time: clk.Now(), RetryAt: clk.Now().Add(backoff)})
		if !sleep(clk, backoff, ctx.Done()) {
			return
		}
		backoff = min(2*backoff, 5*time.Minute)
	}
}

func (a *Agent) kickStatus() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// statusLoop evaluates status every StatusEvery and after backups, keeps the
// newest report for HTTP and metrics, and notifies alerts raised and cleared.
func (a *Agent) statusLoop(ctx context.Context) {
	var prev []status.Alert
	if a.cfg.LoadAlerts != nil {
		var err error
		if prev, err = a.cfg.LoadAlerts(ctx); err != nil {
			a.log.Warn("agent: cannot read the alerts notified before: alerts firing are notified again", "err", err)
			prev = nil
		}
	}
	for {
		rep, err := a.cfg.Status(ctx)
		if ctx.Err() != nil {
			return
		}
		now := a.cfg.Clock.Now()
		a.mu.Lock()
		a.reportErr, a.reportAt = err, now
		if err == nil {
			a.report = rep
		}
		a.mu.Unlock()
		if err != nil {
			a.log.Warn("agent: status evaluation failed", "err", err)
		} else {
			raised, cleared := status.Diff(prev, rep.Alerts)
			for _, al := range raised {
				a.log.Warn("agent: alert raised", "source", al.Source, "type", al.Type, "alert", al.Kind, "message", al.Message)
				a.notify(Event{Event: EventAlertRaised, Source: al.Source, Type: al.Type, Alert: al.Kind, Message: al.Message, Time: now, Since: al.Since})
			}
			for _, al := range cleared {
				a.log.Info("agent: alert cleared", "source", al.Source, "type", al.Type, "alert", al.Kind)
				a.notify(Event{Event: EventAlertCleared, Source: al.Source, Type: al.Type, Alert: al.Kind,
					Message: "cleared: " + al.Message, Time: now, Since: al.Since})
			}
			prev = rep.Alerts
			if a.cfg.SaveAlerts != nil && len(raised)+len(cleared) > 0 {
				if err := a.cfg.SaveAlerts(ctx, prev); err != nil && ctx.Err() == nil {
					a.log.Warn("agent: cannot record the alerts notified", "err", err)
				}
			}
		}
		t := a.cfg.Clock.NewTimer(a.cfg.StatusEvery)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-a.kick:
			t.Stop()
		case <-t.C():
		}
	}
}

// Status returns the newest status report (nil before the first evaluation) and
// the error of the newest evaluation.
func (a *Agent) Status() (*status.Report, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.report, a.reportErr
}

func (a *Agent) notify(e Event) {
	if a.notifier != nil {
		a.notifier.Notify(e)
	}
}

// repoError is an error as the agent reports it: one line, without secrets.
func repoError(err error) string {
	if err == nil {
		return ""
	}
	return scrub(err.Error())
}

// drillLoop runs a restore drill whenever one is due (checked at start and every
// hour): the seed's quarterly restore test, without a person to remember it. Its
// outcome is recorded by the drill; a failed or overdue drill is a status alert.
// syncLogsLoop copies the log to the replicas every SyncLogsEvery.
func (a *Agent) syncLogsLoop(ctx context.Context) {
	for sleep(a.cfg.Clock, a.cfg.SyncLogsEvery, ctx.Done()) {
		if err := a.cfg.SyncLogs(ctx); err != nil && ctx.Err() == nil {
			a.log.Warn("agent: copy the log to the replicas (next run tries again)", "err", err)
		}
	}
}

func (a *Agent) drillLoop(ctx context.Context) {
	for {
		due, err := a.cfg.DrillDue(ctx, a.cfg.Clock.Now())
		switch {
		case err != nil && ctx.Err() == nil:
			a.log.Warn("agent: cannot tell whether a drill is due", "err", err)
		case due:
			a.log.Info("agent: restore drill due: running it")
			if err := a.cfg.Drill(ctx); err != nil && ctx.Err() == nil {
				a.log.Warn("agent: restore drill", "err", err)
			}
		}
		t := a.cfg.Clock.NewTimer(time.Hour)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
	}
}
