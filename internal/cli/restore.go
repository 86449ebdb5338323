package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/hartonomous/hartvault/internal/engine"
	"github.com/hartonomous/hartvault/internal/repo"
	"github.com/hartonomous/hartvault/internal/restore"
)

func (a *app) restoreCommand() *cobra.Command {
	var target, backupID, to string
	var planOnly, force bool
	cmd := &cobra.Command{
		Use:   "restore SOURCE --target DIR [--backup ID | --to TIME]",
		Short: "Restore a source",
		Long: `Restores a backup of SOURCE into --target. --backup takes an id or a tag; --to takes
RFC 3339, "YYYY-MM-DD HH:MM:SS" (local time) or latest, and picks the newest backup finished
at or before it. --plan prints what would be restored and touches nothing. A non-empty target
is refused without --force.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if target == "" {
				return usagef("restore needs --target DIR")
			}
			if backupID != "" && to != "" {
				return usagef("give --backup or --to, not both")
			}
			when, err := restore.ParseTime(to, time.Local)
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
			backups, err := r.Backups(ctx, eng.Source())
			if err != nil {
				return err
			}
			m, err := restore.Select(backups, backupID, when)
			if err != nil {
				return err
			}
			if planOnly {
				return a.printRestorePlan(cmd, r, m, target, force)
			}
			bar := a.progress("restore " + eng.Source())
			start := time.Now()
			err = eng.Restore(ctx, engine.RestoreRequest{Repo: r, Backup: m, Target: target, Force: force, Progress: bar, Log: a.logger()})
			bar.Done()
			if err != nil {
				return err
			}
			fmt.Fprintf(a.env.Stdout, "restored %s backup %s (%d files, %s) into %s in %s\n", eng.Source(), m.ID, len(m.Files),
				bytesIEC(contentBytes(m)), target, roundDuration(time.Since(start)))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&target, "target", "", "directory to restore into (created if missing)")
	f.StringVar(&backupID, "backup", "", "backup id or tag to restore")
	f.StringVar(&to, "to", "", "restore the newest backup finished at or before this time (or latest)")
	f.BoolVar(&planOnly, "plan", false, "print the restore plan and touch nothing")
	f.BoolVar(&force, "force", false, "restore into a non-empty target, replacing what it holds")
	return cmd
}

func contentBytes(m *repo.Manifest) int64 {
	var n int64
	for _, f := range m.Files {
		n += f.Size
	}
	return n
}

func (a *app) printRestorePlan(cmd *cobra.Command, r *repo.Repo, m *repo.Manifest, target string, force bool) error {
	chain, err := r.Chain(cmd.Context(), m)
	if err != nil {
		return err
	}
	var ids []string
	for id := range chain {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return chain[ids[i]].Finished.Before(chain[ids[j]].Finished) })
	used := map[string]map[int]bool{}
	for _, f := range m.Files {
		for _, e := range f.Extents {
			b := e.Backup
			if b == "" {
				b = m.ID
			}
			if used[b] == nil {
				used[b] = map[int]bool{}
			}
			used[b][e.Object] = true
		}
	}
	out := a.env.Stdout
	fmt.Fprintf(out, "restore plan for %s\n", m.Source)
	tag := ""
	if m.Tag != "" {
		tag = ", tag " + m.Tag
	}
	fmt.Fprintf(out, "  backup:  %s (%s%s), finished %s\n", m.ID, m.Type, tag, localTime(m.Finished))
	var chainDesc []string
	var objects int
	var stored int64
	for _, id := range ids {
		cm := chain[id]
		chainDesc = append(chainDesc, fmt.Sprintf("%s (%s)", id, cm.Type))
		for i := range used[id] {
			objects++
			stored += cm.Objects[i].Size
		}
	}
	fmt.Fprintf(out, "  chain:   %s\n", strings.Join(chainDesc, " -> "))
	fmt.Fprintf(out, "  content: %d entries, %s\n", len(m.Files), bytesIEC(contentBytes(m)))
	fmt.Fprintf(out, "  reads:   %d objects, %s stored\n", objects, bytesIEC(stored))
	state := "does not exist: will be created"
	if des, err := os.ReadDir(target); err == nil {
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
	fmt.Fprintf(out, "  target:  %s (%s)\n", target, state)
	fmt.Fprintln(out, "nothing was touched (--plan)")
	return nil
}
