package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/hartonomous/hartvault/internal/engine/postgres"
	"github.com/hartonomous/hartvault/internal/plan"
	"github.com/hartonomous/hartvault/internal/repo"
)

func (a *app) walPushCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "wal-push SOURCE PATH",
		Short: "Archive one WAL file (PostgreSQL archive_command)",
		Long: `Archives one WAL segment, history or backup history file of a PostgreSQL source, for use as
	archive_command = 'hartvault --config /etc/hartvault.yaml wal-push SOURCE %p'
It exits 0 only once the file is durably stored. Pushing the same file again is a no-op;
different content under an archived name is an error. No secret is needed on the command line:
encryption needs only the repository's public key.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			eng, r, err := a.openPostgres(ctx, args[0], a.openRepo)
			if err != nil {
				return err
			}
			defer r.Close()
			res, err := eng.WALPush(ctx, r, args[1])
			if err != nil {
				return err
			}
			state := "already archived"
			if res.Stored > 0 {
				state = "stored " + bytesIEC(res.Stored)
			}
			a.logger().Info("wal-push", "file", res.File, "result", state, "took", res.Took)
			return nil
		},
	}
}

// ExitStopRecovery is wal-fetch's exit code for a WAL file that exists but cannot be
// read intact (or any other failure but "not archived"). PostgreSQL takes exit
// codes up to 125 as "not in the archive", the end of recovery, and would promote
// short of the target; above 125 its recovery stops with a FATAL error instead.
const ExitStopRecovery = 200

func (a *app) walFetchCommand() *cobra.Command {
	var fromReplica string
	cmd := &cobra.Command{
		Use:   "wal-fetch SOURCE FILE DEST",
		Short: "Fetch one archived WAL file (PostgreSQL restore_command)",
		Long: `Writes an archived WAL file to DEST, for use as
	restore_command = 'hartvault --config /etc/hartvault.yaml wal-fetch SOURCE %f %p'
It exits 1 only when the file is not in the archive, which recovery takes as the end of
the archived WAL. Any other failure (the file is damaged on the primary and on every
replica, the repository cannot be read, DEST cannot be written, a wrong key) exits 200,
which makes PostgreSQL stop recovery with an error instead of promoting early.
Segments that follow are fetched ahead in parallel. When the primary repository cannot
be reached, or holds a damaged copy, it reads from the replicas (a restore from a
replica writes --from-replica into restore_command).`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 3 {
				return stopRecovery(fmt.Errorf("wal-fetch needs SOURCE FILE DEST, got %d arguments", len(args)))
			}
			if postgres.TakePrefetched(args[1], args[2]) {
				return nil
			}
			ctx := cmd.Context()
			eng, r, err := a.openPostgres(ctx, args[0], func(ctx context.Context) (*plan.Plan, *repo.Repo, error) {
				return a.openForReading(ctx, fromReplica)
			})
			if err != nil {
				return stopRecovery(err)
			}
			defer r.Close()
			if err := eng.WALFetch(ctx, r, args[1], args[2]); err != nil {
				if postgres.IsNotArchived(err) {
					return exitError{code: ExitFailed, msg: fmt.Sprintf("wal-fetch: %s is not in the archive of %s", args[1], args[0])}
				}
				return stopRecovery(err)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&fromReplica, "from-replica", "", "read from this replica (URL, number or name)")
	// A mistyped restore_command must stop recovery too, not end it.
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return stopRecovery(err) })
	return cmd
}

func stopRecovery(err error) error {
	return exitError{code: ExitStopRecovery, msg: oneLine(err.Error()) + " (wal-fetch exits 200 so that PostgreSQL stops recovery instead of taking this as the end of the archive)"}
}

func (a *app) walStreamCommand() *cobra.Command {
	var slot string
	var every time.Duration
	cmd := &cobra.Command{
		Use:   "wal-stream SOURCE",
		Short: "Stream WAL into the repository continuously (PostgreSQL)",
		Long: `Keeps a physical replication slot on the server and streams its WAL into the repository:
complete segments as they fill, and the segment being written every --flush-every, so a commit
is restorable seconds after it happens. Runs until interrupted (SIGINT or SIGTERM), storing
what it has received before it exits. The slot makes the server keep WAL the repository lacks.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			eng, r, err := a.openPostgres(ctx, args[0], a.openRepo)
			if err != nil {
				return err
			}
			defer r.Close()
			fmt.Fprintf(a.env.Stdout, "streaming WAL of %s into %s (Ctrl-C to stop)\n", args[0], r)
			return eng.WALStream(ctx, r, postgres.StreamOptions{Slot: slot, FlushEvery: every, Log: a.logger()})
		},
	}
	cmd.Flags().StringVar(&slot, "slot", "", "replication slot name (default hartvault_<source>)")
	cmd.Flags().DurationVar(&every, "flush-every", time.Second, "how often the segment being written is stored")
	return cmd
}

// openPostgres opens the repository with open (the primary to write; the primary or
// a replica to read) and the PostgreSQL engine of a source.
func (a *app) openPostgres(ctx context.Context, source string, open func(context.Context) (*plan.Plan, *repo.Repo, error)) (*postgres.Engine, *repo.Repo, error) {
	p, r, err := open(ctx)
	if err != nil {
		return nil, nil, err
	}
	eng, err := postgresEngine(p, source)
	if err != nil {
		r.Close()
		return nil, nil, err
	}
	return eng, r, nil
}
