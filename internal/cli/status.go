package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/hartonomous/hartvault/internal/engine"
	"github.com/hartonomous/hartvault/internal/plan"
	"github.com/hartonomous/hartvault/internal/repo"
	"github.com/hartonomous/hartvault/internal/status"
)

func (a *app) statusCommand() *cobra.Command {
	var asJSON, check, importMSDB bool
	cmd := &cobra.Command{
		Use:   "status [--json] [--check] [--import-msdb]",
		Short: "Show where each source stands: last backups, averages, windows, replicas, alerts",
		Long: `For each source and backup type: the last successful backup and its age, the average
duration and size over 7 days, counts, the last attempt; the restorable window (any instant
for PostgreSQL with its WAL, backup points otherwise); replicas and what they lack; and the
alerts that fire:

  stale   the newest backup of a type is older than the plan's alerts threshold
  failed  the last attempt of a type failed (cleared by the next success)
  slow    a backup runs (or the last one ran) longer than max_duration, by default three
          times the 7-day average of its type

--json prints what the agent serves at /api/status. --check exits 1 when any alert fires,
naming each on stderr, one line each (for cron or Nagios-style checks), 0 otherwise.

--import-msdb counts, for SQL Server sources, the backups msdb lists that hartvault did not
take (another tool's jobs, a DBA's BACKUP) in the per-type figures and alerts, marked
"external" (a * in the table); a server that cannot be reached is one line under the source.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			p, r, err := a.openRepo(ctx)
			if err != nil {
				return err
			}
			defer r.Close()
			rep, err := a.computeStatusWith(ctx, p, r, importMSDB)
			if err != nil {
				return err
			}
			out := a.env.Stdout
			switch {
			case asJSON:
				if err := rep.WriteJSON(out); err != nil {
					return err
				}
			case check:
				if len(rep.Alerts) == 0 {
					fmt.Fprintf(out, "hartvault OK: %d sources, no alert\n", len(rep.Sources))
				} else {
					fmt.Fprintf(out, "hartvault CRITICAL: %s\n", plural(len(rep.Alerts), "alert"))
				}
			default:
				writeStatus(out, rep)
			}
			if check && len(rep.Alerts) > 0 {
				for _, line := range rep.Firing() {
					fmt.Fprintf(a.env.Stderr, "hartvault: alert: %s\n", oneLine(line))
				}
				return exitError{code: ExitFailed}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON (what the agent serves at /api/status)")
	cmd.Flags().BoolVar(&check, "check", false, "exit 1 when any alert fires, naming each on stderr")
	cmd.Flags().BoolVar(&importMSDB, "import-msdb", false, "SQL Server: count backups taken outside hartvault, as msdb lists them")
	return cmd
}

// computeStatus evaluates the status of every source of the plan now.
func (a *app) computeStatus(ctx context.Context, p *plan.Plan, r *repo.Repo) (*status.Report, error) {
	return a.computeStatusWith(ctx, p, r, false)
}

// computeStatusWith evaluates the status, with backups taken outside hartvault when
// importExternal is set.
func (a *app) computeStatusWith(ctx context.Context, p *plan.Plan, r *repo.Repo, importExternal bool) (*status.Report, error) {
	return status.Compute(ctx, status.Options{Plan: p, Repo: r, Now: a.now(), Log: a.logger(), ImportExternal: importExternal,
		Engine: func(src plan.Source) (engine.Engine, error) { return engineFor(p, src.Name) }})
}

// writeStatus prints a report for people: a table like the seed's backup-status
// view (per source and type), then windows, replicas and alerts.
func writeStatus(w io.Writer, rep *status.Report) {
	fmt.Fprintf(w, "repository %s, status at %s\n\n", rep.Repository, localTime(rep.Generated))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SOURCE\tTYPE\tSCHEDULE\tLAST SUCCESS\tAGE\tAVG DURATION 7D\tAVG READ\tAVG STORED\tBACKUPS 7D/ALL\tLAST ATTEMPT\tALERT AFTER\tSTATE")
	for _, s := range rep.Sources {
		for _, t := range s.Types {
			last, age := "never", "-"
			if !t.LastSuccess.IsZero() {
				last = localTime(t.LastSuccess)
			}
			if t.Last != nil && t.Last.IsExternal() && t.Last.Finished.Equal(t.LastSuccess) {
				last += " *" // taken outside hartvault (--import-msdb)
			}
			if t.AgeSeconds != nil {
				age = status.FormatDuration(secs(*t.AgeSeconds))
			}
			avgDur, avgRead, avgStored := "-", "-", "-"
			if t.Last7d.Count > 0 {
				avgDur = roundDuration(secs(t.Last7d.DurationSeconds)).String()
				avgRead, avgStored = bytesIEC(t.Last7d.Bytes), bytesIEC(t.Last7d.StoredBytes)
			}
			attempt := "-"
			if t.LastAttempt != nil {
				attempt = t.LastAttempt.Result + " " + localTime(attemptTime(t.LastAttempt))
			}
			if t.Running != nil {
				attempt = "running since " + localTime(t.Running.Started)
			}
			threshold := "-"
			if t.StaleAfterSeconds > 0 {
				threshold = status.FormatDuration(secs(t.StaleAfterSeconds))
			}
			state := "ok"
			if len(t.Alerts) > 0 {
				var kinds []string
				for _, al := range t.Alerts {
					kinds = append(kinds, strings.ToUpper(al.Kind))
				}
				state = strings.Join(kinds, ",")
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d/%d\t%s\t%s\t%s\n", s.Name, t.Type, dash(t.Schedule), last, age,
				avgDur, avgRead, avgStored, t.Last7d.Count, t.Count, attempt, threshold, state)
		}
	}
	tw.Flush()

	fmt.Fprintln(w, "\nRestorable:")
	for _, s := range rep.Sources {
		win := s.Restorable
		switch {
		case win.Latest.IsZero():
			fmt.Fprintf(w, "  %s: nothing to restore yet\n", s.Name)
		case win.Continuous:
			fmt.Fprintf(w, "  %s: any instant from %s to %s (%s and the WAL)\n", s.Name, localTime(win.Earliest), localTime(win.Latest), plural(win.Points, "backup"))
		default:
			fmt.Fprintf(w, "  %s: %s from %s to %s\n", s.Name, plural(win.Points, "backup point"), localTime(win.Earliest), localTime(win.Latest))
		}
		for _, e := range s.Errors {
			fmt.Fprintf(w, "  %s: could not be read: %s\n", s.Name, e)
		}
		if x := s.External; x != nil {
			var parts []string
			for _, t := range x.Types {
				parts = append(parts, fmt.Sprintf("%d %s (%d copy-only), newest %s", t.Count, t.Type, t.CopyOnly, localTime(t.Last.Finished)))
			}
			if len(parts) == 0 {
				parts = []string{"none"}
			}
			fmt.Fprintf(w, "  %s: * taken outside hartvault since %s, as msdb lists them (not restorable from the repository): %s\n",
				s.Name, localTime(x.Since), strings.Join(parts, "; "))
		}
	}
	sys := rep.System
	switch {
	case sys.Error != "":
		fmt.Fprintf(w, "  all sources together: %s\n", sys.Error)
	case sys.Common.Latest.IsZero():
		fmt.Fprintf(w, "  all sources together (recover --to): any instant from %s on\n", localTime(sys.Common.Earliest))
	default:
		fmt.Fprintf(w, "  all sources together (recover --to): any instant from %s to %s\n", localTime(sys.Common.Earliest), localTime(sys.Common.Latest))
	}
	fmt.Fprintln(w, "\nDrills:")
	if d := sys.Drill.Last; d != nil {
		verdict := "passed"
		if !d.Passed {
			verdict = "FAILED: " + oneLine(d.Error)
		}
		fmt.Fprintf(w, "  last drill %s at %s to %s: %s, recovery time %s (%d drills recorded)\n", d.ID, localTime(d.Started), localTime(d.To),
			verdict, roundDuration(d.Took), sys.Drill.Count)
	} else {
		fmt.Fprintln(w, "  none recorded")
	}
	if sys.Drill.Every != "" {
		due := "now"
		if !sys.Drill.Due.IsZero() {
			due = localTime(sys.Drill.Due)
		}
		fmt.Fprintf(w, "  every %s; next due %s\n", sys.Drill.Every, due)
	}
	var replicas []string
	for _, s := range rep.Sources {
		for _, r := range s.Replicas {
			line := fmt.Sprintf("  %s on %s: ", s.Name, r.URL)
			switch {
			case r.Error != "":
				line += "cannot be listed: " + r.Error
			case r.Missing == 0:
				line += "up to date"
			default:
				line += fmt.Sprintf("%s missing, behind since %s", plural(r.Missing, "backup"), localTime(r.BehindSince))
			}
			if r.LastError != "" {
				line += "; last error (" + localTime(r.LastErrorAt) + "): " + r.LastError
			}
			replicas = append(replicas, line)
		}
	}
	if len(replicas) > 0 {
		fmt.Fprintln(w, "\nReplicas:")
		for _, l := range replicas {
			fmt.Fprintln(w, l)
		}
	}
	fmt.Fprintln(w, "\nAlerts:")
	if len(rep.Alerts) == 0 {
		fmt.Fprintln(w, "  none")
	}
	for _, al := range rep.Alerts {
		since := ""
		if !al.Since.IsZero() {
			since = " since " + localTime(al.Since)
		}
		fmt.Fprintf(w, "  %s %s %s%s: %s\n", strings.ToUpper(al.Kind), al.Source, al.Type, since, al.Message)
	}
}

func secs(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

func attemptTime(r *status.RunRef) time.Time {
	if !r.Finished.IsZero() {
		return r.Finished
	}
	return r.Started
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
