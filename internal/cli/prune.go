package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/hartonomous/hartvault/internal/engine"
	"github.com/hartonomous/hartvault/internal/plan"
	"github.com/hartonomous/hartvault/internal/repo"
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
finish time. Each replica is then pruned by the same rules over the backups and WAL it
holds. --dry-run deletes nothing.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			p, r, err := a.openRepo(ctx)
			if err != nil {
				return err
			}
			defer r.Close()
			sources := p.Sources
			if src, err := sourceArg(p, args); err != nil {
				return err
			} else if src != nil {
				sources = []plan.Source{*src}
			}
			now := a.now()
			engines := map[string]engine.Engine{}
			for _, src := range sources {
				eng, err := engineFor(p, src.Name)
				if err != nil {
					eng = nil
					// A kind this build cannot run: its backups are still pruned by the
					// rules and their chains, without an engine's log or lineage.
					fmt.Fprintf(a.env.Stderr, "hartvault: warning: %s: %s\n", src.Name, oneLine(err.Error()))
				}
				engines[src.Name] = eng
			}
			first := true
			pruneIn := func(r *repo.Repo, where string) error {
				for _, src := range sources {
					if !first {
						fmt.Fprintln(a.env.Stdout)
					}
					first = false
					if where != "" {
						fmt.Fprintf(a.env.Stdout, "%s:\n", where)
					}
					res, err := retention.PruneSource(ctx, r, src, engines[src.Name], now, dryRun)
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
			}
			if err := pruneIn(r, ""); err != nil {
				return err
			}
			// Each replica is pruned by the same rules over what it holds itself, so a
			// primary that lost its backups never makes a replica lose them too.
			var failed []string
			for _, url := range p.Repository.Replicas {
				rr, err := a.openReplica(ctx, p, url)
				if err == nil {
					err = pruneIn(rr, "replica "+url)
					rr.Close()
				}
				if err != nil {
					fmt.Fprintf(a.env.Stderr, "hartvault: replica %s: %s\n", url, oneLine(err.Error()))
					failed = append(failed, url)
				}
			}
			if len(failed) > 0 {
				return exitError{code: ExitFailed, msg: fmt.Sprintf("prune: %d of %d replicas could not be pruned (the primary was)", len(failed), len(p.Repository.Replicas))}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print what would be deleted, delete nothing")
	return cmd
}

// sourceArg is the optional SOURCE argument: nil without one, an error naming the
// plan's sources when it names none of them.
func sourceArg(p *plan.Plan, args []string) (*plan.Source, error) {
	if len(args) == 0 {
		return nil, nil
	}
	src := p.Source(args[0])
	if src == nil {
		_, err := engineFor(p, args[0]) // names the plan's sources
		return nil, err
	}
	return src, nil
}
