package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/hartonomous/hartvault/internal/repo"
)

func (a *app) initCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "init",
		Short: "Create the repository (and its replicas)",
		Long:  "Creates the repository named by the plan, and each replica. It refuses to touch an existing repository.",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := a.loadPlan()
			if err != nil {
				return err
			}
			opts := a.repoOptions(p)
			cfg, err := repo.Init(cmd.Context(), opts)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.env.Stdout, "created repository %s at %s (encryption: %s)\n", cfg.ID, opts.URL, cfg.Encryption.Mode)
			for _, r := range opts.Replicas {
				fmt.Fprintf(a.env.Stdout, "created replica at %s\n", r)
			}
			return nil
		},
	}
}
