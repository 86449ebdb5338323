package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/hartonomous/hartvault/internal/engine"
	"github.com/hartonomous/hartvault/internal/restore"
)

func (a *app) recoverCommand() *cobra.Command {
	var to string
	var planOnly bool
	cmd := &cobra.Command{
		Use:   "recover --to TIME",
		Short: "Recover every source of the plan to one instant",
		Long: `Restores every source of the plan to one instant, in the plan's recovery.order, each into
its recovery.targets entry (a data directory and port for PostgreSQL, started and left running; a
database for SQL Server and Neo4j; a directory for files), then runs recovery.checks with :target
bound to the instant. Prints a report and exits 1 if anything failed. --plan shows the whole plan
and the window every source can reach, touching nothing.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if to == "" {
				return usagef("recover needs --to TIME (or latest)")
			}
			when, err := engine.ParseTime(to, time.Local)
			if err != nil {
				return usageError{err}
			}
			ctx := cmd.Context()
			p, r, err := a.openForReading(ctx, "")
			if err != nil {
				return err
			}
			defer r.Close()
			engines := func(name string) (engine.Engine, error) { return engineFor(p, name) }
			out := a.env.Stdout
			plans, err := restore.PlanRecovery(ctx, p, r, engines, when, p.Recovery.Targets)
			if err != nil {
				return err
			}
			if planOnly {
				ws, common, werr := restore.Windows(ctx, r, p.RecoveryOrder(), engines)
				fmt.Fprintf(out, "recovery plan to %s\n", when)
				for _, sp := range plans {
					fmt.Fprintf(out, "\n%s (window %s)\n", sp.Source, ws[sp.Source])
					a.printRestorePlan(sp.Plan, false, emptyArchiveState(), "standard")
				}
				if werr != nil {
					return werr
				}
				fmt.Fprintf(out, "\ninstants every source can reach: %s\n", common)
				return nil
			}
			at := when.Time
			if when.Latest {
				at = a.now()
			}
			rep := restore.Execute(ctx, plans, p.Recovery.Checks, engines, at)
			printRecovery(a, rep)
			if !rep.OK() {
				return exitError{code: ExitFailed, msg: "recovery failed: see the report above"}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&to, "to", "", "the instant: RFC 3339, \"YYYY-MM-DD HH:MM:SS\" (local time) or latest")
	cmd.Flags().BoolVar(&planOnly, "plan", false, "print the plan and every source's window, touching nothing")
	return cmd
}

func printRecovery(a *app, rep *restore.Report) {
	out := a.env.Stdout
	fmt.Fprintf(out, "recovery to %s\n", localTime(rep.To))
	for _, s := range rep.Sources {
		state := "ok"
		if s.Err != nil {
			state = "FAILED: " + oneLine(s.Err.Error())
		}
		fmt.Fprintf(out, "  %-14s %s, %s in %s, backups %v\n", s.Source, state, bytesIEC(s.Bytes), roundDuration(s.Took), s.Backups)
		for _, n := range s.Notes {
			fmt.Fprintf(out, "  %-14s %s\n", "", n)
		}
	}
	for _, c := range rep.Checks {
		state := "passed"
		switch {
		case c.Err != nil:
			state = "FAILED: " + oneLine(c.Err.Error())
		case !c.Passed:
			state = "FAILED: returned false"
		}
		fmt.Fprintf(out, "  check %-8s %s: %s\n", c.Check.Source, c.Check.Query(), state)
	}
	verdict := "recovered"
	if !rep.OK() {
		verdict = "FAILED"
	}
	fmt.Fprintf(out, "%s in %s (restores), %d checks\n", verdict, roundDuration(rep.Took), len(rep.Checks))
}

func (a *app) drillCommand() *cobra.Command {
	var scratch string
	cmd := &cobra.Command{
		Use:   "drill [SOURCE...]",
		Short: "Rehearse a recovery into scratch places and record the result",
		Long: `Restores the sources (default: drills.sources, else all) into scratch locations (a throwaway
PostgreSQL cluster on a free port that does not archive, a scratch directory; servers named in
recovery.targets for the others), to a random instant of their common window or to the latest,
runs the plan's checks for them, records the outcome in the repository (when, what, to which
instant, the measured recovery time, pass or fail) and cleans up. Exit 1 when the drill failed.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			p, r, err := a.openRepo(ctx)
			if err != nil {
				return err
			}
			defer r.Close()
			for _, name := range args {
				if p.Source(name) == nil {
					return usagef("no source %q in %s", name, p.Path)
				}
			}
			engines := func(name string) (engine.Engine, error) { return engineFor(p, name) }
			rec, err := restore.Drill(ctx, p, r, engines, restore.DrillOptions{Sources: args, Scratch: scratch, Now: a.now, Log: a.logger()})
			if err != nil {
				return err
			}
			out := a.env.Stdout
			fmt.Fprintf(out, "drill %s to %s\n", rec.ID, localTime(rec.To))
			for _, s := range rec.Sources {
				state := "ok"
				if s.Error != "" {
					state = "FAILED: " + oneLine(s.Error)
				}
				fmt.Fprintf(out, "  %-14s %s, %s in %s\n", s.Source, state, bytesIEC(s.Bytes), roundDuration(s.Took))
			}
			for _, c := range rec.Checks {
				state := "passed"
				if !c.Passed {
					state = "FAILED"
					if c.Error != "" {
						state += ": " + oneLine(c.Error)
					}
				}
				fmt.Fprintf(out, "  check %-8s %s: %s\n", c.Source, c.Query, state)
			}
			if !rec.Passed {
				msg := "the drill failed"
				if rec.Error != "" {
					msg += ": " + oneLine(rec.Error)
				}
				fmt.Fprintf(out, "FAILED; recovery time %s\n", roundDuration(rec.Took))
				return exitError{code: ExitFailed, msg: msg}
			}
			fmt.Fprintf(out, "passed; recovery time %s (recorded as drill %s)\n", roundDuration(rec.Took), rec.ID)
			return nil
		},
	}
	cmd.Flags().StringVar(&scratch, "scratch", "", "directory for scratch restores (default the OS temp directory)")
	return cmd
}
