package agent

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metric names the agent exports (and `hartvault alerts rules` refers to).
const (
	MetricLastSuccess    = "hartvault_last_success_timestamp_seconds"
	MetricLastDuration   = "hartvault_last_backup_duration_seconds"
	MetricLastRead       = "hartvault_last_backup_read_bytes"
	MetricLastStored     = "hartvault_last_backup_stored_bytes"
	MetricAvgDuration    = "hartvault_backup_average_duration_seconds"
	MetricBackups        = "hartvault_committed_backups"
	MetricLastFailed     = "hartvault_last_attempt_failed"
	MetricRunning        = "hartvault_backup_running_seconds"
	MetricStaleAfter     = "hartvault_stale_threshold_seconds"
	MetricMaxDuration    = "hartvault_max_duration_seconds"
	MetricWindowStart    = "hartvault_restorable_window_start_timestamp_seconds"
	MetricWindowEnd      = "hartvault_restorable_window_end_timestamp_seconds"
	MetricWALLag         = "hartvault_wal_lag_seconds"
	MetricReplicaMissing = "hartvault_replica_missing_backups"
	MetricAlert          = "hartvault_alert_firing"
	MetricStatusTime     = "hartvault_status_timestamp_seconds"
	MetricDrillTime      = "hartvault_drill_last_timestamp_seconds"
	MetricDrillPassed    = "hartvault_drill_last_passed"
	MetricDrillRecovery  = "hartvault_drill_last_recovery_seconds"
	MetricFailures       = "hartvault_backup_failures_total"
	MetricAttempts       = "hartvault_backup_attempts_total"
)

// Metrics is the agent's Prometheus registry: counters the agent keeps, and gauges
// read from the newest status report at each scrape.
type Metrics struct {
	Registry       *prometheus.Registry
	failures       *prometheus.CounterVec
	attempts       *prometheus.CounterVec
	streamRestarts *prometheus.CounterVec
	notifyFailed   prometheus.Counter
}

func newMetrics(a *Agent) *Metrics {
	m := &Metrics{Registry: prometheus.NewRegistry()}
	m.failures = prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricFailures,
		Help: "Backups that failed, by source and type, since the agent started."}, []string{"source", "type"})
	m.attempts = prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricAttempts,
		Help: "Backup attempts by source, type and result (ok, unchanged, failed, locked, abandoned, skipped) since the agent started."},
		[]string{"source", "type", "result"})
	m.streamRestarts = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hartvault_log_stream_restarts_total",
		Help: "Times continuous log streaming (PostgreSQL WAL) stopped and was restarted."}, []string{"source"})
	m.notifyFailed = prometheus.NewCounter(prometheus.CounterOpts{Name: "hartvault_webhook_failures_total",
		Help: "Webhook events dropped or not delivered after retries."})
	for _, e := range a.entries { // present at zero from the start, so rate() and increase() work
		m.failures.WithLabelValues(e.source, e.typ)
	}
	for _, src := range a.continuous {
		m.streamRestarts.WithLabelValues(src)
	}
	m.Registry.MustRegister(m.failures, m.attempts, m.streamRestarts, m.notifyFailed,
		&statusCollector{a: a, descs: statusDescs()}, collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *Metrics) attempt(j Job, outcome string) {
	m.attempts.WithLabelValues(j.Source, j.Type, outcome).Inc()
	if outcome == OutcomeFailed {
		m.failures.WithLabelValues(j.Source, j.Type).Inc()
	}
}

func (m *Metrics) notifyFailures() { m.notifyFailed.Inc() }

// Metrics returns the agent's metrics registry.
func (a *Agent) Metrics() *Metrics { return a.metrics }

