package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/hartonomous/hartvault/internal/plan"
	"github.com/hartonomous/hartvault/internal/retention"
)

func (a *app) pruneCommand() *cobra.Command {
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "prune [SOURCE]",
		Short: "Delete the backups and WAL the retention rules no longer keep",
		Long: `Applies each source's retention rules (all sources, or SOURCE): prints every backup
with what happens to it and why, every WAL range deleted and why, and what is freed.

Retention is chain-aware: a full stays while a kept diff needs it; everything needed to
restore to any instant of the longest rule's window stays (the newest full before the
window's start too, and the WAL from the oldest kept backup on); the newest full of each
cluster is never deleted; forever (or no rule) keeps everything. Backups are ordered by
finish time. --dry-run deletes nothing.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			p, r, err := a.openRepo(ctx)
			if err != nil {
				return err
			}
			defer r.Close()
			var sources []plan.Source
			if len(args) == 1 {
				src := p.Source(args[0])
				if src == nil {
					_, err := engineFor(p, args[0]) // names the plan's sources
					return err
				}
				sources = append(sources, *src)
			} else {
				sources = p.Sources
			}
			now := a.now()
			for i, src := range sources {
				eng, err := engineFor(p, src.Name)
				if err != nil {
					eng = nil
					// A kind this build cannot run: its backups are still pruned by the
					// rules and their chains, without an engine's log or lineage.
					fmt.Fprintf(a.env.Stderr, "hartvault: warning: %s: %s\n", src.Name, oneLine(err.Error()))
				}
				if i > 0 {
					fmt.Fprintln(a.env.Stdout)
				}
				res, err := retention.PruneSource(ctx, r, src, eng, now, dryRun)
				// On failure, what was already deleted is still worth seeing.
				if err == nil || len(res.Deleted) > 0 || len(res.Logs) > 0 {
					if werr := res.Write(a.env.Stdout); werr != nil && err == nil {
						err = werr
					}
				}
				if err != nil {
					return fmt.Errorf("prune %s: %w", src.Name, err)
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print what would be deleted, delete nothing")
	return cmd
}
