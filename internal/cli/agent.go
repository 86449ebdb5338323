package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/hartonomous/hartvault/internal/agent"
	"github.com/hartonomous/hartvault/internal/engine"
	"github.com/hartonomous/hartvault/internal/engine/postgres"
	"github.com/hartonomous/hartvault/internal/plan"
	"github.com/hartonomous/hartvault/internal/repo"
	"github.com/hartonomous/hartvault/internal/restore"
	"github.com/hartonomous/hartvault/internal/retention"
	"github.com/hartonomous/hartvault/internal/status"
)

func (a *app) agentCommand() *cobra.Command {
	var listen string
	var statusEvery time.Duration
	cmd := &cobra.Command{
		Use:   "agent [--listen ADDR]",
		Short: "Run the plan's schedules, alerts, metrics and dashboard until stopped",
		Long: `Runs each source's schedule (cron expressions and @hourly/@daily/@weekly/@monthly read in
the plan's timezone, robfig's "@every DURATION", on-change checks every check_every, and
continuous WAL streaming for PostgreSQL), never two backups of one source at once. A run missed
while the agent was down is taken once at start when the catalog shows it is due. A failed
backup is retried with exponential backoff (1m doubling to 1h, or the next regular run) and
reported; a source locked by another run is tried again a minute later. After each successful
backup, retention runs and replicas are brought up to date.

HTTP on --listen (default agent.listen, 127.0.0.1:9187): / (dashboard), /api/status (the JSON
of status --json), /metrics (Prometheus) and /healthz. Alerts raised and cleared, and
failures, are POSTed as JSON to agent.notify.webhook.

SIGTERM or SIGINT abandons the backups in flight (nothing half-written becomes visible),
waits for them and exits 0.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("log-level") {
				a.logLevel = "info" // a service logs what it does
				if err := a.setupLogging(); err != nil {
					return err
				}
			}
			ctx := cmd.Context()
			p, r, err := a.openRepo(ctx)
			if err != nil {
				return err
			}
			defer r.Close()
			if listen == "" {
				listen = p.Agent.Listen
			}
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("agent: listen on %s: %w", listen, err)
			}
			log := a.logger()
			// With agent.prune: false the agent writes only: run it with credentials
			// that cannot delete, and prune with a privileged identity separately.
			var pruner func(ctx context.Context, source string) error
			if p.Agent.Prune == nil || *p.Agent.Prune {
				pruner = func(ctx context.Context, source string) error { return a.agentPrune(ctx, p, r, source, log) }
			}
			var syncLogs func(ctx context.Context) error
			if len(p.Repository.Replicas) > 0 && hasKind(p, plan.KindPostgres) {
				syncLogs = func(ctx context.Context) error {
					var errs []error
					for _, rep := range r.SyncReplicaLogs(ctx, "") {
						if rep.Err != nil {
							errs = append(errs, fmt.Errorf("replica %s: %w", rep.URL, rep.Err))
						} else if rep.Logs > 0 {
							log.Debug("agent: log copied to replica", "replica", rep.URL, "objects", rep.Logs)
						}
					}
					return errors.Join(errs...)
				}
			}
			ag, err := agent.New(agent.Config{
				Plan:   p,
				Clock:  agent.ClockFunc(a.now),
				Log:    log,
				Backup: func(ctx context.Context, j agent.Job) agent.Result { return a.agentBackup(ctx, p, r, j, log) },
				LastBackup: func(ctx context.Context, source, typ string) (time.Time, error) {
					return newestStart(ctx, r, source, typ)
				},
				Stream:   func(ctx context.Context, source string) error { return a.agentStream(ctx, p, r, source, log) },
				Pruner:   pruner,
				SyncLogs: syncLogs,
				Drill: func(ctx context.Context) error {
					engines := func(name string) (engine.Engine, error) { return engineFor(p, name) }
					rec, err := restore.Drill(ctx, p, r, engines, restore.DrillOptions{Now: a.now, Log: log})
					if err == nil && !rec.Passed {
						err = fmt.Errorf("drill %s failed: %s", rec.ID, rec.Error)
					}
					return err
				},
				DrillDue: func(ctx context.Context, now time.Time) (bool, error) {
					return status.DrillDue(ctx, r, p.Drills.Every.Std(), now)
				},
				Status:      func(ctx context.Context) (*status.Report, error) { return a.computeStatus(ctx, p, r) },
				StatusEvery: statusEvery,
				LoadAlerts: func(ctx context.Context) ([]status.Alert, error) {
					var notified []status.Alert
					_, err := r.ReadAgentState(ctx, agentStateName(), &notified)
					return notified, err
				},
				SaveAlerts: func(ctx context.Context, alerts []status.Alert) error {
					return r.WriteAgentState(ctx, agentStateName(), alerts)
				},
				Webhook: p.Agent.Notify.Webhook,
			})
			if err != nil {
				ln.Close()
				return err
			}
			fmt.Fprintf(a.env.Stdout, "hartvault agent: %d sources, repository %s, http://%s/\n", len(p.Sources), r, ln.Addr())
			runCtx, stop := context.WithCancel(ctx)
			defer stop()
			serveErr := make(chan error, 1)
			go func() {
				err := ag.Serve(runCtx, ln)
				if err != nil {
					stop() // without its HTTP server the agent stops too
				}
				serveErr <- err
			}()
			runErr := ag.Run(runCtx)
			stop()
			if err := <-serveErr; err != nil {
				return err
			}
			return runErr
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "", "HTTP address (default agent.listen in the plan, else "+plan.DefaultListen+")")
	cmd.Flags().DurationVar(&statusEvery, "status-every", 30*time.Second, "how often status and alerts are evaluated, besides after each backup")
	return cmd
}

// agentBackup runs one of the agent's backups through engine.RunBackup (which
// records the attempt in the run log and brings replicas up to date).
func (a *app) agentBackup(ctx context.Context, p *plan.Plan, r *repo.Repo, j agent.Job, log *slog.Logger) agent.Result {
	eng, err := engineFor(p, j.Source)
	if err != nil {
		return agent.Result{Outcome: agent.OutcomeFailed, Err: err}
	}
	log = log.With("source", j.Source, "type", j.Type)
	res, err := engine.RunBackup(ctx, eng, engine.BackupRequest{Repo: r, Type: j.Type, Log: log})
	var unchanged *engine.UnchangedError
	var locked *repo.LockedError
	switch {
	case errors.As(err, &unchanged):
		return agent.Result{Outcome: agent.OutcomeUnchanged}
	case errors.As(err, &locked):
		return agent.Result{Outcome: agent.OutcomeLocked, Err: err}
	case err != nil && ctx.Err() != nil:
		return agent.Result{Outcome: agent.OutcomeAbandoned, Err: err}
	case err != nil:
		return agent.Result{Outcome: agent.OutcomeFailed, Err: err}
	}
	if wr, ok := eng.(engine.Warner); ok {
		for _, w := range wr.Warnings(res.Manifest) {
			log.Warn("backup warning", "backup", res.Manifest.ID, "warning", w)
		}
	}
	for _, rep := range res.Replicas {
		if rep.Err != nil {
			log.Warn("replica is behind: caught up on the next run", "replica", rep.URL, "err", oneLine(rep.Err.Error()))
		}
	}
	return agent.Result{Outcome: agent.OutcomeOK, Backup: res.Manifest.ID}
}

// agentPrune is the agent's retention step after each successful backup.
// RETENTION: the one place the agent calls retention (internal/retention).
func (a *app) agentPrune(ctx context.Context, p *plan.Plan, r *repo.Repo, source string, log *slog.Logger) error {
	src := p.Source(source)
	if src == nil {
		return nil
	}
	eng, err := engineFor(p, source)
	if err != nil {
		return err
	}
	res, err := retention.PruneSource(ctx, r, *src, eng, a.now(), false)
	if err != nil {
		return fmt.Errorf("retention of %s: %w", source, err)
	}
	if backups, objects, bytes := res.Totals(); backups > 0 || objects > 0 {
		log.Info("retention: pruned", "source", source, "backups", backups, "objects", objects, "bytes", bytes)
	}
	// Each replica by the same rules over what it holds (see prune).
	for _, url := range p.Repository.Replicas {
		rr, err := a.openReplica(ctx, p, url)
		if err == nil {
			res, err = retention.PruneSource(ctx, rr, *src, eng, a.now(), false)
			rr.Close()
		}
		if err != nil {
			log.Warn("retention: replica not pruned (next run tries again)", "source", source, "replica", url, "err", repo.ScrubError(err.Error()))
			continue
		}
		if backups, objects, bytes := res.Totals(); backups > 0 || objects > 0 {
			log.Info("retention: pruned replica", "source", source, "replica", url, "backups", backups, "objects", objects, "bytes", bytes)
		}
	}
	return nil
}

// agentStream keeps a PostgreSQL source's WAL streaming until ctx ends.
func (a *app) agentStream(ctx context.Context, p *plan.Plan, r *repo.Repo, source string, log *slog.Logger) error {
	pe, err := postgresEngine(p, source)
	if err != nil {
		return err
	}
	return pe.WALStream(ctx, r, postgres.StreamOptions{Log: log})
}

// newestStart is when the newest committed backup of a type of source started.
func newestStart(ctx context.Context, r *repo.Repo, source, typ string) (time.Time, error) {
	backups, err := r.Backups(ctx, source)
	if err != nil {
		return time.Time{}, err
	}
	var newest time.Time
	for _, m := range backups {
		if m.Type == typ && m.Started.After(newest) {
			newest = m.Started
		}
	}
	return newest, nil
}

// agentStateName names this host's agent state in the repository.
func agentStateName() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		return "agent"
	}
	return "agent-" + strings.Map(func(c rune) rune {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' {
			return c
		}
		return '_'
	}, host)
}

// hasKind reports whether the plan has a source of kind.
func hasKind(p *plan.Plan, kind string) bool {
	for _, s := range p.Sources {
		if s.Kind == kind {
			return true
		}
	}
	return false
}
