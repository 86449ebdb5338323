package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/hartonomous/hartvault/internal/engine"
	"github.com/hartonomous/hartvault/internal/plan"
)

func (a *app) restoreCommand() *cobra.Command {
	var target, backupID, to string
	var planOnly, force, start, apply, tailLog bool
	var port int
	var database, as string
	cmd := &cobra.Command{
		Use:   "restore SOURCE --target DIR [--backup ID | --to TIME]",
		Short: "Restore a source",
		Long: `Restores a backup of SOURCE into --target. --backup takes an id or a tag; --to takes
RFC 3339, "YYYY-MM-DD HH:MM:SS" (local time) or latest, and picks the newest backup finished
at or before it. --plan prints what would be restored and touches nothing. A non-empty target
is refused without --force.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {

			if backupID != "" && to != "" {
				return usagef("give --backup or --to, not both")
			}
			when, err := engine.ParseTime(to, time.Local)
			if err != nil {
				return usageError{err}
			}
			ctx := cmd.Context()
			p, r, err := a.openRepo(ctx)
			if err != nil {
				return err
			}
			defer r.Close()
			eng, err := engineFor(p, args[0])
			if err != nil {
				return err
			}
			if start && port == 0 {
				return usagef("--start needs --port")
			}
			if target == "" && eng.Kind() != plan.KindMSSQL {
				return usagef("restore needs --target DIR")
			}
			req := engine.RestoreRequest{Repo: r, BackupID: backupID, To: when, Target: target, Force: force, Log: a.logger(),
				Start: start, Port: port, Database: database, As: as, Apply: apply, TailLog: tailLog}
			plan, err := eng.PlanRestore(ctx, req)
			if err != nil {
				return err
			}
			if planOnly {
				a.printRestorePlan(plan, force)
				return nil
			}
			bar := a.progress("restore " + eng.Source())
			req.Progress = bar
			began := time.Now()
			err = eng.Restore(ctx, req, plan)
			bar.Done()
			if err != nil {
				return err
			}
			last := plan.Backups[len(plan.Backups)-1]
			into := target
			if into == "" { // a database on a server
				into = "database " + firstNonEmpty(as, database)
			}
			fmt.Fprintf(a.env.Stdout, "restored %s to %s (backup %s) into %s in %s\n", eng.Source(),
				localTime(plan.To), last.ID, into, roundDuration(time.Since(began)))
			for _, n := range plan.Notes {
				fmt.Fprintln(a.env.Stdout, n)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&target, "target", "", "directory to restore into (created if missing)")
	f.StringVar(&backupID, "backup", "", "backup id or tag to restore")
	f.StringVar(&to, "to", "", "restore the newest backup finished at or before this time (or latest)")
	f.BoolVar(&planOnly, "plan", false, "print the restore plan and touch nothing")
	f.BoolVar(&force, "force", false, "restore into a non-empty target, replacing what it holds")
	f.BoolVar(&start, "start", false, "PostgreSQL: start the restored cluster and wait until it is promoted")
	f.IntVar(&port, "port", 0, "PostgreSQL: the port the restored cluster listens on")
	f.StringVar(&database, "database", "", "SQL Server: the database to restore (optional when the source has one)")
	f.StringVar(&as, "as", "", "SQL Server: restore under this database name (files are moved)")
	f.BoolVar(&tailLog, "tail-log", false, "SQL Server: back up the tail of the log of the database being replaced first")
	f.BoolVar(&apply, "apply", false, "SQL Server CLR: run the restored deploy script")
	return cmd
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}

func (a *app) printRestorePlan(plan *engine.RestorePlan, force bool) {
	out := a.env.Stdout
	fmt.Fprintf(out, "restore plan for %s (%s)\n", plan.Source, plan.Kind)
	fmt.Fprintf(out, "  to:      %s\n", localTime(plan.To))
	if !plan.Earliest.IsZero() {
		fmt.Fprintf(out, "  window:  %s .. %s (restorable instants)\n", localTime(plan.Earliest), localTime(plan.Latest))
	}
	for i, m := range plan.Backups {
		label := "backup:"
		if i > 0 {
			label = "  then:"
		}
		tag := ""
		if m.Tag != "" {
			tag = ", tag " + m.Tag
		}
		fmt.Fprintf(out, "  %-8s %s (%s%s), finished %s, %s stored\n", label, m.ID, m.Type, tag, localTime(m.Finished), bytesIEC(m.StoredBytes))
	}
	for _, s := range plan.Steps {
		fmt.Fprintf(out, "  - %s\n", s)
	}
	state := "does not exist: will be created"
	if des, err := os.ReadDir(plan.Target); err == nil {
		switch {
		case len(des) == 0:
			state = "empty"
		case force:
			state = fmt.Sprintf("holds %d entries: restored entries will replace those of the same name (--force)", len(des))
		default:
			state = fmt.Sprintf("holds %d entries: the restore will be refused without --force", len(des))
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		state = err.Error()
	}
	if plan.Target != "" {
		fmt.Fprintf(out, "  target:  %s (%s)\n", plan.Target, state)
	}
	fmt.Fprintln(out, "nothing was touched (--plan)")
}