// statusDescs describes the gauges read from status reports.
func statusDescs() map[string]*prometheus.Desc {
	st := []string{"source", "type"}
	descs := map[string]*prometheus.Desc{}
	for _, d := range []struct{ name, help string }{
		{MetricLastSuccess, "When the newest backup of this type finished (for a continuous log: the newest restorable instant), as a Unix time."},
		{MetricLastDuration, "How long the newest backup of this type took."},
		{MetricLastRead, "Bytes the newest backup of this type read from the source."},
		{MetricLastStored, "Bytes the newest backup of this type stored in the repository."},
		{MetricAvgDuration, "Average duration of the backups of this type over the last 7 days."},
		{MetricBackups, "Committed backups of this type in the repository."},
		{MetricLastFailed, "1 when the last completed attempt of this type failed, else 0."},
		{MetricRunning, "How long the backup of this type in progress has been running."},
		{MetricStaleAfter, "The plan's alert threshold for the age of the newest backup of this type."},
		{MetricMaxDuration, "The slow-backup threshold in force: max_duration, or 3 times the 7-day average."},
	} {
		descs[d.name] = prometheus.NewDesc(d.name, d.help, st, nil)
	}
	descs[MetricWindowStart] = prometheus.NewDesc(MetricWindowStart, "The earliest instant the source can be restored to, as a Unix time.", []string{"source"}, nil)
	descs[MetricWindowEnd] = prometheus.NewDesc(MetricWindowEnd, "The latest instant the source can be restored to, as a Unix time.", []string{"source"}, nil)
	descs[MetricWALLag] = prometheus.NewDesc(MetricWALLag, "Time from the newest restorable instant of the continuous log (PostgreSQL WAL) to now.", st, nil)
	descs[MetricReplicaMissing] = prometheus.NewDesc(MetricReplicaMissing, "Committed backups of the source not yet on the replica.", []string{"source", "replica"}, nil)
	descs[MetricAlert] = prometheus.NewDesc(MetricAlert, "1 for each alert firing (kind: stale, failed, slow).", []string{"source", "type", "kind"}, nil)
	descs[MetricStatusTime] = prometheus.NewDesc(MetricStatusTime, "When the status these gauges come from was evaluated, as a Unix time.", nil, nil)
	descs[MetricDrillTime] = prometheus.NewDesc(MetricDrillTime, "When the last restore drill started, as a Unix time.", nil, nil)
	descs[MetricDrillPassed] = prometheus.NewDesc(MetricDrillPassed, "1 when the last restore drill passed, else 0.", nil, nil)
	descs[MetricDrillRecovery] = prometheus.NewDesc(MetricDrillRecovery, "The recovery time the last restore drill measured.", nil, nil)
	return descs
}

// statusCollector turns the newest status report into gauges at scrape time.
type statusCollector struct {
	a     *Agent
	descs map[string]*prometheus.Desc
}

func (c *statusCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

func (c *statusCollector) Collect(ch chan<- prometheus.Metric) {
	rep, _ := c.a.Status()
	if rep == nil {
		return
	}
	now := c.a.cfg.Clock.Now()
	g := func(name string, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(c.descs[name], prometheus.GaugeValue, v, labels...)
	}
	unix := func(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }
	g(MetricStatusTime, unix(rep.Generated))
	for _, s := range rep.Sources {
		for _, ts := range s.Types {
			l := []string{s.Name, ts.Type}
			if !ts.LastSuccess.IsZero() {
				g(MetricLastSuccess, unix(ts.LastSuccess), l...)
			}
			if ts.Last != nil {
				g(MetricLastDuration, ts.Last.Duration().Seconds(), l...)
				g(MetricLastRead, float64(ts.Last.Bytes), l...)
				g(MetricLastStored, float64(ts.Last.StoredBytes), l...)
			}
			if ts.Last7d.Count > 0 {
				g(MetricAvgDuration, ts.Last7d.DurationSeconds, l...)
			}
			g(MetricBackups, float64(ts.Count), l...)
			if ts.LastAttempt != nil {
				failed := 0.0
				if ts.LastAttempt.Result == "failed" || ts.LastAttempt.Result == "interrupted" {
					failed = 1
				}
				g(MetricLastFailed, failed, l...)
			}
			if ts.Running != nil {
				g(MetricRunning, now.Sub(ts.Running.Started).Seconds(), l...)
			}
			if ts.StaleAfterSeconds > 0 {
				g(MetricStaleAfter, ts.StaleAfterSeconds, l...)
			}
			if ts.MaxDurationSeconds > 0 {
				g(MetricMaxDuration, ts.MaxDurationSeconds, l...)
			}
			if ts.Type == "log" && s.Restorable.Continuous && !ts.LastSuccess.IsZero() {
				g(MetricWALLag, max(0, now.Sub(ts.LastSuccess).Seconds()), l...)
			}
		}
		if !s.Restorable.Earliest.IsZero() {
			g(MetricWindowStart, unix(s.Restorable.Earliest), s.Name)
		}
		if !s.Restorable.Latest.IsZero() {
			g(MetricWindowEnd, unix(s.Restorable.Latest), s.Name)
		}
		for _, r := range s.Replicas {
			if r.Error == "" {
				g(MetricReplicaMissing, float64(r.Missing), s.Name, r.URL)
			}
		}
	}
	for _, al := range rep.Alerts {
		g(MetricAlert, 1, al.Source, al.Type, al.Kind)
	}
	if d := rep.System.Drill.Last; d != nil {
		g(MetricDrillTime, unix(d.Started))
		passed := 0.0
		if d.Passed {
			passed = 1
		}
		g(MetricDrillPassed, passed)
		g(MetricDrillRecovery, d.Took.Seconds())
	}
}
