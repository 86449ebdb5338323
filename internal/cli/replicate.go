package cli

import (
	"fmt"

	"github.com/spf13/cobra"
)

func (a *app) replicateCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "replicate [SOURCE]",
		Short: "Copy to every replica the backups and WAL it lacks",
		Long: `Brings every replica of the repository up to date for SOURCE (all sources without
it): first the log objects (PostgreSQL's WAL) it lacks, then the committed backups it
lacks, objects before manifests, each read back and checked there. Backups do this
after they commit and the agent copies the WAL every minute; this command is for
cron, or after a replica was unreachable. Exit 1 when a replica could not be brought
up to date.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			p, r, err := a.openRepo(ctx)
			if err != nil {
				return err
			}
			defer r.Close()
			source := ""
			if src, err := sourceArg(p, args); err != nil {
				return err
			} else if src != nil {
				source = src.Name
			}
			if len(p.Repository.Replicas) == 0 {
				return usagef("the plan's repository has no replicas")
			}
			failed := 0
			reports := r.SyncReplicas(ctx, source)
			for _, rep := range reports {
				if rep.Err != nil {
					failed++
					fmt.Fprintf(a.env.Stderr, "hartvault: replica %s: %s\n", rep.URL, oneLine(rep.Err.Error()))
					continue
				}
				fmt.Fprintf(a.env.Stdout, "replica %s: up to date (%s and %s copied)\n", rep.URL,
					plural(len(rep.Copied), "backup"), plural(rep.Logs, "log object"))
			}
			if failed > 0 {
				return exitError{code: ExitFailed, msg: fmt.Sprintf("replicate: %d of %d replicas are not up to date", failed, len(reports))}
			}
			return nil
		},
	}
}
