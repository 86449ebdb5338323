package cli

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/hartonomous/hartvault/internal/engine"
	"github.com/hartonomous/hartvault/internal/repo"
)

func (a *app) backupCommand() *cobra.Command {
	var typ, tag string
	var force bool
	cmd := &cobra.Command{
		Use:   "backup SOURCE",
		Short: "Back up a source",
		Long: `Backs up the named source of the plan. A file set is backed up only when its content
changed since its last backup (--force takes one anyway). The new backup's id is the last
line of the output.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if typ != repo.TypeFull && typ != repo.TypeDiff && typ != repo.TypeLog {
				return usagef("--type %q: want full, diff or log", typ)
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
			out := a.env.Stdout
			fmt.Fprintf(out, "backing up %s (%s, %s) to %s\n", eng.Source(), eng.Kind(), typ, r)
			bar := a.progress("backup " + eng.Source())
			start := time.Now()
			res, err := engine.RunBackup(ctx, eng, engine.BackupRequest{
				Repo: r, Type: typ, Tag: tag, Force: force, Progress: bar, Log: a.logger(),
			})
			bar.Done()
			if res != nil {
				for _, id := range res.Leftovers {
					fmt.Fprintf(out, "removed the data of interrupted backup %s\n", id)
				}
			}
			var unchanged *engine.UnchangedError
			if errors.As(err, &unchanged) {
				fmt.Fprintln(out, unchanged.Error())
				return nil
			}
			if err != nil {
				return err
			}
			m := res.Manifest
			if wr, ok := eng.(engine.Warner); ok {
				for _, w := range wr.Warnings(m) {
					fmt.Fprintf(a.env.Stderr, "hartvault: warning: %s\n", w)
				}
			}
			fmt.Fprintf(out, "%s backup of %s: %d files, %s read, %s stored in %d objects, %s\n",
				m.Type, m.Source, len(m.Files), bytesIEC(m.Bytes), bytesIEC(m.StoredBytes), len(m.Objects),
				roundDuration(time.Since(start)))
			// The backup is committed on the primary: a lagging replica is a warning
			// (caught up on the next run), not a failed backup.
			for _, rep := range res.Replicas {
				if rep.Err != nil {
					fmt.Fprintf(a.env.Stderr, "hartvault: warning: replica %s is behind: %s (it is caught up on the next run)\n", rep.URL, oneLine(rep.Err.Error()))
					continue
				}
				fmt.Fprintf(out, "replica %s: copied %d backups\n", rep.URL, len(rep.Copied))
			}
			fmt.Fprintln(out, m.ID)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&typ, "type", repo.TypeFull, "backup type: full, diff, or log (engines with a transaction log)")
	f.StringVar(&tag, "tag", "", "label kept with the backup (e.g. an assembly version); usable wherever a backup id is")
	f.BoolVar(&force, "force", false, "back up even when nothing changed")
	return cmd
}
