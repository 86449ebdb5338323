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
	"github.com/hartonomous/hartvault/internal/repo"
)

func (a *app) restoreCommand() *cobra.Command {
	var target, backupID, to string
	var planOnly, force, start, apply, tailLog, noArchive bool
	var port int
	var database, as, priority string
	var wait bool
	var fromReplica string
	var backupFiles []string
	var waitEvery time.Duration
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
			p, r, err := a.openForReading(ctx, fromReplica)
			if err != nil {
				return err
			}
			defer r.Close()
			eng, err := engineFor(p, args[0])
			if err != nil {
				return err
			}
			if len(backupFiles) > 0 && eng.Kind() != plan.KindMSSQL {
				return usagef("--backup-file is for SQL Server sources; %s is %s", eng.Source(), eng.Kind())
			}
			if start && port == 0 {
				return usagef("--start needs --port")
			}
			if target == "" && eng.Kind() != plan.KindMSSQL && eng.Kind() != plan.KindNeo4j {
				return usagef("restore needs --target DIR")
			}
			req := engine.RestoreRequest{Repo: r, BackupID: backupID, To: when, Target: target, Force: force, Log: a.logger(),
				Start: start, Port: port, Database: database, As: as, Apply: apply, TailLog: tailLog, NoArchive: noArchive, BackupFiles: backupFiles}
			plan, err := eng.PlanRestore(ctx, req)
			if err != nil {
				return err
			}
			archived, err := r.ArchiveStateOf(ctx, plan.Backups)
			if err != nil {
				return err
			}
			if planOnly {
				a.printRestorePlan(plan, force, archived, priority)
				return nil
			}
			if err := a.rehydrate(cmd, r, plan, archived, priority, wait, waitEvery); err != nil {
				return err
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
	f.StringVar(&target, "target", "", "directory to restore into (created if missing); Neo4j: a Bolt URI (default the plan's)")
	f.StringVar(&backupID, "backup", "", "backup id or tag to restore")
	f.StringVar(&to, "to", "", "restore the newest backup finished at or before this time (or latest)")
	f.BoolVar(&planOnly, "plan", false, "print the restore plan and touch nothing")
	f.BoolVar(&force, "force", false, "restore into a non-empty target, replacing what it holds")
	f.BoolVar(&start, "start", false, "PostgreSQL: start the restored cluster and wait until it is promoted")
	f.IntVar(&port, "port", 0, "PostgreSQL: the port the restored cluster listens on")
	f.BoolVar(&noArchive, "no-archive", false, "PostgreSQL: the restored copy does not archive into the repository (a test copy; without it, it goes on archiving as the original did)")
	f.StringVar(&database, "database", "", "SQL Server: the database to restore (optional when the source has one); Neo4j: the database to load into")
	f.StringVar(&as, "as", "", "SQL Server: restore under this database name (files are moved)")
	f.BoolVar(&tailLog, "tail-log", false, "SQL Server: back up the tail of the log of the database being replaced first")
	f.BoolVar(&apply, "apply", false, "SQL Server CLR: run the restored deploy script")
	f.StringArrayVar(&backupFiles, "backup-file", nil, "SQL Server: a backup file or URL taken outside hartvault to restore from too, as the server names it (repeatable; read with RESTORE HEADERONLY)")
	f.StringVar(&fromReplica, "from-replica", "", "read from this replica (URL, number or name); without it a failing primary falls back to the replicas")
	f.BoolVar(&wait, "wait", false, "when objects are in the archive tier, wait for their rehydration, then restore")
	f.StringVar(&priority, "rehydrate-priority", "standard", "rehydration priority from the archive tier: standard or high")
	f.DurationVar(&waitEvery, "wait-interval", time.Minute, "how often --wait checks on rehydration")
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

// rehydrate brings archived objects of a restore back online: it starts their
// rehydration and, with --wait, waits for it; without, it stops with a message.
func (a *app) rehydrate(cmd *cobra.Command, r *repo.Repo, plan *engine.RestorePlan, st repo.ArchiveState, priority string, wait bool, every time.Duration) error {
	if st.Offline() == 0 {
		return nil
	}
	if priority != "standard" && priority != "high" {
		return usagef("--rehydrate-priority %q: want standard or high", priority)
	}
	ctx := cmd.Context()
	if len(st.Archived) > 0 {
		if err := r.Rehydrate(ctx, st.Archived, priority); err != nil {
			return err
		}
		fmt.Fprintf(a.env.Stdout, "started rehydration of %d archived objects (priority %s; it may take up to %s)\n",
			len(st.Archived), priority, repo.RehydrationTime(priority))
	}
	if !wait {
		return exitError{code: ExitFailed, msg: fmt.Sprintf("%d objects of this restore are being rehydrated from the archive tier: run the restore again when that is done, or add --wait", st.Offline())}
	}
	for {
		cur, err := r.ArchiveStateOf(ctx, plan.Backups)
		if err != nil {
			return err
		}
		if cur.Offline() == 0 {
			fmt.Fprintln(a.env.Stdout, "rehydration complete")
			return nil
		}
		fmt.Fprintf(a.env.Stdout, "waiting for %d objects to be rehydrated\n", cur.Offline())
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(every):
		}
	}
}

func (a *app) printRestorePlan(plan *engine.RestorePlan, force bool, archived repo.ArchiveState, priority string) {
	out := a.env.Stdout
	fmt.Fprintf(out, "restore plan for %s (%s)\n", plan.Source, plan.Kind)
	fmt.Fprintf(out, "  to:      %s\n", localTime(plan.To))
	switch {
	case !plan.Latest.IsZero():
		fmt.Fprintf(out, "  window:  %s .. %s (restorable instants)\n", localTime(plan.Earliest), localTime(plan.Latest))
	case !plan.Earliest.IsZero():
		fmt.Fprintf(out, "  window:  %s .. now (the newest backup before the instant)\n", localTime(plan.Earliest))
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
	if n := archived.Offline(); n > 0 {
		fmt.Fprintf(out, "  archive: %d objects are in the archive tier (%d already being rehydrated): the restore starts their rehydration, which may take up to %s at %s priority; --wait waits for it\n",
			n, len(archived.Rehydrating), repo.RehydrationTime(priority), priority)
		for _, k := range append(archived.Archived, archived.Rehydrating...) {
			fmt.Fprintf(out, "    %s\n", k)
		}
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

func emptyArchiveState() repo.ArchiveState { return repo.ArchiveState{} }
